"""Prediction: core.predict.Predictor vs `transformers.pipeline("text-classification", batch_size=32)`.

    python benchmarks/bench_predict.py --data ../shared/data/SMSSpamCollection --limit 1000 --repeats 3

Both score the same fine-tuned checkpoint (<run>/model). Without --finetune-run/--frozen-run, two short runs
are trained first on --train-limit messages (1 epoch; their quality does not matter for speed). Batch:
--limit messages, alternating pipeline / Predictor, medians and the ratio. Latency: one typed message,
warm (after warm-up calls), p50 and p95 over --calls calls, through the fine-tuned and the frozen
Predictor (the app serves both), with the pipeline (batch 1) for reference. Target: batch >= 3x, p50 <= 20 ms.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)

TYPED = "Congratulations! You've won a £500 voucher. Text CLAIM to 80062 before midnight"


def short_runs(data, model: str, limit: int, precision: str, directory: Path) -> tuple[Path, Path]:
    """A fine-tuned and a frozen run, trained quickly on a subset (for timing only)."""
    from core.config import TrainConfig
    from core.train import train
    path, _ = C.subset_file(data, limit, directory, seed=1)
    common = dict(data=str(path), model=model, precision=precision, runs_dir=str(directory / "runs"),
                  cache_dir=str(directory / "cache"))
    return (train(TrainConfig(mode="finetune", epochs=1, min_epoch_steps=0, **common)),
            train(TrainConfig(mode="frozen", epochs=5, **common)))


def latencies(fn, calls: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset file (default: core's lookup)")
    p.add_argument("--model", help="encoder directory for the short runs (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--finetune-run", help="an existing fine-tuned run folder (skips the short training)")
    p.add_argument("--frozen-run", help="an existing frozen run folder")
    p.add_argument("--train-limit", type=int, default=400, help="messages for the short runs")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"), help="precision of the short runs")
    p.add_argument("--limit", type=int, default=1000, help="messages scored in the batch part (0: all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calls", type=int, default=100, help="calls per latency measurement")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    C.quiet()
    import numpy as np
    from transformers import pipeline

    from core.predict import Predictor

    print(C.machine())
    with C.tmpdir("predict") as tmp:
        tmp = Path(tmp)
        finetune_run, frozen_run = args.finetune_run, args.frozen_run
        if not (finetune_run and frozen_run):
            print(f"training short runs on {args.train_limit} messages ({args.precision}) ...", flush=True)
            trained = short_runs(args.data, args.model or C.default_model(), args.train_limit, args.precision, tmp)
            finetune_run, frozen_run = finetune_run or trained[0], frozen_run or trained[1]
        fine, frozen = Predictor.load(finetune_run), Predictor.load(frozen_run)
        model_dir = str(Path(finetune_run) / "model")
        pipe = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device="cpu")
        path, n = C.subset_file(args.data, args.limit or None, tmp, seed=7)
        texts = C.texts_of(path)
        print(f"checkpoint {Path(finetune_run).name} (precision {fine.precision}); batch part: {n} messages "
              f"({'random subset, --limit ' + str(args.limit) if args.limit else 'all'})")

        def pipeline_spam(batch):
            out = pipe(batch, batch_size=32, truncation=True, max_length=fine.max_length, top_k=None)
            return np.array([next(s["score"] for s in o if s["label"] == "spam") for o in out])

        # ------------------------------------------------------------ batch throughput
        variants = {"pipeline (batch 32)": lambda: pipeline_spam(texts), "Predictor finetune": lambda: fine.predict(texts)}
        times, probs, loads = C.abba(variants, args.repeats)
        base = n / C.median(times["pipeline (batch 32)"])
        diff = np.abs(probs["Predictor finetune"] - probs["pipeline (batch 32)"])
        rows = [[v, len(times[v]), C.median(times[v]), n / C.median(times[v]),
                 f"{n / C.median(times[v]) / base:.2f}x"] for v in variants]
        print(C.table(["batch prediction", "runs", "median s", "median msg/s", "vs pipeline"], rows))
        agree = np.mean((probs["Predictor finetune"] >= 0.5) == (probs["pipeline (batch 32)"] >= 0.5))
        print(f"spam probability vs pipeline: max |diff| {diff.max():.4f} (bf16 autocast when the run is bf16), "
              f"same label for {100 * agree:.1f} % of messages")

        # ------------------------------------------------------------ one typed message, warm
        single = {"Predictor finetune": lambda: fine.predict([TYPED]),
                  "Predictor frozen": lambda: frozen.predict([TYPED]),
                  "pipeline (1 message)": lambda: pipe(TYPED, truncation=True, max_length=fine.max_length)}
        ms = {label: [] for label in single}
        for fn in single.values():
            latencies(fn, 0, warmup=5)
        loads.append(C.load_average())
        for _ in range(args.calls):  # round robin: a burst of load hits all three alike
            for label, fn in single.items():
                ms[label] += latencies(fn, 1, warmup=0)
        loads.append(C.load_average())
        rows = [[label, len(v), float(np.percentile(v, 50)), float(np.percentile(v, 95))] for label, v in ms.items()]
        print(C.table(["one typed message (warm)", "calls", "p50 ms", "p95 ms"], rows))
        worst = max(rows[0][2], rows[1][2])
        print(f"p50 target <= 20 ms through both models: {'met' if worst <= 20 else 'NOT met'} (worst p50 {worst:.1f} ms)")
        print(f"load average: min {min(loads):.2f}, median {C.median(loads):.2f}, max {max(loads):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
