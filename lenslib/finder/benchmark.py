"""The benchmark a finder is judged on: a fixed, seeded test sky never used for training.

:func:`benchmark` scores a finder on ``n_images`` distinct cutouts of the default sky drawn with
:data:`BENCHMARK_SEED` (no training shard uses it) and on the shifted skies of
:func:`lenslib.diagnostics.shifted_skies` built from it, and reports what the issue asks for:
ROC AUC, TPR0, TPR10, TPR at FPR 1e-3 and 1e-4, purity at a prevalence of 1e-3, the AUC against
each kind of non-lens and the share of each kind flagged at a threshold, by arc SNR and Einstein
radius, the share flagged per kind by the central galaxy's magnitude (what fools it), and the AUC
drop on each shifted sky.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..config import SimulationConfig
from ..diagnostics import DiagnosticReport, evaluate, shifted_skies, summary_table

BENCHMARK_SEED = 20_261_125
#: The issue's bar for the shipped finder (bench/README.md reports each against it).
TARGETS = {"roc_auc": 0.995, "tpr0": 0.5, "tpr10": 0.75, "max_flag_rate": 0.05, "max_shift_drop": 0.03}

#: Bins of the central massive galaxy's AB magnitude (``deflector_mag``) for :func:`flag_rates_by`.
DEFLECTOR_MAG_BINS = (15.0, 19.0, 20.0, 21.0, 24.0)
#: Einstein radii (arcsec) of :func:`bright_rings`: from typical to the widest the sky draws.
RING_RADII = (0.8, 1.6, 2.0, 2.2, 2.4)
#: What :meth:`FinderBenchmark.hardest` shows beside each score (those the metadata has).
HARDEST_COLUMNS = ("kind", "arc_snr", "theta_e", "arc_coverage", "deflector_mag", "source_mag", "central_mag")


def bright_rings(radii=RING_RADII, *, per_radius: int = 8, seed: int = 1,
                 config: SimulationConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Full, bright Einstein rings (``per_radius`` at each radius in ``radii``), the lenses a person
    sees first: :func:`lenslib.simulate.render_lens_system` with the source within 0.15" of the
    caustic's centre, source AB 21.5-23, deflector AB 18.5-20.5, axis ratio 0.7-1, the field on.
    Returns the cutouts (e-/s) and each one's Einstein radius."""
    from ..simulate import render_lens_system

    config, rng = SimulationConfig() if config is None else config, np.random.default_rng(seed)
    theta = np.repeat(np.asarray(radii, dtype=float), per_radius)
    images = []
    for theta_e in theta:
        r, angle = 0.15 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        images.append(render_lens_system(
            theta_e=float(theta_e), source_x=r * np.cos(angle), source_y=r * np.sin(angle), config=config,
            rng=rng, q=rng.uniform(0.7, 1.0), phi=rng.uniform(0, np.pi), source_mag=rng.uniform(21.5, 23.0),
            deflector_mag=rng.uniform(18.5, 20.5), with_field=True).image)
    return np.array(images), theta


def ring_completeness(scores, radii, *, threshold: float = 0.5) -> Table:
    """Per Einstein radius, the share of :func:`bright_rings` scored at or above ``threshold``
    and their median score."""
    scores, radii = np.asarray(scores), np.asarray(radii)
    rows = [(float(t), int((radii == t).sum()), float((scores[radii == t] >= threshold).mean()),
             float(np.median(scores[radii == t]))) for t in np.unique(radii)]
    return Table(rows=rows, names=("theta_e", "n", "flagged", "median_score"),
                 dtype=(float, int, float, float), meta={"threshold": threshold})


def benchmark_sky(n_images: int = 20_000, *, sky: SimulationConfig | None = None) -> SimulationConfig:
    """The test sky: ``sky`` (default: the default sky) with ``n_images`` distinct parents, half
    lenses, and the benchmark's own seed."""
    sky = SimulationConfig() if sky is None else sky
    return dataclasses.replace(sky, n_lenses=n_images // 2, n_nonlenses=n_images - n_images // 2,
                               augment_copies=0, seed=BENCHMARK_SEED)


def flag_rates(labels, scores, kinds, *, threshold: float = 0.5) -> Table:
    """Per kind of object, the share of cutouts scored at or above ``threshold``: the
    completeness for lens kinds, the false-positive rate for non-lens kinds."""
    labels, scores, kinds = np.asarray(labels), np.asarray(scores), np.asarray(kinds).astype(str)
    rows = []
    for kind in sorted(set(kinds), key=lambda k: (-labels[kinds == k][0], k)):
        hit = kinds == kind
        rows.append((kind, int(labels[hit][0]), int(hit.sum()), float((scores[hit] >= threshold).mean())))
    return Table(rows=rows, names=("kind", "label", "n", "flagged"), dtype=(str, int, int, float),
                 meta={"threshold": threshold})


def flag_rates_by(labels, scores, kinds, values, bins, *, name: str, threshold: float = 0.5) -> Table:
    """:func:`flag_rates` per kind and per bin of ``values`` (a metadata column, say the central
    galaxy's magnitude): which of a kind's cutouts the finder flags, not only how many.

    ``bins``: increasing edges; a bin holds ``lo <= value < hi`` (the last also ``value == hi``).
    Cutouts whose value is NaN, or outside the edges, are left out; a kind with no finite value
    (stars have no central galaxy) has no rows, and an empty bin has ``n`` 0 and ``flagged`` NaN.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    kinds, values = np.asarray(kinds).astype(str), np.asarray(values, dtype=float)
    if not (len(labels) == len(scores) == len(kinds) == len(values)):
        raise ValueError(f"labels, scores, kinds and values must have one entry per cutout (got "
                         f"{len(labels)}, {len(scores)}, {len(kinds)} and {len(values)})")
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins must be at least two increasing edges (got {bins!r})")
    rows = []
    for kind in sorted(set(kinds), key=lambda k: (-labels[kinds == k][0], k)):
        of_kind = kinds == kind
        for lo, hi in zip(edges[:-1], edges[1:]):
            below = values <= hi if hi == edges[-1] else values < hi
            inside = of_kind & (values >= lo) & below  # NaN compares False: left out
            if np.isfinite(values[of_kind]).any():
                n = int(inside.sum())
                flagged = float((scores[inside] >= threshold).mean()) if n else float("nan")
                rows.append((kind, int(labels[of_kind][0]), lo, hi, n, flagged))
    return Table(rows=rows, names=("kind", "label", f"{name}_min", f"{name}_max", "n", "flagged"),
                 dtype=(str, int, float, float, int, float), meta={"threshold": threshold})


def bin_labels(table: Table) -> list[str]:
    """``"lo-hi"`` labels of the bins of an :func:`~lenslib.diagnostics.auc_by_bins` table."""
    lo, hi = (next(c for c in table.colnames if c.endswith(end)) for end in ("_min", "_max"))
    return [f"{a:g}-{b:g}" for a, b in zip(table[lo], table[hi])]


@dataclass
class FinderBenchmark:
    """What :func:`benchmark` returns."""

    report: DiagnosticReport  # the benchmark sky
    flagged: Table  # flag_rates at ``threshold``
    flagged_by_deflector_mag: Table  # flag_rates_by the central galaxy's magnitude
    shifted: dict[str, DiagnosticReport]  # the shifted skies
    skies: Table  # summary_table over the benchmark sky and the shifted ones
    seconds: dict[str, float] = field(default_factory=dict)
    metadata: Table | None = None  # the benchmark sky's metadata, a row per score of ``report``
    path: Path | None = None  # the benchmark sky's file, for :meth:`cutouts`

    def hardest(self, n: int = 12) -> Table:
        """The ``n`` lenses scored lowest and the ``n`` non-lenses scored highest, each worst first:
        what to look at, by eye, to see what the finder gets wrong.  Columns ``row`` (the benchmark
        file's row, for :meth:`cutouts`), ``label``, ``score`` and those of :data:`HARDEST_COLUMNS`
        the metadata has."""
        from ..config.checks import check_range

        check_range("FinderBenchmark.hardest", "n", n, 1, 1_000_000, integer=True)
        if self.metadata is None:
            raise ValueError("this benchmark kept no metadata (made by benchmark() before it did)")
        labels, scores = self.report.labels, self.report.scores
        lenses, nonlenses = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        picked = np.concatenate([lenses[np.argsort(scores[lenses], kind="stable")[:n]],
                                 nonlenses[np.argsort(-scores[nonlenses], kind="stable")[:n]]])
        table = Table({"row": self.report.rows[picked], "label": labels[picked], "score": scores[picked]})
        for column in HARDEST_COLUMNS:
            if column in self.metadata.colnames:
                table[column] = self.metadata[column][picked]
        return table

    def cutouts(self, rows) -> np.ndarray:
        """The benchmark sky's cutouts (e-/s, ``(N, H, W)``) at file ``rows``, in that order."""
        from ..dataset import load_dataset

        if self.path is None:
            raise ValueError("this benchmark kept no file path (made by benchmark() before it did)")
        rows = np.asarray(rows, dtype=np.int64)
        unique, where = np.unique(rows, return_inverse=True)
        data = load_dataset(self.path, in_memory=False, verify=False)
        try:
            if len(unique) and (unique[0] < 0 or unique[-1] >= len(data)):
                raise ValueError(f"rows must be in [0, {len(data)}) for {self.path.name} "
                                 f"(got {rows.tolist()})")
            return np.asarray(data.images[unique])[where]
        finally:
            data.images.file.close()

    def record(self) -> dict:
        """JSON-ready figures (for the model card and the book)."""
        nonlens = self.flagged[self.flagged["label"] == 0]
        return {
            "n_images": int(len(self.report.labels)),
            "survey": self.report.survey,
            "auc_by_kind": {row["nonlenses"]: float(row["auc"]) for row in self.report.by_kind
                            if row["lenses"] == "all"},
            "flagged_at_0.5": {row["kind"]: float(row["flagged"]) for row in self.flagged},
            "max_nonlens_flag_rate": float(nonlens["flagged"].max()),
            "flagged_by_deflector_mag": _nested_rates(self.flagged_by_deflector_mag),
            "auc_by_arc_snr": dict(zip(bin_labels(self.report.by_arc_snr),
                                       map(float, self.report.by_arc_snr["auc"]))),
            "auc_by_theta_e": dict(zip(bin_labels(self.report.by_theta_e),
                                       map(float, self.report.by_theta_e["auc"]))),
            "shifted_skies": {row["sky"]: {"auc": float(row["auc"]), "auc_drop": float(row["auc_drop"]),
                                           "tpr10": float(row["tpr10"]), "n": int(row["n"])}
                              for row in self.skies},
        }


def _nested_rates(table: Table) -> dict:
    """A :func:`flag_rates_by` table as ``{kind: {"lo-hi": {"n": n, "flagged": share}}}`` (an empty
    bin's share is None: JSON has no NaN)."""
    out: dict = {}
    for row, label in zip(table, bin_labels(table)):
        share = float(row["flagged"]) if row["n"] else None
        out.setdefault(str(row["kind"]), {})[label] = {"n": int(row["n"]), "flagged": share}
    return out


def check_targets(record: dict) -> Table:
    """Each of :data:`TARGETS` beside the measured value and whether it is met."""
    drops = [v["auc_drop"] for k, v in record["shifted_skies"].items() if k != "benchmark"]
    measured = {"roc_auc": record["survey"]["roc_auc"], "tpr0": record["survey"]["tpr0"],
                "tpr10": record["survey"]["tpr10"], "max_flag_rate": record["max_nonlens_flag_rate"],
                "max_shift_drop": max(drops) if drops else float("nan")}
    rows = []
    for name, target in TARGETS.items():
        value = measured[name]
        met = value <= target if name.startswith("max_") else value >= target
        rows.append((name, target, value, bool(met)))
    return Table(rows=rows, names=("target", "bar", "measured", "met"), dtype=(str, float, float, bool))


def benchmark(model, *, n_images: int = 20_000, shifted_images: int = 4_000, threshold: float = 0.5,
              data_dir: str | os.PathLike | None = None, workers: int | None = None,
              sky: SimulationConfig | None = None, batch_size: int = 512,
              transforms: int = 1) -> FinderBenchmark:
    """Score ``model`` (a Keras model, a ``.keras`` path or a shipped finder's name) on the
    benchmark sky and its shifted skies (simulated once and cached in ``data_dir``), each score
    the mean over ``transforms`` flips and quarter turns (:func:`lenslib.models.predict`)."""
    from ..dataset import dataset_path, get_dataset
    from ..errors import InputError
    from ..models import load_model
    from ..models.common import is_integer

    for name, value in (("n_images", n_images), ("shifted_images", shifted_images)):
        if not (is_integer(value) and value >= 2):  # at least one lens and one non-lens
            raise InputError(f"{name} must be an integer of at least 2 (got {value!r})")
    if not hasattr(model, "predict_on_batch"):
        model = load_model(model)
    seconds: dict[str, float] = {}

    def scored(config: SimulationConfig) -> tuple[DiagnosticReport, Table]:
        start = time.perf_counter()
        data = get_dataset(config, data_dir, workers=workers, in_memory=False)
        seconds["simulate"] = seconds.get("simulate", 0.0) + time.perf_counter() - start
        start = time.perf_counter()
        try:
            report = evaluate(model, data, batch_size=batch_size, transforms=transforms)
            return report, data.metadata[report.rows]
        finally:
            data.images.file.close()
            seconds["score"] = seconds.get("score", 0.0) + time.perf_counter() - start

    test_sky = benchmark_sky(n_images, sky=sky)
    report, metadata = scored(test_sky)
    kinds = np.asarray(metadata["kind"])
    flagged = flag_rates(report.labels, report.scores, kinds, threshold=threshold)
    by_mag = flag_rates_by(report.labels, report.scores, kinds, metadata["deflector_mag"], DEFLECTOR_MAG_BINS,
                           name="deflector_mag", threshold=threshold)
    shifted = {name: scored(config)[0] for name, config in
               shifted_skies(dataclasses.replace(test_sky, n_lenses=shifted_images // 2,
                                                 n_nonlenses=shifted_images - shifted_images // 2)).items()
               if name != "default"}
    skies = summary_table({"benchmark": report, **shifted})
    return FinderBenchmark(report=report, flagged=flagged, flagged_by_deflector_mag=by_mag, shifted=shifted,
                           skies=skies, seconds=seconds, metadata=metadata,
                           path=dataset_path(test_sky, data_dir))

