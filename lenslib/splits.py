"""Folds and validation splits: which rows train, which validate, which test.

- ``grouped`` (default): an image and all its augmented siblings stay on one side (scikit-learn's
  ``StratifiedGroupKFold`` on the parent id): honest out-of-sample scores.
- ``thesis``: plain shuffled stratified folds over the augmented images, as the thesis did.

A leaf module: cross-validation (:mod:`lenslib.cv`), training (:mod:`lenslib.train`), the
baselines and the diagnostics all split rows here and import nothing else from each other for it.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from .errors import InputError

SPLIT_MODES = ("grouped", "thesis")


def make_folds(labels, groups, n_splits: int, *, mode: str = "grouped", seed: int = 0):
    """``[(train_index, test_index), ...]`` for ``n_splits`` folds, stratified by label."""
    if mode not in SPLIT_MODES:
        raise InputError(f"mode must be one of {SPLIT_MODES} (got {mode!r})")
    if not (isinstance(n_splits, int) and n_splits >= 2):
        raise InputError(f"n_splits must be an integer >= 2 (got {n_splits!r})")
    y = np.asarray(labels).astype(int)
    groups = np.asarray(groups)
    if y.shape != groups.shape:
        raise InputError(f"labels ({y.size}) and groups ({groups.size}) differ in length")
    n_groups = len(np.unique(groups)) if mode == "grouped" else y.size
    if n_groups < n_splits:
        unit = "parents" if mode == "grouped" else "images"
        raise InputError(f"n_splits={n_splits} folds need at least as many {unit} (got {n_groups})")
    if mode == "grouped":
        split = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(
            np.zeros(y.size), y, groups)
    else:
        split = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(y.size), y)
    folds = [(np.sort(tr), np.sort(te)) for tr, te in split]
    for k, (_, test) in enumerate(folds):
        if y[test].min() == y[test].max():
            raise InputError(f"fold {k} of {n_splits} ({mode}) holds only "
                             f"{'lenses' if y[test][0] else 'non-lenses'}: use fewer folds or more data")
    return folds


def validation_split(train_index, labels, groups, *, mode: str = "grouped", fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows into (fit, validation) parts, about ``fraction`` for validation,
    stratified and, in ``grouped`` mode, keeping each parent on one side."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5] (got {fraction!r})")
    train_index = np.asarray(train_index)
    y = np.asarray(labels).astype(int)[train_index]
    g = np.asarray(groups)[train_index]
    n_units = len(np.unique(g)) if mode == "grouped" else len(y)
    n_splits = min(max(2, round(1 / fraction)), n_units)
    fit, val = make_folds(y, g, n_splits, mode=mode, seed=seed)[0]
    return train_index[fit], train_index[val]
