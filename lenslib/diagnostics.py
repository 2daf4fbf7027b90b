"""What a lens finder learned: scores broken down by what makes a lens a lens.

One overall ROC AUC cannot tell a finder that sees lensed light from one that tells galaxy
types apart.  This module asks narrower questions of the same scores:

:func:`auc_by_kind` (against ``elliptical``, the lenses' own deflectors without a lensed source,
only the lensed light can help), :func:`auc_by_bins` (a finder that sees arcs improves with
their SNR), :func:`shortcut_test` (how far nine image statistics alone get) and
:func:`evaluate_shifted` (skies it was not trained on).  :func:`learnability` runs the fixed
recipe of issue 11 (simulate, grouped hold-out, LensFlow, these diagnostics) and times it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from sklearn.metrics import roc_auc_score

from .baselines import photometric_features, shortcut_auc
from .config import SimulationConfig, TrainingConfig
from .metrics import purity_at_prevalence, tpr_at_false_positives, tpr_at_fpr

#: Bin edges of :func:`evaluate`'s tables (lower edge inclusive, upper exclusive).
ARC_SNR_BINS = (15.0, 30.0, 50.0, 100.0, 200.0, np.inf)
VISIBILITY_BINS = (0.0, 20.0, 30.0, 50.0, 100.0, 200.0, np.inf)
THETA_E_BINS = (0.5, 0.8, 1.1, 1.5, 2.5)
#: The non-lens kind drawn from the lenses' own deflector population (see SimulationConfig).
SAME_POPULATION_KIND = "elliptical"


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when one class is missing."""
    if labels.size == 0 or labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def _arrays(labels, scores, *others):
    """Checked 1-d arrays of equal length; ``scores=None`` stands for no scores (zeros)."""
    y = np.asarray(labels).astype(int).ravel()
    s = np.zeros(y.size) if scores is None else np.asarray(scores, dtype=float).ravel()
    rest = [np.asarray(o).ravel() for o in others]
    if any(a.shape != y.shape for a in (s, *rest)):
        raise ValueError(f"labels, scores and the other arrays must have one entry per image "
                         f"(got sizes {[a.size for a in (y, s, *rest)]})")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    return y, s, *rest


def auc_by_kind(labels, scores, kinds) -> Table:
    """ROC AUC of lenses against each kind of non-lens, and of each lens kind against all non-lenses.

    ``labels``, ``scores``, ``kinds``: one per image (1 for a lens; metadata column ``kind``).
    Returns a Table with columns ``lenses``, ``nonlenses`` (a kind or ``all``), ``auc``,
    ``n_lenses``, ``n_nonlenses``: a row per non-lens kind (most frequent first), then, when there
    are several lens kinds, a row per lens kind, and last ``all`` against ``all``.
    """
    y, s, k = _arrays(labels, scores, kinds)
    k = k.astype(str)
    lens, non = y == 1, y == 0
    rows = []
    for kind in _by_count(k[non]):
        sel = lens | (k == kind)
        rows.append(("all", kind, _auc(y[sel], s[sel]), int(lens.sum()), int((non & (k == kind)).sum())))
    lens_kinds = _by_count(k[lens])
    if len(lens_kinds) > 1:
        for kind in lens_kinds:
            sel = non | (k == kind)
            rows.append((kind, "all", _auc(y[sel], s[sel]), int((lens & (k == kind)).sum()), int(non.sum())))
    rows.append(("all", "all", _auc(y, s), int(lens.sum()), int(non.sum())))
    return Table(rows=rows, names=("lenses", "nonlenses", "auc", "n_lenses", "n_nonlenses"),
                 dtype=(str, str, float, int, int))


def _by_count(values: np.ndarray) -> list[str]:
    names, counts = np.unique(values, return_counts=True)
    return [str(n) for n in names[np.argsort(-counts, kind="stable")]]


def auc_by_bins(values, labels, scores, bins, *, name: str) -> Table:
    """ROC AUC of the lenses whose ``values`` fall in each bin against all non-lenses.

    Parameters
    ----------
    values : array-like
        A lens property per image (e.g. ``arc_snr``); NaN is left out; non-lenses' values unused.
    bins : sequence of float
        Increasing edges; a bin holds ``lo <= value < hi``, the last also ``value == hi``
        (as ``numpy.histogram``); the last edge may be ``inf``.
    name : str
        Names the edge columns ``<name>_min`` and ``<name>_max``.

    Returns
    -------
    Table
        One row per bin: edges, ``n_lenses`` and ``auc`` (NaN for an empty bin).
    """
    y, s, v = _arrays(labels, scores, values)
    v = v.astype(float)
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins must be at least two increasing edges (got {bins!r})")
    non = y == 0
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        below = v <= hi if hi == edges[-1] else v < hi
        inside = (y == 1) & (v >= lo) & below  # NaN compares False: left out
        sel = inside | non
        rows.append((lo, hi, int(inside.sum()), _auc(y[sel], s[sel]) if inside.any() else float("nan")))
    return Table(rows=rows, names=(f"{name}_min", f"{name}_max", "n_lenses", "auc"),
                 dtype=(float, float, int, float))


def survey_metrics(labels, scores) -> dict[str, float]:
    """ROC AUC, TPR0, TPR10, TPR at FPR 1e-3 and 1e-4, and purity at a prevalence of 1e-3.

    Purity takes the threshold of FPR <= 1e-3 and counts its FPR as 1e-3 (a lower bound).  With
    fewer than 1/FPR non-lenses, TPR at that FPR is TPR0: no false positive is allowed.
    """
    y, s = _arrays(labels, scores)
    tpr3 = tpr_at_fpr(y, s, 1e-3)
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "tpr0": tpr_at_false_positives(y, s, 0),
        "tpr10": tpr_at_false_positives(y, s, 10),
        "tpr_at_fpr_1e-3": tpr3,
        "tpr_at_fpr_1e-4": tpr_at_fpr(y, s, 1e-4),
        "purity_at_1e-3": purity_at_prevalence(tpr3, 1e-3, 1e-3),
        "n_lenses": int(y.sum()),
        "n_nonlenses": int((y == 0).sum()),
    }


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
    from .config.checks import check_range
    from .simulate import simulate_scene

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


def shifted_skies(config: SimulationConfig) -> dict[str, SimulationConfig]:
    """Test skies for a finder trained on ``config``: a control and four shifts.

    ``default`` is ``config`` with another seed (same distribution, new images: the reference
    for the shifts); ``moffat_psf`` a Moffat PSF of FWHM 0.15" (about 60% wider than the
    default ~0.094"); ``shallow`` about half the exposure and a brighter sky; ``other_populations``
    heavier, nearer deflectors and nearer, brighter, larger sources; ``neighbours`` gives every
    same-population non-lens an unlensed neighbour with the flux and surface brightness its lensed
    light would have had (a finder that learned "extra light near an elliptical" fails there,
    one that learned arcs and counter-images does not).  Each gets its own seed
    (``config.seed + 1, + 2, ...``), so no parent image is shared with the training sky or
    with another test sky.
    """
    inst = config.instrument
    changes = {
        "default": {},
        "moffat_psf": {"instrument": dataclasses.replace(inst, psf_model="moffat", moffat_fwhm=0.15,
                                                         moffat_beta=3.0)},
        "shallow": {"instrument": dataclasses.replace(inst, exposure_time_range=(500.0, 1000.0),
                                                      sky_brightness_range=(21.4, 22.0))},
        "other_populations": {"deflector_sigma_v_median": 260.0, "deflector_z_mean": 0.35,
                              "source_z_mean": 1.6, "source_mag_range": (20.5, 26.0),
                              "source_r_eff_range": (0.1, 0.5)},
        "neighbours": {"twin_neighbour_fraction": 1.0},
    }
    return {name: dataclasses.replace(config, seed=config.seed + 1 + i, **change)
            for i, (name, change) in enumerate(changes.items())}


@dataclass
class DiagnosticReport:
    """Scores of one finder on rows of one dataset, and every breakdown of them."""

    rows: np.ndarray  # dataset rows, increasing
    scores: np.ndarray
    labels: np.ndarray
    by_kind: Table  # auc_by_kind
    by_arc_snr: Table  # auc_by_bins over ``arc_snr``
    by_theta_e: Table  # auc_by_bins over ``theta_e``
    by_visibility: Table | None  # over ``arc_visibility``, when the metadata has it
    survey: dict[str, float]  # survey_metrics
    config_hash: str = ""

    def auc_against(self, kind: str) -> float:
        """AUC of all lenses against non-lenses of ``kind`` (NaN when none were scored)."""
        t = self.by_kind
        hit = (t["lenses"] == "all") & (t["nonlenses"] == kind)
        return float(t["auc"][hit][0]) if hit.any() else float("nan")


def diagnose(labels, scores, metadata: Table, *, rows=None, config_hash: str = "") -> DiagnosticReport:
    """Every breakdown of one finder's ``scores`` on images described by ``metadata``.

    ``metadata`` has a row per score with columns ``kind``, ``arc_snr`` and ``theta_e`` (and
    ``arc_visibility`` when the simulator records it), as :mod:`lenslib.dataset` writes them.
    """
    y, s = _arrays(labels, scores)
    if len(metadata) != y.size:
        raise ValueError(f"metadata has {len(metadata)} rows for {y.size} scores")
    by_visibility = (auc_by_bins(metadata["arc_visibility"], y, s, VISIBILITY_BINS, name="arc_visibility")
                     if "arc_visibility" in metadata.colnames else None)
    return DiagnosticReport(
        rows=np.arange(y.size) if rows is None else np.asarray(rows), scores=s, labels=y,
        by_kind=auc_by_kind(y, s, metadata["kind"]),
        by_arc_snr=auc_by_bins(metadata["arc_snr"], y, s, ARC_SNR_BINS, name="arc_snr"),
        by_theta_e=auc_by_bins(metadata["theta_e"], y, s, THETA_E_BINS, name="theta_e"),
        by_visibility=by_visibility, survey=survey_metrics(y, s), config_hash=config_hash)


def evaluate(model, dataset, rows=None, *, batch_size: int = 256, transforms: int = 1) -> DiagnosticReport:
    """Score ``rows`` of a :class:`~lenslib.dataset.LensDataset` with ``model`` and :func:`diagnose` them.

    ``model`` (a Keras model or ``.keras`` path) and ``transforms`` go to :func:`lenslib.models.predict`;
    ``dataset`` may be in memory or streamed: images are read ``batch_size`` rows at a time, in
    increasing order; ``rows`` (default all) are sorted and deduplicated.
    """
    from .models import predict_rows

    rows = np.unique(np.arange(len(dataset)) if rows is None else np.asarray(rows, dtype=np.int64))
    if rows.size == 0 or rows[0] < 0 or rows[-1] >= len(dataset):
        raise ValueError(f"rows must be a non-empty set of rows in [0, {len(dataset)})")
    scores = predict_rows(model, dataset.images, rows, batch_size=batch_size, transforms=transforms)
    return diagnose(dataset.labels[rows], scores, dataset.metadata[rows], rows=rows,
                    config_hash=dataset.config_hash)


def summary_table(reports: dict[str, DiagnosticReport]) -> Table:
    """One row per sky: AUC overall and against ellipticals, TPR0, TPR10, TPR at FPR 1e-3, and
    the drop of both AUCs from the first sky (the reference, e.g. ``default``)."""
    if not reports:
        raise ValueError("summary_table: no reports")
    rows = [(name, r.survey["roc_auc"], r.auc_against(SAME_POPULATION_KIND), r.survey["tpr0"],
             r.survey["tpr10"], r.survey["tpr_at_fpr_1e-3"], r.survey["n_lenses"] + r.survey["n_nonlenses"])
            for name, r in reports.items()]
    names = ("sky", "auc", "auc_vs_elliptical", "tpr0", "tpr10", "tpr_at_fpr_1e-3", "n")
    table = Table(rows=rows, names=names, dtype=(str, float, float, float, float, float, int))
    table["auc_drop"] = table["auc"][0] - table["auc"]
    table["auc_vs_elliptical_drop"] = table["auc_vs_elliptical"][0] - table["auc_vs_elliptical"]
    return table


def _sized(config: SimulationConfig, n_images: int, **changes) -> SimulationConfig:
    return dataclasses.replace(config, n_lenses=n_images // 2, n_nonlenses=n_images - n_images // 2,
                               **changes)


@dataclass
class LearnabilityResult:
    """What :func:`learnability` returns: the trained finder, its diagnostics and the times."""

    fit: object  # lenslib.train.FitResult
    report: DiagnosticReport  # on the grouped hold-out
    shortcut: Table  # shortcut_test on every row
    config: SimulationConfig  # the sky, as simulated
    test_rows: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)  # simulate, train, evaluate, shortcut
    cached: bool = False  # the sky was loaded from the data directory, not simulated

    @property
    def model(self):
        return self.fit.model


def learnability(config: SimulationConfig, *, n_images: int = 6000, epochs: int = 8,
                 test_fraction: float = 0.2, seed: int = 1, data_dir: str | os.PathLike | None = None,
                 training: TrainingConfig | None = None, workers: int | None = None,
                 augment_shift: int | None = None) -> LearnabilityResult:
    """Can LensFlow learn what a lens is on this sky?  The fixed recipe of issue 11.

    Simulates ``config`` with ``n_images`` distinct images (half lenses; no augmented copies: the
    question is what the sky teaches, not what augmentation adds), holds out ``test_fraction`` of
    the parents (grouped, stratified, ``seed``), trains LensFlow from scratch on the rest
    (:func:`lenslib.train.train`, which sets aside its own validation parents from them for early
    stopping), evaluates on the hold-out and runs :func:`shortcut_test` on all rows.

    ``training`` defaults to ``TrainingConfig(epochs=epochs, end_to_end_epochs=epochs, patience=3,
    upsample=1, seed=seed, augment_shift=augment_shift)``; when given it is used as is (``epochs``
    and ``augment_shift`` are ignored).  ``workers``: simulation processes (default all cores).
    """
    from .dataset import dataset_path, get_dataset
    from .splits import validation_split
    from .train import train

    sky = _sized(config, n_images, augment_copies=0)
    if training is None:
        training = TrainingConfig(epochs=epochs, end_to_end_epochs=epochs, patience=3, upsample=1, seed=seed,
                                  augment_shift=augment_shift)
    seconds, cached = {}, dataset_path(sky, data_dir).exists()
    start = time.perf_counter()
    data = get_dataset(sky, data_dir, workers=workers)
    seconds["simulate"] = time.perf_counter() - start
    train_rows, test_rows = validation_split(np.arange(len(data)), data.labels, data.parent_ids,
                                             mode="grouped", fraction=test_fraction, seed=seed)
    start = time.perf_counter()
    fitted = train("lensflow", data, config=training, indices=train_rows)
    seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    report = evaluate(fitted.model, data, test_rows)
    seconds["evaluate"] = time.perf_counter() - start
    start = time.perf_counter()
    shortcut = shortcut_test(data.images, data.labels, data.metadata["kind"], data.parent_ids, seed=seed,
                             pixel_scale=sky.instrument.pixel_scale)
    seconds["shortcut"] = time.perf_counter() - start
    return LearnabilityResult(fit=fitted, report=report, shortcut=shortcut, config=sky,
                              test_rows=np.sort(test_rows), seconds=seconds, cached=cached)


def evaluate_shifted(model, config: SimulationConfig, *, n_images: int,
                     data_dir: str | os.PathLike | None = None, workers: int | None = None,
                     batch_size: int = 256) -> dict[str, DiagnosticReport]:
    """Evaluate ``model`` on every sky of :func:`shifted_skies` (``n_images`` each, all test data)."""
    from .dataset import get_dataset

    reports = {}
    for name, sky in shifted_skies(_sized(config, n_images)).items():
        data = get_dataset(sky, data_dir, workers=workers, in_memory=False)
        try:
            reports[name] = evaluate(model, data, batch_size=batch_size)
        finally:
            data.images.file.close()
    return reports


__all__ = [
    "ARC_SNR_BINS", "DiagnosticReport", "LearnabilityResult", "SAME_POPULATION_KIND", "THETA_E_BINS",
    "VISIBILITY_BINS", "auc_by_bins", "auc_by_kind", "diagnose", "evaluate", "evaluate_shifted",
    "learnability", "population_shortcut", "shifted_skies", "shortcut_test", "summary_table",
    "survey_metrics",
]
