"""A graded candidate set in the image of the LensFlow paper's 92 candidates, with known truth.

Table 5-2 of the thesis scores the 92 candidates of the LensFlow paper, which experts graded
A (clearly a lens), B (most likely a lens, but could be an artefact, noise, elliptical structure,
satellites, tidal features) and C (most likely not a lens).  Those images cannot be fetched
here.  The stand-in is 92 objects simulated apart from every training set (their own seed, so
their own parent ids), graded by explicit rules on the simulated truth that follow the thesis's
grade descriptions (:func:`grade`).  Because the truth is known, the book can ask what the
thesis could not: is a high score on grade C right or wrong?
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from .config import SimulationConfig, config_hash
from .dataset import LensDataset, default_data_dir, load_dataset, write_dataset
from .simulate import simulate_scene

GRADES = ("A", "B", "C")
CANDIDATE_SEED = 920_092  # not a training seed: candidates share no parent with any training set

#: How many candidates of each (grade, truth) the set holds: A are lenses; B mostly lenses, some
#: convincing impostors; C mostly impostors, a few very faint lenses.  92 in all, as in LensFlow.
CANDIDATE_COUNTS = {("A", 1): 20, ("B", 1): 26, ("B", 0): 10, ("C", 1): 6, ("C", 0): 30}

#: Thresholds of the grading rules (arcsec and Collett 2015 signal-to-noise).
CLEAR_ARC_SNR = 40.0
RESOLVED_THETA_E = 0.7  # about seven PSF FWHM: an Einstein radius nobody would miss
FAINTEST_LENS_SNR = 3.0  # candidate lenses go down to here, far below the training threshold
LOOKALIKE_KINDS = ("ring_galaxy", "companion", "tidal_features")

_CANDIDATE_KINDS = (
    ("galaxy_galaxy", 0.35), ("lensed_quasar", 0.15),
    ("ring_galaxy", 0.12), ("companion", 0.12), ("tidal_features", 0.08), ("merger", 0.06),
    ("spiral", 0.04), ("edge_on_disk", 0.03), ("elliptical", 0.03), ("double_star", 0.02),
)

GRADE_RULES = (
    ("A", f"a true lens with arc signal-to-noise and visibility >= {CLEAR_ARC_SNR:g} and Einstein "
          f"radius >= {RESOLVED_THETA_E:g} arcsec: bright arcs or images, clearly resolved"),
    ("B", f"a true lens that is fainter (SNR below {CLEAR_ARC_SNR:g}) or smaller (theta_E below "
          f"{RESOLVED_THETA_E:g}\") but still detectable (SNR and visibility at the training "
          f"thresholds); or an "
          f"impostor ({', '.join(LOOKALIKE_KINDS)}) whose ring, arclet or shell is bright "
          f"(SNR >= {CLEAR_ARC_SNR:g}) at a lens-like radius"),
    ("C", "an impostor of any other kind or with a fainter feature; or a true lens so faint "
          "(SNR or visibility below the training thresholds) that it would not pass as one"),
)


def grade(record: dict, *, training_snr: float, training_visibility: float = 0.0) -> str:
    """The grade of one candidate, a deterministic function of its simulated truth."""
    if record["label"] == 1:
        snr, visibility = record["arc_snr"], record.get("arc_visibility", record["arc_snr"])
        if min(snr, visibility) >= CLEAR_ARC_SNR and record["theta_e"] >= RESOLVED_THETA_E:
            return "A"
        return "B" if snr >= training_snr and visibility >= training_visibility else "C"
    bright = np.nan_to_num(record.get("feature_snr", np.nan)) >= CLEAR_ARC_SNR
    radius = record.get("feature_radius", np.nan)
    lens_like = bool(np.isfinite(radius) and 0.5 <= radius <= 2.5)
    return "B" if record["kind"] in LOOKALIKE_KINDS and bright and lens_like else "C"


def candidate_config(training: SimulationConfig, seed: int = CANDIDATE_SEED) -> SimulationConfig:
    """The simulation settings of the candidates: the training sky, another seed, no
    augmentation, and lenses (and look-alike features) down to a much fainter arc
    signal-to-noise, with no visibility cut."""
    if seed == training.seed:
        raise ValueError(f"the candidate seed must differ from the training seed ({seed})")
    n = sum(CANDIDATE_COUNTS.values())
    return dataclasses.replace(training, seed=seed, augment_copies=0, min_arc_snr=FAINTEST_LENS_SNR,
                               min_arc_visibility=0.0,
                               n_lenses=n, n_nonlenses=n,
                               lens_kinds=tuple(k for k in _CANDIDATE_KINDS if k[0] in
                                                ("galaxy_galaxy", "lensed_quasar")),
                               nonlens_kinds=tuple(k for k in _CANDIDATE_KINDS if k[0] not in
                                                   ("galaxy_galaxy", "lensed_quasar")))


def simulate_candidates(training: SimulationConfig, *, seed: int = CANDIDATE_SEED,
                        max_draws: int = 20_000):
    """Draw objects until every (grade, truth) quota of :data:`CANDIDATE_COUNTS` is full.

    Returns images, labels, parent ids and records (with ``grade``), ordered A, B, C.
    """
    config = candidate_config(training, seed)
    names = [k for k, _ in _CANDIDATE_KINDS]
    weights = np.array([w for _, w in _CANDIDATE_KINDS])
    picker = np.random.default_rng(np.random.SeedSequence([seed, 0xC4]))
    namespace = int(config_hash(config)[:7], 16) << 32
    need = dict(CANDIDATE_COUNTS)
    kept = []
    for draw in range(max_draws):
        if not any(need.values()):
            break
        kind = names[picker.choice(len(names), p=weights / weights.sum())]
        scene = simulate_scene(kind, np.random.default_rng(np.random.SeedSequence([seed, draw])), config)
        g = grade(scene.record, training_snr=training.min_arc_snr,
                  training_visibility=training.min_arc_visibility)
        key = (g, scene.record["label"])
        if need.get(key, 0) > 0:
            need[key] -= 1
            kept.append((g, draw, scene))
    else:
        raise RuntimeError(f"candidate quotas not filled after {max_draws} draws: still need {need}")
    kept.sort(key=lambda item: (item[0], item[1]))
    images = np.stack([s.image for _, _, s in kept])
    labels = np.array([s.record["label"] for _, _, s in kept])
    parent_ids = np.array([namespace + draw for _, draw, _ in kept], dtype=np.int64)
    records = [dict(s.record, grade=g, parent_id=pid, child_index=0, is_augmented=False)
               for (g, _, s), pid in zip(kept, parent_ids)]
    return images, labels, parent_ids, records


def build_candidates(training: SimulationConfig, data_dir: str | os.PathLike | None = None, *,
                     seed: int = CANDIDATE_SEED) -> Path:
    """The candidate set's file (cached by the hash of its config, like a dataset)."""
    config = candidate_config(training, seed)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    path = root / f"lenslib-candidates-{config_hash(config)}.h5"
    if not path.exists():
        images, labels, parent_ids, records = simulate_candidates(training, seed=seed)
        write_dataset(path, images, labels, parent_ids, records, config,
                      extra_columns={"grade": ("U1", None, "LensFlow-style grade from the truth")})
    return path


def get_candidates(training: SimulationConfig, data_dir: str | os.PathLike | None = None, *,
                   seed: int = CANDIDATE_SEED) -> LensDataset:
    """Build (or load) and return the candidate set; its metadata has a ``grade`` column."""
    return load_dataset(build_candidates(training, data_dir, seed=seed))


def grade_summary(candidates: LensDataset) -> Table:
    """Per grade: how many candidates, how many are true lenses, and of which kinds."""
    meta = candidates.metadata
    rows = []
    for g in GRADES:
        sub = meta[meta["grade"] == g]
        kinds = ", ".join(f"{k} {int((sub['kind'] == k).sum())}" for k in sorted(set(sub["kind"])))
        rows.append((g, len(sub), int(sub["label"].sum()), float(sub["label"].mean()) if len(sub) else np.nan,
                     kinds))
    return Table(rows=rows, names=("grade", "candidates", "true lenses", "true-lens fraction", "kinds"))


def pick_per_grade(candidates: LensDataset, per_grade: int, *, random_state: int = 0) -> np.ndarray:
    """Row numbers of up to ``per_grade`` candidates of each grade, drawn without replacement
    (all of a grade that holds fewer), grade A first: the few a chapter shows by eye."""
    from .config.checks import check_range

    check_range("pick_per_grade", "per_grade", per_grade, 1, 10_000, integer=True)
    rng = np.random.default_rng(random_state)
    grades = np.asarray(candidates.metadata["grade"])
    return np.concatenate([rng.choice(np.flatnonzero(grades == g), min(per_grade, int((grades == g).sum())),
                                      replace=False) for g in GRADES])


# --------------------------------------------------------------------------------------------
# Scoring: Table 5-2 and what the thesis could not know
# --------------------------------------------------------------------------------------------
#: Table 5-2 of the thesis: mean and standard deviation of the predicted lens probability per
#: LensFlow grade, for its three best models.
THESIS_TABLE_5_2 = {
    "xception": {"A": (0.982, 0.041), "B": (0.618, 0.297), "C": (0.553, 0.336)},
    "inception_v3": {"A": (0.872, 0.314), "B": (0.852, 0.290), "C": (0.639, 0.354)},
    "resnet50": {"A": (0.767, 0.385), "B": (0.775, 0.356), "C": (0.657, 0.447)},
}


def fold_models_from_summary(summary: dict, names) -> dict[str, list[Path]]:
    """The fold models of each row in ``names`` that the last cross-validation run kept, as its
    ``cv_summary.json`` lists them (``summary["fold_models"]``): never files of an earlier run
    that the folder still holds.  A row it did not keep, or a listed file that is gone, is
    refused with an :class:`~lenslib.errors.InputError` saying what to run."""
    from .errors import InputError

    kept = summary.get("fold_models") or {}
    out = {}
    for name in names:
        paths = [Path(p) for p in kept.get(name) or ()]
        if not paths:
            raise InputError(f"the last cross-validation run kept no fold models of {name!r} (it kept: "
                             f"{', '.join(sorted(k for k, v in kept.items() if v)) or 'none'}); add it to "
                             "02_cross_validation's fold_model_rows (and networks) and run it again")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"fold models of {name!r} listed by the last cross-validation run are gone "
                             f"({', '.join(missing)}); run 02_cross_validation again")
        out[name] = paths
    return out


def score_candidates(candidates: LensDataset, fold_models: dict, *, batch_size: int = 64) -> Table:
    """Score every candidate with every model; a model's score is the mean over its fold models.

    ``fold_models`` maps a row name to the list of its fold models (``.keras`` paths or Keras
    models).  Returns one row per candidate: ``index, grade, label, kind`` and, per model,
    ``<name>`` (mean over folds) and ``<name>_fold_std`` (spread over folds).
    """
    from .models import predict

    if not fold_models:
        raise ValueError("score_candidates: no models given")
    meta = candidates.metadata
    table = Table({"index": meta["index"], "grade": meta["grade"], "label": meta["label"],
                   "kind": meta["kind"]})
    for name, models in fold_models.items():
        if not models:
            raise ValueError(f"score_candidates: no fold models for {name!r}")
        scores = np.stack([predict(m, candidates.images, batch_size=batch_size) for m in models])
        table[name] = scores.mean(axis=0)
        table[f"{name}_fold_std"] = scores.std(axis=0)
    return table


def _model_columns(scores: Table) -> list[str]:
    return [c for c in scores.colnames if c not in ("index", "grade", "label", "kind")
            and not c.endswith("_fold_std")]


def table_5_2(scores: Table) -> Table:
    """Mean and standard deviation of each model's score per grade, as the thesis printed them,
    with the thesis's numbers beside (where it reported that model)."""
    rows = []
    for name in _model_columns(scores):
        thesis = THESIS_TABLE_5_2.get(name, {})
        for g in GRADES:
            s = np.asarray(scores[name][scores["grade"] == g], dtype=float)
            t_mean, t_std = thesis.get(g, (np.nan, np.nan))
            rows.append((name, g, len(s), float(s.mean()), float(s.std()), t_mean, t_std))
    table = Table(rows=rows, names=("model", "grade", "n", "mean", "std", "thesis_mean", "thesis_std"))
    for col in ("mean", "std", "thesis_mean", "thesis_std"):
        table[col].format = ".3f"
    return table


def truth_table(scores: Table, *, threshold: float = 0.5) -> Table:
    """Per grade and model, against the simulated truth: the true-lens fraction, the accuracy of
    ``score >= threshold``, how many true lenses and impostors it calls lenses, and the ROC AUC
    among the grade's candidates (reported only where the grade holds both lenses and impostors)."""
    from sklearn.metrics import roc_auc_score

    rows = []
    for name in _model_columns(scores):
        for g in GRADES:
            sub = scores[scores["grade"] == g]
            y = np.asarray(sub["label"], dtype=int)
            s = np.asarray(sub[name], dtype=float)
            called = s >= threshold
            auc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else np.nan
            rows.append((name, g, len(y), float(y.mean()), float((called == (y == 1)).mean()),
                         int((called & (y == 1)).sum()), int((called & (y == 0)).sum()), auc))
    table = Table(rows=rows, names=("model", "grade", "n", "true-lens fraction", "accuracy",
                                    "lenses called lenses", "impostors called lenses", "roc_auc"))
    for col in ("true-lens fraction", "accuracy", "roc_auc"):
        table[col].format = ".3f"
    return table
