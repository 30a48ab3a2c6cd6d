"""The run store: atomic writes, ids, status of dead processes, broken runs, the one-job lock; config checks."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import TrainConfig
from core.runs import (RunError, checkpoints, delete_run, list_runs, read_history, read_status, running_job,
                       save_checkpoint, save_folder_atomic, saved_weights, set_status, training_lock, validate_run_id,
                       write_json_atomic, EventLog)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})  # not serialisable: fails mid-write
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_nan_is_stored_as_null(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"auroc": float("nan"), "xs": [1.0, float("inf")]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"auroc": None, "xs": [1.0, None]}


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 101, "run id", "..", "a\x00b"])
def test_run_ids_cannot_traverse_paths(tmp_path, bad):
    with pytest.raises(RunError, match="invalid run id"):
        validate_run_id(bad)
    with pytest.raises(RunError):
        delete_run(tmp_path, bad)


def test_running_status_of_a_dead_process_reads_as_interrupted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = tmp_path / "r1"
    run.mkdir()
    set_status(run, "running", pid=proc.pid, pid_started=0.0)
    assert read_status(run)["status"] == "interrupted"
    set_status(run, "running")  # this very process: alive
    assert read_status(run)["status"] == "running"


def test_a_live_pid_that_started_at_another_time_is_a_reused_pid_and_reads_as_interrupted(tmp_path):
    """pids are reused: a "running" status whose pid is alive now but started at another time than the one
    recorded is another process, so the run's own is gone."""
    run = tmp_path / "r1"
    run.mkdir()
    set_status(run, "running", pid=os.getpid(), pid_started=1.0)  # a live pid, started in 1970
    assert read_status(run)["status"] == "interrupted"


def test_a_run_killed_mid_save_loses_its_partial_weights_folder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = tmp_path / "r1"
    (run / "model.tmp").mkdir(parents=True)
    (run / "model.tmp" / "model.safetensors").write_bytes(b"half")
    write_json_atomic(run / "config.json", {"mode": "finetune", "created": 1.0})
    set_status(run, "running")  # this process, alive: the writer may still be saving
    assert list_runs(tmp_path)[0].status == "running" and (run / "model.tmp").is_dir()
    set_status(run, "running", pid=proc.pid, pid_started=0.0)  # the writer is gone (kill -9)
    [info] = list_runs(tmp_path)
    assert info.status == "interrupted" and not (run / "model.tmp").exists()


def test_one_complete_checkpoint_is_kept_and_a_partial_one_is_never_taken_for_it(tmp_path):
    def weights(content):
        return lambda folder: (folder / "model.safetensors").write_bytes(content)
    run = tmp_path / "r1"
    run.mkdir()
    assert saved_weights(run, "finetune") is None
    save_checkpoint(run, 4, weights(b"step 4"))
    save_checkpoint(run, 12, weights(b"step 12"))
    assert [p.name for p in checkpoints(run)] == ["checkpoint-12"]  # the older one goes once the new one is complete

    def fail_midway(folder):  # a better model that never finished saving (an error here; kill -9 is the same)
        weights(b"half")(folder)
        raise OSError("disk full")
    with pytest.raises(OSError):
        save_checkpoint(run, 16, fail_midway)
    assert saved_weights(run, "finetune") == run / "checkpoint-12"
    assert (run / "checkpoint-12" / "model.safetensors").read_bytes() == b"step 12"

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (run / "checkpoint-20.tmp").mkdir()  # what kill -9 mid-save leaves
    write_json_atomic(run / "config.json", {"mode": "finetune", "created": 1.0})
    set_status(run, "running")  # records this machine as the writer's
    set_status(run, "running", pid=proc.pid, pid_started=0.0)  # the writer is gone
    assert list_runs(tmp_path)[0].status == "interrupted" and not (run / "checkpoint-20.tmp").exists()
    assert saved_weights(run, "finetune") == run / "checkpoint-12"
    (run / "model").mkdir()  # moved into place, but the run stopped before its metrics: that is what it left
    (run / "model" / "model.safetensors").write_bytes(b"best")
    assert saved_weights(run, "finetune") == run / "model"


def test_checkpoints_go_by_step_number_and_the_newest_is_the_weights_left(tmp_path):
    """A resume leaves an older checkpoint beside its own until it saves one (checkpoint-8 and checkpoint-12):
    ordered as text, checkpoint-12 came before checkpoint-8, and finish would test the older weights."""
    run = tmp_path / "r1"
    run.mkdir()  # a run's folder exists before its checkpoints
    for step in (8, 12):
        save_folder_atomic(run / f"checkpoint-{step}",
                           lambda folder, step=step: (folder / "model.safetensors").write_text(f"step {step}"))
    assert [p.name for p in checkpoints(run)] == ["checkpoint-8", "checkpoint-12"]
    assert saved_weights(run, "finetune") == run / "checkpoint-12"


def test_the_newest_complete_training_state_is_the_one_resumed(tmp_path):
    """Two complete states on disk (killed before the older was removed): a resume goes on from the newer one,
    not back to the older and its lost steps."""
    from core.runs import STATE_INFO, saved_state
    run = tmp_path / "r1"
    run.mkdir()  # a run's folder exists before its checkpoints
    for step in (20, 40):
        save_folder_atomic(run / f"resume-{step}", lambda folder, step=step: write_json_atomic(
            folder / STATE_INFO, {"step": step}))
    assert saved_state(run) == {"step": 40, "folder": run / "resume-40"}
    (run / "resume-40" / STATE_INFO).unlink()  # a state half removed is not whole: the older one is what is left
    assert saved_state(run)["step"] == 20


def test_a_run_interrupted_on_another_machine_is_not_finished_here(tmp_path):
    from core.runs import finishable
    run = tmp_path / "20260101-000000-finetune-aaaa"
    run.mkdir()  # a run's folder exists before its checkpoints
    save_checkpoint(run, 8, lambda folder: (folder / "model.safetensors").write_bytes(b"w"))
    write_json_atomic(run / "config.json", {"mode": "finetune", "created": 1.0, "model": {"name": "m"}})
    # a runs folder shared with another machine: its pid means nothing here, so it reads as interrupted
    set_status(run, "running", pid=2**22 + 7, pid_started=0.0, host="another-machine pid:[1]")
    with pytest.raises(RunError, match="was training on another machine"):
        finishable(run)
    set_status(run, "running")  # this machine's process...
    set_status(run, "running", pid=2**22 + 7, pid_started=0.0)  # ...now gone: finishable here
    assert finishable(run)[1] == run / "checkpoint-8"
    # this machine's name in another pid namespace: a container restarted since. Dead, unless a job holds this
    # runs folder's lock for it (a process training it would); then it may be training in another container
    import socket
    from core.runs import set_lock_holder, training_lock
    set_status(run, "running", pid=2**22 + 7, pid_started=0.0, host=f"{socket.gethostname()} pid:[1]")
    assert finishable(run)[1] == run / "checkpoint-8"
    with training_lock(tmp_path) as lock:
        set_lock_holder(lock, run.name)
        with pytest.raises(RunError, match="was training on another machine"):
            finishable(run)


def test_a_run_that_names_a_machine_gone_for_good_can_be_taken_over(tmp_path, capsys):
    """A container recreated under a new host name, with the runs folder on a volume: the run's status names a
    machine that no longer exists. Once the user says it trains there no more, it is this machine's to finish; it
    had been refused for good, beside an enabled Delete."""
    from core.cli import main
    from core.runs import finishable, take_over, trained_elsewhere
    run = tmp_path / "20260101-000000-finetune-aaaa"
    run.mkdir()  # a run's folder exists before its checkpoints
    save_checkpoint(run, 8, lambda folder: (folder / "model.safetensors").write_bytes(b"w"))
    write_json_atomic(run / "config.json", {"mode": "finetune", "created": 1.0, "model": {"name": "m"}})
    set_status(run, "running", pid=2**22 + 7, pid_started=0.0, host="trainbox-1f2e pid:[1]")
    assert trained_elsewhere(run) == "trainbox-1f2e pid:[1]"
    with pytest.raises(RunError, match=r"take it over here \(--take-over, or \"Take this run over\" on the Runs page"):
        finishable(run)
    assert take_over(run) == "trainbox-1f2e pid:[1]"
    assert trained_elsewhere(run) is None and finishable(run)[1] == run / "checkpoint-8"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["taken_over_from"] == "trainbox-1f2e pid:[1]"
    assert status["error"] == "the training process stopped without finishing (on trainbox-1f2e pid:[1]; taken over here)"
    with pytest.raises(RunError, match="names no other machine"):  # nothing to take over any more
        take_over(run)
    # a job holds this runs folder's lock for it (another container on the same volume, its host name the same):
    # not taken over under it
    import socket
    from core.runs import set_lock_holder, training_lock
    set_status(run, "running", pid=2**22 + 7, pid_started=0.0, host=f"{socket.gethostname()} pid:[1]")
    with training_lock(tmp_path) as lock:
        set_lock_holder(lock, run.name)
        with pytest.raises(RunError, match="being trained by a job on this runs folder"):
            take_over(run)
    # the CLI: refused without the flag, in one line naming it; with it, taken over before the usual checks
    set_status(run, "running", pid=2**22 + 7, pid_started=0.0, host="trainbox-1f2e pid:[1]")
    (run / "checkpoint-8").rename(run / "kept")  # no weights: the finish itself is then refused after the take-over
    assert main(["resume", "--run", str(run)]) == 2
    assert "(--take-over, or" in capsys.readouterr().err
    assert main(["finish", "--run", str(run), "--take-over"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"took {run.name} over from trainbox-1f2e pid:[1]\n") and "saved no weights" in err
    assert trained_elsewhere(run) is None


def test_a_run_from_another_container_is_not_taken_as_stopped_while_a_job_is_starting(tmp_path):
    """This machine's name in another pid namespace: the process may be training in another container. A job that
    holds the lock but has not named its run yet ("starting") may be that very run's resume, so the run is not
    taken as stopped here (finished, or its partial folders swept) until the job names another run."""
    import socket

    from core.runs import finishable, set_lock_holder
    run = tmp_path / "20260101-000000-finetune-aaaa"
    run.mkdir()  # a run's folder exists before its checkpoints
    save_checkpoint(run, 8, lambda folder: (folder / "model.safetensors").write_bytes(b"w"))
    write_json_atomic(run / "config.json", {"mode": "finetune", "created": 1.0, "model": {"name": "m"}})
    set_status(run, "running", pid=2**22 + 7, pid_started=0.0, host=f"{socket.gethostname()} pid:[1]")
    with training_lock(tmp_path) as lock:
        assert running_job(tmp_path) == "starting"
        with pytest.raises(RunError, match="was training on another machine"):
            finishable(run)
        set_lock_holder(lock, "another-run")
        assert finishable(run)[1] == run / "checkpoint-8"


def test_an_atomically_written_file_follows_the_umask_like_the_runs_other_files(tmp_path):
    """mkstemp makes its file 0600: a run's status or metrics then could not be read by the group that shares the
    results folder (the app run as another user), though its other files could."""
    (tmp_path / "plain").touch()  # made as open() makes a file: 0666 less the umask
    write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    mode = (tmp_path / "metrics.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777  # 0644 under the usual umask 022, not 0600


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names a file descriptor's file through /proc")
def test_a_folder_saved_atomically_is_on_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    """After a power cut a renamed folder can hold empty files, the rename reaching the disk before the data: each
    file and the folder are fsynced before the rename, and the folder holding it after."""
    calls = []
    fsync, rename, replace = os.fsync, os.rename, os.replace

    def recorded_fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def recorded(name, real):
        def call(src, dst, *args, **kwargs):
            calls.append((name, str(src)))
            return real(src, dst, *args, **kwargs)
        return call
    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "rename", recorded("rename", rename))
    monkeypatch.setattr(os, "replace", recorded("rename", replace))

    def write(folder):
        (folder / "sub").mkdir()
        for name in ("model.safetensors", "sub/tokenizer.json"):
            (folder / name).write_text(name)
    save_folder_atomic(tmp_path / "model", write)
    tmp = str(tmp_path / "model.tmp")
    [moved] = [i for i, (what, path) in enumerate(calls) if what == "rename" and path == tmp]
    synced = {path for what, path in calls[:moved] if what == "fsync"}
    assert synced >= {tmp, f"{tmp}/sub", f"{tmp}/model.safetensors", f"{tmp}/sub/tokenizer.json"}
    assert ("fsync", str(tmp_path)) in calls[moved:]  # the rename itself
    assert (tmp_path / "model" / "sub" / "tokenizer.json").read_text() == "sub/tokenizer.json"


def test_a_failed_save_leaves_neither_a_partial_nor_a_missing_checkpoint(tmp_path):
    def fail_midway(folder):
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        save_folder_atomic(tmp_path / "model", fail_midway)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == b"old"


def test_history_skips_a_half_written_last_line(tmp_path):
    log = EventLog(tmp_path / "history.jsonl")
    log.emit("train", step=1, loss=0.5)
    log.close()
    with open(tmp_path / "history.jsonl", "a") as f:
        f.write('{"event": "train", "st')  # a writer caught mid-line
    events = read_history(tmp_path)
    assert [e["step"] for e in events] == [1]


def test_broken_runs_are_listed_not_raised(tmp_path):
    (tmp_path / "no-config").mkdir()
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "config.json").write_text("{not json")
    done = tmp_path / "done-no-metrics"
    done.mkdir()
    write_json_atomic(done / "config.json", {"mode": "frozen", "created": 1.0})
    set_status(done, "completed")
    (tmp_path / "not a run").mkdir()  # invalid id: ignored
    runs = {r.id: r for r in list_runs(tmp_path)}
    assert set(runs) == {"no-config", "garbled", "done-no-metrics"}
    assert all(r.status == "broken" and r.error for r in runs.values())
    assert not any(r.usable for r in runs.values())


@pytest.mark.parametrize("name, content, reason", [
    ("config.json", "[]", "config.json is missing or unreadable"),
    ("config.json", '{"mode": "frozen", "model": "x"}', "config.json is missing or unreadable"),
    ("config.json", '{"mode": "fro', "config.json is missing or unreadable"),  # not "the weights are missing"
    ("status.json", "null", "status.json is missing or unreadable"),
    ("status.json", '{"status": "running", "pid": "x"}', "status.json is missing or unreadable"),
    ("status.json", '{"status": ["completed"]}', "status.json is missing or unreadable"),
])
def test_damaged_files_that_still_parse_make_a_broken_run_not_a_crash(tmp_path, name, content, reason):
    run = tmp_path / "r1"
    (run / "model").mkdir(parents=True)
    (run / "model" / "head.safetensors").write_bytes(b"weights")
    write_json_atomic(run / "config.json", {"mode": "frozen", "created": 1.0, "model": {"name": "m"}})
    write_json_atomic(run / "metrics.json", {"test": {"accuracy": 1.0}})
    set_status(run, "completed")
    (run / name).write_text(content)
    [info] = list_runs(tmp_path)
    assert (info.status, info.error, info.usable) == ("broken", reason, False)


def test_history_lines_that_are_not_events_are_skipped(tmp_path):
    (tmp_path / "history.jsonl").write_bytes(b'{"event": "train", "step": 1}\n42\n\xff\xfe\n[1]\n'
                                             b'{"event": "train", "step": 2}\n')
    assert [e["step"] for e in read_history(tmp_path)] == [1, 2]


def test_a_failed_run_says_why_even_when_the_disk_is_full(tmp_path, monkeypatch):
    import core.runs
    set_status(tmp_path, "running")

    def no_space(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(core.runs, "write_json_atomic", no_space)  # no room for a temp file
    set_status(tmp_path, "failed", error="[Errno 28] No space left on device")
    assert read_status(tmp_path)["status"] == "failed"  # not "interrupted"
    assert read_status(tmp_path)["error"] == "[Errno 28] No space left on device"


def _as_a_user_without_override(code):
    """Run Python as a process that obeys file modes even when the tests run as root."""
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                   "--inh-caps=-dac_override,-dac_read_search", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=os.getcwd(), timeout=60)


def test_a_read_only_results_folder_can_be_browsed_and_an_unreadable_one_is_one_clear_error(tmp_path):
    readonly, closed = tmp_path / "readonly", tmp_path / "closed"
    for folder in (readonly, closed):
        (folder / "r1").mkdir(parents=True)
        write_json_atomic(folder / "r1" / "config.json", {"mode": "baseline", "created": 1.0})
        set_status(folder / "r1", "failed", error="x")
        with training_lock(folder):
            pass
    os.chmod(readonly / ".training.lock", 0o444)
    os.chmod(closed, 0)
    try:
        done = _as_a_user_without_override(
            "from core.runs import list_runs, running_job\n"
            f"print(running_job({str(readonly)!r}), [r.status for r in list_runs({str(readonly)!r})])\n"
            f"print(running_job({str(closed)!r}))\n"
            f"list_runs({str(closed)!r})")
    finally:
        os.chmod(closed, 0o755)
    assert done.stdout.splitlines() == ["None ['failed']", "None"], done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"core.runs.RunError: cannot read the runs folder {closed} "
                                                    "(Permission denied)")


def test_one_training_job_at_a_time(tmp_path):
    with training_lock(tmp_path) as lock:
        lock.write("run-a")
        lock.flush()
        assert running_job(tmp_path) == "run-a"
        # another process asking for the lock is refused with the holder's name
        code = ("import sys; sys.path.insert(0, %r)\nfrom core.runs import training_lock\n"
                "try:\n    training_lock(%r).__enter__()\nexcept ValueError as e:\n    print(e)" % (os.getcwd(), str(tmp_path)))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        assert "another training job is running: run-a" in out
    assert running_job(tmp_path) is None


def test_delete_refuses_a_running_run(tmp_path):
    run = tmp_path / "live"
    run.mkdir()
    write_json_atomic(run / "config.json", {"mode": "frozen"})
    set_status(run, "running")
    with pytest.raises(RunError, match="still training"):
        delete_run(tmp_path, "live")
    set_status(run, "failed", error="x")
    delete_run(tmp_path, "live")
    assert not run.exists()


@pytest.mark.parametrize("field, value, match", [
    ("lr", 0, "lr: expected a value in"), ("lr", -1e-5, "lr"), ("lr", 10.0, "lr"), ("epochs", 0, "epochs"),
    ("batch_size", 0, "batch_size"), ("max_length", 100000, "max_length"), ("epochs", 2.5, "an integer"),
    ("mode", "both-ways", "mode: expected one of"), ("pooling", "max", "pooling"), ("dropout", 1.5, "dropout"),
    ("lr", float("nan"), "lr"), ("model", " ", "model"), ("test_fraction", 0.5, "val_fraction \\+ test_fraction"),
])
def test_config_refuses_bad_hyperparameters(field, value, match):
    kwargs = {field: value}
    if field == "test_fraction":
        kwargs["val_fraction"] = 0.4
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_config_fills_mode_defaults_and_round_trips():
    cfg = TrainConfig(mode="frozen")
    assert cfg.epochs == 60 and cfg.lr == 1e-3
    assert TrainConfig.from_dict({**cfg.to_dict(), "unknown_key": 1}) == cfg
    assert TrainConfig(mode="finetune").lr == 5e-5


def test_a_run_written_by_a_newer_version_is_listed_but_not_loaded(tmp_path):
    """Its files may mean something else than this code reads: listed, with its mode, and refused by predict,
    evaluate and export, saying what to do; a run of this version (or of before versions were written) loads."""
    import numpy as np
    from safetensors.numpy import save_file

    from core.runs import FORMAT_VERSION, saved_run_config
    for name, version in (("newer", FORMAT_VERSION + 1), ("this", FORMAT_VERSION), ("unversioned", None)):
        run = tmp_path / name
        (run / "model").mkdir(parents=True)
        (run / "model" / "baseline.json").write_text("{}")
        save_file({"coef": np.zeros((1, 1), dtype=np.float32)}, run / "model" / "baseline.safetensors")
        config = {"mode": "baseline", "created": 1.0} | ({"format_version": version} if version else {})
        write_json_atomic(run / "config.json", config)
        write_json_atomic(run / "metrics.json", {"test": {"accuracy": 1.0}})
        set_status(run, "completed")
    runs = {r.id: r for r in list_runs(tmp_path)}
    said = (f"written by a newer version of this project (run format {FORMAT_VERSION + 1}; this one reads "
            f"{FORMAT_VERSION}): update the project to use it")
    assert (runs["newer"].status, runs["newer"].error, runs["newer"].mode) == ("broken", said, "baseline")
    assert runs["this"].status == runs["unversioned"].status == "completed"
    with pytest.raises(RunError, match=r"newer: written by a newer version"):
        saved_run_config(tmp_path / "newer")
    # not cleaned as this version cleans its own runs: a folder being saved (model.tmp) is left as it is
    set_status(tmp_path / "newer", "running", pid=2 ** 22 + 1, pid_started=0.0)  # a writer long gone: interrupted
    (tmp_path / "newer" / "model.tmp").mkdir()
    assert {r.id: r.status for r in list_runs(tmp_path)}["newer"] == "broken"
    assert (tmp_path / "newer" / "model.tmp").is_dir()
    write_json_atomic(tmp_path / "newer" / "config.json", {**config, "format_version": "2"})  # not one of ours
    assert {r.id: r.status for r in list_runs(tmp_path)}["newer"] == "broken"


def test_a_baseline_without_its_coefficients_file_is_broken(tmp_path):
    run = tmp_path / "r1"
    (run / "model").mkdir(parents=True)
    (run / "model" / "baseline.json").write_text("{}")  # its vocabulary, without the coefficients beside it
    write_json_atomic(run / "config.json", {"mode": "baseline", "created": 1.0})
    write_json_atomic(run / "metrics.json", {"test": {"accuracy": 1.0}})
    set_status(run, "completed")
    [info] = list_runs(tmp_path)
    assert (info.status, info.error) == ("broken", "model/baseline.safetensors is missing")


def test_a_page_polling_for_the_job_does_not_make_a_starting_job_refuse_itself(tmp_path):
    # running_job takes a shared flock for a moment: a training process starting in that moment was refused with
    # "another training job is running: unknown run" while none ran (5,000 starts beside a fast poller: 11 refused)
    import fcntl
    import threading

    from core.runs import LOCK_NAME, training_lock
    tmp_path.joinpath(LOCK_NAME).touch()
    poller = open(tmp_path / LOCK_NAME)
    fcntl.flock(poller, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.05, poller.close).start()  # the poll ends 50 ms later
    with training_lock(tmp_path):
        assert running_job(tmp_path) == "starting"  # this process holds it now
    assert running_job(tmp_path) is None


def test_a_run_deleted_while_the_folder_is_listed_is_left_out(tmp_path, monkeypatch):
    import core.runs
    runs = [tmp_path / f"20260101-00000{i}-frozen-aaaa" for i in (1, 2)]
    for run in runs:
        run.mkdir()
        write_json_atomic(run / "config.json", {"mode": "frozen", "created": 1.0, "model": {"name": "m"}})
        set_status(run, "completed")
    load_run = core.runs.load_run

    def deleted_meanwhile(run_dir):  # another tab deletes the first run after iterdir() named it
        if run_dir == runs[0]:
            shutil.rmtree(run_dir)
        return load_run(run_dir)
    monkeypatch.setattr(core.runs, "load_run", deleted_meanwhile)
    assert [r.id for r in list_runs(tmp_path)] == [runs[1].name]


def test_a_checkpoint_removed_half_way_is_never_left_under_its_name(tmp_path, monkeypatch):
    # killed half-way through deleting a checkpoint, its folder kept the weights without the tokenizer, and `finish`
    # took it for a whole checkpoint: the run completed with an empty vocabulary
    from core.runs import remove_folder
    run_dir = tmp_path / "20261128-000000-finetune-abcd"
    folder = run_dir / "checkpoint-20"
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        (folder / name).write_text(name)
    rmtree = shutil.rmtree

    def killed_after_one_file(path, *args, **kwargs):
        if not os.path.isdir(path):  # nothing there to remove
            return rmtree(path, *args, **kwargs)
        os.unlink(os.path.join(path, "tokenizer.json"))
        raise SystemExit("killed")
    monkeypatch.setattr(shutil, "rmtree", killed_after_one_file)
    with pytest.raises(SystemExit):
        remove_folder(folder)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    assert not folder.exists() and checkpoints(run_dir) == []
    (run_dir / "config.json").write_text(json.dumps({"mode": "finetune", "model": None}))
    # marked running by a process that is gone (the one killed): the run reads as interrupted
    subprocess.run([sys.executable, "-c", f"from core.runs import set_status; set_status({str(run_dir)!r}, 'running')"],
                   cwd=Path(__file__).resolve().parents[1], check=True)
    from core.runs import load_run, set_lock_holder, training_lock
    # not while a job names the run: a resume puts its best weights back as a .tmp copy before it marks the run
    # running, and a page listing runs deleted the copy under it
    (run_dir / "checkpoint-24.tmp").mkdir()
    with training_lock(tmp_path) as lock:
        set_lock_holder(lock, run_dir.name)
        assert load_run(run_dir).status == "interrupted" and (run_dir / "checkpoint-24.tmp").is_dir()
    assert load_run(run_dir).status == "interrupted"
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "status.json"]  # the halves swept away
