"""How far image statistics alone get: the shortcut tests of issue 11."""

from __future__ import annotations

import dataclasses

import numpy as np
from astropy.table import Table

from ..baselines import photometric_features, shortcut_auc
from ..config import SimulationConfig
from .breakdowns import SAME_POPULATION_KIND, _arrays


def _features(images, pixel_scale: float, chunk: int = 256) -> np.ndarray:
    """:func:`photometric_features` a chunk at a time (bounded memory; works on h5py datasets)."""
    return np.concatenate([photometric_features(np.asarray(images[i:i + chunk]), pixel_scale=pixel_scale)
                           for i in range(0, len(images), chunk)])


def shortcut_test(images, labels, kinds, groups, *, seed: int = 0, n_splits: int = 3,
                  pixel_scale: float = 0.05) -> Table:
    """Out-of-fold AUC of gradient-boosted trees on aggregated image statistics alone.

    ``images`` (N, H, W) are cutouts in e-/s (an h5py dataset works too); ``labels``, ``kinds``
    and ``groups`` (parent ids: folds keep a parent's copies together) one per image; ``seed``
    shuffles the folds and seeds the trees; ``pixel_scale`` (arcsec) sets the radii of
    :func:`lenslib.baselines.photometric_features`.  Returns a Table with rows
    ``lens_vs_elliptical`` (same-population non-lenses only) and ``lens_vs_all``: mean, std, min
    and max of the fold AUCs, and counts; NaN AUCs when a class has fewer than ``n_splits`` parents.
    """
    y, _, k, g = _arrays(labels, None, kinds, groups)
    k = k.astype(str)
    features = _features(images, pixel_scale)
    return _shortcut_table([(test, features[sel], y[sel], g[sel]) for test, sel in
                            (("lens_vs_elliptical", (y == 1) | (k == SAME_POPULATION_KIND)),
                             ("lens_vs_all", np.ones(y.size, bool)))], n_splits=n_splits, seed=seed)


def _shortcut_table(tests, *, n_splits: int, seed: int) -> Table:
    """One row per ``(name, features, labels, groups)``: fold AUCs of :func:`shortcut_auc`."""
    rows = []
    for test, features, ys, gs in tests:
        enough = all(np.unique(gs[ys == c]).size >= n_splits for c in (0, 1))
        aucs = shortcut_auc(features, ys, gs, n_splits=n_splits, seed=seed) if enough else np.full(1, np.nan)
        rows.append((test, float(np.mean(aucs)), float(np.std(aucs)), float(np.min(aucs)),
                     float(np.max(aucs)), int(ys.sum()), int((ys == 0).sum())))
    return Table(rows=rows, names=("test", "auc", "auc_std", "auc_min", "auc_max", "n_lenses", "n_nonlenses"),
                 dtype=(str, float, float, float, float, int, int))


def population_shortcut(config: SimulationConfig, n_pairs: int = 1000, *, seed: int = 0,
                        n_splits: int = 3) -> Table:
    """:func:`shortcut_test` on the same lenses with and without their lensed light: is there a
    *population* shortcut?

    Simulates ``n_pairs`` lenses of ``config``'s lens mix and as many same-population non-lenses
    (without stand-in neighbours) and scores the statistics and trees twice: row
    ``lens_vs_elliptical`` with the lenses as observed, row ``lens_without_lensed_light_vs_elliptical``
    with each lens's lensed light taken out of its cutout (noise, field and artifacts stay, and so
    does the Poisson noise of the lensed photons, a small excess where arcs were).  Above chance in
    the second row would mean the statistics tell a lens's galaxy from a non-lens's galaxy; the
    first row is what they see of the lensed light.  Columns as :func:`shortcut_test`'s."""
    from ..config.checks import check_range
    from ..simulate import simulate_scene

    check_range("population_shortcut", "n_pairs", n_pairs, max(n_splits, 2), 10_000_000, integer=True)
    config = dataclasses.replace(config, twin_neighbour_fraction=0.0)
    kinds, weights = zip(*config.lens_kinds)
    weights = np.asarray(weights) / np.sum(weights)
    drawn = np.random.default_rng([seed, 0]).choice(kinds, size=n_pairs, p=weights)
    lenses = [simulate_scene(str(kind), np.random.default_rng([seed, 1, i]), config)
              for i, kind in enumerate(drawn)]
    twins = np.asarray([simulate_scene(SAME_POPULATION_KIND, np.random.default_rng([seed, 2, i]), config)
                        .image for i in range(n_pairs)])
    observed = np.asarray([scene.image for scene in lenses])
    stripped = np.asarray([scene.image - scene.components["lensed"] for scene in lenses])
    labels = np.r_[np.ones(n_pairs), np.zeros(n_pairs)].astype(int)
    groups = np.arange(labels.size)
    scale = config.instrument.pixel_scale
    twin_features = _features(twins, scale)  # per cutout, so shared by both rows
    return _shortcut_table([(name, np.concatenate([_features(x, scale), twin_features]), labels, groups)
                            for name, x in (("lens_vs_elliptical", observed),
                                            ("lens_without_lensed_light_vs_elliptical", stripped))],
                           n_splits=n_splits, seed=seed)
