"""How close the progress bar's time left comes to the truth, replayed from finished runs' history.jsonl.

    python benchmarks/bench_eta.py data/seed-sweep [--where class_weight=none]

For every completed frozen or fine-tuned run in the folder, the estimate core.jobs.progress_from_history would have
shown at its first appearance, a quarter and half way through the logged steps, against the time that was actually
left until the last training step (what the estimate claims) and until the test result.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import _common as C  # noqa: F401  (sets sys.path)
from core import jobs
from core.runs import list_runs, read_history


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs_dir", type=Path)
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="only runs whose config.json has this value (as text), e.g. runs measured on a quiet machine")
    args = p.parse_args(argv)
    where = dict(w.split("=", 1) for w in args.where)
    rows, errors = [], {}
    for run in list_runs(args.runs_dir):
        if run.mode not in ("frozen", "finetune") or run.status != "completed" or (run.metrics or {}).get("resumed"):
            continue
        if any(str(run.config.get(key)) != value for key, value in where.items()):
            continue
        events = read_history(run.path)
        trains = [i for i, e in enumerate(events) if e.get("event") == "train"]
        tested = next((e["time"] for e in events if e.get("event") == "test"), None)
        if not trains or tested is None:
            continue
        last_step = events[trains[-1]]["time"]
        eta = {i: jobs.progress_from_history(events[:i + 1], now=events[i]["time"]).eta_seconds for i in trains}
        shown = next((i for i in trains if eta[i] is not None), None)
        if shown is None:
            continue
        for point, i in (("first shown", shown), ("1/4", trains[len(trains) // 4]), ("1/2", trains[len(trains) // 2])):
            truth = last_step - events[i]["time"]
            rows.append([run.id, point, events[i]["step"], f"{eta[i]:.0f}", f"{truth:.0f}", f"{tested - events[i]['time']:.0f}"])
            errors.setdefault((run.mode, point), []).append(eta[i] / truth - 1 if truth > 0 else 0.0)
    print(C.table(["run", "when", "step", "estimate s", "to last step s", "to test s"], rows))
    print()
    print(C.table(["mode", "when", "runs", "median error", "worst error"],
                  [[mode, point, len(e), f"{statistics.median(e):+.0%}", f"{max(e, key=abs):+.0%}"]
                   for (mode, point), e in errors.items()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
