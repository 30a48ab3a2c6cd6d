"""The run store: one folder per run, written atomically, readable while it is being written.

    checkpoints/<run-id>/
        config.json     every hyperparameter, the resolved model, data summary, package versions
        status.json     running | completed | failed | cancelled (+ pid, error); a dead pid reads as interrupted
        history.jsonl   one event per line, flushed as training goes
        checkpoint-<step>/  while training: the best weights so far, replaced at each better validation
        resume-<step>/  while training: the whole training state (weights, optimiser, random state, step) every
                        minute or so, for `python -m core resume`; best/ in it links the best weights at that step
        model/          weights in safetensors (save_pretrained layout for finetune, head for frozen)
        metrics.json    test/validation metrics, curves, every test message's probability

A run killed mid-training keeps its last checkpoint: `python -m core finish` tests it and completes the run;
`python -m core resume` goes on training from its last saved state instead.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

FORMAT_VERSION = 1
NEWER_FORMAT = "written by a newer version of this project"  # how such a run's error begins
RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
LOCK_NAME = ".training.lock"
CANCEL_FILE = "cancel"  # stop and discard the run
FINISH_FILE = "finish"  # stop training now, keep the best weights so far, test them: the run completes
EVALUATIONS = "evaluations"  # scores on files of the user's own (core.evaluate), messages included
CHECKPOINT_INFO = "checkpoint.json"  # in a checkpoint folder: the step, epoch and validation of its weights
STATE_INFO = "state.json"  # in a resume-<step> folder: written last, removed first, so it marks a complete state
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_STATE_RE = re.compile(r"^resume-(\d+)$")


class RunError(ValueError):
    """A run that does not exist or cannot be read, with a message meant for the user."""


# ---------------------------------------------------------------------------- files

def _clean(value):
    """JSON has no NaN/inf: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file of its own in the same folder, fsync, then rename: readers see the old or the new file,
    and two writers of the same file never rename each other's half-written copy."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the run's other files follow the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, json.dumps(_clean(obj), indent=1, allow_nan=False).encode("utf-8"))


def save_folder_atomic(target: Path, write) -> None:
    """write(folder) into a folder next to `target`, flush it to disk, then rename it into place: a run killed at
    any moment (or a power cut) never leaves half a checkpoint where a loader would look."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # not parents=True: a run folder moved or deleted while its job trains is not made again, holding only the
    # checkpoints saved after (its config stayed in the moved folder, so nothing could load them)
    tmp.mkdir()
    try:
        write(tmp)
        _flush_to_disk(tmp)
    except BaseException as exc:  # an error or a cancel mid-save: leave no partial folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and not isinstance(exc, OSError):  # e.g. tokenizers' bare Exception
            raise OSError(f"could not save the model in {target}: {exc}") from exc
        raise
    remove_folder(target)
    tmp.rename(target)
    _flush_to_disk(target.parent, recursive=False)  # the rename itself


def remove_folder(path: Path) -> None:
    """Rename the folder out of the way, then delete it: killed half-way through, the half is a .tmp folder (which
    no loader takes, and load_run sweeps), never a checkpoint without its tokenizer under the checkpoint's name."""
    doomed = path.with_name(path.name + ".old.tmp")  # not <name>.tmp: that is the new folder being saved
    shutil.rmtree(doomed, ignore_errors=True)  # an earlier removal's leftover
    try:
        path.rename(doomed)
    except FileNotFoundError:
        return
    except OSError:  # say an undeletable leftover (NFS's .nfs files) is in the way: removed in place, as before
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)


def _flush_to_disk(folder: Path, recursive: bool = True) -> None:
    """fsync what a folder holds, then the folder itself: after a power cut, a renamed folder could otherwise hold
    empty files (the rename can reach the disk before the data does)."""
    for path in [*sorted(folder.rglob("*")), folder] if recursive else [folder]:
        fd = os.open(path, os.O_RDONLY)  # a folder too: its fsync makes the names in it durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(run_dir: Path, step: int, write) -> Path:
    """write(folder) as checkpoint-<step>, then remove the older ones: from the first validation on, a complete
    checkpoint is on disk at every moment, so a crash or kill -9 loses only the steps since it."""
    target = Path(run_dir) / f"checkpoint-{step}"
    save_folder_atomic(target, write)
    for old in checkpoints(run_dir):
        if old != target:
            remove_folder(old)
    return target


def _numbered(run_dir: Path, pattern: re.Pattern) -> list[Path]:
    try:
        found = [(int(m[1]), p) for p in Path(run_dir).iterdir() if (m := pattern.match(p.name)) and p.is_dir()]
    except OSError:
        return []
    return [p for _, p in sorted(found)]


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoint folders, oldest step first (a .tmp folder being written is not one)."""
    return _numbered(run_dir, _CHECKPOINT_RE)


def checkpoint_step(path: Path) -> int:
    return int(_CHECKPOINT_RE.match(Path(path).name)[1])


def drop_checkpoints(run_dir: Path) -> None:
    """Remove the checkpoints and the saved training states: the run completed, or was cancelled (discarded)."""
    drop_training_states(run_dir)
    for path in checkpoints(run_dir):
        remove_folder(path)


def save_training_state(run_dir: Path, step: int, write) -> Path:
    """write(folder) as resume-<step>, with state.json last, then remove the older states: as with checkpoints, a
    complete state is on disk at every moment from the first save on, whenever the process is killed."""
    target = Path(run_dir) / f"resume-{step}"
    save_folder_atomic(target, write)
    drop_training_states(run_dir, keep=target)
    return target


def drop_training_states(run_dir: Path, keep: Path | None = None) -> None:
    for path in _numbered(run_dir, _STATE_RE):
        if path != keep:
            (path / STATE_INFO).unlink(missing_ok=True)  # first: a half-removed state is never taken for a whole one
            shutil.rmtree(path, ignore_errors=True)


def link_or_copy(src: str, dst: str) -> None:
    """A hard link costs no time or space and keeps the file alive when its first name is removed; a file system
    without hard links gets a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def saved_state(run_dir: Path) -> dict | None:
    """state.json of the run's newest complete training state (with "folder" added), or None when it has none."""
    for folder in reversed(_numbered(run_dir, _STATE_RE)):
        try:
            info = read_json(folder / STATE_INFO)
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("step"), int):
            return {**info, "folder": folder}
    return None


def saved_weights(run_dir: Path, mode: str | None) -> Path | None:
    """The weights an unfinished run left: its newest checkpoint, or model/ when it stopped after moving the
    best one there but before writing its metrics. None when it left none."""
    run_dir = Path(run_dir)
    if weights_present(run_dir, mode):
        return run_dir / "model"
    found = [p for p in checkpoints(run_dir) if weights_present(p, mode, folder=".")]
    return found[-1] if found else None


def checkpoint_info(weights: Path) -> dict:
    """checkpoint.json of a weights folder ({} when absent or damaged, as in runs saved before checkpoints)."""
    try:
        info = read_json(Path(weights) / CHECKPOINT_INFO)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise RunError(f"invalid run id {run_id!r}: expected letters, digits, '-' and '_' only")
    return run_id


def run_path(runs_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(runs_dir) / validate_run_id(run_id)


def resolve_run(run: str | os.PathLike, runs_dir: str | os.PathLike = "checkpoints") -> Path:
    """A run given as a folder path or as an id under runs_dir."""
    path = Path(run)
    if not path.is_dir():
        if len(path.parts) > 1:  # a folder path, not an id: "invalid run id" would puzzle
            raise RunError(f"unknown run: {run} (no such folder)")
        path = run_path(runs_dir, str(run))
    if not (path / "config.json").is_file():
        raise RunError(f"unknown run: {run} (no config.json under {path})")
    return path


# ---------------------------------------------------------------------------- writing a run

def new_run_dir(runs_dir: str | os.PathLike, mode: str) -> Path:
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = root / f"{stamp}-{mode}-{os.urandom(2).hex()}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:  # the lock file could be written but the folder not (or the disk is full)
            raise RunError(f"cannot create a run folder in {root} ({exc.strerror or exc})") from None
    raise RunError(f"could not create a run folder under {root}")


class EventLog:
    """history.jsonl: one JSON object per line, flushed at once so another process can follow live.

    With path None nothing is written (the non-main processes of a multi-process run).
    """

    def __init__(self, path: Path | None):
        self._file = open(path, "a", encoding="utf-8") if path is not None else None

    def emit(self, event: str, **fields) -> dict:
        record = {"event": event, "time": round(time.time(), 3), **_clean(fields)}
        if self._file is not None:
            self._file.write(json.dumps(record, allow_nan=False) + "\n")
            self._file.flush()
        return record

    def close(self):
        if self._file is not None:
            self._file.close()


def set_status(run_dir: Path, status: str, **fields) -> None:
    path = Path(run_dir) / "status.json"
    previous = read_json(path) if path.is_file() else {}
    record = {**previous, **fields, "status": status, "updated_at": time.time()}
    if status == "running" and "pid" not in fields:
        proc = psutil.Process()
        record.update(pid=proc.pid, pid_started=proc.create_time(), host=_process_space())
    try:
        write_json_atomic(path, record)
    except OSError:
        if status == "running" or not path.is_file():
            raise
        # a full disk has no room for the temp file; rewriting the small file in place needs none, and a
        # failed run must say why rather than read as "interrupted"
        with open(path, "r+", encoding="utf-8") as f:
            f.write(json.dumps(_clean(record), allow_nan=False))
            f.truncate()


def _process_space() -> str:
    """Where a pid means the same process: the machine and its pid namespace (a container with the host's
    network has the host's name but its own pids)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc (macOS, Windows): the host name alone
        namespace = ""
    return f"{socket.gethostname()} {namespace}".strip()


def stopped_here(run_dir: Path, status: dict) -> bool:
    """Whether an interrupted run's process was one of this machine's, so that it is surely dead. Also when only
    the pid namespace differs (a restarted container keeps its host name, and gets a new one) and no job holds
    this runs folder's lock, or it names another run: a process training the run would hold it, whatever its
    namespace."""
    host = status.get("host")
    if host == _process_space():
        return True
    if not isinstance(host, str) or host.split(" ")[0] != socket.gethostname():
        return False
    return running_job(Path(run_dir).parent) not in (Path(run_dir).name, "starting")


def request_cancel(run_dir: Path) -> None:
    (Path(run_dir) / CANCEL_FILE).touch()


def cancel_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / CANCEL_FILE).exists()


def request_finish(run_dir: Path) -> None:
    (Path(run_dir) / FINISH_FILE).touch()


def finish_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / FINISH_FILE).exists()


# ---------------------------------------------------------------------------- reading runs

def process_alive(pid: int | None, started: float | None) -> bool:
    """Is this exact process still running? (pid plus start time, so a recycled pid does not count)"""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (started is None or abs(proc.create_time() - started) < 1)
    except psutil.Error:
        return False


def read_status(run_dir: Path) -> dict:
    """status.json, with a 'running' run whose process is gone reported as interrupted."""
    path = Path(run_dir) / "status.json"
    try:
        status = read_json(path)
    except (OSError, ValueError):
        status = None
    number = (int, float, type(None))
    if (not isinstance(status, dict) or not isinstance(status.get("status"), str)
            or not isinstance(status.get("pid"), number) or not isinstance(status.get("pid_started"), number)):
        return {"status": "broken", "error": "status.json is missing or unreadable"}
    if status.get("status") == "running" and not process_alive(status.get("pid"), status.get("pid_started")):
        status = {**status, "status": "interrupted", "error": "the training process stopped without finishing"}
    return status


def read_history(run_dir: Path) -> list[dict]:
    """Every complete line of history.jsonl (a line being written right now is skipped)."""
    path = Path(run_dir) / "history.jsonl"
    events = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.endswith("\n"):
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict):  # a damaged line can still parse, e.g. as a number
                        events.append(event)
    except OSError:
        pass
    return events


def time_spent(history: list[dict], created: float) -> tuple[float, float]:
    """(seconds training, seconds in all) of a run that stopped, from its events: summed over the stretches it ran,
    so the time it sat stopped before each resume is not counted."""
    cuts = [0] + [i for i, e in enumerate(history) if e.get("event") == "resumed"] + [len(history)]
    training = total = 0.0
    for a, b in zip(cuts, cuts[1:]):
        timed = [e for e in history[a:b] if isinstance(e.get("time"), (int, float))]
        if not timed:
            continue
        # the first stretch from the run's creation, a resumed one from its "resumed" event
        total += timed[-1]["time"] - (created if a == 0 else timed[0]["time"])
        start = next((e for e in timed if e.get("event") == "start"), None)
        stepped = [e for e in timed if isinstance(e.get("step"), int) and e.get("event") != "resumed"]
        if start and stepped and stepped[-1]["time"] > start["time"]:
            training += stepped[-1]["time"] - start["time"]
    return training, max(total, 0.0)


@dataclass
class RunInfo:
    id: str
    path: Path
    mode: str | None
    model: str | None
    status: str
    created: float
    config: dict
    metrics: dict | None
    error: str | None = None

    @property
    def usable(self) -> bool:
        """Completed, with metrics and weights on disk: safe to compare and predict with."""
        return self.status == "completed" and self.metrics is not None and weights_present(self.path, self.mode)


def weights_present(run_dir: Path, mode: str | None, folder: str = "model") -> bool:
    name = {"finetune": "model.safetensors", "frozen": "head.safetensors", "baseline": "baseline.json"}.get(mode)
    return bool(name) and (Path(run_dir) / folder / name).is_file()


def damaged_weights(run_dir: Path, mode: str | None) -> str | None:
    """Why the saved weights' safetensors file cannot be read (a garbage or truncated header), or None. Only the
    header is read: cheap enough for every listing, so a damaged run is listed as broken, not loaded and crashed."""
    from safetensors import safe_open

    name = {"finetune": "model.safetensors", "frozen": "head.safetensors", "baseline": "baseline.safetensors"}.get(mode)
    if name is None:
        return None
    if not (Path(run_dir) / "model" / name).is_file():  # the baseline's coefficients, beside its baseline.json
        return f"model/{name} is missing"
    try:
        with safe_open(str(Path(run_dir) / "model" / name), "np") as f:  # "pt" would import torch
            f.keys()
    except Exception as exc:  # SafetensorError, or an OSError reading it
        return f"model/{name} is damaged ({exc})"
    return None


def saved_run_config(run_dir: Path) -> dict:
    """config.json of a completed run whose weights were saved (to load or export it); RunError otherwise. A run
    listed as broken is refused too (a corrupt metrics.json, say): its weights may be fine, but nothing vouches for
    them. So is one stopped while it tested: its weights are already in model/, but untested."""
    run = load_run(run_dir)
    if run.status == "broken":
        raise RunError(f"{run_dir.name}: {run.error}")
    config = run.config
    if not weights_present(run_dir, config.get("mode")):
        raise RunError(f"{run_dir.name}: no saved weights (the run did not complete)")
    if run.status != "completed":
        how = "is still running" if run.status == "running" else f"did not complete ({run.status})"
        then = "" if run.status == "running" else f"; `python -m core finish --run {run_dir}` tests and completes it"
        raise RunError(f"{run_dir.name}: the run {how}, so its saved weights are untested{then}")
    if damage := damaged_weights(run_dir, config.get("mode")):
        raise RunError(f"{run_dir.name}: {damage}")
    return config


FINISHABLE = ("interrupted", "failed", "cancelled")  # stopped before their end; they may have left a checkpoint


def _stopped_run(run_dir: Path, doing: str) -> tuple:
    """(run, status) of a run that stopped before its end, on this machine; RunError saying why not otherwise."""
    run = load_run(run_dir)
    if run.status not in FINISHABLE:
        why = {"completed": "it has already completed", "running": "it is still training: ask it to finish instead",
               "broken": f"it is broken ({run.error})"}.get(run.status, f"its status is {run.status}")
        raise RunError(f"{run.id} cannot be {doing}: {why}")
    if run.mode == "baseline":
        raise RunError(f"{run.id} is a baseline run, which keeps no checkpoint: train it again (it takes seconds)")
    status = read_status(run.path)
    if host := trained_elsewhere(run.path, status):
        # its process was looked for among this machine's: on a runs folder shared with another machine it may
        # still be training there
        raise RunError(f"{run.id} was training on another machine ({host}): finish or resume it there, or, if it "
                       "trains there no more (a container recreated under a new name, say), take it over here "
                       "(--take-over, or \"Take this run over\" on the Runs page)")
    if not isinstance(run.config.get("model"), dict):
        raise RunError(f"{run.id}: config.json does not name the model it trained")
    return run, status


def trained_elsewhere(run_dir: Path, status: dict | None = None) -> str | None:
    """The machine an interrupted run's status names where that is not this one, whose processes cannot be checked
    from here: it may still train there (a runs folder shared between machines), or be gone (a container recreated
    under a new host name). None for any other run."""
    status = read_status(run_dir) if status is None else status
    if status.get("status") == "interrupted" and not stopped_here(run_dir, status):
        return str(status.get("host") or "unknown")
    return None


def take_over(run_dir: Path) -> str:
    """Make an interrupted run that names another machine (trained_elsewhere) this one's to finish or resume, once
    the user says it trains there no more; returns that machine. Nothing checks that: two machines training one
    run would overwrite each other's checkpoints."""
    if (host := trained_elsewhere(run_dir)) is None:
        raise RunError(f"{Path(run_dir).name} names no other machine: there is nothing to take over")
    if running_job(Path(run_dir).parent) in (Path(run_dir).name, "starting"):  # a job holds this folder's lock for it
        raise RunError(f"{Path(run_dir).name} is being trained by a job on this runs folder (in another container, "
                       "say): it cannot be taken over while that job runs")
    set_status(run_dir, "interrupted", host=_process_space(), taken_over_from=host,
               error=f"the training process stopped without finishing (on {host}; taken over here)")
    return host


def finishable(run_dir: Path) -> tuple[dict, Path, dict]:
    """(config, weights folder, status) of a run that stopped before its end and left weights to finish it from
    (core.train.finish_stopped); RunError saying why not otherwise. Reads files only: no torch."""
    run, status = _stopped_run(run_dir, "finished from saved weights")
    weights = saved_weights(run.path, run.mode)
    if weights is None:
        raise RunError(f"{run.id} saved no weights before it stopped (it ended before its first validation, or "
                       "was cancelled, which discards them): train it again")
    return run.config, weights, status


def resumable(run_dir: Path) -> tuple[dict, dict, dict]:
    """(config, saved state, status) of a run that stopped before its end and saved its training state
    (core.train.resume_stopped); RunError saying why not otherwise. Reads files only: no torch."""
    run, status = _stopped_run(run_dir, "resumed")
    if status.get("diverged"):
        raise RunError(f"{run.id} cannot be resumed: its training diverged ({status['diverged']}), and a resume "
                       "repeats the very same steps, so it would diverge again; "
                       + ("`finish` tests its best weights so far, or train it again with a lower learning rate"
                          if saved_weights(run.path, run.mode) else "train it again with a lower learning rate"))
    if weights_present(run.path, run.mode):  # the best weights moved to model/: training had ended, or a finish began
        raise RunError(f"{run.id} cannot be resumed: its best weights were moved to model/ already (its training had "
                       "ended, or a `finish` began); `finish` tests them and completes the run")
    state = saved_state(run.path)
    if state is None:
        raise RunError(f"{run.id} saved no training state to resume from (it stopped within its first minute of "
                       "training, after its training had ended, or was cancelled from the app or with a `cancel` "
                       "file, which discards it)"
                       + ("; `finish` can still test its best weights" if saved_weights(run.path, run.mode) else
                          ": train it again"))
    return run.config, state, status


def finishable_weights(run_dir: Path) -> Path | None:
    """The weights `core finish` would complete this run from, or None when it would refuse (for the pages)."""
    try:
        return finishable(run_dir)[1]
    except RunError:
        return None


def resumable_state(run_dir: Path) -> dict | None:
    """The saved training state `core resume` would go on from, or None when it would refuse (for the pages)."""
    try:
        return resumable(run_dir)[1]
    except RunError:
        return None


def resumed_note(resumed: list[dict]) -> str:
    """One line on a run that stopped and went on training from its saved state (metrics.json "resumed")."""
    return "; ".join(f"resumed at step {r.get('from_step')} after it was {r.get('after')}" for r in resumed)


def cut_short(stopped: dict | None) -> bool:
    """Whether metrics.json's "stopped" record says the run trained fewer steps than it was set for; not so for one
    that had ended its training (its last validation, or early stopping) and stopped while it tested."""
    return bool(stopped) and not stopped.get("trained_to_end")


def trained_messages(config: dict | None) -> int | None:
    """How many messages a run trained on: its training split's, or a sample of them (--train-messages)."""
    try:
        return int(config["data_info"]["splits"]["train"]["rows"])
    except (KeyError, TypeError, ValueError):  # a damaged config
        return None


def training_subset(config: dict | None) -> tuple[int, int] | None:
    """(messages it trained on, of how many in its training split) for a run on fewer training messages
    (--train-messages below the split's size); None for one that trained on them all."""
    try:
        if not config.get("train_messages") or (used := trained_messages(config)) is None:
            return None
        from .data import split_sizes
        whole = split_sizes(config["data_info"]["rows"], config["val_fraction"], config["test_fraction"])["train"]
    except (KeyError, TypeError, AttributeError):  # an older or damaged config
        return None
    return (used, whole) if used < whole else None


def stopped_note(stopped: dict) -> str:
    """One line on a run that did not train to its end: finished on request, or from a checkpoint after it stopped
    (metrics.json "stopped"); or on one that trained to its end and stopped while it tested."""
    if stopped.get("trained_to_end"):
        why = stopped.get("reason") or stopped.get("status")
        return (f"trained to its end, then stopped before it completed ({why}); tested later with its best weights, "
                f"from step {stopped.get('weights_from_step')}")
    total = f" of {stopped['total_steps']}" if stopped.get("total_steps") else ""
    return (f"stopped after step {stopped.get('after_step')}{total} ({stopped.get('reason') or stopped.get('status')}); "
            f"tested with the best weights saved by then, from step {stopped.get('weights_from_step')}")


def load_run(run_dir: Path) -> RunInfo:
    """Everything about one run; a damaged run is returned with status 'broken' and the reason."""
    run_dir = Path(run_dir)
    try:
        config = read_json(run_dir / "config.json")
    except (OSError, ValueError):
        config = None
    config_ok = (isinstance(config, dict) and isinstance(config.get("mode"), str)
                 and isinstance(config.get("model"), (dict, type(None))))
    version = config.get("format_version") if config_ok else None
    # its files may not mean what this code reads (a version that is no whole number: not one this code wrote)
    newer = version is not None and (type(version) is not int or version > FORMAT_VERSION)
    config = config if config_ok else {}
    status = read_status(run_dir)
    state = status.get("status", "broken")
    error = status.get("error") if config_ok else "config.json is missing or unreadable"
    if newer:
        config_ok, error = False, (f"{NEWER_FORMAT} (run format {version}; this one reads {FORMAT_VERSION}): update "
                                   "the project to use it")
    if state == "interrupted" and not newer and stopped_here(run_dir, status) and \
            running_job(run_dir.parent) != run_dir.name:
        # killed mid-save (kill -9): its writer is gone, so the partial folder is garbage. Only where the pid was
        # checked among the writer's own processes: a folder shared with another host must not lose a live save.
        # And not while a job names the run: a resume puts its best weights back (a .tmp copy) before it marks the
        # run running, and a page listing runs then deleted the copy under it
        for partial in run_dir.glob("*.tmp"):  # a folder being saved (.tmp) or removed (.old.tmp)
            name = partial.name.removesuffix(".tmp").removesuffix(".old")
            if partial.is_dir() and (name == "model" or _CHECKPOINT_RE.match(name) or _STATE_RE.match(name)):
                shutil.rmtree(partial, ignore_errors=True)
    metrics = None
    if not config_ok:  # nothing else about the run can be trusted
        state = "broken"
    elif state == "completed":
        try:
            metrics = read_json(run_dir / "metrics.json")
            if not isinstance(metrics.get("test"), dict):
                raise ValueError
        except (OSError, ValueError, AttributeError):
            metrics, state, error = None, "broken", "metrics.json is missing or unreadable"
        if metrics is not None and not weights_present(run_dir, config.get("mode")):
            state, error = "broken", "the model weights are missing"
        elif metrics is not None and (damage := damaged_weights(run_dir, config.get("mode"))):
            state, error = "broken", damage
    model_info, created = config.get("model"), config.get("created")
    model = (model_info.get("name") if isinstance(model_info, dict) else None) or \
        ("tfidf-logreg" if config.get("mode") == "baseline" else None)
    if isinstance(created, bool) or not isinstance(created, (int, float)):  # sorting needs a number
        created = run_dir.stat().st_mtime
    return RunInfo(id=run_dir.name, path=run_dir, mode=config.get("mode"), model=model,
                   status=state, created=created, config=config, metrics=metrics, error=error)


def list_runs(runs_dir: str | os.PathLike = "checkpoints") -> list[RunInfo]:
    """All runs, newest first. Folders that are not runs (no valid id) are ignored."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and RUN_ID_RE.match(p.name)]
    except OSError as exc:
        raise RunError(f"cannot read the runs folder {root} ({exc.strerror or exc})") from None
    runs = []
    for folder in folders:
        try:
            runs.append(load_run(folder))
        except FileNotFoundError:
            if folder.exists():
                raise
            # deleted since the folder was listed (from another tab, or the CLI): not a run any more
    return sorted(runs, key=lambda r: r.created, reverse=True)


def delete_run(runs_dir: str | os.PathLike, run_id: str) -> None:
    path = run_path(runs_dir, run_id)
    if not path.is_dir():
        raise RunError(f"unknown run: {run_id}")
    if read_status(path).get("status") == "running":
        raise RunError(f"run {run_id} is still training: cancel it first")
    shutil.rmtree(path)


# ---------------------------------------------------------------------------- one job at a time

LOCK_TRIES = 20  # 10 ms apart: a poller's shared lock lasts microseconds


@contextmanager
def training_lock(runs_dir: str | os.PathLike):
    """An exclusive lock on the runs folder, held for the whole training process.

    flock is released by the kernel when the process dies, even by kill -9, so a crash never leaves
    the lock stuck. The holder's run id is written in the file so others can name it.
    """
    root = Path(runs_dir)
    f = _open_in_runs_dir(root, LOCK_NAME)
    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            # running_job's shared lock, held for a moment by a page polling for the job, collides too: only a
            # lock still held after a few tries is another job's
            if attempt == LOCK_TRIES - 1 or running_job(runs_dir) is not None:
                f.close()
                holder = running_job(runs_dir)
                raise RunError(f"another training job is running: {holder or 'unknown run'}") from None
            time.sleep(0.01)
    set_lock_holder(f, "")  # the previous holder's run id is stale from here on
    try:
        yield f
    finally:
        f.close()


def _open_in_runs_dir(root: Path, name: str):
    """Open (creating) a file in the runs folder; an unusable folder is one clear error, not a traceback."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        return open(root / name, "a+")
    except OSError as exc:
        raise RunError(f"the runs folder {root} is not writable ({exc.strerror or exc}); choose another with "
                       f"--runs-dir") from None


def set_lock_holder(lock_file, run_id: str, position: tuple[int, int] = (1, 1)) -> None:
    """Name the run the job trains now, its place in the job's plan (run 2 of 3: counting run folders instead
    miscounted once one was deleted mid-plan) and the job's process (after it ended, the app tells its own job's
    last position from that of a later CLI job's)."""
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"{run_id}\n{position[0]} {position[1]} {os.getpid()}" if run_id else "")
    lock_file.flush()


@dataclass
class LockPosition:
    """What the lock names: the run, its place in its job's plan, and the job's process id (None: an older job's)."""
    run_id: str
    index: int = 1
    count: int = 1
    pid: int | None = None


def _parse_lock(text: str) -> LockPosition:
    run_id, _, rest = text.partition("\n")
    numbers = rest.split()
    try:
        index, count = int(numbers[0]), int(numbers[1])
        pid = int(numbers[2]) if len(numbers) > 2 else None
    except (IndexError, ValueError):  # "starting" (nothing named yet), or a job of a version that named the run only
        return LockPosition(run_id.strip() or "starting")
    return LockPosition(run_id.strip() or "starting", index, count, pid)


def running_position(runs_dir: str | os.PathLike) -> LockPosition | None:
    """The running job's run ("starting" before it names one) and place in its plan, from one read of the lock;
    None when no job runs."""
    path = Path(runs_dir) / LOCK_NAME
    try:
        f = open(path)  # flock needs no write access, so a read-only results folder can still be browsed
    except OSError:  # missing (no job ever ran here) or unreadable: no job this process could see
        return None
    with f:
        try:  # shared: enough to collide with the trainer's exclusive lock, and allowed on a read-only file (NFS)
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read()
            if not text:  # read between the trainer's truncate and its write, perhaps: once more
                time.sleep(0.01)
                f.seek(0)
                text = f.read()
            return _parse_lock(text)
        except OSError:  # a file system without flock: no job this process can see
            return None
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


def running_job(runs_dir: str | os.PathLike) -> str | None:
    """The run id of the training job holding the lock, "starting" before it names one, or None when no job runs."""
    position = running_position(runs_dir)
    return position.run_id if position else None


def lock_position(runs_dir: str | os.PathLike) -> LockPosition | None:
    """What the lock names, read without it: after the job ended, where it had got to, until the next job starts.
    None when it names no run."""
    try:
        position = _parse_lock((Path(runs_dir) / LOCK_NAME).read_text())
    except OSError:
        return None
    return position if position.run_id != "starting" else None
