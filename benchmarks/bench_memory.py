"""Memory: peak RSS of training runs, and of a process serving both models; the latter must not grow.

    python benchmarks/bench_memory.py --data ../shared/data/SMSSpamCollection --limit 1000 --requests 2000

Part 1: `python -m core train` as a child process (fine-tuned, then frozen) on --limit messages, 1 epoch for
fine-tuning; peak RSS from the kernel's accounting of that child (wait4 ru_maxrss). Part 2: a fresh child
loads both runs' Predictors, as the app does, and serves --requests requests (one typed message, or a batch
of 32 messages, alternately), reporting its RSS after loading and after each tenth of the requests.
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


def run_child(argv: list[str]) -> tuple[float, float, str]:
    """Run a Python child; returns (its peak RSS in MiB, seconds, stdout)."""
    import tempfile
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, *argv], cwd=C.ROOT, stdout=out, stderr=err,
                                env={**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage, peak RSS included
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"child failed ({proc.returncode}): {err.read()[-2000:]}")
        return usage.ru_maxrss / 1024, time.time() - t0, out.read()


def serve(finetune_run: str, frozen_run: str, data: str, requests: int) -> None:
    """Child: load both Predictors and serve; one JSON line per checkpoint of RSS."""
    C.quiet()
    from core.predict import Predictor
    texts = C.texts_of(Path(data))
    models = [Predictor.load(finetune_run), Predictor.load(frozen_run)]
    print(json.dumps({"requests": 0, "rss_mb": C.rss_mb()}), flush=True)
    every = max(1, requests // 10)
    for i in range(1, requests + 1):
        model = models[i % 2]
        if i % 4 < 2:
            model.predict([texts[i % len(texts)]])  # a typed message
        else:
            start = (32 * i) % max(1, len(texts) - 32)
            model.predict(texts[start:start + 32])  # a batch (an uploaded file)
        if i % every == 0:
            print(json.dumps({"requests": i, "rss_mb": C.rss_mb()}), flush=True)
    print(json.dumps({"peak_rss_mb": C.peak_rss_mb()}), flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset file (default: core's lookup)")
    p.add_argument("--model", help="encoder directory (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--limit", type=int, default=1000, help="messages for the training runs (0: all)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--serve", nargs=3, metavar=("FINETUNE_RUN", "FROZEN_RUN", "DATA"), help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        serve(*args.serve, args.requests)
        return 0
    model = args.model or C.default_model()
    print(C.machine())
    with C.tmpdir("memory") as tmp:
        tmp = Path(tmp)
        path, n = C.subset_file(args.data, args.limit or None, tmp)
        print(f"{n} messages ({'random subset, --limit ' + str(args.limit) if args.limit else 'all'}), "
              f"precision {args.precision}, model {Path(model).name}")
        rows, runs = [], {}
        # one pass (min_epoch_steps 0): what --limit messages cost, not the extra passes a small sample would get
        for mode, extra in (("finetune", ["--epochs", "1", "--min-epoch-steps", "0"]), ("frozen", [])):
            load = C.load_average()
            peak, seconds, out = run_child(["-m", "core", "train", "--mode", mode, "--data", str(path), "--model", model,
                                            "--precision", args.precision, "--runs-dir", str(tmp / "runs"),
                                            "--cache-dir", str(tmp / "cache"), *extra])
            runs[mode] = out.strip().splitlines()[-1]
            rows.append([f"python -m core train --mode {mode}", peak, seconds, f"{load:.2f}"])
        print(C.table(["training process", "peak RSS MiB", "wall s", "load"], rows))

        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--serve", runs["finetune"],
                               runs["frozen"], str(path), "--requests", str(args.requests)],
                              cwd=C.ROOT, capture_output=True, text=True, check=True)
        lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
        points = [l for l in lines if "requests" in l]
        peak = next(l["peak_rss_mb"] for l in lines if "peak_rss_mb" in l)
        print(C.table(["requests served", "RSS MiB"], [[p["requests"], p["rss_mb"]] for p in points]))
        first = points[1]["rss_mb"] if len(points) > 2 else points[0]["rss_mb"]  # after the first tenth: warm
        growth = points[-1]["rss_mb"] - first
        print(f"both Predictors loaded: {points[0]['rss_mb']:.0f} MiB; peak while serving {peak:.0f} MiB; "
              f"growth from {points[1]['requests'] if len(points) > 2 else 0} to {points[-1]['requests']} requests: "
              f"{growth:+.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
