"""Metrics against hand-checked cases (spam = 1 is the positive class)."""
import json

import numpy as np
import pytest

from core.metrics import (bootstrap_intervals, calibration, classification_metrics, curves, mcnemar_test,
                          weighted_ranking_metrics)


def test_hand_checked_case():
    # y:     0    0    0    1    1    1
    # p:    .1   .4   .7   .3   .8   .9   -> at 0.5: tn=2 fp=1 fn=1 tp=2
    m = classification_metrics([0, 0, 0, 1, 1, 1], [0.1, 0.4, 0.7, 0.3, 0.8, 0.9])
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # AUROC = share of (spam, ham) pairs ranked right: .3 beats .1 only (1), .8 and .9 beat all three (6) => 7/9
    assert m["auroc"] == pytest.approx(7 / 9)
    assert m["mcc"] == pytest.approx((2 * 2 - 1 * 1) / 9)


def test_ranking_metrics_use_probabilities_not_labels():
    # same hard predictions, different ranking: the seed computed AUROC from labels and got 0.5 for a collapsed model
    y = [0, 0, 1, 1]
    collapsed = classification_metrics(y, [0.1, 0.2, 0.3, 0.4])  # all "ham" at 0.5, yet perfectly ranked
    assert collapsed["recall"] == 0 and collapsed["precision"] == 0
    assert collapsed["auroc"] == 1.0 and collapsed["auprc"] == 1.0


def test_threshold_moves_the_confusion_matrix():
    m = classification_metrics([0, 1, 1], [0.2, 0.35, 0.9], threshold=0.3)
    assert m["confusion_matrix"] == [[1, 0], [0, 2]] and m["threshold"] == 0.3


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_a_probability_exactly_on_the_threshold_counts_as_spam(threshold):
    # ">=" is the contract the app, `core predict` and the bootstrap share: a message at the threshold is spam
    m = classification_metrics([0, 1], [threshold, threshold], threshold=threshold)
    assert m["confusion_matrix"] == [[0, 1], [0, 1]] and m["recall"] == 1.0
    assert bootstrap_intervals([0, 1] * 5, [threshold] * 10, threshold, n_resamples=50)["recall"] == [1.0, 1.0]
    # and McNemar's counts: a spam message on the threshold is right for a, just below it wrong for b
    below = threshold - 1e-9
    assert mcnemar_test([1], [threshold], [below], threshold) == {"only_a_right": 1, "only_b_right": 0, "p_value": 1.0}
    assert mcnemar_test([1], [below], [threshold], 0.9, threshold_b=threshold)["only_b_right"] == 1


def test_an_inverted_model_has_an_mcc_of_minus_one():
    # MCC is signed: a model that gets every message the wrong way round is -1, not as good as a perfect one
    y, p = [0, 0, 1, 1], [0.9, 0.8, 0.1, 0.2]
    assert classification_metrics(y, p)["mcc"] == pytest.approx(-1.0)
    assert bootstrap_intervals(y * 5, p * 5, n_resamples=50)["mcc"] == pytest.approx([-1.0, -1.0])


def test_one_class_leaves_the_ranking_metrics_undefined():
    m = classification_metrics([0, 0, 0], [0.1, 0.2, 0.9])
    assert m["auroc"] is None and m["auprc"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)
    json.dumps(m, allow_nan=False)  # what `python -m core evaluate` prints stays valid JSON
    # no spam: nothing to find, so recall and F1 are undefined, not 0; precision is 0 once there was a false alarm
    assert (m["recall"], m["f1"], m["precision"]) == (None, None, 0.0)
    quiet = classification_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert (quiet["recall"], quiet["f1"], quiet["precision"], quiet["accuracy"]) == (None, None, None, 1.0)
    spam_only = classification_metrics([1, 1, 1], [0.1, 0.8, 0.9])  # recall still means something
    assert (spam_only["recall"], spam_only["precision"]) == (pytest.approx(2 / 3), 1.0)
    # with spam present, a model that calls nothing spam keeps precision 0, as scikit-learn and the seed's report
    assert classification_metrics([0, 1], [0.1, 0.2])["precision"] == 0.0


@pytest.mark.parametrize("y, p, match", [
    ([0, 1], [0.5], "same 1-D shape"),
    ([], [], "at least one"),
    ([0, 2], [0.1, 0.2], "labels 0"),
    ([0, 1], [0.1, 1.5], "probabilities"),
    ([0, 1], [0.1, float("nan")], "probabilities"),
])
def test_bad_inputs_say_what_was_expected(y, p, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, p)


def test_curves_span_zero_to_one():
    c = curves([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert c["roc"]["fpr"][0] == 0 and c["roc"]["fpr"][-1] == 1 and c["roc"]["tpr"][-1] == 1
    assert len(c["pr"]["precision"]) == len(c["pr"]["recall"])


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(400), np.ones(60)].astype(int)
    p = np.clip(y * 0.5 + rng.random(len(y)) * 0.6, 0, 1)
    point = classification_metrics(y, p)
    ci = bootstrap_intervals(y, p, n_resamples=300, seed=1)
    for name in ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "mcc"):
        lo, hi = ci[name]
        assert lo <= point[name] <= hi, name
        assert hi - lo > 0 or point[name] in (0, 1)
    assert ci == bootstrap_intervals(y, p, n_resamples=300, seed=1)  # deterministic for a seed


def test_mcnemar_counts_discordant_pairs():
    y = [1, 1, 1, 1, 0, 0]
    a = [0.9, 0.9, 0.9, 0.9, 0.1, 0.1]  # all right
    b = [0.1, 0.1, 0.1, 0.9, 0.1, 0.1]  # 3 misses
    r = mcnemar_test(y, a, b)
    assert (r["only_a_right"], r["only_b_right"]) == (3, 0)
    assert r["p_value"] == pytest.approx(0.25)  # exact binomial, two-sided: 2 * 0.5**3
    assert mcnemar_test(y, a, a)["p_value"] == 1.0
    # each model at its own threshold: at 0.05, b calls every message spam (4 right, both hams wrong)
    r = mcnemar_test(y, a, b, 0.5, threshold_b=0.05)
    assert (r["only_a_right"], r["only_b_right"]) == (2, 0)


def test_calibration_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)  # spam exactly as often as predicted
    good = calibration(y, p)
    assert np.allclose(good["observed"], good["predicted"], atol=0.03)
    assert sum(good["counts"]) == 20000
    bad = calibration(y, (p > 0.5).astype(float) * 0.98 + 0.01)  # says 99 % or 1 %, is right 75 % of the time
    assert bad["brier"] > good["brier"]


def test_calibration_counts_follow_the_bins_of_its_points():
    # 0.1 and 0.5 lie on bin edges: calibration_curve puts them in the lower bin, so must the counts
    y = [0, 0, 0, 1, 1, 1]
    p = [0.05, 0.1, 0.1, 0.3, 0.95, 0.5]
    cal = calibration(y, p)
    assert cal["counts"] == [3, 1, 1, 1]  # [0, 0.1], (0.2, 0.3], (0.4, 0.5], (0.9, 1]
    assert cal["predicted"] == pytest.approx([0.25 / 3, 0.3, 0.5, 0.95])
    assert cal["observed"] == pytest.approx([0, 1, 1, 1])
    # Wilson 95 % intervals: 0 of 3 spam reaches up to 0.56; 1 of 1 spans almost everything
    assert cal["observed_ci95"][0] == pytest.approx([0, 0.5615], abs=1e-4)
    assert cal["observed_ci95"][1] == pytest.approx([0.2065, 1], abs=1e-4)


def test_a_large_file_is_bootstrapped_a_slice_at_a_time_with_the_same_intervals(monkeypatch):
    # one pass held every resample of every message: 5 GB for a 60,000-message file; slices draw the same stream
    # (a test split of 1,032 messages is one slice, so its intervals are bit for bit those of one pass)
    import core.metrics
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.15).astype(int)
    p = np.clip(0.4 * y + 0.7 * rng.random(400), 0, 1)
    whole = bootstrap_intervals(y, p, 0.5, n_resamples=250, seed=7)
    monkeypatch.setattr(core.metrics, "BOOTSTRAP_CELLS", 400 * 30)  # 30 resamples a slice: 9 slices, the last of 10
    for name, interval in bootstrap_intervals(y, p, 0.5, n_resamples=250, seed=7).items():
        assert interval == pytest.approx(whole[name], rel=1e-12, abs=0), name  # the same, to the last bits of a sum
    monkeypatch.setattr(core.metrics, "BOOTSTRAP_CELLS", 1)  # one resample a slice
    for name, interval in bootstrap_intervals(y, p, 0.5, n_resamples=250, seed=7).items():
        assert interval == pytest.approx(whole[name], rel=1e-12, abs=0), name


@pytest.mark.parametrize("threshold", [0.5, 0.95])  # 0.95: some resamples have no predicted spam at all
def test_bootstrap_counts_agree_with_sklearn_scorers_on_every_resample(threshold):
    from sklearn import metrics as skm
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(60), np.ones(8)].astype(int)
    p = np.clip(y * 0.45 + rng.random(len(y)) * 0.55, 0, 1)
    ci = bootstrap_intervals(y, p, threshold=threshold, n_resamples=200, seed=5)
    idx = np.random.default_rng(5).integers(0, len(y), (200, len(y)))  # the same resamples, drawn the same way
    idx = idx[[len(np.unique(y[i])) == 2 for i in idx]]
    scorers = {"accuracy": skm.accuracy_score, "mcc": skm.matthews_corrcoef,
               "precision": lambda t, q: skm.precision_score(t, q, zero_division=np.nan),
               "recall": skm.recall_score, "f1": lambda t, q: skm.f1_score(t, q, zero_division=0)}
    for name, scorer in scorers.items():
        values = [scorer(y[i], (p[i] >= threshold).astype(int)) for i in idx]
        # precision: over the resamples that call something spam; where none does it is undefined, not 0
        assert ci[name] == pytest.approx([np.nanpercentile(values, 2.5), np.nanpercentile(values, 97.5)]), name
    undefined = [i for i in idx if not (p[i] >= threshold).any()]
    assert (len(undefined) > 0) == (threshold == 0.95)  # the case this checks happens


def test_each_metrics_interval_keeps_every_resample_that_defines_it():
    # 40 messages, 1 spam, missed (the only error): 36 % of resamples skip it, and they are the ones with no error.
    # Dropping every resample without spam for all metrics capped accuracy's interval at its point estimate, 0.975
    from sklearn import metrics as skm
    y = np.r_[1, np.zeros(39)].astype(int)
    p = np.r_[0.2, np.full(39, 0.1)]
    ci = bootstrap_intervals(y, p, n_resamples=1000, seed=0)
    idx = np.random.default_rng(0).integers(0, len(y), (1000, len(y)))  # the same resamples, drawn the same way
    accuracy = [skm.accuracy_score(y[i], (p[i] >= 0.5).astype(int)) for i in idx]
    assert ci["accuracy"] == pytest.approx([np.percentile(accuracy, 2.5), np.percentile(accuracy, 97.5)])
    assert ci["accuracy"][1] == 1.0 and ci["accuracy"][0] < 0.975
    # over the resamples that hold the spam message: missed in each, ranked above every ham in each
    assert ci["recall"] == ci["f1"] == ci["mcc"] == [0.0, 0.0] and ci["auroc"] == ci["auprc"] == [1.0, 1.0]
    assert ci["precision"] is None  # nothing is ever called spam
    one_class = bootstrap_intervals(np.zeros(30, dtype=int), np.r_[0.7, np.full(29, 0.2)], n_resamples=500)
    assert one_class["accuracy"][0] < 29 / 30 < one_class["accuracy"][1]  # well defined without spam
    assert one_class["recall"] is one_class["f1"] is one_class["auroc"] is one_class["mcc"] is None
    assert one_class["precision"] == [0.0, 0.0]  # every alarm false, as classification_metrics says


def test_a_small_files_precision_interval_leaves_out_resamples_with_no_spam_called():
    # 20 messages, 3 called spam, all rightly: precision is 1 in every resample that calls any spam. Counted as 0,
    # the ~4 % of resamples that call none gave the interval [0, 1]
    y = np.r_[np.ones(3), np.ones(1), np.zeros(16)].astype(int)
    p = np.r_[np.full(3, 0.9), 0.2, np.full(16, 0.1)]
    ci = bootstrap_intervals(y, p, n_resamples=1000, seed=0)
    assert ci["precision"] == [1.0, 1.0]
    assert ci["recall"][0] < 1.0 and ci["f1"][0] < ci["f1"][1]
    assert bootstrap_intervals(y, np.full(20, 0.1))["precision"] is None  # nothing ever called spam


def test_batched_auroc_and_auprc_equal_sklearns_under_every_weighting():
    from sklearn import metrics as skm
    rng = np.random.default_rng(7)
    y = rng.permutation(np.r_[np.zeros(70), np.ones(12)].astype(int))
    p = np.round(np.clip(y * 0.3 + rng.random(len(y)) * 0.7, 0, 1), 1)  # rounded: many tied scores, across classes
    weights = rng.integers(0, 3, (40, len(y)))  # as a bootstrap draws them: 0, 1 or more copies of each message
    weights[:, [np.argmax(y == 0), np.argmax(y == 1)]] = 1  # both classes in every row
    auroc, auprc = weighted_ranking_metrics(y, p, weights)
    assert auroc == pytest.approx([skm.roc_auc_score(y, p, sample_weight=w) for w in weights], abs=1e-12)
    assert auprc == pytest.approx([skm.average_precision_score(y, p, sample_weight=w) for w in weights], abs=1e-12)
    assert 0.5 < auroc.mean() < 1 and auprc.std() > 0  # not a degenerate case
