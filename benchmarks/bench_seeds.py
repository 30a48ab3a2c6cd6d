"""Quality over several splits: the three models with default hyperparameters, one run per seed.

    python benchmarks/bench_seeds.py --data ../shared/data/SMSSpamCollection --seeds 42,1,2,3,4,5

The seed fixes the train/validation/test split as well as the initialisation, so the spread across seeds
shows how much one split's ~130 test spam messages move the metrics: a single split's accuracy is one
draw from this spread. Completed runs already in --runs-dir (same mode, seed, data and settings) are
reused, so an interrupted sweep resumes.

`--set lr=3e-5 --set batch_size=16` changes hyperparameters for every run, to compare settings over the same
splits. The validation table comes first and is what a setting should be chosen by: the test table after it is
for reporting the choice.
"""
from __future__ import annotations

import argparse
import json
import statistics

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)

METRICS = ("accuracy", "precision", "recall", "f1", "auroc")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset file (default: core's lookup)")
    p.add_argument("--model", default="bert-base-uncased", help="as `python -m core train --model`")
    p.add_argument("--seeds", default="42,1,2,3,4,5")
    p.add_argument("--modes", default="baseline,frozen,finetune")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyperparameter for every run, as in `python -m core train` (repeatable)")
    # not under checkpoints/: the dashboard would list the sweep folder itself as a broken run
    p.add_argument("--runs-dir", default="data/seed-sweep", help="where the runs go (and are reused from)")
    return p


def sweep(args) -> tuple[dict, dict]:
    """Train what --runs-dir lacks; returns ({(mode, seed): completed run}, the --set overrides)."""
    from core.config import TrainConfig, passes_per_epoch
    from core.data import load_messages
    from core.runs import list_runs, trained_messages
    from core.train import train_sequence

    seeds = [int(s) for s in args.seeds.split(",")]
    modes = args.modes.split(",")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in TrainConfig.__dataclass_fields__:  # from_dict would drop an unknown key silently
            raise SystemExit(f"--set: expected KEY=VALUE with a `python -m core train` setting as KEY, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except ValueError:  # a bare word such as balanced
            overrides[key] = value
    fingerprint = load_messages(args.data).fingerprint
    defaults = {(m, s): TrainConfig.from_dict({"mode": m, "seed": s, "model": args.model, **overrides})
                for m in modes for s in seeds}

    def matching(run, cfg) -> bool:  # every hyperparameter but the paths equal, and the same data
        # (the run records the precision that ran: fp32 where the CPU has no native bf16, so it is not compared)
        # save_state_every: when the training state is saved for a resume, which does not move a result
        # min_epoch_steps: what it sets is compared, the passes an epoch (a run from before it made one)
        skip = ("data", "runs_dir", "cache_dir", "model", "precision", "save_state_every", "min_epoch_steps")
        mine = {k: v for k, v in cfg.to_dict().items() if k not in skip}
        return (run.usable and run.config.get("data_info", {}).get("fingerprint") == fingerprint
                and run.config.get("requested_model") == cfg.model
                and all(run.config.get(k) == v for k, v in mine.items())
                and run.metrics.get("passes_per_epoch", 1) == passes_per_epoch(cfg, trained_messages(run.config) or 0))

    done = {key: next((r for r in list_runs(args.runs_dir) if matching(r, cfg)), None) for key, cfg in defaults.items()}
    todo = [TrainConfig.from_dict({**cfg.to_dict(), "data": args.data, "runs_dir": args.runs_dir})
            for key, cfg in defaults.items() if done[key] is None]
    if todo:
        print(f"training {len(todo)} runs ({len(defaults) - len(todo)} reused from {args.runs_dir})")
        list(train_sequence(todo))
        done = {key: next(r for r in list_runs(args.runs_dir) if matching(r, cfg)) for key, cfg in defaults.items()}
    return done, overrides


def validation_losses(run) -> list[float]:
    from core.runs import read_history
    return [e["loss"] for e in read_history(run.path) if e.get("event") == "eval" and e.get("loss") is not None]


def best_validation_loss(run) -> float:  # the weights kept are those with the lowest validation loss
    losses = validation_losses(run)
    return min(losses) if losses else float("nan")


def test_log_loss(run) -> float:  # the criterion validation chose by, on data nothing was chosen on
    from sklearn.metrics import log_loss
    p = run.metrics["predictions"]
    return log_loss([x["label"] for x in p], [x["spam_probability"] for x in p], labels=[0, 1])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    C.quiet()
    print(C.machine())
    report(args, *sweep(args))
    return 0


def report(args, done: dict, overrides: dict) -> None:
    """The validation table, then per-seed and summary test tables, for the runs sweep() returned."""
    seeds = [int(s) for s in args.seeds.split(",")]
    modes = args.modes.split(",")

    def summarise(title, values_of, columns):
        summary = []
        for mode in modes:
            runs = [done[(mode, s)] for s in seeds]
            cells = []
            for column in columns:
                values = [v for v in (values_of(r, column) for r in runs) if v is not None and v == v]
                if not values:  # e.g. the baseline is fitted by a solver: no validation loss to follow
                    cells.append("-")
                    continue
                cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} "
                             f"({min(values):.4f}-{max(values):.4f})" if len(values) > 1 else f"{values[0]:.4f}")
            summary.append([mode, len(runs), *cells])
        print(f"{title}: mean ± sd (min-max) over {len(seeds)} seeds")
        print(C.table(["mode", "seeds", *columns], summary))

    settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
    summarise(f"validation, {settings}",
              lambda r, c: best_validation_loss(r) if c == "best loss" else (r.metrics.get("validation") or {}).get(c),
              ["best loss", "accuracy", "f1"])
    rows = []
    for mode in modes:
        for seed in seeds:
            run = done[(mode, seed)]
            t = run.metrics["test"]
            errors = t["confusion_matrix"][0][1] + t["confusion_matrix"][1][0]
            rows.append([mode, seed, f"{best_validation_loss(run):.4f}", *[f"{t[k]:.4f}" for k in METRICS],
                         f"{test_log_loss(run):.4f}", errors, f"{run.metrics['train_seconds']:.0f}"])
    print(f"per seed, {settings}")
    print(C.table(["mode", "seed", "best val loss", *METRICS, "log loss", "test errors", "train s"], rows))
    summarise(f"test, {settings}", lambda r, c: test_log_loss(r) if c == "log loss" else r.metrics["test"][c],
              [*METRICS, "log loss"])


if __name__ == "__main__":
    raise SystemExit(main())
