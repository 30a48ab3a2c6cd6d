"""Training jobs for the dashboard: launch one detached process, follow it, cancel it.

    job = launch([TrainConfig(mode="frozen"), TrainConfig(mode="finetune")], runs_dir="checkpoints")
    progress = current_job("checkpoints")   # None when nothing runs
    cancel("checkpoints")

A job is `python -m core train --config plan.json` in its own session, so a browser reload, a second
tab or a Streamlit restart never stops it. Only one job runs at a time: the training process holds the
runs folder's flock (core.runs.training_lock) for its whole life, and `launch` holds a second lock
around "is one running? no -> start one -> wait until it holds the training lock", so two sessions
pressing Train at the same moment start exactly one job. Nothing here imports streamlit.
"""
from __future__ import annotations

import fcntl
import functools
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from .config import TrainConfig, passes_per_epoch, steps_per_epoch, validations_planned
from .runs import LOCK_NAME, RunError, cut_short, delete_run, finish_requested, finishable, load_run, lock_position, \
    process_alive, read_history, read_json, read_status, request_cancel, request_finish, resumable, run_path, \
    running_job, running_position, trained_messages, training_subset, write_json_atomic

JOBS_DIR = ".jobs"  # under the runs folder; a leading dot never matches a run id, so list_runs skips it
LAUNCH_LOCK = ".launch.lock"
LAST_JOB = "last.json"
START_TIMEOUT_S = 300.0  # importing torch + transformers on a busy 2-core laptop can take a minute
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # `python -m core` must find this package


class JobError(RuntimeError):
    """A job that could not be started or stopped, with a message meant for the user."""


class JobBusy(JobError):
    """Another training job is already running."""

    def __init__(self, run_id: str):
        what = "a training job is still loading its data and model" if run_id == "starting" else \
            f"training job {run_id} is running"
        super().__init__(f"{what}; only one job runs at a time: wait for it or cancel it first")


@dataclass
class Job:
    pid: int
    started: float
    modes: list[str]
    log: Path
    plan: Path | None  # None for a `finish` or `resume` job


@dataclass
class Progress:
    """What a page shows about the running job, computed from the run's history.jsonl."""
    run_id: str | None  # None while the process is loading data and model, before its run folder exists
    mode: str | None
    phase: str  # starting | preparing | features | training | evaluating | finishing | testing saved weights
    fraction: float  # 0..1 of this run
    eta_seconds: float | None  # of this run; None until there is a rate to extrapolate from
    step: int = 0
    total_steps: int = 0
    index: int = 1  # this run's position in the job's plan (1-based)
    count: int = 1  # runs in the plan
    detail: str = ""

    def describe(self, names: dict[str, str] | None = None) -> str:
        """One line on the job; `names` gives the modes' display names (the app's), else the CLI's mode names."""
        where = f"run {self.index} of {self.count}, " if self.count > 1 else ""
        eta = ""
        if self.eta_seconds is not None:
            # training only: the test and the saving of the model come after (seconds on this data)
            left = "under a second" if self.eta_seconds < 0.5 else f"about {format_seconds(self.eta_seconds)}"
            eta = f", {left} of training left" + (" in this run" if self.index < self.count else "")
        what = (names or {}).get(self.mode, self.mode) or "training"
        return f"{what} ({where}{self.phase}{': ' + self.detail if self.detail else ''}){eta}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# ---------------------------------------------------------------------------- launching

@contextmanager
def _launch_lock(runs_dir: Path):
    """Serialise launches across sessions and processes (blocking: a launch holds it for seconds)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / LAUNCH_LOCK, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def launch(configs: list[TrainConfig], runs_dir: str | os.PathLike | None = None,
           start_timeout: float = START_TIMEOUT_S) -> Job:
    """Start `python -m core train --config plan.json` for these configs, trained one after another.

    Raises JobBusy when a job already runs, JobError when the process dies before training starts
    (with the last line it printed, e.g. a data error).
    """
    if not configs:
        raise JobError("expected at least one training config, got none")
    runs_dir = Path(runs_dir or configs[0].runs_dir).resolve()
    plan = []
    for cfg in configs:  # absolute paths: the child's working directory is the project root
        entry = cfg.to_dict()
        entry["runs_dir"] = str(runs_dir)
        if entry["data"]:
            entry["data"] = str(Path(entry["data"]).expanduser().resolve())
        entry["cache_dir"] = str(Path(entry["cache_dir"]).expanduser().resolve())
        if Path(entry["model"]).expanduser().exists():
            entry["model"] = str(Path(entry["model"]).expanduser().resolve())
        plan.append(TrainConfig.from_dict(entry).to_dict())  # validated again, exactly as the child will

    return _start([c["mode"] for c in plan], runs_dir, start_timeout, plan=plan)


def launch_finish(runs_dir: str | os.PathLike, run_id: str, start_timeout: float = START_TIMEOUT_S) -> Job:
    """Start `python -m core finish --run <run>`: test the last checkpoint of a run that stopped before its end,
    and complete it. Raises JobBusy when a job already runs, JobError when the run cannot be finished."""
    runs_dir = Path(runs_dir).resolve()
    try:
        config, _, _ = finishable(run_path(runs_dir, run_id))
    except ValueError as exc:  # RunError: completed, never checkpointed, cancelled...
        raise JobError(str(exc)) from None
    return _start([config["mode"]], runs_dir, start_timeout, stopped=("finish", runs_dir / run_id))


def launch_resume(runs_dir: str | os.PathLike, run_id: str, start_timeout: float = START_TIMEOUT_S) -> Job:
    """Start `python -m core resume --run <run>`: go on training a run that stopped before its end from its last
    saved training state. Raises JobBusy when a job already runs, JobError when the run cannot be resumed."""
    runs_dir = Path(runs_dir).resolve()
    try:
        config, _, _ = resumable(run_path(runs_dir, run_id))
    except ValueError as exc:  # RunError: completed, no state saved, cancelled...
        raise JobError(str(exc)) from None
    return _start([config["mode"]], runs_dir, start_timeout, stopped=("resume", runs_dir / run_id))


def _start(modes: list[str], runs_dir: Path, start_timeout: float, plan: list[dict] | None = None,
           stopped: tuple[str, Path] | None = None) -> Job:
    """`python -m core train --config <plan>`, or `python -m core {finish,resume} --run <run>` for a run that
    stopped (stopped: the command and the run), as a detached job."""
    try:
        return _start_locked(modes, runs_dir, start_timeout, plan, stopped)
    except OSError as exc:  # an unwritable or full runs folder: say so on the page, not as a traceback
        raise JobError(f"cannot start training in {runs_dir} ({exc.strerror or exc}); choose another runs "
                       f"folder (SPAM_RUNS_DIR)") from None


def _start_locked(modes, runs_dir: Path, start_timeout: float, plan, stopped) -> Job:
    with _launch_lock(runs_dir):
        holder = running_job(runs_dir)
        if holder:
            raise JobBusy(holder)
        # nobody holds the training lock now; its file may still name the previous job's last run, which
        # running_job() would report until the new process names its own run: clear it
        with open(runs_dir / LOCK_NAME, "a+") as lock:
            lock.truncate(0)
        jobs = runs_dir / JOBS_DIR
        jobs.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        command = "train" if plan is not None else stopped[0]
        plan_path, log_path = jobs / f"plan-{stamp}.json", jobs / f"{command}-{stamp}.log"
        if plan is not None:
            write_json_atomic(plan_path, plan)
        args = ["train", "--config", str(plan_path)] if plan is not None else [stopped[0], "--run", str(stopped[1])]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core", *args],
                cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a Streamlit restart or Ctrl-C does not kill it
                env={**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"})
        job = Job(pid=proc.pid, started=time.time(), modes=modes, log=log_path,
                  plan=plan_path if plan is not None else None)
        write_json_atomic(jobs / LAST_JOB, {"pid": job.pid, "pid_started": _create_time(job.pid),
                                            "started": job.started, "modes": job.modes, "log": str(log_path),
                                            "plan": str(job.plan) if job.plan else None, "command": command})
        # keep the launch lock until the child holds the training lock, so no second launch slips in, and
        # until it has made its first run folder: bad data or a bad model fail before that, and are reported here
        deadline = time.time() + start_timeout
        while time.time() < deadline:
            if running_job(runs_dir) not in (None, "starting"):
                break
            code = proc.poll()
            if code is not None:
                # a plan's run named in the lock was this job's (the lock was emptied above): it started, and the
                # page says how its runs ended (a baseline takes a second, and the next run's model may then fail).
                # A resume or finish names its run before it loads anything: its failure to start is said here
                if code != 0 and (command != "train" or lock_position(runs_dir) is None):
                    doing = {"train": "training", "finish": "finishing", "resume": "resuming"}[command]
                    raise JobError(f"{doing} did not start: {_last_error(log_path)}")
                return job  # finished already (a tiny baseline can), and reaped by poll()
            time.sleep(0.1)
        # still running (or still importing: the training lock refuses a second job). Wait for it in the
        # background, or it stays a zombie under the app once it ends, until the app exits
        threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()
        return job


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _last_error(log_path: Path) -> str:
    lines = [l.strip() for l in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    return (errors or lines or ["the process exited without output"])[-1].removeprefix("error:").strip()


def last_job(runs_dir: str | os.PathLike) -> dict | None:
    try:
        return read_json(Path(runs_dir) / JOBS_DIR / LAST_JOB)
    except (OSError, ValueError):
        return None


def live_job(runs_dir: str | os.PathLike) -> dict:
    """last.json while the app's job that wrote it lives; {} after it ended (a job running now was started
    elsewhere, from the CLI, and its plan is unknown here)."""
    info = last_job(runs_dir) or {}
    return info if process_alive(info.get("pid"), info.get("pid_started")) else {}


def planned_modes(runs_dir: str | os.PathLike) -> list[str]:
    """The modes the app's running job trains, in order; none where it has ended."""
    return list(live_job(runs_dir).get("modes") or [])


def log_tail(runs_dir: str | os.PathLike, lines: int = 20) -> str:
    """The end of the last job's output (what the CLI printed), for showing why a job failed."""
    info = last_job(runs_dir)
    if not info:
        return ""
    try:
        text = Path(info["log"]).read_bytes().decode("utf-8", errors="replace")  # read_text makes \r a line end
    except (OSError, KeyError, TypeError):
        return ""
    # tqdm redraws with carriage returns: the last state of each line (splitlines would make each state a line)
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")[-lines:])


# ---------------------------------------------------------------------------- following

def current_job(runs_dir: str | os.PathLike) -> Progress | None:
    """The running job's progress, or None when no job runs."""
    runs_dir = Path(runs_dir)
    position = running_position(runs_dir)  # one read: the run and its place in the plan, as the job wrote them
    if not position:
        return None
    holder = position.run_id
    info = live_job(runs_dir)
    count = max(1, len(info.get("modes") or [1]))
    if holder == "starting":
        return Progress(None, (info.get("modes") or [None])[0], "starting", 0.0, None, count=count,
                        detail="loading data and model")
    try:
        run_dir = run_path(runs_dir, holder)
    except ValueError:
        return Progress(None, None, "starting", 0.0, None, count=count)
    # the job's own count of its plan (a CLI plan's too); a job of a version that wrote none: run 1 of the app's plan
    index, count = (position.index, position.count) if position.pid is not None else (1, count)
    if read_status(run_dir).get("status") != "running":
        # named, but not (yet, or any more) trained by this job: a resume or finish names its run before it loads
        # the data and model, and a plan names the run it completed until the next one starts
        return Progress(None, None, "preparing", 0.0, None, index=min(count, index + (index < count)), count=count,
                        detail="loading data and model")
    events = read_history(run_dir)
    progress = progress_from_history(events)
    progress.run_id, progress.index, progress.count = holder, index, count
    if progress.mode is None:
        progress.mode = load_run(run_dir).mode
    if progress.mode == "baseline" and progress.phase == "preparing":  # one solver fit, no steps to count
        progress.phase, progress.detail = "training", "fitting TF-IDF + logistic regression, takes seconds"
    if progress.phase in ("features", "training", "evaluating") and finish_requested(run_dir):  # asked to finish
        progress.detail = ("testing its best weights" if any(e.get("event") == "early_stop" for e in events) else
                           "asked to finish: it ends its encoding, validates at its first step, then tests"
                           if progress.phase == "features" else
                           "asked to finish: it validates at its next step, then tests its best weights")
        progress.phase, progress.eta_seconds = "finishing", None
    return progress


# frozen mode's bar: the share of encoding every message, when the run encodes them. With the bundled MiniLM on a
# 2-core CPU, encoding took 6.6-8.5 s and the head's 60 epochs 9.2-9.8 s. From the feature cache, the head is all.
FEATURES_SHARE = 0.4


def encoding_left(first: dict, latest: dict, now: float) -> tuple[float, float | None]:
    """Share of an encoding done and its seconds left (None before there is a rate), from its first and latest
    progress events: a frozen run's "features" events, or the Playground's batch scoring. The clock is the tokens
    encoded: the batches go from the shortest messages to the longest, so a time left reckoned from the messages
    done was about a third of the truth (benchmarks/README.md, section 12). Histories written before the events
    counted tokens fall back to the messages."""
    unit, whole = ("tokens", "tokens_total") if "tokens" in latest and "tokens" in first else ("done", "total")
    done, total, start = int(latest.get(unit, 0)), max(1, int(latest.get(whole, 1))), int(first.get(unit, 0))
    if done <= start:
        return done / total, None
    rate = (latest["time"] - first["time"]) / (done - start)  # from the first to the latest progress event
    return done / total, max(0.0, rate * (total - done) - (now - latest["time"]))


def progress_from_history(events: list[dict], now: float | None = None) -> Progress:
    """Phase, fraction done and ETA of one run from its history events (pure, for tests)."""
    now = time.time() if now is None else now
    # from the whole history: a resumed run reads from the cache the features its first stretch encoded
    encoded = any(e.get("event") == "features" or (e.get("event") == "features_ready" and not e.get("cached"))
                  for e in events)
    base = FEATURES_SHARE if encoded else 0.0  # where the head's steps start on the bar
    resumed = [i for i, e in enumerate(events) if e.get("event") == "resumed"]
    if resumed:  # `core resume`: the run loads its data and model again, then goes on from its saved step
        events = events[resumed[-1]:]
    last = {}
    for e in events:
        last[e.get("event")] = e
    mode = None
    finishing = [i for i, e in enumerate(events) if e.get("event") == "finish_saved"]
    if finishing:  # `core finish` on a run that stopped: only what happened since counts
        since = {e.get("event"): e for e in events[finishing[-1]:]}
        if "test" in since or "end" in since:
            return Progress(None, mode, "finishing", 1.0, 0.0)
        step = since["finish_saved"].get("step")
        # the bar stays where the run had got to when it stopped: it trains no further
        got = max((e["step"] for e in events[:finishing[-1]] if isinstance(e.get("step"), int)), default=0)
        total = int((last.get("start") or {}).get("total_steps") or 0)
        return Progress(None, mode, "testing saved weights", base + (1 - base) * min(got / total, 1.0) if total else
                        base, None, detail=f"the best weights it saved, from step {step}" if step else "")
    if "test" in last or "end" in last:
        return Progress(None, mode, "finishing", 1.0, 0.0)
    if "start" in last:
        total = int(last["start"].get("total_steps") or 0)
        train = last.get("train")
        first = int(last["start"].get("resumed_from") or 0)  # a resumed run goes on from there
        step = int(train["step"]) if train and train["step"] > first else first
        if not total:
            return Progress(None, mode, "training", base, None)
        share = step / total
        eta = None
        # seconds per step from the first logged step on (the first step also sets up kernels and allocations:
        # counted, it made the first estimates up to twice too long), and only once a validation has come since or
        # a tenth of the run has passed, so the rate includes the time validating takes
        since = next((i for i, e in enumerate(events) if e.get("event") == "train" and e.get("step", 0) > first), None)
        if since is not None and step > events[since]["step"] and (
                any(e.get("event") == "eval" for e in events[since:]) or step - events[since]["step"] >= total / 10):
            rate = (train["time"] - events[since]["time"]) / (step - events[since]["step"])
            eta = max(0.0, rate * (total - step) - (now - train["time"]))
        if "early_stop" in last:  # patience (or a request) ended training before its last step: only the test is left
            return Progress(None, mode, "evaluating", base + (1 - base) * share, None, step=step, total_steps=total,
                            detail=f"stopped early at step {last['early_stop'].get('step', step)}/{total}, now the test")
        if step >= total:  # no training left, but the last validation and the test take seconds: no "0 s left"
            return Progress(None, mode, "evaluating", base + (1 - base) * share, None, step=step, total_steps=total,
                            detail=f"step {step}/{total}, the last validation, then the test")
        # after an encoding the bar has its share too, so it is ahead of the steps: say so
        return Progress(None, mode, "training", base + (1 - base) * share, eta, step=step, total_steps=total,
                        detail=f"step {step}/{total}" + (" of the head, after encoding the messages" if base else ""))
    # a resumed run reloading its features starts where it had got to, not back at the encoding
    floor = 0.0
    if "resumed" in last:
        step, total = int(last["resumed"].get("step") or 0), int(last["resumed"].get("total_steps") or 0)
        floor = base + (1 - base) * step / total if total else 0.0
    if "features" in last:
        feats = last["features"]
        share, left = encoding_left(next(e for e in events if e.get("event") == "features"), feats, now)
        detail = f"encoding messages {int(feats.get('done', 0))}/{int(feats.get('total', 0))}"
        if left is not None:
            detail += f", done in about {format_seconds(left)}"
        # no ETA for the run: the head's epochs and the test come after, and their time is not known yet
        return Progress(None, "frozen", "features", max(floor, FEATURES_SHARE * share), None, detail=detail)
    if "features_ready" in last:
        return Progress(None, "frozen", "training", max(floor, base), None)
    if "resumed" in last:  # as far as it had got: it goes on from there
        return Progress(None, mode, "preparing", floor, None,
                        detail=f"loading data and model to go on from step {last['resumed'].get('step') or 0}")
    return Progress(None, mode, "preparing", 0.0, None, detail="loading data and model")


def loss_curves(events: list[dict]) -> dict[str, list]:
    """Training and validation loss by epoch (fractional), ready to plot: {train: [(epoch, loss)], validation: [...]}.
    The baseline has no loss: both lists are empty."""
    train = [(e["epoch"], e["loss"]) for e in events if e.get("event") == "train" and e.get("loss") is not None]
    val = [(e["epoch"], e["loss"]) for e in events
           if e.get("event") == "eval" and e.get("split", "validation") == "validation" and e.get("loss") is not None]
    return {"train": train, "validation": val}


# ---------------------------------------------------------------------------- stopping

def in_use(runs_dir: str | os.PathLike, run_id: str) -> bool:
    """Whether the running job is on this run: training it, or named in the lock while it loads to resume or finish
    it. A completed run that the lock still names (a plan between two runs) is not in use."""
    status = read_status(run_path(runs_dir, run_id)).get("status")
    return status == "running" or (running_job(runs_dir) == run_id and status != "completed")


def delete(runs_dir: str | os.PathLike, run_id: str) -> None:
    """Delete a run, unless the running job is on it. Under the launch lock: a finish or resume being launched holds
    it until its process names its run, so a delete from another tab waits, then refuses, instead of removing the
    run from under the job."""
    runs_dir = Path(runs_dir)
    with _launch_lock(runs_dir):
        if in_use(runs_dir, run_id):
            raise RunError(f"run {run_id} is in use by the running job: cancel it first")
        delete_run(runs_dir, run_id)


def cancel(runs_dir: str | os.PathLike) -> str:
    """Ask the running job to stop; it saves status 'cancelled' at its next step. Returns what was asked."""
    runs_dir = Path(runs_dir)
    holder = running_job(runs_dir)
    if not holder:
        raise JobError("no training job is running")
    if info := live_job(runs_dir):  # the app's job: the runs a cancel leaves unstarted were stopped on purpose
        write_json_atomic(runs_dir / JOBS_DIR / LAST_JOB, {**info, "cancelled": True})
    if holder != "starting":
        run_dir = run_path(runs_dir, holder)
        # the holder is named a moment before its status.json exists; a cancel file is the clean way
        deadline = time.time() + 10
        while read_status(run_dir).get("status") == "broken" and time.time() < deadline:
            time.sleep(0.1)
        if read_status(run_dir).get("status") == "running":
            request_cancel(run_dir)
            return holder
    # no run folder yet (still loading data/model): nothing to save, so stop the process itself
    info = last_job(runs_dir) or {}
    pid = info.get("pid")
    try:
        proc = psutil.Process(pid)
        if info.get("pid_started") and abs(proc.create_time() - info["pid_started"]) > 1:
            raise psutil.NoSuchProcess(pid)
        proc.send_signal(signal.SIGTERM)
    except (psutil.Error, TypeError, ValueError):
        raise JobError("the running job could not be reached to cancel it") from None
    return holder


def finish(runs_dir: str | os.PathLike, run_id: str | None) -> str:
    """Ask run `run_id` (the one the page showed) to stop training now and keep its best weights: it validates,
    tests and saves them, and completes (the rest of the job's plan goes on). Returns the run asked."""
    runs_dir = Path(runs_dir)
    holder = running_job(runs_dir)
    if not holder:
        raise JobError("no training job is running")
    if run_id is None or holder == "starting" or read_status(run_path(runs_dir, holder)).get("status") != "running":
        raise JobError("the job is still loading its data and model: there is nothing to keep yet")
    if holder != run_id:  # the plan moved on since the page was drawn: do not stop the next run
        raise JobError(f"{run_id} has already ended; the job is now training {holder}")
    request_finish(run_path(runs_dir, holder))
    return holder


# ---------------------------------------------------------------------------- how long will it take

ESTIMATE_RUNS = 3  # the median of this many recent runs: one run slowed by a busy CPU must not set the estimate
ESTIMATE_MIN_STEPS = 20  # steps a run stopped early must have trained for its rate to set an estimate


@functools.cache  # asked once per past run of an estimate; the machine's devices do not change under it
def _device_type() -> str:
    """What a job started here trains on: Accelerate's pick (CUDA, then MPS, then the CPU)."""
    import torch
    return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"


def _same_device(run) -> bool:
    """Whether a run trained on this machine's kind of device: a GPU run in a copied runs folder is no rate for
    the CPU. A run that recorded none (made before the field was) counts as one."""
    device = (run.config or {}).get("device")
    return device is None or str(device).split(":")[0] == _device_type()


def estimate_from_runs(past: list, mode: str, model_name: str | None, n_train: int,
                       max_length: int | None = None, batch_size: int | None = None,
                       validating: tuple[float, int] | None = None,
                       precision: str | None = None) -> tuple[float, list[str]] | None:
    """Seconds per epoch from the latest completed runs of this mode and model on this kind of device (past is newest
    first), preferring those with the same max length (it sets the cost of every step), among them those with the
    same batch size (smaller batches keep the CPU less busy), and among those the ones in the same arithmetic
    (`precision` as trained: a bf16 fine-tune took 92 s here where fp32 took 132 s, benchmarks/README.md section 21).
    None for any of them: any.

    Throughput (messages per second) is what carries over between runs; the number of training messages can differ.
    n_train: the messages an epoch trains on (a sample's several passes over it, min_epoch_steps, count each time).
    validating: (validations per epoch, validation messages) of the run to estimate. A run that timed its
    validations apart gives two rates, one for training and one for validating: a small sample's epoch of one pass
    is mostly validation on the whole validation split (1 to 8 messages a second overall at 50 messages, against
    about 100 on all of them, in benchmarks/README.md section 17). Runs trained on half to twice as many messages
    come first, and among them those that timed validations apart. A run without them gives one rate for both, and
    a sample run without them none. The median of up to ESTIMATE_RUNS runs: a single run trained while the CPU was
    shared made the next estimate 3.5 times too long. Of two, the faster: a busy CPU only ever slows a run, and the
    mean of a 2-minute run and a 10-minute one trained beside another job was no time either took.
    Returns (seconds, the runs it is based on) or None.
    """
    def per_epoch(metrics: dict) -> float:
        train_seconds, val_seconds = metrics.get("train_seconds"), metrics.get("validation_seconds")
        if validating and val_seconds and metrics.get("validation_messages_per_second") and \
                train_seconds and train_seconds > val_seconds:
            training_rate = metrics["train_messages_per_second"] * train_seconds / (train_seconds - val_seconds)
            return n_train / training_rate + validating[0] * validating[1] / metrics["validation_messages_per_second"]
        return n_train / metrics["train_messages_per_second"]

    # a run finished a few steps in timed mostly its first, slow step: not a rate to extrapolate from
    usable = [run for run in past if run.usable and run.mode == mode and (mode == "baseline" or run.model == model_name)
              and _same_device(run)
              and (run.metrics or {}).get("train_messages_per_second")
              and not (cut_short(run.metrics.get("stopped")) and (run.metrics.get("steps") or 0) < ESTIMATE_MIN_STEPS)
              and (not training_subset(run.config) or run.metrics.get("validation_seconds"))]

    def same(run, key, value) -> bool:
        return value is None or (run.config or {}).get(key) == value

    same_length = [run for run in usable if same(run, "max_length", max_length)]
    same_batch = [run for run in same_length if same(run, "batch_size", batch_size)]
    same_precision = [run for run in same_batch if same(run, "precision", precision)]
    if not usable:
        return None
    chosen = same_precision or same_batch or same_length or usable
    # then runs of about this many messages (a small sample's steps and saves cost more per message), those that
    # timed their validations first
    near = [run for run in chosen if n_train / 2 <= (trained_messages(run.config) or 0) *
            run.metrics.get("passes_per_epoch", 1) <= n_train * 2]
    timed = [[run for run in runs if run.metrics.get("validation_seconds")] if validating else []
             for runs in (near, chosen)]
    recent = (timed[0] or near or timed[1] or chosen)[:ESTIMATE_RUNS]
    return statistics.median_low(per_epoch(run.metrics) for run in recent), [run.id for run in recent]


def encoding_rate(past: list, model_name: str, max_length: int) -> tuple[float, str, int] | None:
    """Seconds per message that the latest frozen run of this model which encoded them all (rather than read its
    features from the cache, or went on from a stopped encoding's rows) took to encode them, preferring one at this
    max length; with that run's id and max length."""
    from .features import EXTRACT_BATCH  # here: it imports torch, which the pages need not wait for

    found = []
    for run in past:
        if run.usable and run.mode == "frozen" and run.model == model_name and _same_device(run):
            events = read_history(run.path)
            # a first batch reported past one batch's messages: it went on from a stopped run's rows, and its
            # seconds cover only the rest (the longest messages: batches go from the shortest up)
            first = next((e for e in events if e.get("event") == "features"), {})
            if (first.get("done") or 0) > EXTRACT_BATCH:
                continue
            for e in events:
                if e.get("event") == "features_ready" and not e.get("cached") and e.get("shape"):
                    found.append((e["seconds"] / max(e["shape"][0], 1), run.id, (run.config or {}).get("max_length")))
                    break
            if found and found[-1][2] == max_length:
                return found[-1]
    return found[0] if found else None


def _about(seconds: float) -> str:
    """An estimate in words: a baseline's fit or one head epoch takes a fraction of a second, not "about 0 s"."""
    return "under a second" if seconds < 0.5 else f"about {format_seconds(seconds)}"


def _estimate_inputs(cfg: TrainConfig, n_train: int, n_validation: int | None) -> tuple:
    """estimate_from_runs' messages trained per epoch (a small sample's passes, min_epoch_steps, count), max_length,
    batch_size, validating and precision for cfg. Only fine-tuning's steps scale with max length and arithmetic: the
    frozen head trains on one vector per message in fp32, in steps that cost about the same whatever their size, so
    its time follows the batch size (the baseline's is one solver fit)."""
    from .features import effective_precision

    validating = None
    if n_validation and cfg.mode != "baseline":
        per_epoch = validations_planned(steps_per_epoch(cfg, n_train), cfg.epochs, cfg.evals_per_epoch) / cfg.epochs
        validating = (per_epoch, n_validation)
    finetune = cfg.mode == "finetune"
    return (n_train * passes_per_epoch(cfg, n_train), cfg.max_length if finetune else None,
            cfg.batch_size if cfg.mode != "baseline" else None, validating,
            effective_precision(cfg.precision) if finetune else None)


def _measured_epoch(cfg: TrainConfig, measured: dict, n_train: int, validating: tuple | None) -> float:
    """A fine-tune's epoch from a few steps timed just now (measure_epoch_seconds, for measured["n_train"]
    messages), scaled to the steps of an epoch of n_train messages, with its validations."""
    steps = steps_per_epoch(cfg, n_train) / -(-measured.get("n_train", n_train) // cfg.batch_size)
    per_message = measured.get("validation_seconds_per_message")
    return measured["epoch_seconds"] * steps + (validating[0] * validating[1] * per_message
                                                if validating and per_message else 0)


def estimate_seconds(cfg: TrainConfig, past: list, model_name: str | None, n_train: int,
                     n_validation: int | None, measured: dict | None = None) -> float | None:
    """describe_estimate's training time in seconds (no encoding), from past runs, else for a fine-tune from
    `measured`; None where neither answers."""
    trained, length, batch, validating, precision = _estimate_inputs(cfg, n_train, n_validation)
    if found := estimate_from_runs(past, cfg.mode, model_name, trained, length, batch, validating, precision):
        return found[0] * (1 if cfg.mode == "baseline" else cfg.epochs)
    if measured and cfg.mode == "finetune":
        return _measured_epoch(cfg, measured, n_train, validating) * cfg.epochs
    return None


def describe_estimate(cfg: TrainConfig, label: str, past: list, model_name: str | None, n_train: int,
                      n_messages: int, features_cached: bool = False, measured: dict | None = None,
                      n_validation: int | None = None) -> tuple[str, bool]:
    """How long `cfg` will take on this machine, as one line for the Train page, and whether nothing here could
    answer (so timing a few steps would help). Past runs of the same mode and model come first, then `measured`
    (measure_epoch_seconds, just now). n_validation: the validation split's messages, validated at every
    validation (left out of the estimate where None)."""
    trained, length, batch, validating, precision = _estimate_inputs(cfg, n_train, n_validation)
    found, untimed = estimate_from_runs(past, cfg.mode, model_name, trained, length, batch, validating,
                                        precision), False
    if found:
        per_epoch, sources = found
        epochs = "" if cfg.mode == "baseline" else f" for {cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"  # one solver fit
        line = f"{label}: {_about(per_epoch * cfg.epochs)}{epochs}"
        basis = f"run {sources[0]}" if len(sources) == 1 else "the faster of the last 2 runs" if len(sources) == 2 \
            else f"the median of the last {len(sources)} runs"
        other = []  # no run with this setting: say theirs (older runs did not record their precision)
        for key, wanted in (("max_length", length), ("batch_size", batch), ("precision", precision)):
            used = {(r.config or {}).get(key) for r in past if r.id in sources} - {None}
            if wanted and used and used != {wanted}:
                other.append(f"{key.replace('_', ' ')} {', '.join(str(u) for u in sorted(used, key=str))}")
        line += f" (from {basis}, which used {' and '.join(other)})" if other else f" (from {basis} on this machine)"
    elif measured and cfg.mode == "finetune":
        line = (f"{label}: {_about(_measured_epoch(cfg, measured, n_train, validating) * cfg.epochs)} for {cfg.epochs} "
                f"epoch{'s' * (cfg.epochs != 1)} (a few steps timed just now)")
    elif cfg.mode == "frozen":
        line = f"{label}: the head's epochs take seconds"
    elif cfg.mode == "baseline":
        line = f"{label}: seconds"
    else:
        line, untimed = f"{label}: not yet timed on this machine", True
    if cfg.mode == "frozen":  # the one-time encoding, unless this model, length, pooling and data are cached
        if features_cached:  # checked first: finding a rate reads past runs' histories, on every rerun of the page
            line += "; the encoder's features are cached, so nothing to encode"
        elif rate := encoding_rate(past, model_name, cfg.max_length):
            seconds, source, used = rate
            line += (f", plus {_about(seconds * n_messages)} to encode the {n_messages:,} messages "
                     f"once (rate from run {source}" + (f", which used max length {used})" if used != cfg.max_length
                                                        else ")"))
        elif measured:
            line += f", plus {_about(measured['features_seconds'])} to encode the messages once " \
                    "(timed just now)"
        else:
            line, untimed = line + ", plus the one-time encoding of every message (not yet timed on this machine)", True
    return line, untimed


def measure_epoch_seconds(model_name: str, mode: str, max_length: int, batch_size: int, n_train: int,
                          n_messages: int, steps: int = 3) -> dict:
    """Time a few real steps of this model on this machine, on the device a job would train on, and scale them to
    an epoch.

    finetune: forward + backward of a batch of typical SMS (about 25 tokens, the data's mean), and a forward pass
    alone (a validation's, per message). frozen: the one-time forward pass over every message (the head's own epochs
    take well under a second). In fp32, also where training runs bf16: on an AMX CPU, bf16 steps with the optimizer's
    update came out 35 % under a 50-message fine-tune's time, and these 11 % (benchmarks/README.md, section 18): a
    real step costs more than the same step repeated at one length. On a GPU, where bf16 runs on tensor cores, this
    is not measured and likely high.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .modeling import resolve_model

    device = torch.device(_device_type())
    info = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(info.path)
    model = AutoModelForSequenceClassification.from_pretrained(info.path, num_labels=2, use_safetensors=True).to(device)
    text = "Had your mobile 11 months or more? U R entitled to Update to the latest colour mobiles with camera"
    size = batch_size if mode == "finetune" else 64
    batch = tokenizer([text] * size, truncation=True, max_length=max_length, return_tensors="pt").to(device)
    labels = torch.zeros(size, dtype=torch.long, device=device)

    def timed(step) -> float:
        timings = []
        for _ in range(steps + 1):  # the first step warms up allocators and kernels; not counted
            t0 = time.perf_counter()
            step()
            if device.type != "cpu":  # GPU kernels run asynchronously: wait for them before reading the clock
                torch.accelerator.synchronize()
            timings.append(time.perf_counter() - t0)
        return float(np.median(timings[1:]))

    def training_step():
        model.train()
        model(**batch, labels=labels).loss.backward()
        model.zero_grad(set_to_none=True)

    @torch.inference_mode()
    def forward():  # a validation's batch, or the frozen encoder's
        model.eval()
        model(**batch)

    try:
        if mode == "finetune":
            return {"epoch_seconds": timed(training_step) * -(-n_train // batch_size), "n_train": n_train,
                    "validation_seconds_per_message": timed(forward) / size, "model": info.name}
        return {"features_seconds": timed(forward) * -(-n_messages // size), "model": info.name}
    finally:  # this runs in the app's process: its GPU memory goes back for the job's own
        if device.type == "cuda":
            model.to("cpu")
            torch.cuda.empty_cache()
