"""Cost growth: fine-tuning time and peak memory vs dataset size (1x, 2x, 4x by repetition).

    python benchmarks/bench_scaling.py --data ../shared/data/SMSSpamCollection --limit 300 --factors 1,2,4

A random --limit subset is repeated k times (copies get a " #k" suffix, since core drops exact duplicates,
which adds about 3 tokens to each copy). Each size is trained in a fresh child process (`python -m core
train`, 1 epoch) so its peak RSS is its own. Linear growth means the time per training message stays flat;
flat memory means the peak RSS barely moves while the data grows 4x.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)
from bench_memory import run_child


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset file (default: core's lookup)")
    p.add_argument("--model", help="encoder directory (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--mode", default="finetune", choices=("finetune", "frozen"))
    p.add_argument("--limit", type=int, default=300, help="messages at 1x (0: all of them)")
    p.add_argument("--factors", default="1,2,4")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    model = args.model or C.default_model()
    factors = [int(f) for f in args.factors.split(",")]
    print(C.machine())
    rows = []
    with C.tmpdir("scaling") as tmp:
        tmp = Path(tmp)
        for k in factors:
            path, n = C.subset_file(args.data, args.limit, tmp, repeat=k)
            load = C.load_average()
            # one pass an epoch: min_epoch_steps would give a small subset the steps of a larger one
            peak, wall, out = run_child(["-m", "core", "train", "--mode", args.mode, "--epochs", "1", "--data", str(path),
                                         "--model", model, "--precision", args.precision, "--min-epoch-steps", "0",
                                         "--runs-dir", str(tmp / "runs"), "--cache-dir", str(tmp / f"cache{k}")])
            run = Path(out.strip().splitlines()[-1])
            metrics = json.loads((run / "metrics.json").read_text())
            config = json.loads((run / "config.json").read_text())
            n_train = config["data_info"]["splits"]["train"]["rows"]
            allocator = config.get("allocator", "system")
            seconds = metrics["train_seconds"]
            rows.append([f"{k}x", n, n_train, seconds, 1000 * seconds / n_train, peak, wall, f"{load:.2f}"])
    base = rows[0]
    for row in rows:
        row.insert(5, f"{row[3] / base[3]:.2f}x")
    print(f"{args.mode}, 1 epoch, precision {args.precision}, {args.limit or 'all'} messages at 1x, allocator {allocator} "
          f"(SPAM_MALLOC=system for glibc's)")
    print(C.table(["size", "messages", "train msgs", "train s", "ms per train msg", "time vs 1x", "peak RSS MiB",
                   "process wall s", "load"], rows))
    print(f"time per training message, {rows[-1][0]} vs 1x: {rows[-1][4] / base[4]:.2f} (1.00 = linear); "
          f"peak RSS {rows[-1][0]} vs 1x: {rows[-1][6] - base[6]:+.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
