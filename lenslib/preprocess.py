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

from .errors import InputError, InputTypeError

#: arcsinh softening in units of the cutout's noise: values within ~3 sigma stay nearly linear.
SOFTENING_SIGMA = 3.0


def validate_cutouts(cutouts, *, name: str = "cutouts", size: int | None = None) -> np.ndarray:
    """Check shape ``(N, H, W)`` (a single ``(H, W)`` cutout is promoted, and ``(N, H, W, 1)``),
    real numbers (integer or floating point), finiteness, non-emptiness.  Raises
    :class:`~lenslib.errors.InputTypeError` (a ``TypeError``) or
    :class:`~lenslib.errors.InputError` (a ``ValueError``) naming ``name``."""
    try:
        arr = np.asarray(cutouts)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise InputTypeError(f"{name} must be a numeric array ({err})") from err
    if arr.dtype.kind not in "iuf":
        what = "complex" if arr.dtype.kind == "c" else "non-numeric"
        raise InputTypeError(f"{name} must be a numeric array of real numbers (got {what} dtype {arr.dtype})")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise InputError(f"{name} must have shape (N, H, W) (got shape {np.shape(cutouts)})")
    if arr.size == 0:
        raise InputError(f"{name} is empty: no cutouts to process (got shape {np.shape(cutouts)})")
    if size is not None and arr.shape[1:] != (size, size):
        raise InputError(f"{name} must be {size}x{size} pixels (got {arr.shape[1]}x{arr.shape[2]} "
                         f"cutouts: shape {np.shape(cutouts)})")
    bad = ~np.isfinite(arr).all(axis=(1, 2))
    if arr.dtype.itemsize > 4 and arr.dtype.kind == "f":  # beyond float32: no image in e-/s is that bright
        with np.errstate(invalid="ignore"):
            bad |= (np.abs(arr) > np.finfo(np.float32).max).any(axis=(1, 2))
    if bad.any():
        idx = np.flatnonzero(bad)
        raise InputError(
            f"{name} contain NaN or infinite pixels in {idx.size} cutout(s), first at index {idx[0]}; "
            "mask or drop them before scoring (values beyond float32's range, 3.4e38, count as infinite)"
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
    with np.errstate(over="ignore"):  # a bright pixel over a tiny noise: saturate, do not overflow
        scaled = (arr - background[:, None, None]) / (softening * noise[:, None, None])
    big = np.finfo(np.float64).max
    return np.arcsinh(np.clip(scaled, -big, big, out=scaled)).astype(np.float32)
