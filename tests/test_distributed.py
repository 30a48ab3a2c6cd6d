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
    per_epoch = lambda run: [e for e in read_history(run) if e["event"] == "start"][0]["steps_per_epoch"]
    assert per_epoch(multi.path) == -(-per_epoch(single) // 2)  # each process takes every other batch
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
