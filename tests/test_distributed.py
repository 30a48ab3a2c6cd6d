"""Data-parallel training with Accelerate: 2 CPU processes (gloo) give a run laid out like a single-process one."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import TrainConfig
from core.predict import Predictor
from core.runs import list_runs, read_history
from core.train import train

ROOT = Path(__file__).resolve().parents[1]


def _layout(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")}


@pytest.mark.parametrize("mode", ["finetune", "frozen"])
def test_accelerate_launch_two_cpu_processes(mode, tmp_path, sms_file, tiny_bert):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "-m", "core", "train", "--mode", mode, "--data", str(sms_file), "--model",
           tiny_bert, "--epochs", "2", "--runs-dir", str(tmp_path / "multi"), "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [multi] = list_runs(tmp_path / "multi")  # one run, written by the main process only
    assert multi.status == "completed" and multi.usable
    assert multi.config["num_processes"] == 2
    assert done.stdout.strip().splitlines() == [str(multi.path)]  # printed once: by the main process only

    single = train(TrainConfig(mode=mode, data=str(sms_file), model=tiny_bert, epochs=2,
                               runs_dir=str(tmp_path / "single"), cache_dir=str(tmp_path / "cache")))
    assert _layout(multi.path) == _layout(single)
    start = lambda run: [e for e in read_history(run) if e["event"] == "start"][0]
    per_epoch = lambda run: start(run)["steps_per_epoch"]
    batches = -(-multi.config["data_info"]["splits"]["train"]["rows"] // 32)  # in one pass over the messages
    # each process takes every other batch of the epoch; a fine-tune's epoch goes over its 91 messages often enough
    # that each process still makes min_epoch_steps (100): twice as many passes as in one process
    passes = {run: start(run)["passes_per_epoch"] for run in (multi.path, single)}
    assert passes == ({multi.path: 67, single: 34} if mode == "finetune" else {multi.path: 1, single: 1})
    assert per_epoch(multi.path) == -(-passes[multi.path] * batches // 2)
    assert per_epoch(single) == passes[single] * batches
    assert multi.metrics["steps"] == 2 * per_epoch(multi.path)  # and every planned step ran
    assert json.loads((single / "config.json").read_text())["num_processes"] == 1
    probabilities = Predictor.load(multi.path).predict(["WIN cash now", "see you soon"])
    assert probabilities.shape == (2,)


@pytest.mark.parametrize("batches,processes", [(1, 4), (3, 8), (5, 2), (6, 3)])
def test_every_process_gets_the_same_number_of_batches_even_with_fewer_batches_than_processes(batches, processes):
    # each step all-reduces across the processes: one left without a batch would hang the others
    from core.batches import Shard
    order = [[i] for i in range(batches)]
    shares = [list(Shard(order, processes, index)) for index in range(processes)]
    assert {len(share) for share in shares} == {len(Shard(order, processes, 0))} == {-(-batches // processes)}
    assert {b[0] for share in shares for b in share} == set(range(batches))  # every batch is taken


# the main process is slower to load than the other (here by a second) and its Cancel lands then: the other process
# had passed its own check before the first step, and waited for ever in the first step's reduce
SLOW_MAIN = """
import os, sys, time
import core.train
from core.runs import EventLog, request_cancel
emit, new_run_dir = EventLog.emit, core.train.new_run_dir

def cancelled_late_on_main(self, event, **fields):
    out = emit(self, event, **fields)
    if event == "start" and os.environ.get("RANK") == "0":
        time.sleep(1)
        request_cancel(core.train.made[0])
    return out

def remember(*args, **kwargs):
    core.train.made = [new_run_dir(*args, **kwargs)]
    return core.train.made[0]
EventLog.emit, core.train.new_run_dir = cancelled_late_on_main, remember
from core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_cancel_before_the_first_step_stops_every_process_together(tmp_path, sms_file, tiny_bert):
    script = tmp_path / "slow_main.py"
    script.write_text(SLOW_MAIN)
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", str(script), "train", "--mode", "finetune", "--data", str(sms_file),
           "--model", tiny_bert, "--epochs", "2", "--runs-dir", str(tmp_path / "multi")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    launched = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = launched.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # hung: the launcher and its workers (in sessions of their own) all go
        import psutil
        for proc in [*psutil.Process(launched.pid).children(recursive=True), psutil.Process(launched.pid)]:
            proc.kill()
        launched.communicate()
        pytest.fail("the processes waited on each other after the cancel")
    [run] = list_runs(tmp_path / "multi")
    assert run.status == "cancelled" and launched.returncode == 1, stderr[-3000:]
    assert not [e for e in read_history(run.path) if e["event"] == "train"]  # not one step
