"""How close the Train page's time estimate comes for fine-tunes on samples of the training split.

    python benchmarks/bench_estimate.py --data ../shared/data/SMSSpamCollection --sizes 100,300

With no run yet, the page times a few steps (`jobs.measure_epoch_seconds`): the first size is estimated from that.
Every later size is estimated from the runs before it, as the page does. Each estimate is printed beside the
training time the run then took. With one pass an epoch (min_epoch_steps 0, the default before it), a small sample's
time is mostly validation on the whole validation split, which the estimate left out until it was timed apart from
training.
"""
from __future__ import annotations

import argparse
import tempfile

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=C.default_model())
    p.add_argument("--sizes", default="100,300", help="training messages of each fine-tune, in the order trained")
    args = p.parse_args()
    C.quiet()
    from core import jobs
    from core.config import TrainConfig
    from core.data import load_messages, split_sizes
    from core.modeling import resolve_model
    from core.runs import list_runs
    from core.train import train

    runs_dir = tempfile.mkdtemp(prefix="bench-estimate-")
    n_messages = load_messages(args.data).summary["rows"]
    model = resolve_model(args.model).name
    print(f"{C.machine()}, load {C.load_average():.1f}")
    print("| training messages | estimated from | estimate | training took |\n|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        cfg = TrainConfig(mode="finetune", data=args.data, model=args.model, runs_dir=runs_dir, train_messages=size)
        n_validation = split_sizes(n_messages, cfg.val_fraction, cfg.test_fraction)["validation"]
        past = list_runs(runs_dir)
        measured = None if past else jobs.measure_epoch_seconds(args.model, "finetune", cfg.max_length,
                                                                cfg.batch_size, size, n_messages)
        line, _ = jobs.describe_estimate(cfg, "", past, model, size, n_messages, measured=measured,
                                         n_validation=n_validation)
        train(cfg)
        took = list_runs(runs_dir)[0].metrics["train_seconds"]
        source = "a few steps timed" if measured else "the runs before"
        print(f"| {size:,} | {source} | {line.removeprefix(': ').split(' (')[0]} | {took:.1f} s |")


if __name__ == "__main__":
    main()
