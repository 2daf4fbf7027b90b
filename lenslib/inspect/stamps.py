"""The PNG stamps of a grading page: one cutout under three stretches, and a saliency overlay.

* ``asinh``: :func:`lenslib.preprocess.normalize`, the stretch the finder itself sees (sky
  removed, divided by the cutout's noise, arcsinh-compressed), shown over
  :data:`lenslib.plots.DISPLAY_RANGE`;
* ``linear``: the sky-subtracted pixels, linear between the 0.5th and 99.5th percentiles, which
  shows what is really bright;
* ``residual``: the cutout minus its running median over :data:`RESIDUAL_BOX` pixels, which
  removes the smooth light of the lens galaxy and keeps thin features (arcs, rings, images of a
  quasar), shown on the noise-scaled arcsinh stretch;
* ``saliency``: the ``asinh`` stamp with the positive integrated-gradients attributions
  (:func:`lenslib.saliency.integrated_gradients`) drawn over it in colour.

Stamps are written with Pillow, without upscaling (the page scales them with nearest-neighbour
pixels), north up (row 0 of a FITS image at the bottom), with no text chunk but lenslib's marker.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import MARKER, atomic_output

STRETCHES = ("asinh", "linear", "residual")
#: Pixels a side of the running median subtracted by the ``residual`` stretch: an arc a few
#: pixels wide covers under half of the box, so the median ignores it and the arc stays.
RESIDUAL_BOX = 9
_RESIDUAL_RANGE = (-1.0, 4.0)  # noise-scaled arcsinh units: negative residuals stay visible
_LINEAR_PERCENTILES = (0.5, 99.5)


def _finite(image: np.ndarray) -> np.ndarray:
    """``image`` as float64 with pixels without data (NaN, infinite) set to its median."""
    image = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(image)
    if finite.all():
        return image
    fill = float(np.median(image[finite])) if finite.any() else 0.0
    return np.where(finite, image, fill)


def _to_bytes(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` mapped linearly from ``[low, high]`` onto 0-255 (clipped), flipped north up."""
    span = high - low if high > low else 1.0
    scaled = np.clip((values - low) / span, 0.0, 1.0) * 255.0
    return np.round(scaled[::-1]).astype(np.uint8)


def stretch_asinh(image: np.ndarray) -> np.ndarray:
    """The finder's own view (:func:`lenslib.preprocess.normalize`) as 8-bit grey."""
    from ..plots import DISPLAY_RANGE
    from ..preprocess import normalize

    return _to_bytes(normalize(_finite(image))[0], *DISPLAY_RANGE)


def stretch_linear(image: np.ndarray) -> np.ndarray:
    """Sky-subtracted pixels, linear between two percentiles, as 8-bit grey."""
    image = _finite(image)
    image = image - np.median(image)
    low, high = np.percentile(image, _LINEAR_PERCENTILES)
    return _to_bytes(image, float(low), float(high))


def residual(image: np.ndarray, box: int = RESIDUAL_BOX) -> np.ndarray:
    """``image`` minus its running median over ``box x box`` pixels (``box`` odd), the smooth
    lens light; edges are mirrored (as ``scipy.ndimage.median_filter``'s ``reflect`` mode, at a
    quarter of its cost)."""
    from numpy.lib.stride_tricks import sliding_window_view

    if not (isinstance(box, int) and box >= 1 and box % 2 == 1):
        raise InputError(f"box must be an odd positive number of pixels (got {box!r})")
    image = _finite(image)
    half = box // 2
    padded = np.pad(image, half, mode="symmetric")
    windows = sliding_window_view(padded, (box, box)).reshape(image.shape + (box * box,))
    middle = box * box // 2
    return image - np.partition(windows, middle, axis=-1)[..., middle]


def stretch_residual(image: np.ndarray) -> np.ndarray:
    """The lens-light-subtracted residual (:func:`residual`), noise-scaled arcsinh, 8-bit grey."""
    from astropy.stats import mad_std

    from ..preprocess import SOFTENING_SIGMA

    res = residual(image)
    noise = float(mad_std(_finite(image)))
    noise = noise if noise > 0 else 1.0
    return _to_bytes(np.arcsinh(res / (SOFTENING_SIGMA * noise)), *_RESIDUAL_RANGE)


def overlay_saliency(image: np.ndarray, attribution: np.ndarray) -> np.ndarray:
    """RGB 8-bit: the ``asinh`` stamp in grey with the positive attributions in colour (the
    strongest at 70% opacity, those under 15% of the strongest not drawn, as
    :func:`lenslib.plots.plot_saliency` draws them)."""
    from matplotlib import colormaps

    grey = stretch_asinh(image).astype(np.float64) / 255.0
    positive = np.clip(np.nan_to_num(np.asarray(attribution, dtype=np.float64)), 0.0, None)[::-1]
    peak = positive.max()
    weight = positive / peak if peak > 0 else positive
    alpha = np.where(weight >= 0.15, 0.7 * weight, 0.0)[..., None]
    colour = colormaps["autumn"](weight)[..., :3]
    rgb = grey[..., None] * (1.0 - alpha) + colour * alpha
    return np.round(rgb * 255.0).astype(np.uint8)


def render(image: np.ndarray, kind: str) -> np.ndarray:
    """The 8-bit stamp of one stretch (``asinh``, ``linear`` or ``residual``)."""
    functions = {"asinh": stretch_asinh, "linear": stretch_linear, "residual": stretch_residual}
    if kind not in functions:
        raise InputError(f"unknown stretch {kind!r}: use one of {STRETCHES}")
    return functions[kind](image)


def write_png(pixels: np.ndarray, path: str | os.PathLike) -> Path:
    """Write 8-bit grey ``(H, W)`` or RGB ``(H, W, 3)`` pixels as a PNG, atomically, with
    lenslib's marker as its only text (so that a later page may replace it)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", MARKER)
    with atomic_output(path) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(tmp, format="PNG", pnginfo=info)
    return Path(path)
