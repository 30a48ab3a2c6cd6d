"""One cached Predictor serves every browser session: concurrent calls must not corrupt each other."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core.config import TrainConfig
from core.predict import Predictor
from core.train import train


@pytest.mark.parametrize("mode", ["frozen", "finetune", "baseline"])
def test_concurrent_predictions_match_sequential_ones(mode, sms_file, tiny_bert, tmp_path):
    run_dir = train(TrainConfig(mode=mode, data=str(sms_file), model=tiny_bert, runs_dir=str(tmp_path / "runs"),
                                cache_dir=str(tmp_path / "cache"), epochs=1))
    predictor = Predictor.load(run_dir)
    # different lengths and batch sizes per request, so a shared padded batch would show up as a wrong answer
    requests = [[f"WIN £{i} cash now " * (1 + i % 5)] * (1 + i % 3) + [f"see you at {i}"] for i in range(24)]
    expected = [predictor.predict(texts) for texts in requests]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(predictor.predict, requests))
    for e, g in zip(expected, got):
        assert np.allclose(e, g, atol=1e-6)
