"""What saving the training state costs, and whether a killed run resumes to the result it would have had.

    python benchmarks/bench_resume.py --data ../shared/data/SMSSpamCollection

Three processes, one after the other, as a user would run them: an uninterrupted `python -m core train`; the
same command killed with SIGKILL some steps after its first saved training state; `python -m core resume` on
that run. The cost of each save is read from the `state_saved` events the training writes.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="dataset file")
    p.add_argument("--model", default="bert-base-uncased", help="as `python -m core train --model`")
    p.add_argument("--mode", default="finetune", choices=("finetune", "frozen"))
    p.add_argument("--kill-after", type=int, default=20, help="steps after the first saved state to kill the run at")
    p.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE",
                   help="another `python -m core train` flag for both runs, e.g. --set save-state-every=0")
    return p


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=C.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with C.tmpdir("resume") as tmp:  # removed afterwards: each run left about 9 MiB in /tmp
        return measure(args, Path(tmp))


def measure(args, root: Path) -> int:
    from core.runs import list_runs, load_run, read_history, saved_state

    flags = ["--mode", args.mode, "--data", args.data, "--model", args.model, *[f"--{s}" for s in args.set]]
    print(C.machine())

    t0 = time.time()
    out, err = _cli("train", *flags, "--runs-dir", str(root / "whole")).communicate()
    whole_wall = time.time() - t0
    whole = Path(out.strip().splitlines()[-1])

    proc = _cli("train", *flags, "--runs-dir", str(root / "killed"))
    t0, killed_at = time.time(), None
    while proc.poll() is None:
        runs = list_runs(root / "killed")
        events = read_history(runs[0].path) if runs else []
        saved = [e["step"] for e in events if e.get("event") == "state_saved"]
        steps = [e["step"] for e in events if e.get("event") == "train"]
        if saved and steps and steps[-1] >= saved[0] + args.kill_after:
            proc.send_signal(signal.SIGKILL)
            killed_at = steps[-1]
        time.sleep(0.05)
    proc.communicate()
    if killed_at is None:
        print("the run ended before it could be killed after a saved state: nothing to resume "
              "(a shorter --save-state-every would save one sooner)")
        return 1
    run_dir = list_runs(root / "killed")[0].path
    killed_wall, state = time.time() - t0, saved_state(run_dir)
    # best/ in it is hard links to the best checkpoint's files: no extra disk
    size = sum(f.stat().st_size for f in state["folder"].iterdir() if f.is_file())

    t0 = time.time()
    resume = _cli("resume", "--run", str(run_dir))
    _, err = resume.communicate()
    resume_wall = time.time() - t0
    if resume.returncode != 0:
        print(f"resume failed: {err[-2000:]}")
        return 1

    a, b = load_run(whole).metrics, load_run(run_dir).metrics
    pa = [p["spam_probability"] for p in a["predictions"]]
    pb = [p["spam_probability"] for p in b["predictions"]]
    saves = [e for e in read_history(whole) if e.get("event") == "state_saved"]
    print("\n| run | wall s | train s | state saves | their s | best step | accuracy | F1 | AUROC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m, wall, n, s in (
            ("uninterrupted", a, whole_wall, len(saves), sum(e["seconds"] for e in saves)),
            (f"killed at step {killed_at}", None, killed_wall, None, None),
            (f"resumed from step {state['step']}", b, resume_wall, None, None)):
        row = [name, f"{wall:.1f}"]
        if m:
            t = m["test"]
            row += [f"{m['train_seconds']:.1f}", "-" if n is None else str(n), "-" if s is None else f"{s:.2f}",
                    str(m["best_step"]), f"{t['accuracy']:.4f}", f"{t['f1']:.4f}", f"{t['auroc']:.4f}"]
        else:
            row += ["-"] * 7
        print("| " + " | ".join(row) + " |")
    print(f"\nsame test probabilities: {pa == pb} (largest difference {max(abs(x - y) for x, y in zip(pa, pb)):.2e}); "
          f"one saved training state: {size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
