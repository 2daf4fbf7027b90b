"""Metrics against hand-worked cases, ties and single-class folds included."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lenslib.metrics import (
    best_f1_threshold,
    bootstrap_interval,
    completeness_by,
    expected_calibration_error,
    fold_metrics,
    purity_at_prevalence,
    tpr_at_false_positives,
    tpr_at_fpr,
)

Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])


def test_hand_worked_case():
    m = fold_metrics(Y, S, threshold=0.3)
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 lens/non-lens pairs ordered right
    assert m["tpr0"] == pytest.approx(0.5)  # only 0.8 beats the best non-lens (0.4)
    assert m["tpr10"] == pytest.approx(1.0)
    # At 0.5 one lens found, no false positive: precision 1, recall 1/2 -> F1 2/3.
    assert m["f1"] == pytest.approx(2 / 3)
    # At the tuned threshold 0.3: both lenses and one non-lens -> F1 = 2*2/(2*2+1) = 0.8.
    assert m["f1_tuned"] == pytest.approx(0.8)


def test_ties_count_against_the_finder():
    assert tpr_at_false_positives([0, 1], [0.5, 0.5], 0) == 0.0
    assert tpr_at_false_positives([0, 1, 1], [0.5, 0.5, 0.9], 0) == pytest.approx(0.5)
    assert tpr_at_false_positives([0, 1, 1], [0.5, 0.5, 0.9], 1) == pytest.approx(1.0)


def test_tpr_at_fixed_fpr():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(2000), np.ones(100)]
    s = np.r_[rng.uniform(0, 1, 2000), np.linspace(0.0, 1.2, 100)]
    # FPR <= 1e-3 allows two false positives out of 2000: check against a direct count.
    threshold = np.sort(s[y == 0])[-3]
    assert tpr_at_fpr(y, s, 1e-3) == pytest.approx((s[y == 1] > threshold).mean())


def test_purity_is_bayes_rule():
    assert purity_at_prevalence(0.9, 0.01, 1e-3) == pytest.approx(0.0009 / (0.0009 + 0.01 * 0.999))
    assert purity_at_prevalence(0.5, 0.0) == 1.0
    assert np.isnan(purity_at_prevalence(0.0, 0.0))


def test_threshold_and_calibration():
    assert best_f1_threshold([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.3)
    calibrated_y = np.r_[np.ones(8), np.zeros(2)]
    assert expected_calibration_error(calibrated_y, np.full(10, 0.8)) == pytest.approx(0.0)
    assert expected_calibration_error([0, 1], [0.99, 0.99]) == pytest.approx(0.49)


@pytest.mark.parametrize("fn", [lambda y, s: fold_metrics(y, s, threshold=0.5), tpr_at_fpr,
                                tpr_at_false_positives, best_f1_threshold])
def test_single_class_fold_is_a_clear_error(fn):
    with pytest.raises(ValueError, match="only lenses present"):
        fn([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="only non-lenses present"):
        fn([0, 0], [0.2, 0.5])


def test_bad_scores_are_named():
    with pytest.raises(ValueError, match="NaN"):
        fold_metrics([0, 1], [0.1, np.nan], threshold=0.5)
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        fold_metrics([0, 1, 1], [0.1, 0.2], threshold=0.5)


def test_grouped_bootstrap_brackets_the_estimate():
    rng = np.random.default_rng(1)
    parent_y = rng.integers(0, 2, 200)
    y = np.repeat(parent_y, 3)
    # Siblings share most of their score, as augmented copies of one image do.
    s = np.repeat(parent_y * 0.3 + rng.normal(0, 0.3, 200), 3) + rng.normal(0, 0.03, y.size)
    groups = np.repeat(np.arange(200), 3)
    lo, hi = bootstrap_interval(roc_auc_score, y, s, groups=groups, n_boot=300)
    assert lo < roc_auc_score(y, s) < hi
    lo_i, hi_i = bootstrap_interval(roc_auc_score, y, s, n_boot=300)
    assert hi - lo > hi_i - lo_i  # siblings are not independent: grouped intervals are wider


def test_completeness_by_bins():
    values = np.array([0.6, 0.7, 1.5, 1.6, 9.9])
    labels = np.array([1, 1, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.99])
    centres, comp, n = completeness_by(values, labels, scores, threshold=0.5, bins=[0.5, 1.0, 2.0])
    np.testing.assert_allclose(centres, [0.75, 1.5])
    np.testing.assert_allclose(comp, [0.5, 1.0])
    np.testing.assert_array_equal(n, [2, 2])
