"""The early data-driven methods of chapter 3 and simple-statistics checks, with scikit-learn.

:func:`photometric_features` condenses a cutout into a handful of aggregated statistics (in the
spirit of the 9-feature vectors of Williams et al.): how bright the centre, the annulus where
arcs live and the outskirts are, how concentrated, elongated and asymmetric the light is.
:func:`shortcut_auc` asks how well a strong classifier does on those statistics alone: a sky on
which it scores near 1 would be too easy to say anything about lens finding.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from .preprocess import normalize

FEATURE_NAMES = (
    "centre_mean", "annulus_mean", "outer_mean", "peak", "bright_fraction",
    "bright_size", "bright_ellipticity", "asymmetry", "annulus_azimuthal_spread",
)


def photometric_features(cutouts, *, pixel_scale: float = 0.05) -> np.ndarray:
    """``(N, 9)`` aggregated statistics of normalised cutouts (see :data:`FEATURE_NAMES`)."""
    x = normalize(cutouts).astype(np.float64)
    n, h, w = x.shape
    yy, xx = np.mgrid[:h, :w]
    yy = (yy - (h - 1) / 2) * pixel_scale
    xx = (xx - (w - 1) / 2) * pixel_scale
    r = np.hypot(xx, yy)
    centre, annulus, outer = r < 0.5, (r >= 0.5) & (r < 2.5), r >= 2.5
    bright = x > 3.0
    weight = np.where(bright, x, 0.0)
    total = weight.sum(axis=(1, 2)) + 1e-9
    mx = (weight * xx).sum(axis=(1, 2)) / total
    my = (weight * yy).sum(axis=(1, 2)) / total
    dx, dy = xx - mx[:, None, None], yy - my[:, None, None]
    qxx = (weight * dx**2).sum(axis=(1, 2)) / total
    qyy = (weight * dy**2).sum(axis=(1, 2)) / total
    qxy = (weight * dx * dy).sum(axis=(1, 2)) / total
    size = np.sqrt(np.clip(qxx + qyy, 0, None))
    ellipticity = np.hypot(qxx - qyy, 2 * qxy) / (qxx + qyy + 1e-9)
    asymmetry = np.abs(x - x[:, ::-1, ::-1]).sum(axis=(1, 2)) / (np.abs(x).sum(axis=(1, 2)) + 1e-9)
    sectors = (np.arctan2(yy, xx) + np.pi) / (2 * np.pi) * 8
    sector = np.clip(sectors.astype(int), 0, 7)
    sector_means = np.stack([x[:, annulus & (sector == s)].mean(axis=1) for s in range(8)], axis=1)
    return np.column_stack([
        x[:, centre].mean(axis=1), x[:, annulus].mean(axis=1), x[:, outer].mean(axis=1),
        x.reshape(n, -1).max(axis=1), bright.reshape(n, -1).mean(axis=1), size, ellipticity,
        asymmetry, sector_means.std(axis=1),
    ])


def shortcut_auc(features: np.ndarray, labels, groups, *, n_splits: int = 3, seed: int = 0) -> np.ndarray:
    """Out-of-fold ROC AUC per fold of gradient-boosted trees on ``features``.

    Folds are grouped by ``groups`` (parent ids), so augmented copies never straddle a split.
    """
    labels = np.asarray(labels)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    aucs = []
    for train, test in folds.split(features, labels, groups):
        model = HistGradientBoostingClassifier(random_state=seed, max_iter=200)
        model.fit(features[train], labels[train])
        aucs.append(roc_auc_score(labels[test], model.predict_proba(features[test])[:, 1]))
    return np.array(aucs)
