"""Word occlusion: each word's weight is the drop in the log-odds of spam when it is left out."""
import math

import numpy as np
import pytest
import torch

from conftest import SPAM
from core.config import TrainConfig
from core.explain import explain_words
from core.predict import Predictor
from core.train import train


def test_weights_are_log_odds_drops_and_point_at_spam_words(sms_file, tmp_path):
    run = train(TrainConfig(mode="baseline", data=str(sms_file), runs_dir=str(tmp_path / "runs")))
    predictor = Predictor.load(run)
    text = "URGENT claim your cash reward now see you at dinner"
    explained = explain_words(predictor, text)
    weights = explained.weights
    assert [w for w, _ in weights] == text.split()
    logit = lambda p: math.log(p / (1 - p))
    p_full = predictor.predict([text])[0]
    p_without_urgent = predictor.predict([text.replace("URGENT ", "")])[0]
    assert weights[0][1] == pytest.approx(logit(p_full) - logit(p_without_urgent))
    assert explained.log_odds == pytest.approx(logit(p_full))
    # the probability without a word is the one the model gives the text without it
    assert explained.probability_without(weights[0][1]) == pytest.approx(p_without_urgent)
    top = max(weights, key=lambda wd: wd[1])[0].lower()
    spam_vocabulary = {w.lower().strip("!,.") for template in SPAM for w in template.split()}
    assert top in spam_vocabulary
    assert explain_words(predictor, "   ").weights == []
    assert len(explain_words(predictor, "word " * 200).weights) == 60
    # past the first 60 words, the weights still explain the whole message's verdict, not its first 60 words'
    long_text = "see you at dinner " * 15 + "URGENT claim your cash reward now"
    first = long_text.split(" ", 1)[1]
    assert logit(predictor.predict([long_text])[0]) != pytest.approx(logit(predictor.predict([" ".join(
        long_text.split()[:60])])[0]))
    assert explain_words(predictor, long_text).weights[0][1] == pytest.approx(
        logit(predictor.predict([long_text])[0]) - logit(predictor.predict([first])[0]))


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_log_odds_are_the_probabilities_logits_and_do_not_saturate(mode, sms_file, tmp_path, tiny_bert):
    run = train(TrainConfig(mode=mode, data=str(sms_file), runs_dir=str(tmp_path / "runs"), model=tiny_bert,
                            max_length=32, epochs=1, cache_dir=str(tmp_path / "cache")))
    predictor = Predictor.load(run)
    texts = ["URGENT claim your cash reward now", "see you at dinner", "ok"]  # one alone, and a batch
    for batch in ([texts[0]], texts):
        p, odds = predictor.predict(batch), predictor.predict(batch, log_odds=True)
        np.testing.assert_allclose(1 / (1 + np.exp(-odds)), p, rtol=1e-5, atol=1e-6)
    # a logit far past where a float32 probability is exactly 1.0 still ranks: the head's bias pushed to it
    last = predictor.head.net[-1] if mode == "frozen" else predictor.model.classifier  # Linear(..., 2)
    with torch.no_grad():
        last.bias[1] += 40.0
    assert predictor.predict(["ok"])[0] == 1.0 and predictor.predict(["ok"], log_odds=True)[0] > 30


def test_odds_factors_read_as_numbers():
    from views.common import odds_factor
    assert odds_factor(math.log(2.6)) == "×2.6" and odds_factor(-math.log(4.3)) == "÷4.3"
    assert odds_factor(math.log(1234)) == "×1,234"
    assert odds_factor(math.log(3e6)) == "×3·10⁶" and odds_factor(-math.log(7e12)) == "÷7·10¹²"
    assert odds_factor(1e5) == "×1·10³⁰⁴"  # past where exp overflows a float: capped, not an error
