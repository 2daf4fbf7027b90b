"""Scores broken down by what makes a lens a lens: per non-lens kind, per arc SNR, per Einstein
radius, and at the survey end of the ROC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from sklearn.metrics import roc_auc_score

from ..metrics import purity_at_prevalence, tpr_at_false_positives, tpr_at_fpr

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
    from ..models import predict_rows

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
