"""Evaluation metrics: pure functions over sklearn.metrics returning plain floats (spam = positive class).

>>> m = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
>>> m["accuracy"], m["auroc"], m["confusion_matrix"]
(0.5, 0.75, [[1, 1], [1, 1]])
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm


def _as_arrays(y_true, p_spam) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(p_spam, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"expected y_true and p_spam of the same 1-D shape, got {y.shape} and {p.shape}")
    if len(y) == 0:
        raise ValueError("expected at least one example, got none")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"expected labels 0 (ham) and 1 (spam), got {sorted(set(y.tolist()))}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("expected probabilities in [0, 1], got values outside it or NaN")
    return y, p


def classification_metrics(y_true, p_spam, threshold: float = 0.5) -> dict:
    """Threshold metrics at `threshold`, ranking metrics from the probabilities themselves.

    AUROC and AUPRC are undefined with one class in y_true (a file of spam only, say): they come back as None,
    which JSON writes as null. So do recall and F1 in a file with no spam, and then precision too unless the model
    called something spam (then it is 0: every alarm false). With spam present, a model that calls nothing spam
    gets precision 0, as scikit-learn (and the seed's report) give it.
    """
    y, p = _as_arrays(y_true, p_spam)
    pred = (p >= threshold).astype(int)
    if len(np.unique(y)) < 2:
        auroc = auprc = None
    else:
        auroc = float(skm.roc_auc_score(y, p))
        auprc = float(skm.average_precision_score(y, p))
    no_spam = not y.any()
    return {
        "n": int(len(y)),
        "n_spam": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": None if no_spam and not pred.any() else float(skm.precision_score(y, pred, zero_division=0)),
        "recall": None if no_spam else float(skm.recall_score(y, pred, zero_division=0)),
        "f1": None if no_spam else float(skm.f1_score(y, pred, zero_division=0)),
        "auroc": auroc,
        "auprc": auprc,
        "mcc": _mcc(y, pred),
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=[0, 1]).tolist(),  # [[tn, fp], [fn, tp]]
    }


def _mcc(y: np.ndarray, pred: np.ndarray) -> float:
    with warnings.catch_warnings():  # one class in both y and pred: MCC is 0, which needs no warning
        warnings.simplefilter("ignore", UserWarning)
        return float(skm.matthews_corrcoef(y, pred))


def curves(y_true, p_spam) -> dict:
    """ROC and precision-recall curve points, ready for plotting."""
    y, p = _as_arrays(y_true, p_spam)
    if len(np.unique(y)) < 2:
        return {"roc": None, "pr": None}
    fpr, tpr, roc_thr = skm.roc_curve(y, p)
    precision, recall, pr_thr = skm.precision_recall_curve(y, p)
    return {
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.clip(roc_thr, 0, 1).tolist()},
        "pr": {"precision": precision.tolist(), "recall": recall.tolist(), "thresholds": pr_thr.tolist()},
    }


BOOTSTRAP_CELLS = 2_000_000  # resamples x messages held at once: a 60,000-message file took 5 GB in one pass


def bootstrap_intervals(y_true, p_spam, threshold: float = 0.5, n_resamples: int = 1000, seed: int = 0) -> dict:
    """95 % percentile-bootstrap intervals for every metric: the test split holds ~130 spam messages,
    so one miss moves recall by almost a point and a lone number overstates what is known. The resamples are
    drawn and scored a slice at a time, so memory stays bounded for a large file (a test split is one slice)."""
    y, p = _as_arrays(y_true, p_spam)
    rng = np.random.default_rng(seed)
    pred = (p >= threshold).astype(int)
    per_slice = max(1, BOOTSTRAP_CELLS // len(y))
    slices = []
    for start in range(0, n_resamples, per_slice):
        rows = min(per_slice, n_resamples - start)
        idx = rng.integers(0, len(y), (rows, len(y)))  # (R, N) resampled positions
        # a resample is the original messages weighted by how often it drew each one
        counts = np.bincount((np.arange(rows)[:, None] * len(y) + idx).ravel(), minlength=idx.size)
        slices.append(_resampled_metrics(y, p, pred, counts.reshape(idx.shape)))
    defined = {name: np.concatenate([s[name] for s in slices]) for name in slices[0]}
    defined = {name: v[~np.isnan(v)] for name, v in defined.items()}
    return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else None
            for name, v in defined.items()}


def _resampled_metrics(y: np.ndarray, p: np.ndarray, pred: np.ndarray, counts: np.ndarray) -> dict:
    """Every metric of each resample, a row of `counts` (how often it drew each message), at once. A metric a
    resample does not define is NaN there and left out of its interval, and only that metric's: dropping every
    resample without spam for all metrics capped a small file's accuracy interval at its point estimate (1 spam
    of 40, missed: the resamples that skip it, 36 %, are the ones with no error)."""
    # the confusion counts of all resamples at once; the formulas are those of sklearn's scorers
    tp, fp = counts @ (y & pred), counts @ ((1 - y) & pred)
    fn, tn = counts @ (y & (1 - pred)), counts @ ((1 - y) & (1 - pred))
    has_spam, has_ham = tp + fn > 0, tn + fp > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # a resample where nothing is called spam has no precision: left out, not counted as 0, which dragged the
        # lower bound of a small file's interval to 0 (a few of 20 messages called spam: 1 in 25 resamples has none)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(has_spam, tp / (tp + fn), np.nan)
        f1 = np.where(has_spam, 2 * tp / (2 * tp + fp + fn), np.nan)  # 0 where spam is there but none called spam
        denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn).astype(float))
        mcc = np.where(has_spam & has_ham, np.where(denom > 0, (tp * tn - fp * fn) / denom, 0.0), np.nan)
    auroc, auprc = np.full(len(counts), np.nan), np.full(len(counts), np.nan)
    both = has_spam & has_ham  # ranking metrics need both classes
    if both.any():
        auroc[both], auprc[both] = weighted_ranking_metrics(y, p, counts[both])
    return {"accuracy": (tp + tn) / len(y), "precision": precision, "recall": recall, "f1": f1, "mcc": mcc,
            "auroc": auroc, "auprc": auprc}


def weighted_ranking_metrics(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision (AUPRC) of the same messages under each row of `weights` (R, N) at once, as
    sklearn's roc_auc_score and average_precision_score compute them with sample_weight=row. sklearn scores one
    weighting per call, and a bootstrap's 2,000 calls took 4-5 s at the end of every run on a slow CPU; this takes
    milliseconds (tests/test_metrics.py checks it against sklearn on every resample, ties included). Every row must
    weigh both classes above zero."""
    order = np.argsort(-p, kind="mergesort")
    y, p, weights = y[order], p[order], weights[:, order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # thresholds: the distinct scores, highest first
    tps = np.cumsum(weights * y, axis=1)[:, last_of_each_score].astype(float)
    fps = np.cumsum(weights * (1 - y), axis=1)[:, last_of_each_score].astype(float)
    tpr, fpr = tps / tps[:, -1:], fps / fps[:, -1:]
    zero = np.zeros((len(weights), 1))
    auroc = np.trapezoid(np.hstack([zero, tpr]), np.hstack([zero, fpr]), axis=1)
    # precision at each threshold times the recall it adds (sklearn: precision 0 where nothing is called spam yet)
    called = tps + fps
    precision = np.divide(tps, called, out=np.zeros_like(tps), where=called > 0)
    auprc = (np.diff(np.hstack([zero, tpr]), axis=1) * precision).sum(axis=1)
    return auroc, auprc


def mcnemar_test(y_true, p_a, p_b, threshold: float = 0.5, threshold_b: float | None = None) -> dict:
    """Exact McNemar test on the messages where exactly one of two models is right (same test messages).
    threshold_b: model b's own threshold, when it differs from a's."""
    from scipy.stats import binomtest

    y, pa = _as_arrays(y_true, p_a)
    _, pb = _as_arrays(y_true, p_b)
    right_a = (pa >= threshold).astype(int) == y
    right_b = (pb >= (threshold if threshold_b is None else threshold_b)).astype(int) == y
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p_value = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p_value}


def calibration(y_true, p_spam, n_bins: int = 10) -> dict:
    """Reliability diagram points (sklearn's calibration_curve, equal-width bins), each with the 95 % Wilson
    interval of its observed share, and the Brier score: does "80 % spam" mean spam 80 % of the time? A bin of
    one message says little, and its interval, near [0, 1], shows that."""
    from scipy.stats import binomtest
    from sklearn.calibration import calibration_curve

    y, p = _as_arrays(y_true, p_spam)
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    # messages per bin, binned exactly as calibration_curve bins them (np.histogram puts edge values one bin higher)
    bins = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], p)
    counts, spam = np.bincount(bins, minlength=n_bins), np.bincount(bins, weights=y, minlength=n_bins)
    kept = counts > 0
    intervals = [binomtest(int(k), int(n)).proportion_ci(method="wilson") for k, n in zip(spam[kept], counts[kept])]
    return {"predicted": predicted.tolist(), "observed": observed.tolist(), "counts": counts[kept].tolist(),
            "observed_ci95": [[float(ci.low), float(ci.high)] for ci in intervals],
            "brier": float(skm.brier_score_loss(y, p))}
