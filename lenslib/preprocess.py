"""The one normalisation every cutout goes through: training, prediction and scanning alike.

A cutout in e-/s has its sky level removed (median) and is divided by its own noise level
(the MAD-based standard deviation of its pixels, from astropy), then compressed with an arcsinh
stretch: faint arcs near the noise stay linear, bright galaxy cores are compressed
logarithmically.  Because the scale is each cutout's own noise, a survey image of another depth
or exposure time lands on the same numerical scale as the training set.
"""

from __future__ import annotations

import os

import numpy as np

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


#: 1 / Phi^-1(0.75): a MAD times this is the standard deviation of Gaussian noise (astropy's mad_std).
_MAD_TO_STD = 1.482602218505602
#: Cutouts normalised together: the temporaries of a few dozen cutouts stay in the CPU's caches,
#: where those of a whole batch of 256 (tens of MB) would not.
_CHUNK = 16


def _median_mad(rows: np.ndarray, with_mad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each float64 row's exact median and median absolute deviation (:mod:`lenslib._medians`)."""
    from ._medians import row_median_mad

    return row_median_mad(np.ascontiguousarray(rows, dtype=np.float64), with_mad)


def row_medians(rows: np.ndarray) -> np.ndarray:
    """``np.median(rows, axis=1)``, exactly, several times faster for image-sized float64 rows.

    Compiled (numba): each row's middle rank is bracketed from a 1-in-16 subsample and only the
    values inside the bracket are partitioned; a row whose bracket misses is partitioned whole.
    Rows of another dtype (numpy averages float32 middles in float32), short rows and rows
    holding NaN go to numpy itself.
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.dtype != np.float64 or rows.shape[1] < 1024 or np.isnan(rows).any():
        return np.median(rows, axis=1)
    return _median_mad(rows, False)[0]


def _stretch(arr: np.ndarray, background: np.ndarray, noise: np.ndarray, softening: float, *,
             in_place: bool = False) -> np.ndarray:
    """The arcsinh stretch of float64 cutouts ``arr`` (N, H, W) given each one's sky and noise.
    ``in_place``: compute in ``arr`` itself (a copy the caller owns), with no temporaries."""
    # A constant or all-zero cutout has no noise to scale by; fall back to unit scale.
    noise = np.where(noise > np.finfo(np.float32).tiny, noise, 1.0)
    scaled = arr if in_place else np.empty_like(arr)
    with np.errstate(over="ignore"):  # a bright pixel over a tiny noise: saturate, do not overflow
        np.subtract(arr, background[:, None, None], out=scaled)
        np.divide(scaled, softening * noise[:, None, None], out=scaled)
    big = np.finfo(np.float64).max
    np.clip(scaled, -big, big, out=scaled)
    return np.arcsinh(scaled, out=scaled).astype(np.float32)


def normalize_reference(cutouts, *, softening: float = SOFTENING_SIGMA) -> np.ndarray:
    """:func:`normalize` as defined, written plainly (numpy's median and astropy's ``mad_std``
    over whole cutouts): the oracle its tests compare with and the baseline of its benchmark."""
    from astropy.stats import mad_std

    arr = validate_cutouts(cutouts).astype(np.float64)
    flat = arr.reshape(arr.shape[0], -1)
    return _stretch(arr, np.median(flat, axis=1), mad_std(flat, axis=1), softening)


def normalize(cutouts, *, softening: float = SOFTENING_SIGMA, threads: int | None = 1) -> np.ndarray:
    """Sky-subtract, noise-scale and arcsinh-stretch cutouts in e-/s; returns float32 ``(N, H, W)``.

    The sky is each cutout's median and the noise its MAD-based standard deviation, in float64
    (astropy's ``mad_std``), computed a few cutouts at a time by the compiled selection of
    :func:`row_medians`: bit for bit :func:`normalize_reference`, several times faster
    (``bench/bench_scan.py``).  ``threads``: split the cutouts over that many threads (the
    compiled kernels and numpy release the GIL; None: one per core); the same numbers."""
    from .models.common import is_integer

    arr = validate_cutouts(cutouts)
    if threads is None:
        threads = os.cpu_count() or 1
    if not is_integer(threads):
        raise InputError(f"threads must be a positive integer or None (got {threads!r})")
    out = np.empty(arr.shape, dtype=np.float32)
    starts = range(0, len(arr), _CHUNK)
    if threads == 1 or len(arr) <= _CHUNK:
        for start in starts:
            _normalize_chunk(arr, out, start, softening)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(int(threads), len(starts))) as pool:
            list(pool.map(lambda start: _normalize_chunk(arr, out, start, softening), starts))
    return out


def _normalize_chunk(arr: np.ndarray, out: np.ndarray, start: int, softening: float) -> None:
    """Normalise ``arr[start:start + _CHUNK]`` into ``out`` (see :func:`normalize`)."""
    part = arr[start:start + _CHUNK].astype(np.float64)
    flat = part.reshape(part.shape[0], -1)
    background, mad = _median_mad(flat, True)
    out[start:start + _CHUNK] = _stretch(part, background, mad * _MAD_TO_STD, softening, in_place=True)
