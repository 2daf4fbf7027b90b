"""Can LensFlow learn what a lens is on this sky?  The fixed recipe of issue 11."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from ..config import SimulationConfig, TrainingConfig
from .breakdowns import DiagnosticReport, evaluate
from .shortcuts import shortcut_test
from .skies import _sized


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
    from ..dataset import dataset_path, get_dataset
    from ..splits import validation_split
    from ..train import train

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
