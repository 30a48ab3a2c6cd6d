"""How close the progress bar's time left comes to the truth, replayed from finished runs' history.jsonl.

    python benchmarks/bench_eta.py data/seed-sweep [--where class_weight=none]

For every completed frozen or fine-tuned run in the folder, the estimate core.jobs.progress_from_history would have
shown at its first appearance, a quarter and half way through the logged steps, against the time that was actually
left until the last training step (what the estimate claims) and until the test result. For every frozen run that
encoded its features, the same for the encoding's "done in about …" (core.jobs.encoding_left), at the first estimate
and a quarter and half way through the encoding's time, against the time left until its last batch.
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
        encoding = [e for e in events if e.get("event") == "features"]
        if len(encoding) > 2:
            start, end = encoding[0]["time"], encoding[-1]["time"]
            at = {"first shown": encoding[1]}
            for share in (0.25, 0.5):  # the event nearest that share of the encoding's time
                at[f"{share:.0%} of the time"] = min(encoding[1:-1],
                                                     key=lambda e: abs(e["time"] - start - share * (end - start)))
            for point, e in at.items():
                left, truth = jobs.encoding_left(encoding[0], e, e["time"])[1], end - e["time"]
                rows.append([run.id, f"encoding, {point}", f"batch {encoding.index(e) + 1}/{len(encoding)}",
                             f"{left:.0f}", f"{truth:.0f}", f"{tested_at(events) - e['time']:.0f}"])
                errors.setdefault(("encoding", point), []).append(left / truth - 1 if truth > 0 else 0.0)
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


def tested_at(events: list[dict]) -> float:
    return next((e["time"] for e in events if e.get("event") == "test"), events[-1]["time"])


if __name__ == "__main__":
    raise SystemExit(main())
