"""What fine-tuning buys as labels get scarce: the three models trained on fewer training messages.

    python benchmarks/bench_data_size.py --data ../shared/data/SMSSpamCollection \
        --sizes 50,100,300,1000,all --seeds 42,1,2

Each size trains every mode with default hyperparameters on a nested, stratified sample of each seed's training
split (`python -m core train --train-messages N`); validation and test are the whole split's, so every row of a seed
is tested on the same 1,032 messages. The fine-tune's epochs go over a small sample several times, so that each makes
at least min_epoch_steps (100) optimisation steps; `--set min_epoch_steps=0` gives one pass an epoch, as before
that default, where a smaller sample also means fewer steps.
Completed runs already in --runs-dir are reused (as bench_seeds.py does), so an interrupted sweep resumes.
"""
from __future__ import annotations

import argparse
import statistics

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)
import bench_seeds


def build_parser() -> argparse.ArgumentParser:
    p = bench_seeds.build_parser()  # the same sweep: --data, --model, --seeds, --modes, --set and --runs-dir
    p.description = __doc__.split("\n")[0]
    p.add_argument("--sizes", default="50,100,300,1000,all", help="training messages per run; all: the whole split")
    p.set_defaults(seeds="42,1,2", runs_dir="data/size-sweep")
    return p


def errors(run) -> int:
    (_, fp), (fn, _) = run.metrics["test"]["confusion_matrix"]
    return fp + fn


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    C.quiet()
    print(C.machine())
    seeds, modes = [int(s) for s in args.seeds.split(",")], args.modes.split(",")
    runs = {}  # (size, mode, seed) -> run
    for size in args.sizes.split(","):
        sized = argparse.Namespace(**{**vars(args), "set": args.set + ([] if size == "all" else
                                                                     [f"train_messages={int(size)}"])})
        done, _ = bench_seeds.sweep(sized)
        runs |= {(size, mode, seed): run for (mode, seed), run in done.items()}

    def spread(values) -> str:
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else \
            f"{values[0]:.4f}"

    # what a setting is chosen by, before the test table (as bench_seeds.py): per seed, then the mean
    rows = []
    for size in args.sizes.split(","):
        for mode in modes:
            chosen = [runs[(size, mode, s)] for s in seeds]
            best = [bench_seeds.best_validation_loss(r) for r in chosen]
            last = [(bench_seeds.validation_losses(r) or [float("nan")])[-1] for r in chosen]
            f1 = [(r.metrics.get("validation") or {}).get("f1") for r in chosen]
            rows.append([size, mode, ", ".join(str(r.metrics.get("steps")) for r in chosen),
                         *[", ".join(f"{v:.4f}" for v in values) + f" ({statistics.mean(values):.4f})"
                           for values in (best, last, f1)]])
    print(f"validation, per seed {args.seeds} (mean), {', '.join(args.set) or 'defaults'}")
    print(C.table(["size", "mode", "steps", "best loss", "last loss", "f1 of the weights kept"], rows))

    rows = []
    for size in args.sizes.split(","):
        for mode in modes:
            chosen = [runs[(size, mode, s)] for s in seeds]
            trained_on = sorted({r.config["data_info"]["splits"]["train"]["rows"] for r in chosen})
            rows.append([size, "/".join(map(str, trained_on)), mode,
                         *[spread([r.metrics["test"][k] for r in chosen]) for k in ("accuracy", "f1", "auroc")],
                         f"{statistics.mean(errors(r) for r in chosen):.1f}",
                         f"{statistics.median(r.metrics['train_seconds'] for r in chosen):.0f}"])
    print(f"test: mean ± sd over seeds {args.seeds} (1,032 test messages each), {', '.join(args.set) or 'defaults'}")
    print(C.table(["size", "trained on", "mode", "accuracy", "f1", "auroc", "test errors (mean)", "median train s"],
                  rows))
    if {"frozen", "finetune"} <= set(modes):  # the dashboard's question, per split
        gains = []
        for size in args.sizes.split(","):
            per_seed = [errors(runs[(size, "frozen", s)]) - errors(runs[(size, "finetune", s)]) for s in seeds]
            gains.append([size, ", ".join(map(str, per_seed)), f"{statistics.mean(per_seed):.1f}"])
        print("fewer test errors than the frozen model, for the fine-tuned one (per seed, then the mean)")
        print(C.table(["size", "per seed", "mean"], gains))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
