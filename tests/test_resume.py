"""`core resume`: a run that stopped goes on from its saved training state and ends exactly as it would have."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ctrl_c_at_evaluations, make_messages, write_uci
from core.config import TrainConfig
from core.predict import Predictor
from core.runs import (RunError, checkpoint_info, checkpoints, list_runs, load_run, read_history, request_cancel,
                       resumable, saved_state)
from core.train import resume_stopped, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
# one validation per epoch (12 steps of 8 messages), so the periodic saves fall at epochs' ends; SIGTERM saves
# mid-epoch: between them both ways of taking up the data order and random state are covered. One pass an epoch: a
# resume of an epoch of several passes is tested on its own
SETTINGS = {"mode": "finetune", "epochs": 20, "batch_size": 8, "evals_per_epoch": 1, "save_state_every": 0,
            "min_epoch_steps": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_uci(tmp_path_factory.mktemp("resume") / "sms.txt", make_messages())


def _config(runs_dir: Path, data: Path, tiny_bert: str) -> TrainConfig:
    return TrainConfig(data=str(data), model=tiny_bert, runs_dir=str(runs_dir), **SETTINGS)


def _train_cli(runs_dir: Path, data: Path, tiny_bert: str) -> subprocess.Popen:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()]
    return subprocess.Popen([sys.executable, "-m", "core", "train", *flags, "--data", str(data), "--model", tiny_bert,
                             "--runs-dir", str(runs_dir)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data, tiny_bert) -> Path:
    """The same run trained to its end without a stop: what every resumed run must reproduce."""
    return train(_config(tmp_path_factory.mktemp("whole") / "runs", data, tiny_bert))


def _stop_when(runs_dir: Path, proc: subprocess.Popen, signum, ready) -> Path:
    """Send `signum` once the run's history satisfies `ready`; the run folder."""
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = list_runs(runs_dir)
        if runs and ready(read_history(runs[0].path)):
            proc.send_signal(signum)
            proc.communicate(timeout=120)
            return runs[0].path
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.02)
    raise AssertionError("the run never got there")


def _resume_cli(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "resume", "--run", str(run_dir)], cwd=ROOT,
                          capture_output=True, text=True, env=ENV, timeout=300)


def _losses(run_dir: Path) -> list:
    return [(e["event"], e["step"], e["loss"]) for e in read_history(run_dir) if e["event"] in ("train", "eval")]


def _assert_same_run(resumed: Path, whole: Path) -> None:
    a, b = load_run(resumed).metrics, load_run(whole).metrics
    assert [p["spam_probability"] for p in a["predictions"]] == [p["spam_probability"] for p in b["predictions"]]
    assert a["test"] == b["test"] and a["validation"] == b["validation"]
    assert (a["best_step"], a["steps"]) == (b["best_step"], b["steps"]) and "stopped" not in a
    assert _losses(resumed) == _losses(whole)  # every training and validation loss, step for step, none twice
    # the time spent validating carries over a stop too (time estimates use it): every validation counted once
    evals = sum(e["event"] == "eval" for e in read_history(resumed))
    n_validation = load_run(resumed).config["data_info"]["splits"]["validation"]["rows"]
    assert a["validation_seconds"] * a["validation_messages_per_second"] == pytest.approx(evals * n_validation)


def test_a_killed_run_resumes_to_exactly_the_result_it_would_have_had(tmp_path, data, tiny_bert, uninterrupted):
    runs_dir = tmp_path / "runs"
    proc = _train_cli(runs_dir, data, tiny_bert)

    def some_steps_after_a_saved_state(events):  # so there is training to lose, and to do again
        saved = [e["step"] for e in events if e["event"] == "state_saved" and e["step"] >= 36]
        return bool(saved) and max(e["step"] for e in events if e["event"] == "train") >= saved[-1] + 4
    run_dir = _stop_when(runs_dir, proc, signal.SIGKILL, some_steps_after_a_saved_state)
    state = saved_state(run_dir)
    assert load_run(run_dir).status == "interrupted" and state["step"] % 12 == 0  # at an epoch's end
    assert max(s for _, s, _ in _losses(run_dir)) > state["step"]

    done = _resume_cli(run_dir)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == str(run_dir), done.stderr[-2000:]
    run = load_run(run_dir)
    assert run.status == "completed" and run.usable
    assert run.metrics["resumed"] == [{"from_step": state["step"], "after": "interrupted"}]
    assert not list(run_dir.glob("resume-*")) and not checkpoints(run_dir)  # nothing left to resume or finish
    _assert_same_run(run_dir, uninterrupted)
    [resumed] = [e for e in read_history(run_dir) if e["event"] == "resumed"]
    assert resumed["step"] == state["step"]
    listed = subprocess.run([sys.executable, "-m", "core", "runs", "--runs-dir", str(runs_dir)], cwd=ROOT,
                            capture_output=True, text=True, env=ENV, timeout=60).stdout
    assert f"resumed at step {state['step']} after it was interrupted" in listed
    # the weights saved are the ones tested
    predictions = run.metrics["predictions"]
    assert np.allclose(Predictor.load(run_dir).predict([p["text"] for p in predictions]),
                       [p["spam_probability"] for p in predictions], atol=2e-2)
    with pytest.raises(RunError, match="cannot be resumed: it has already completed"):
        resumable(run_dir)


# SIGTERM: a timeout, docker stop, a scheduler's preemption; SIGINT: Ctrl-C on the terminal
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stop_signal_saves_the_state_at_its_very_step_and_a_resume_ends_the_same(tmp_path, data, tiny_bert,
                                                                                  uninterrupted, monkeypatch, caplog,
                                                                                  request, signum):
    import core.train
    cancel_requested, checks = core.train.cancel_requested, []

    def signal_during_step_41(run_dir):  # read before the first step, then once a step: the signal is real, this
        checks.append(1)                  # only picks its moment
        if len(checks) == 1 + 41:
            os.kill(os.getpid(), signum)
        return cancel_requested(run_dir)
    monkeypatch.setattr(core.train, "cancel_requested", signal_during_step_41)
    # Ctrl-C live, as in a terminal: a process started in the background from a script inherits it ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    run_dir = train(_config(tmp_path / "runs", data, tiny_bert))
    monkeypatch.setattr(core.train, "cancel_requested", cancel_requested)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # put back after the run
    if signum == signal.SIGINT:  # a Ctrl-C no longer lands mid-step as a KeyboardInterrupt: the run says it stops
        assert ("stopping at the next step (of training, or of encoding in frozen mode), keeping the work so far "
                "(Ctrl-C again stops at once)") in caplog.text
    state = saved_state(run_dir)
    assert load_run(run_dir).status == "cancelled"
    assert not (run_dir / "cancel").exists()  # else the resume would stop at once, and discard the state
    # saved at the step it stopped at, mid-epoch: the data order and random state are taken up inside an epoch
    assert state["step"] == max(s for _, s, _ in _losses(run_dir)) == 42
    if signum == signal.SIGINT:  # the same state as SIGTERM's, at the same step: its resume is tested once, below
        return

    (run_dir / "finish").touch()  # a request the stopped process never read: not meant for the resumed one
    done = _resume_cli(run_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_run(run_dir).metrics["resumed"] == [{"from_step": 42, "after": "cancelled"}]
    _assert_same_run(run_dir, uninterrupted)


def test_a_cancel_left_for_a_killed_run_is_not_read_by_its_resume(tmp_path, data, tiny_bert):
    """The app's Cancel pressed just as the machine went down leaves a `cancel` file the dead process never read. A
    later resume is a new decision: it must drop that request and train to its end, not stop at its first step."""
    runs_dir = tmp_path / "runs"
    proc = _train_cli(runs_dir, data, tiny_bert)
    run_dir = _stop_when(runs_dir, proc, signal.SIGKILL,
                         lambda events: any(e["event"] == "state_saved" for e in events))
    assert load_run(run_dir).status == "interrupted" and saved_state(run_dir)
    request_cancel(run_dir)  # never read: the process was killed
    resume_stopped(run_dir)
    run = load_run(run_dir)
    assert run.status == "completed" and run.usable and not (run_dir / "cancel").exists()
    assert run.metrics["steps"] == 20 * 12  # every epoch it was set for


def test_rolling_back_to_a_saved_state_keeps_its_own_state_saved_event(tmp_path):
    """A resume cuts the history back to the state it goes on from: the events after it are trained again, but the
    `state_saved` event of that very step stays: the live page names the step a dead process can be resumed from by
    it, and without it told an older state's step (or none) until the resume saved a state of its own."""
    from core.runs import EventLog, save_checkpoint
    from core.train import _roll_back
    run_dir = tmp_path / "20260101-000000-finetune-abcd"
    run_dir.mkdir()
    events = EventLog(run_dir / "history.jsonl")
    for event, step in [("start", None), ("train", 10), ("state_saved", 10), ("train", 20), ("state_saved", 20),
                        ("train", 24), ("eval", 24), ("checkpoint", 24)]:
        events.emit(event, **({"step": step} if step is not None else {}))
    events.close()
    save_checkpoint(run_dir, 24, lambda folder: (folder / "model.safetensors").write_text("step 24"))
    best = run_dir / "resume-20" / "best"
    best.mkdir(parents=True)
    (best / "model.safetensors").write_text("step 12")
    _roll_back(run_dir, {"step": 20, "best": {"step": 12}, "folder": run_dir / "resume-20"})
    assert [(e["event"], e.get("step")) for e in read_history(run_dir)] == [
        ("start", None), ("train", 10), ("state_saved", 10), ("train", 20), ("state_saved", 20)]
    # the state's best weights are put back, and the newer best stays until the resume saves its own
    assert [p.name for p in checkpoints(run_dir)] == ["checkpoint-12", "checkpoint-24"]
    assert (run_dir / "checkpoint-12" / "model.safetensors").read_text() == "step 12"


def test_a_frozen_run_resumes_after_ctrl_c_to_the_same_result(tmp_path, data, tiny_bert, monkeypatch):
    import core.train

    cfg = TrainConfig(mode="frozen", data=str(data), model=tiny_bert, runs_dir=str(tmp_path / "runs"),
                      cache_dir=str(tmp_path / "cache"), epochs=12, batch_size=8, save_state_every=0)
    whole = train(cfg)
    evaluate = ctrl_c_at_evaluations(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(core.train, "_evaluate", evaluate)
    [run_dir] = [r.path for r in list_runs(tmp_path / "runs") if r.path != whole]
    assert load_run(run_dir).status == "cancelled" and saved_state(run_dir)["step"] < 7 * 12

    resume_stopped(run_dir)
    assert load_run(run_dir).status == "completed"
    _assert_same_run(run_dir, whole)


@pytest.mark.parametrize("passes", [2, 1], ids=["several-passes-an-epoch", "recorded-before-min-epoch-steps"])
def test_an_epoch_of_several_passes_resumes_to_the_same_result_and_an_older_run_with_one(tmp_path, data, tiny_bert,
                                                                                          monkeypatch, passes):
    # 12 batches of 8 a pass: 2 passes make an epoch of at least 24 steps; a run recorded before min_epoch_steps
    # went over its messages once an epoch, and must go on so
    cfg = dataclasses.replace(_config(tmp_path / "runs", data, tiny_bert), epochs=2,
                              min_epoch_steps=24 if passes > 1 else 0)
    whole = train(cfg)
    assert load_run(whole).metrics["steps"] == 2 * 12 * passes
    ctrl_c_at_evaluations(monkeypatch, 2)  # Ctrl-C as it validates after its second epoch
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.undo()
    [run_dir] = [r.path for r in list_runs(tmp_path / "runs") if r.path != whole]
    assert saved_state(run_dir)["step"] == 12 * passes  # the state saved after the first epoch's validation
    if passes == 1:
        config = json.loads((run_dir / "config.json").read_text())
        (run_dir / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "min_epoch_steps"}))
    resume_stopped(run_dir)
    assert load_run(run_dir).status == "completed"
    _assert_same_run(run_dir, whole)


def test_a_run_cancelled_from_the_app_cannot_be_resumed(tmp_path, data, tiny_bert):
    runs_dir = tmp_path / "runs"
    proc = _train_cli(runs_dir, data, tiny_bert)
    deadline = time.time() + 120
    while not (runs := list_runs(runs_dir)) or not saved_state(runs[0].path):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    request_cancel(runs[0].path)  # the app's Cancel discards the run's weights and its training state
    proc.communicate(timeout=120)
    with pytest.raises(RunError, match="saved no training state"):
        resumable(runs[0].path)
    done = _resume_cli(runs[0].path)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {runs[0].id} saved no training state")
    assert json.loads((runs[0].path / "status.json").read_text())["status"] == "cancelled"


# a `python -m core` process that kills itself (SIGKILL: the machine goes down) at an awkward moment
KILLER = """
import os, re, shutil, signal, sys
from pathlib import Path
when, pattern, nth = sys.argv[1], re.compile(sys.argv[2]), int(sys.argv[3])
rmtree, rename, seen = shutil.rmtree, Path.rename, []

def die_on_the_nth(path):
    if pattern.match(Path(path).name):
        seen.append(path)
        if len(seen) == nth:
            os.kill(os.getpid(), signal.SIGKILL)

def killing_rmtree(path, *args, **kwargs):  # killed before this folder is removed
    if when == "rmtree":
        die_on_the_nth(path)
    return rmtree(path, *args, **kwargs)

def killing_rename(self, target):  # killed right after this rename
    renamed = rename(self, target)
    if when == "rename":
        die_on_the_nth(target)
    return renamed
def killing_link(src, dst, *args, **kwargs):  # killed before this file is linked into its folder
    if when == "link":
        die_on_the_nth(Path(dst).parent)
    return link(src, dst, *args, **kwargs)
link = os.link
shutil.rmtree, Path.rename, os.link = killing_rmtree, killing_rename, killing_link
from core.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _killed(when: str, pattern: str, nth: int, *argv) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", KILLER, when, pattern, str(nth), *argv], cwd=ROOT,
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    return done


def _train_argv(runs_dir: Path, data: Path, tiny_bert: str) -> list:
    return ["train", *[f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()], "--data", str(data),
            "--model", tiny_bert, "--runs-dir", str(runs_dir)]


def test_killed_while_an_older_state_is_removed_the_newer_one_resumes(tmp_path, data, tiny_bert, uninterrupted):
    # the second save removes the first state: killed there, the first is half gone and the second complete
    _killed("rmtree", r"resume-\d+$", 1, *_train_argv(tmp_path / "runs", data, tiny_bert))
    [run] = list_runs(tmp_path / "runs")
    states = sorted(run.path.glob("resume-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(states) == 2 and not (states[0] / "state.json").exists()  # its completeness mark goes first
    assert saved_state(run.path)["folder"] == states[1]
    done = _resume_cli(run.path)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_run(run.path, uninterrupted)


def test_killed_as_training_ends_or_as_a_finish_saves_the_run_is_finished_not_resumed(tmp_path, data, tiny_bert,
                                                                                     uninterrupted):
    # the best checkpoint has just become model/, the metrics are not written yet
    _killed("rename", r"model$", 1, *_train_argv(tmp_path / "runs", data, tiny_bert))
    [run] = list_runs(tmp_path / "runs")
    assert run.status == "interrupted" and saved_state(run.path) is None  # the states went before the rename
    with pytest.raises(RunError, match="its best weights were moved to model/ already"):
        resumable(run.path)
    # its weights are in model/ but were never tested: not served until it is finished
    with pytest.raises(RunError, match=r"did not complete \(interrupted\), so its saved weights are untested"):
        Predictor.load(run.path)
    done = subprocess.run([sys.executable, "-m", "core", "finish", "--run", str(run.path)], cwd=ROOT,
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Predictor.load(run.path).predict(["free prize"]).shape == (1,)
    finished, whole = load_run(run.path).metrics, load_run(uninterrupted).metrics
    assert finished["test"] == whole["test"] and finished["best_step"] == whole["best_step"]


def test_a_finish_killed_after_its_rename_leaves_no_state_to_resume_with_stale_weights(tmp_path, data, tiny_bert):
    runs_dir = tmp_path / "runs"
    proc = _train_cli(runs_dir, data, tiny_bert)
    run_dir = _stop_when(runs_dir, proc, signal.SIGKILL, lambda events: any(
        e["event"] == "state_saved" and e["step"] >= 36 for e in events))
    assert saved_state(run_dir)
    _killed("rename", r"model$", 1, "finish", "--run", str(run_dir))
    assert (run_dir / "model").is_dir() and saved_state(run_dir) is None
    with pytest.raises(RunError, match="its best weights were moved to model/ already"):
        resumable(run_dir)
    done = subprocess.run([sys.executable, "-m", "core", "finish", "--run", str(run_dir)], cwd=ROOT,
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0 and load_run(run_dir).usable, done.stderr[-2000:]


def test_a_run_stopped_twice_and_then_finished_counts_only_the_time_it_ran(tmp_path, data, tiny_bert, monkeypatch):
    import core.train
    ctrl_c_at_evaluations(monkeypatch, 4, 8)
    cfg = _config(tmp_path / "runs", data, tiny_bert)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    [run_dir] = [r.path for r in list_runs(tmp_path / "runs")]
    first = saved_state(run_dir)["step"]
    time.sleep(3)  # it sits stopped
    with pytest.raises(KeyboardInterrupt):
        resume_stopped(run_dir)
    time.sleep(3)
    monkeypatch.undo()
    core.train.finish_stopped(run_dir)
    metrics = load_run(run_dir).metrics
    assert metrics["resumed"] == [{"from_step": first, "after": "cancelled"}]
    events = read_history(run_dir)
    ran = events[-1]["time"] - json.loads((run_dir / "config.json").read_text())["created"]
    assert metrics["total_seconds"] < ran - 5.5  # the 6 s it sat stopped are not counted
    assert 0 < metrics["train_seconds"] < metrics["total_seconds"]


def test_after_a_failed_finish_a_resumed_run_can_still_be_asked_to_finish(tmp_path, data, tiny_bert, monkeypatch):
    import core.train
    from core.cli import main
    from core.runs import set_status

    evaluate = ctrl_c_at_evaluations(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path / "runs", data, tiny_bert))
    [run_dir] = [r.path for r in list_runs(tmp_path / "runs")]
    # what a `core finish` that failed leaves in status.json (it marks the run as being finished while it runs)
    set_status(run_dir, "failed", error="finishing from the saved weights failed: disk full",
               stopped={"status": "cancelled"})
    answers = []

    def finish_from_the_cli_while_it_trains(*args):
        if not answers:
            answers.append(main(["finish", "--run", str(run_dir)]))
        return evaluate(*args)
    monkeypatch.setattr(core.train, "_evaluate", finish_from_the_cli_while_it_trains)
    resume_stopped(run_dir)
    metrics = load_run(run_dir).metrics
    assert answers == [0] and metrics["stopped"]["status"] == "asked"  # asked to finish, not refused
    assert metrics["resumed"][0]["after"] == "failed"


def test_an_ignored_ctrl_c_stays_ignored_while_training():
    """`python -m core train … &` from a script starts with SIGINT ignored; training must not turn it back on."""
    from core.train import _install_stop_signals

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop, restore = _install_stop_signals()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        restore()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and not stop["requested"]
    finally:
        signal.signal(signal.SIGINT, previous)


# with patience (a frozen head, as test_train's early stopping test trains it), early stopping ends it: its last
# validation is not at its last step
@pytest.mark.parametrize("settings", [{"epochs": 4}, {"mode": "frozen", "epochs": 200, "patience": 2, "lr": 0.05}])
def test_a_run_stopped_while_it_tested_is_finished_as_one_that_trained_to_its_end(tmp_path, data, tiny_bert,
                                                                                 monkeypatch, settings):
    """Ctrl-C (or a kill) after the last validation, or after early stopping, while the best weights are tested:
    finishing them gives the uninterrupted run's results, and it reads as trained to its end, with why it stopped."""
    import dataclasses

    import core.train
    from core.runs import stopped_note
    from views.common import trained_to_end

    config = TrainConfig(data=str(data), model=tiny_bert, runs_dir=str(tmp_path / "whole"),
                         cache_dir=str(tmp_path / "cache"), **{**SETTINGS, **settings})
    whole = load_run(train(config))
    validations = sum(e.get("event") == "eval" for e in read_history(whole.path))
    assert any(e.get("event") == "early_stop" for e in read_history(whole.path)) == ("patience" in settings)
    ctrl_c_at_evaluations(monkeypatch, validations + 1)  # the next evaluation is the test
    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(config, runs_dir=str(tmp_path / "stopped")))
    [stopped] = list_runs(tmp_path / "stopped")
    monkeypatch.undo()
    finished = load_run(core.train.finish_stopped(stopped.path))
    assert finished.metrics["test"]["confusion_matrix"] == whole.metrics["test"]["confusion_matrix"]
    assert finished.metrics["best_step"] == whole.metrics["best_step"]
    assert finished.metrics["stopped"]["trained_to_end"] and trained_to_end(finished)  # a default on the pages
    note = stopped_note(finished.metrics["stopped"])
    assert note.startswith("trained to its end, then stopped before it completed (")


def _stopped_at_step_31_with_its_best_at_24(tmp_path, data, tiny_bert, monkeypatch, request) -> Path:
    """A run SIGTERMed during step 30 that saves its training state only then: state 31, best weights of step 24
    (each validation here, every 12 steps, is a new best)."""
    import core.train
    cancel_requested, checks = core.train.cancel_requested, []

    def sigterm_during_step_30(run_dir):  # read before the first step, then once a step
        checks.append(1)
        if len(checks) == 1 + 30:
            os.kill(os.getpid(), signal.SIGTERM)
        return cancel_requested(run_dir)
    monkeypatch.setattr(core.train, "cancel_requested", sigterm_during_step_30)
    handler = signal.getsignal(signal.SIGTERM)
    request.addfinalizer(lambda: signal.signal(signal.SIGTERM, handler))
    run_dir = train(dataclasses.replace(_config(tmp_path / "runs", data, tiny_bert), save_state_every=3600))
    monkeypatch.setattr(core.train, "cancel_requested", cancel_requested)
    assert saved_state(run_dir)["step"] == 31 and [p.name for p in checkpoints(run_dir)] == ["checkpoint-24"]
    return run_dir


def test_a_resume_killed_while_it_puts_back_the_best_weights_can_be_resumed_again(tmp_path, data, tiny_bert,
                                                                                uninterrupted, monkeypatch, request):
    # a resume copies the state's best weights back as their checkpoint; killed mid-copy, the half-copied folder was
    # taken for a whole one: every later resume failed ("No such file ... model.safetensors"), and a finish
    # refused the run, though its state still held those weights
    run_dir = _stopped_at_step_31_with_its_best_at_24(tmp_path, data, tiny_bert, monkeypatch, request)
    # resumed, and killed as its second new best is saved (before the next state save): checkpoint-24 is gone
    _killed("rename", r"checkpoint-\d+$", 2, "resume", "--run", str(run_dir))
    assert [p.name for p in checkpoints(run_dir)] == ["checkpoint-36", "checkpoint-48"]
    assert saved_state(run_dir)["step"] == 31
    _killed("link", r"checkpoint-24(\.tmp)?$", 2, "resume", "--run", str(run_dir))  # one file of the copy made
    assert not (run_dir / "checkpoint-24").exists()  # not half there
    done = _resume_cli(run_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_run(run_dir, uninterrupted)
    assert not list(run_dir.glob("*.tmp"))


def _resume_cancelled_while_loading(run_dir: Path, monkeypatch) -> None:
    """Resume the run and press the app's Cancel as it loads: it is "running" again, and has no model yet."""
    import core.train
    accelerator = core.train._accelerator

    def cancelled_while_loading(cfg):
        assert load_run(run_dir).status == "running"
        request_cancel(run_dir)
        return accelerator(cfg)
    monkeypatch.setattr(core.train, "_accelerator", cancelled_while_loading)
    resume_stopped(run_dir)
    monkeypatch.setattr(core.train, "_accelerator", accelerator)
    assert load_run(run_dir).status == "cancelled"


def test_a_cancel_while_a_resume_loads_trains_no_step_and_keeps_the_run_resumable(tmp_path, data, tiny_bert,
                                                                                  uninterrupted, monkeypatch, request):
    # the app's Cancel during a resume's loading let it train a step, then discarded every checkpoint and state the
    # run had saved before the resume: hours of training gone, and nothing left to resume or finish
    run_dir = _stopped_at_step_31_with_its_best_at_24(tmp_path, data, tiny_bert, monkeypatch, request)
    _resume_cancelled_while_loading(run_dir, monkeypatch)
    assert max(s for _, s, _ in _losses(run_dir)) == 31  # not one step more
    assert saved_state(run_dir)["step"] == 31 and [p.name for p in checkpoints(run_dir)] == ["checkpoint-24"]
    # finished instead (a copy), it records no resumed stretch: that resume trained nothing
    import shutil

    from core.train import finish_stopped
    copy = Path(shutil.copytree(run_dir, tmp_path / "copy" / run_dir.name))
    finish_stopped(copy)
    assert load_run(copy).status == "completed" and "resumed" not in load_run(copy).metrics
    resume_stopped(run_dir)  # still resumable, to the very end it would have reached
    _assert_same_run(run_dir, uninterrupted)


def test_a_diverged_run_is_not_offered_a_resume_that_would_diverge_again(tmp_path, data, tiny_bert, monkeypatch):
    # the loss became NaN in the update of step 36, a validation step: the metrics refused the NaN probabilities
    # ("expected probabilities in [0, 1]"), the run read as failed with no word of divergence, and Resume was
    # offered, which replays the same batches and random state into the same NaN
    import torch
    step, updates = torch.optim.AdamW.step, []

    def diverging_step(self, *args, **kwargs):  # the real update; at the 36th, the weights blow up as a too-high
        out = step(self, *args, **kwargs)       # learning rate makes them
        updates.append(1)
        if len(updates) == 36:
            with torch.no_grad():
                for group in self.param_groups:
                    for param in group["params"]:
                        param.fill_(float("nan"))
        return out
    monkeypatch.setattr(torch.optim.AdamW, "step", diverging_step)
    with pytest.raises(ValueError, match=r"^the validation loss became nan at step 36; try a lower learning rate$"):
        train(_config(tmp_path / "runs", data, tiny_bert))
    monkeypatch.undo()
    [run] = list_runs(tmp_path / "runs")
    assert run.status == "failed" and run.error.startswith("the validation loss became nan at step 36")
    assert saved_state(run.path)["step"] < 36  # a state was saved, but resuming it would diverge again
    with pytest.raises(RunError, match=r"cannot be resumed: its training diverged \(the validation loss became nan "
                                       r"at step 36; .*\), and a resume repeats the very same steps, so it would "
                                       r"diverge again; `finish` tests its best weights so far"):
        resumable(run.path)
    from core.train import finish_stopped
    finish_stopped(run.path)  # what is left to do: test the best weights before it diverged
    assert load_run(run.path).status == "completed" and load_run(run.path).metrics["best_step"] == 24


def test_cancelling_a_resume_saves_its_state_at_the_step_it_stops(tmp_path, data, tiny_bert, uninterrupted,
                                                                  monkeypatch, request):
    # the app's Cancel of a resume kept the state it resumed from: the steps trained since (up to a minute's, between
    # periodic saves) were lost, where a SIGTERM saves at its step
    import core.train
    run_dir = _stopped_at_step_31_with_its_best_at_24(tmp_path, data, tiny_bert, monkeypatch, request)
    cancel_requested, checks = core.train.cancel_requested, []

    def cancelled_during_step_41(run):  # read once as the resume loads, then once a step
        checks.append(1)
        if len(checks) == 1 + 10:
            request_cancel(run)
        return cancel_requested(run)
    monkeypatch.setattr(core.train, "cancel_requested", cancelled_during_step_41)
    resume_stopped(run_dir)
    monkeypatch.setattr(core.train, "cancel_requested", cancel_requested)
    assert load_run(run_dir).status == "cancelled"
    assert saved_state(run_dir)["step"] == max(s for _, s, _ in _losses(run_dir)) == 41  # not 31
    assert [p.name for p in checkpoints(run_dir)] == ["checkpoint-36"]  # its best so far
    resume_stopped(run_dir)
    _assert_same_run(run_dir, uninterrupted)
    assert load_run(run_dir).metrics["resumed"] == [{"from_step": 31, "after": "cancelled"},
                                                     {"from_step": 41, "after": "cancelled"}]


def test_a_resume_stopped_before_its_own_best_keeps_the_best_weights_saved_after_the_state(
        tmp_path, data, tiny_bert, monkeypatch, request):
    # the run validated new bests at steps 36 and 48 after its state of step 31; a resume dropped them as it began,
    # so when it was cancelled before step 36 the run could only be finished with the older weights of step 24
    import core.train
    from core.train import finish_stopped
    run_dir = _stopped_at_step_31_with_its_best_at_24(tmp_path, data, tiny_bert, monkeypatch, request)
    _killed("rename", r"checkpoint-\d+$", 2, "resume", "--run", str(run_dir))  # as it saves its second new best
    assert saved_state(run_dir)["step"] == 31
    assert [p.name for p in checkpoints(run_dir)] == ["checkpoint-36", "checkpoint-48"]
    _resume_cancelled_while_loading(run_dir, monkeypatch)
    assert [p.name for p in checkpoints(run_dir)] == ["checkpoint-24", "checkpoint-36", "checkpoint-48"]
    import shutil
    copy = Path(shutil.copytree(run_dir, tmp_path / "copy" / run_dir.name))
    finish_stopped(copy)
    metrics = load_run(copy).metrics
    assert metrics["best_step"] == 48 and metrics["stopped"]["weights_from_step"] == 48

    # resumed again and finished on request at its first step, before a new best of its own (every validation made
    # worse here): it tests the best weights of its own training, step 24's, and those are the ones it keeps; the
    # newest checkpoint, step 48's, became the run's model while its metrics were step 24's
    evaluate, finish_requested = core.train._evaluate, core.train.finish_requested
    monkeypatch.setattr(core.train, "_evaluate", lambda *a, **k: {**(r := evaluate(*a, **k)), "loss": r["loss"] + 99})
    monkeypatch.setattr(core.train, "finish_requested", lambda run: True)
    resume_stopped(run_dir)
    monkeypatch.setattr(core.train, "_evaluate", evaluate)
    monkeypatch.setattr(core.train, "finish_requested", finish_requested)
    metrics = load_run(run_dir).metrics
    assert load_run(run_dir).status == "completed" and metrics["best_step"] == 24
    assert checkpoint_info(run_dir / "model")["step"] == 24 and not checkpoints(run_dir)


def test_a_resume_cancelled_through_the_cli_exits_1_and_can_be_resumed_again(tmp_path, data, tiny_bert, monkeypatch,
                                                                              capsys):
    # a script chaining `core resume && core export` must not go on with a run that did not complete
    import core.train
    from core.cli import main
    cfg = TrainConfig(mode="frozen", data=str(data), model=tiny_bert, runs_dir=str(tmp_path / "runs"),
                      cache_dir=str(tmp_path / "cache"), epochs=6, batch_size=8, save_state_every=0)
    evaluate = ctrl_c_at_evaluations(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    [run] = list_runs(tmp_path / "runs")
    assert run.status == "cancelled" and saved_state(run.path)

    def cancelled_from_the_app(*args):  # the app's Cancel, pressed while the resumed run validates
        request_cancel(run.path)
        return evaluate(*args)
    monkeypatch.setattr(core.train, "_evaluate", cancelled_from_the_app)
    assert main(["resume", "--run", str(run.path)]) == 1
    assert capsys.readouterr().out.strip() == str(run.path)
    assert load_run(run.path).status == "cancelled"
    resumable(run.path)  # a resume's Cancel keeps the state it went on from


def test_a_run_folder_moved_while_it_trains_is_not_made_again(tmp_path, data, tiny_bert):
    """`mv` on a run folder mid-training: the job had made the old folder again for its next checkpoint, and ended
    with its model and metrics there, under no config.json (a "broken" run), and the moved folder read as a run
    that kept nothing. It stops at its next save instead, says why, and the moved folder is finished from there."""
    from core.runs import finishable
    runs_dir = tmp_path / "runs"
    proc = _train_cli(runs_dir, data, tiny_bert)
    deadline = time.time() + 120
    while not ((runs := list_runs(runs_dir)) and any(e["event"] == "checkpoint" for e in read_history(runs[0].path))):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.02)
    run = list_runs(runs_dir)[0].path
    moved = run.rename(tmp_path / run.name)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and not run.exists()
    assert err.strip().splitlines()[-1] == (
        f"error: the run folder {run} was moved or deleted while it trained, so the training stopped; where it was "
        "moved, `python -m core finish --run <its new place>` tests its last checkpoint")
    assert read_history(moved)[-1]["event"] == "end" and load_run(moved).status == "interrupted"
    assert finishable(moved)[1].name.startswith("checkpoint-")
