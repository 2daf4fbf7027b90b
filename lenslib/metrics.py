"""The metrics of Table 5-1 and of lens finding since: built on scikit-learn.

- ROC AUC and F1, as the thesis reports them (its equations 6 and 7);
- F1 at a threshold chosen on the training folds only;
- the Bologna Lens Finding Challenge's TPR0 and TPR10 (Metcalf et al. 2019): the fraction of
  lenses found before the first, or the eleventh, false positive;
- TPR at a fixed false-positive rate, and the purity a threshold would have in a survey where
  one object in a thousand is a lens;
- calibration (reliability curve, expected calibration error) and bootstrap intervals that
  resample whole parents, since augmented siblings are not independent.
"""

from __future__ import annotations

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score, roc_curve

SURVEY_PREVALENCE = 1e-3


def _check(labels, scores, where: str = "scores"):
    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{where}: {y.size} labels but {s.size} scores")
    if y.size == 0:
        raise ValueError(f"{where}: no labels to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{where}: labels must be 0 or 1 (got {sorted(set(y.tolist()))})")
    if not np.isfinite(s).all():
        raise ValueError(f"{where}: scores contain NaN or infinity")
    if y.min() == y.max():
        cls = "lenses" if y[0] == 1 else "non-lenses"
        raise ValueError(f"{where}: only {cls} present; ROC AUC and TPR need both classes")
    return y, s


def tpr_at_false_positives(labels, scores, n_false_positives: int = 0) -> float:
    """Largest TPR reached with at most ``n_false_positives`` non-lenses above threshold.

    TPR0 is ``n_false_positives=0``: lenses scoring strictly above every non-lens (ties with a
    non-lens count as not found); TPR10 is ``n_false_positives=10``.
    """
    y, s = _check(labels, scores)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    fp = np.rint(fpr * (y == 0).sum())
    return float(tpr[fp <= n_false_positives].max())


def tpr_at_fpr(labels, scores, fpr_target: float = 1e-3) -> float:
    """Largest TPR with a false-positive rate of at most ``fpr_target``."""
    y, s = _check(labels, scores)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(tpr[fpr <= fpr_target].max())


def purity_at_prevalence(tpr: float, fpr: float, prevalence: float = SURVEY_PREVALENCE) -> float:
    """Fraction of real lenses among candidates at a threshold with this TPR and FPR, in a survey
    where a fraction ``prevalence`` of objects are lenses (Bayes' rule)."""
    found = tpr * prevalence
    false = fpr * (1 - prevalence)
    return float(found / (found + false)) if found + false > 0 else float("nan")


def best_f1_threshold(labels, scores) -> float:
    """Threshold maximising F1 on the given (training) scores."""
    y, s = _check(labels, scores, "training scores")
    precision, recall, thresholds = precision_recall_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[np.argmax(f1[:-1])])


def expected_calibration_error(labels, probabilities, n_bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width probability bins, weighted by bin size."""
    y, p = _check(labels, probabilities)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            ece += inside.mean() * abs(y[inside].mean() - p[inside].mean())
    return float(ece)


def reliability_curve(labels, probabilities, n_bins: int = 10):
    """(mean predicted probability, fraction of lenses) per bin, from scikit-learn."""
    y, p = _check(labels, probabilities)
    frac, mean = calibration_curve(y, p, n_bins=n_bins)
    return mean, frac


def fold_metrics(labels, scores, *, threshold: float, prevalence: float = SURVEY_PREVALENCE) -> dict:
    """Every per-fold metric of the cross-validation table for one test fold."""
    y, s = _check(labels, scores)
    predicted = s >= threshold
    tpr_t = float(predicted[y == 1].mean())
    fpr_t = float(predicted[y == 0].mean())
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "f1": float(f1_score(y, s >= 0.5, zero_division=0)),
        "f1_tuned": float(f1_score(y, predicted, zero_division=0)),
        "threshold": float(threshold),
        "tpr0": tpr_at_false_positives(y, s, 0),
        "tpr10": tpr_at_false_positives(y, s, 10),
        "tpr_at_fpr_1e-3": tpr_at_fpr(y, s, 1e-3),
        "purity_at_1e-3": purity_at_prevalence(tpr_t, fpr_t, prevalence),
        "ece": expected_calibration_error(y, s),
    }


def bootstrap_interval(metric, labels, scores, *, groups=None, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(labels, scores)``, resampling whole groups
    (parents) when ``groups`` is given; resamples with a single class are skipped."""
    y, s = _check(labels, scores)
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(y.size)
    groups = np.asarray(groups)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(unique.size)]
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, unique.size, unique.size)
        idx = np.concatenate([members[g] for g in pick])
        if y[idx].min() != y[idx].max():
            values.append(metric(y[idx], s[idx]))
    if not values:
        raise ValueError("bootstrap: every resample had a single class; too few groups")
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def completeness_by(values, labels, scores, *, threshold: float, bins) -> tuple[np.ndarray, np.ndarray,
                                                                               np.ndarray]:
    """Fraction of lenses found (score >= threshold) per bin of ``values`` (e.g. Einstein
    radius or arc SNR); returns (bin centres, completeness, lenses per bin)."""
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    v = np.asarray(values, dtype=float)
    lens = y == 1
    edges = np.asarray(bins, dtype=float)
    which = np.digitize(v[lens], edges) - 1
    found = s[lens] >= threshold
    centres = 0.5 * (edges[1:] + edges[:-1])
    n = np.array([(which == b).sum() for b in range(len(centres))])
    comp = np.array([found[which == b].mean() if n[b] else np.nan for b in range(len(centres))])
    return centres, comp, n
