"""Word occlusion: each word's weight is the drop in spam probability when it is left out."""
import pytest

from conftest import SPAM
from core.config import TrainConfig
from core.explain import explain_words
from core.predict import Predictor
from core.train import train


def test_weights_are_probability_drops_and_point_at_spam_words(sms_file, tmp_path):
    run = train(TrainConfig(mode="baseline", data=str(sms_file), runs_dir=str(tmp_path / "runs")))
    predictor = Predictor.load(run)
    text = "URGENT claim your cash reward now see you at dinner"
    weights = explain_words(predictor, text)
    assert [w for w, _ in weights] == text.split()
    p_full = predictor.predict([text])[0]
    p_without_urgent = predictor.predict([text.replace("URGENT ", "")])[0]
    assert weights[0][1] == pytest.approx(p_full - p_without_urgent)
    top = max(weights, key=lambda wd: wd[1])[0].lower()
    spam_vocabulary = {w.lower().strip("!,.") for template in SPAM for w in template.split()}
    assert top in spam_vocabulary
    assert explain_words(predictor, "   ") == []
    assert len(explain_words(predictor, "word " * 200)) == 60
