"""One cached Predictor serves every browser session: concurrent calls must not corrupt each other."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core.config import TrainConfig
from core.features import EXTRACT_BATCH
from core.predict import PREDICT_BATCH, Predictor
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
    with_progress = predictor.predict(texts, on_progress=lambda *progress: seen.append(progress))
    assert np.array_equal(with_progress, predictor.predict(texts))
    if mode != "baseline":  # a linear model scores everything at once, in well under a second
        done, total, tokens, tokens_total = zip(*seen)
        assert len(seen) > 1 and seen[-1][:2] == (150, 150) and list(done) == sorted(set(done))
        # the time left's clock: the padded tokens of each batch, shortest messages first, so later batches weigh more
        lengths = sorted(min(n, predictor.max_length) for n in predictor.token_counts(texts))
        size = EXTRACT_BATCH if mode == "frozen" else PREDICT_BATCH
        padded = [len(chunk) * chunk[-1] for chunk in (lengths[i:i + size] for i in range(0, len(texts), size))]
        assert set(tokens_total) == {sum(padded)} and list(tokens) == list(np.cumsum(padded))
        assert tokens[-1] / tokens_total[-1] == 1 and tokens[0] / tokens_total[0] < done[0] / total[0]
