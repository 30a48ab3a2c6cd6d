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
    # a page's progress bar: told after each batch how far the scoring is, with the very same scores
    texts = [f"WIN £{i} cash now " * (1 + i % 7) for i in range(150)]
    seen = []
    with_progress = predictor.predict(texts, on_progress=lambda done, total: seen.append((done, total)))
    assert np.array_equal(with_progress, predictor.predict(texts))
    if mode != "baseline":  # a linear model scores everything at once, in well under a second
        assert len(seen) > 1 and seen[-1] == (150, 150) and [d for d, _ in seen] == sorted({d for d, _ in seen})
