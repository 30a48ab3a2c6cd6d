"""A downloaded run loads without this project: the zip's README code, run in a clean interpreter."""
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.config import TrainConfig
from core.export import _names_for_paths, export_bytes
from core.predict import Predictor
from core.runs import read_history, set_status
from core.train import train

EXAMPLES = ["WINNER!! Claim your free prize now, call 09061701461", "Are we still on for lunch?"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert):
    from tests.conftest import make_messages, write_uci

    tmp = tmp_path_factory.mktemp("export")
    data = write_uci(tmp / "sms.txt", make_messages())
    common = dict(data=str(data), model=tiny_bert, runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"),
                  max_length=32, batch_size=16)
    # fp32 runs must match the app's probabilities exactly; the bf16 one checks the README's autocast line, on
    # every machine: a CPU without native bf16 would train it in fp32, so bf16 is forced (emulated, slow but exact)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("core.features._bf16_native", lambda: True)
        bf16 = train(TrainConfig(mode="frozen", epochs=2, pooling="cls", precision="bf16", **common))
    assert json.loads((bf16 / "config.json").read_text())["precision"] == "bf16"
    return {"finetune": train(TrainConfig(mode="finetune", epochs=1, precision="fp32", **common)),
            "frozen": train(TrainConfig(mode="frozen", epochs=2, precision="fp32", **common)),
            "frozen-cls-bf16": bf16, "baseline": train(TrainConfig(mode="baseline", **common))}


@pytest.mark.parametrize("kind", ["finetune", "frozen", "frozen-cls-bf16", "baseline"])
def test_zip_loads_with_plain_libraries(kind, runs, tmp_path, capsys):
    run_dir = runs[kind]
    mine = tmp_path / "mine.tsv"
    mine.write_text("spam\tmy private spam sample\nham\tmy private note to a friend\n")
    assert main(["evaluate", "--run", str(run_dir), "--data", str(mine)]) == 0
    assert list((run_dir / "evaluations").glob("mine.tsv-*.json"))
    capsys.readouterr()
    # what a kill between a temp file and its rename leaves: a full copy of metrics.json, test messages and all
    leftover = run_dir / ".metrics.json.x1y2z3.tmp"
    leftover.write_text((run_dir / "metrics.json").read_text())
    (run_dir / "model.tmp").mkdir()
    (run_dir / "model.tmp" / "model.safetensors").write_bytes(b"half")
    out = tmp_path / "run.zip"
    try:
        assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 0
    finally:
        leftover.unlink()
        (run_dir / "model.tmp" / "model.safetensors").unlink()
        (run_dir / "model.tmp").rmdir()
    assert capsys.readouterr().out.strip() == str(out)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path)
    assert not any(".tmp" in n for n in names), names
    folder = tmp_path / run_dir.name
    assert {"config.json", "metrics.json", "history.jsonl", "README.md"} <= {p.name for p in folder.iterdir()}
    assert not any(n.endswith((".pkl", ".pickle", ".bin", ".pt")) for n in names)  # safetensors / skops only
    assert not any("/evaluations/" in n for n in names)  # the user's own messages stay on this machine
    # ...and so do the test messages' texts and this machine's paths; every metric can still be recomputed
    metrics, config = (json.loads((folder / name).read_text()) for name in ("metrics.json", "config.json"))
    kept = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["predictions"] == [{k: v for k, v in p.items() if k != "text"} for p in kept["predictions"]]
    assert metrics["test"] == kept["test"] and "text" not in json.dumps(metrics["predictions"])
    zipped = json.dumps(config)
    assert '"/' not in zipped and config["data_info"]["source"] == Path(kept_config(run_dir)["data_info"]["source"]).name
    # nor anywhere else in the zip: the history's data and model events, a frozen head's encoder (it names the
    # data file and the tiny model's folder here, both under this test's temp folder)
    for name in names:
        if name.endswith((".json", ".jsonl", ".md")):
            assert str(tmp_path.parent) not in (tmp_path / name).read_text(), name
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert len(history) == len(read_history(run_dir)) and history[0]["source"] == "sms.txt"
    if kind.startswith("frozen"):  # the encoder travels with the head: no reference to this machine's files
        assert (folder / "model" / "encoder" / "model.safetensors").is_file()

    readme = (folder / "README.md").read_text()
    # the autocast note goes with the runs that used it (the baseline records precision too, but has no encoder)
    assert ("bf16 autocast" in readme) == kind.endswith("bf16")
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    # a clean interpreter in the unzipped folder: `core` (this project) cannot be imported there
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run([sys.executable, "-c", "import importlib.util as u; assert u.find_spec('core') is None"],
                           cwd=folder, env=env)
    assert check.returncode == 0, "the clean interpreter can still import core"
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = json.loads(done.stdout.strip().splitlines()[-1])
    expected = Predictor.load(run_dir).predict(EXAMPLES)
    # the tiny random models score every message near 0.5, so only a tight match shows the code is right;
    # under bf16 the padding differs (the app batches by length), which moves the third decimal
    atol = 2e-3 if kind.endswith("bf16") else 1e-5
    assert np.allclose(exported, expected, rtol=0, atol=atol), (exported, expected.tolist())


def kept_config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


def test_unfinished_run_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "20260101-000000-finetune-abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"mode": "finetune"}))
    set_status(run_dir, "cancelled")
    assert main(["export", "--run", str(run_dir), "--out", str(tmp_path / "x.zip")]) == 2
    assert "no saved weights" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.zip*"))  # no partial zip left behind


def test_out_may_name_a_folder_and_a_missing_one_is_said_plainly(runs, tmp_path, capsys):
    run_dir = runs["baseline"]
    assert main(["export", "--run", str(run_dir), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / f"{run_dir.name}.zip")
    assert zipfile.is_zipfile(tmp_path / f"{run_dir.name}.zip")
    assert main(["export", "--run", str(run_dir), "--out", str(tmp_path / "nope" / "x.zip")]) == 2
    assert capsys.readouterr().err == f"error: --out: no folder {tmp_path / 'nope'} to write x.zip into\n"


def test_zip_leaves_out_this_machines_process_and_paths_inside_error_texts(runs, tmp_path):
    """A run finished after a failure keeps the error's text (status.json, metrics.json "stopped", the history's end
    event), and an error's text names files: cut to their names in the zip, as whole paths are. status.json's
    pid, process start and host name are this machine's, not the run's."""
    import shutil
    run_dir = Path(shutil.copytree(runs["baseline"], tmp_path / "runs" / runs["baseline"].name))
    error = "OSError: [Errno 28] No space left on device: '/home/someone/checkpoints/x/model.tmp'"
    stopped = {"status": "failed", "error": error, "reason": f"failed: {error}"}
    status = json.loads((run_dir / "status.json").read_text())
    assert {"pid", "pid_started", "host"} <= set(status)
    (run_dir / "status.json").write_text(json.dumps({**status, "stopped": stopped}))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**metrics, "stopped": {**stopped, "after_step": 3}}))
    with open(run_dir / "history.jsonl", "a") as f:
        f.write(json.dumps({"event": "end", "status": "failed", "error": error}) + "\n")
    with zipfile.ZipFile(io.BytesIO(export_bytes(run_dir))) as zf:
        texts = {n: zf.read(n).decode() for n in zf.namelist() if n.endswith((".json", ".jsonl", ".md"))}
    assert not any("/home/someone" in text for text in texts.values()), [n for n, t in texts.items() if "/home/" in t]
    assert "No space left on device: 'model.tmp'" in texts[f"{run_dir.name}/history.jsonl"]
    zipped_status = json.loads(texts[f"{run_dir.name}/status.json"])
    assert zipped_status == {**{k: v for k, v in status.items() if k not in ("pid", "pid_started", "host")},
                             "stopped": {**stopped, "error": "OSError: [Errno 28] No space left on device: "
                                         "'model.tmp'", "reason": "failed: OSError: [Errno 28] No space left on "
                                         "device: 'model.tmp'"}}
    assert "https://huggingface.co/x/y" == _names_for_paths("https://huggingface.co/x/y")  # a URL is no path
    # a quoted path with spaces (a user's home folder), and a sentence that begins with a path, are cut too
    assert _names_for_paths("No such file: '/Users/John Smith/Documents/spam.csv'") == "No such file: 'spam.csv'"
    assert _names_for_paths("/home/x/data.csv: not found, nor /other/dir/") == "data.csv: not found, nor dir"
    # Python quotes a path holding ' with "; a moved data file's path, spaces and all, is still a path
    assert _names_for_paths('No such file: "/home/o\'brien/sms.tsv"') == 'No such file: "sms.tsv"'
    assert _names_for_paths("/home/Alice Smith/gone/SMSSpamCollection") == "SMSSpamCollection"
    assert _names_for_paths("found in /home/Alice Smith/models/bert, 24/7 w/o fees") == "found in bert, 24/7 w/o fees"
