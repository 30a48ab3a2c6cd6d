"""The performance changes keep behaviour: same batches, cached facts, precision consistency, settings restored."""
import json

import numpy as np
import pytest
import torch

from core.batches import feature_loader
from core.config import TrainConfig
from core.features import cached_features
from core.predict import Predictor
from core.train import train


def _cfg(mode, tmp_path, tiny_bert, sms_file, **kw):
    return TrainConfig(mode=mode, model=tiny_bert, data=str(sms_file), runs_dir=str(tmp_path / "runs"),
                       cache_dir=str(tmp_path / "cache"), max_length=32, **kw)


def test_feature_loader_batches_match_a_plain_dataloader():
    features, labels = torch.randn(70, 8), np.arange(70) % 2
    plain = torch.utils.data.DataLoader(list(zip(features, torch.as_tensor(labels))), batch_size=32, shuffle=True,
                                        generator=torch.Generator().manual_seed(3))
    fast = feature_loader(features, labels, 32, shuffle=True, seed=3)
    assert len(fast) == len(plain) == 3
    for (x, y), batch in zip(plain, fast):
        assert torch.equal(batch["features"], x) and torch.equal(batch["labels"], y)


def test_feature_cache_returns_what_compute_stored(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.ones(3, 4), {"encoder_parameters": 123}

    first = cached_features(tmp_path, "k", compute)
    second = cached_features(tmp_path, "k", compute)
    assert (first[1], second[1]) == (False, True) and len(calls) == 1
    assert torch.equal(first[0], second[0]) and second[2] == {"encoder_parameters": "123"}


def test_temp_files_left_by_a_killed_save_are_removed_once_stale(tmp_path):
    import os
    import time

    from core.features import STALE_TEMP_S, feature_file
    folder = feature_file(tmp_path, "k").parent
    folder.mkdir(parents=True)
    stale, fresh = folder / "tmpkilled.tmp", folder / "tmpsaving.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half a safetensors file")
    os.utime(stale, (time.time() - STALE_TEMP_S - 60,) * 2)  # kill -9 mid-save, over an hour ago
    cached_features(tmp_path, "k", lambda: (torch.ones(2, 2), {}))
    assert not stale.exists() and fresh.exists()  # a save of another job sharing the cache may be under way


def test_second_frozen_run_uses_the_cache_and_restores_threads(tmp_path, tiny_bert, sms_file):
    threads = torch.get_num_threads()
    first = train(_cfg("frozen", tmp_path, tiny_bert, sms_file, epochs=2))
    second = train(_cfg("frozen", tmp_path, tiny_bert, sms_file, epochs=2, head_hidden=16))
    assert torch.get_num_threads() == threads  # frozen mode trains its head on one thread, then gives them back
    events = [json.loads(l) for l in (second / "history.jsonl").read_text().splitlines()]
    assert next(e for e in events if e["event"] == "features_ready")["cached"] is True
    hidden = TrainConfig(mode="frozen").head_hidden
    head_difference = (hidden - 16) * (32 + 1 + 2)  # Linear(32, h) and Linear(h, 2) of the two heads differ by this
    totals = [json.loads((r / "metrics.json").read_text())["total_parameters"] for r in (first, second)]
    assert totals[0] - totals[1] == head_difference  # the encoder count came from the cache, and is the same


@pytest.mark.parametrize("mode", ["finetune", "frozen"])
def test_runs_of_both_precisions_in_one_process_and_predictor_matches_the_run(tmp_path, tiny_bert, sms_file, mode):
    runs = {p: train(_cfg(mode, tmp_path, tiny_bert, sms_file, epochs=1, precision=p)) for p in ("fp32", "bf16")}
    for run in runs.values():
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
        metrics = json.loads((run / "metrics.json").read_text())
        texts = [p["text"] for p in metrics["predictions"]]
        recorded = np.array([p["spam_probability"] for p in metrics["predictions"]])
        predictor = Predictor.load(run)
        assert predictor.precision == json.loads((run / "config.json").read_text())["precision"]
        # the Predictor applies the run's precision, so it reproduces the run's own test probabilities
        assert np.abs(predictor.predict(texts) - recorded).max() < (1e-5 if predictor.precision == "fp32" else 2e-2)
        assert np.abs(predictor.predict(texts[:1]) - recorded[:1]).max() < 2e-2  # the one-message path
