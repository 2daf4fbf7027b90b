"""The one normalisation every cutout goes through: training, prediction and scanning alike.

A cutout in e-/s has its sky level removed (median) and is divided by its own noise level
(the MAD-based standard deviation of its pixels, from astropy), then compressed with an arcsinh
stretch: faint arcs near the noise stay linear, bright galaxy cores are compressed
logarithmically.  Because the scale is each cutout's own noise, a survey image of another depth
or exposure time lands on the same numerical scale as the training set.
"""

from __future__ import annotations

import numpy as np
from astropy.stats import mad_std

#: arcsinh softening in units of the cutout's noise: values within ~3 sigma stay nearly linear.
SOFTENING_SIGMA = 3.0


def validate_cutouts(cutouts, *, name: str = "cutouts", size: int | None = None) -> np.ndarray:
    """Check shape ``(N, H, W)`` (a single ``(H, W)`` cutout is promoted), finiteness, non-emptiness."""
    arr = np.asarray(cutouts)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array (got dtype {arr.dtype})")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W) (got shape {arr.shape})")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: no cutouts to process")
    if size is not None and arr.shape[1:] != (size, size):
        raise ValueError(f"{name} must be {size}x{size} pixels (got {arr.shape[1]}x{arr.shape[2]})")
    bad = ~np.isfinite(arr).all(axis=(1, 2))
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"{name} contain NaN or infinite pixels in {idx.size} cutout(s), first at index {idx[0]}; "
            "mask or drop them before scoring"
        )
    return arr


def normalize(cutouts, *, softening: float = SOFTENING_SIGMA) -> np.ndarray:
    """Sky-subtract, noise-scale and arcsinh-stretch cutouts in e-/s; returns float32 ``(N, H, W)``."""
    arr = validate_cutouts(cutouts).astype(np.float64)
    flat = arr.reshape(arr.shape[0], -1)
    background = np.median(flat, axis=1)
    noise = mad_std(flat, axis=1)
    # A constant or all-zero cutout has no noise to scale by; fall back to unit scale.
    tiny = np.finfo(np.float32).tiny
    noise = np.where(noise > tiny, noise, 1.0)
    scaled = (arr - background[:, None, None]) / (softening * noise[:, None, None])
    return np.arcsinh(scaled).astype(np.float32)
