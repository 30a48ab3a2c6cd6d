"""CUDA check: both modes on a GPU with bf16 mixed precision, against the standard tools, ratios in one run.

    python benchmarks/gpu_check.py --data ../shared/data/SMSSpamCollection --repeats 3

Prepared for a machine with a CUDA GPU; it exits with status 3 when none is visible. `--device cpu` runs the
same steps on the CPU: the test suite does so on a tiny model, so that a GPU session is not spent on a bug.

Fine-tuning: Trainer (bf16=True, otherwise the same defaults as bench_finetune.py) vs core's loop (precision
bf16); Accelerate puts both on the GPU. Frozen: pipeline("feature-extraction", batch 32) vs core.features.encode
on the GPU under bf16 autocast, then a second frozen run on cached features. Same table format as the CPU
benchmarks. The whole dataset is used by default: a GPU makes the subsets unnecessary.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)
from bench_finetune import core_run, trainer_run
from bench_frozen import pipeline_features


def loop_overheads(run) -> dict:
    """Seconds of a run's training loop spent validating and keeping the best weights (copying them and writing
    the checkpoint), read off history.jsonl's timestamps: each validation counts from the train event of its step,
    each checkpoint from its validation. Trainer's defaults do neither, so this is the part that differs."""
    from core.runs import read_history
    events = read_history(Path(run))
    validating = keeping = 0.0
    for before, event, after in zip(events, events[1:], events[2:] + [{}]):
        if event.get("event") != "eval":
            continue
        if before.get("event") == "train" and before.get("step") == event["step"]:
            validating += event["time"] - before["time"]
        if after.get("event") == "checkpoint" and after.get("step") == event["step"]:
            keeping += after["time"] - event["time"]
    return {"validating": validating, "keeping": keeping,
            "state_saves": sum(e.get("seconds", 0.0) for e in events if e.get("event") == "state_saved")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data")
    p.add_argument("--model")
    p.add_argument("--limit", type=int, default=0, help="random subset of messages (0: all)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: a dry run of every step (its timings are CPU timings, not target 6)")
    args = p.parse_args(argv)
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible: nothing measured")
        return 3
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    C.quiet()
    from transformers import AutoModel, AutoTokenizer, pipeline

    from core.config import TrainConfig
    from core.features import encode
    from core.train import train

    model = args.model or C.default_model()
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
          if device.type == "cuda" else f"dry run on the CPU: {C.machine()}")
    with C.tmpdir("gpu") as tmp:
        tmp = Path(tmp)
        path, n = C.subset_file(args.data, args.limit or None, tmp)
        print(f"{n} messages, epochs {args.epochs}, batch 32, max length 128, bf16")
        # ------------------------------------------------------------ fine-tuning
        common = dict(data_path=path, model=model, epochs=args.epochs, batch_size=32, max_length=128, seed=42)
        # "validates once": the loop's default validates 4 times an epoch and keeps the best weights, which
        # Trainer's defaults do not; with one validation (at the last step) the two do nearly the same work
        variants = {"trainer-bf16": lambda r: trainer_run(**common, out_dir=tmp / f"trainer-{r}", bf16=True),
                    "core-bf16": lambda r: core_run(**common, runs_dir=tmp / "runs", precision="bf16"),
                    "core-bf16, validates once": lambda r: core_run(**common, runs_dir=tmp / "runs", precision="bf16",
                                                                    evals_per_epoch=1)}
        raw = {v: [] for v in variants}
        for r in range(args.repeats):
            for v in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                result = variants[v](r)
                overhead = sum(loop_overheads(result["run"]).values()) if "run" in result else 0.0
                raw[v].append({**result, "overhead": overhead})
        base = C.median(x["messages_per_second"] for x in raw["trainer-bf16"])
        rows = []
        for v, xs in raw.items():
            seconds, speed = C.median(x["seconds"] for x in xs), C.median(x["messages_per_second"] for x in xs)
            rows.append([v, len(xs), speed, f"{speed / base:.2f}x", seconds, C.median(x["overhead"] for x in xs),
                         C.median(x["n_train"] * args.epochs / (x["seconds"] - x["overhead"]) for x in xs),
                         C.median(x["f1"] for x in xs)])
        print(C.table(["fine-tuning", "runs", "median msg/s", "vs Trainer", "median train s",
                       "of it validating + keeping best s", "msg/s without those", "median test F1"], rows))
        # ------------------------------------------------------------ frozen: extraction, then a cached run
        texts = C.texts_of(path)
        tokenizer = AutoTokenizer.from_pretrained(model)
        encoder = AutoModel.from_pretrained(model, use_safetensors=True).to(device).eval()
        pipe = pipeline("feature-extraction", model=encoder, tokenizer=tokenizer, device=device)
        bf16 = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
        variants = {"pipeline (batch 32)": lambda: pipeline_features(pipe, tokenizer, texts, 128, 32),
                    "core encode bf16": lambda: encode(encoder, tokenizer, texts, 128, "mean", device, bf16)}
        times, _, _ = C.abba(variants, args.repeats, sync=sync)
        base = n / C.median(times["pipeline (batch 32)"])
        print(C.table(["feature extraction", "runs", "median msg/s", "vs pipeline"],
                      [[v, len(ts), n / C.median(ts), f"{n / C.median(ts) / base:.2f}x"] for v, ts in times.items()]))
        rows = []
        frozen = dict(mode="frozen", data=str(path), model=model, precision="bf16", runs_dir=str(tmp / "runs"),
                      cache_dir=str(tmp / "cache"))
        for label, head in (("first", {}), ("second (other head)", {"head_hidden": 128, "dropout": 0.1})):
            t0 = time.perf_counter()
            run = train(TrainConfig(**frozen, **head))
            rows.append([label, time.perf_counter() - t0, run])
        # the head is a 200k-parameter MLP: on a GPU each of its ~6,800 steps may cost more in kernel launches and
        # syncs than the arithmetic, so the same second run once more with CUDA hidden (it reuses the cached
        # features only where the CPU has native bf16, since features are cached under the precision that ran)
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**frozen, "head_hidden": 128, "dropout": 0.1}.items()]
        t0 = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "core", "train", *flags], cwd=C.ROOT, capture_output=True,
                             text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        if cli.returncode:
            print(cli.stderr[-2000:])
            return 1
        rows.append(["second, CUDA hidden (head on the CPU)", time.perf_counter() - t0,
                     Path(cli.stdout.strip().splitlines()[-1])])
        table = []
        for label, wall, run in rows:
            metrics = json.loads((run / "metrics.json").read_text())
            spent = loop_overheads(run)
            table.append([label, wall, metrics["train_seconds"], metrics["steps"],
                          1000 * metrics["train_seconds"] / metrics["steps"], spent["validating"] + spent["keeping"],
                          json.loads((run / "config.json").read_text())["device"], metrics["test"]["f1"]])
        print(C.table(["frozen run", "wall s", "train s", "steps", "ms/step", "of it validating + keeping best s",
                       "device", "test F1"], table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
