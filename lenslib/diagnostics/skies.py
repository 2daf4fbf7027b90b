"""Skies a finder was not trained on: shifted PSF, depth, populations and neighbours."""

from __future__ import annotations

import dataclasses
import os

from ..config import SimulationConfig
from .breakdowns import DiagnosticReport, evaluate


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


def _sized(config: SimulationConfig, n_images: int, **changes) -> SimulationConfig:
    return dataclasses.replace(config, n_lenses=n_images // 2, n_nonlenses=n_images - n_images // 2,
                               **changes)


def evaluate_shifted(model, config: SimulationConfig, *, n_images: int,
                     data_dir: str | os.PathLike | None = None, workers: int | None = None,
                     batch_size: int = 256) -> dict[str, DiagnosticReport]:
    """Evaluate ``model`` on every sky of :func:`shifted_skies` (``n_images`` each, all test data)."""
    from ..dataset import get_dataset

    reports = {}
    for name, sky in shifted_skies(_sized(config, n_images)).items():
        data = get_dataset(sky, data_dir, workers=workers, in_memory=False)
        try:
            reports[name] = evaluate(model, data, batch_size=batch_size)
        finally:
            data.images.file.close()
    return reports
