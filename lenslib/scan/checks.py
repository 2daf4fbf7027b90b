"""What a scan accepts, and what it warns about.

* ``check_*``: each argument of :func:`~lenslib.scan.find_lenses` and
  :func:`~lenslib.scan.score_tiles` checked before any work, refused with
  :class:`lenslib.errors.InputError` (a ``ValueError``) or :class:`~lenslib.errors.InputTypeError`
  (also a ``TypeError``) whose message names the argument.
* :class:`ScanWarning` and its subclasses: no WCS, skipped tiles, no candidates, pixels of
  another size than the finder was trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning

from ..errors import InputError, InputTypeError
from .tiles import CUTOUT_SIZE


class ScanWarning(AstropyUserWarning):
    """Base class of the warnings of :mod:`lenslib.scan`."""


class NoCandidatesWarning(ScanWarning):
    """No tile scored at or above the threshold: the catalog is empty."""


class NoWCSWarning(ScanWarning):
    """The image has no celestial WCS: the catalog has pixel coordinates only."""


class SkippedTilesWarning(ScanWarning):
    """Some tiles have more of their pixels without data (NaN, infinite, masked...) than may be
    filled, and were not scored."""


class PixelScaleWarning(ScanWarning):
    """The image's pixels (from its WCS) differ in size from those the finder was trained on."""


#: Relative difference of pixel scales above which :class:`PixelScaleWarning` is raised.
PIXEL_SCALE_TOLERANCE = 0.05


def _as_array(value, name):
    """``value`` itself if it can be read band by band (a memory map, a
    :class:`~lenslib.fitsio.ScaledImage`, any sliceable array with ``shape`` and ``dtype``),
    else ``np.asarray(value)``."""
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__getitem__"):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise InputTypeError(f"{name} must be a 2-D numeric array ({err})") from err


def check_image(data):
    """A 2-D real-valued image of at least one cutout, kept as it is if it can be read band by
    band."""
    data = _as_array(data, "data")
    dtype = np.dtype(data.dtype)
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise InputTypeError(f"data must be a numeric image of real numbers (got dtype {dtype})")
    if len(data.shape) != 2:
        raise InputError(f"data must be a 2-D image (got shape {tuple(data.shape)}); pick one plane "
                         "or one HDU of a cube")
    if min(data.shape) < CUTOUT_SIZE:
        raise InputError(f"data must be at least {CUTOUT_SIZE}x{CUTOUT_SIZE} pixels, one cutout "
                         f"(got {data.shape[1]}x{data.shape[0]})")
    return data


def check_mask(mask, shape, name="mask"):
    """A mask (True or nonzero: no data) or a weight map (0: no data) of the image's shape."""
    if mask is None:
        return None
    mask = _as_array(mask, name)
    dtype = np.dtype(mask.dtype)
    if dtype.kind not in "biuf":
        raise InputTypeError(f"{name} must be an array of booleans or real numbers (got dtype {dtype})")
    if tuple(mask.shape) != tuple(shape):
        raise InputError(f"{name} must have the same shape as data: {name} is {tuple(mask.shape)}, "
                         f"data is {tuple(shape)}")
    return mask


def check_wcs(wcs, shape):
    """A 2-D celestial ``astropy.wcs.WCS`` for an image of ``shape``, or None."""
    if wcs is None:
        return None
    from astropy.wcs import WCS

    if not isinstance(wcs, WCS):
        raise InputTypeError(f"wcs must be an astropy.wcs.WCS or None (got {type(wcs).__name__})")
    if wcs.pixel_n_dim != 2 or not wcs.has_celestial:
        raise InputError(f"wcs must be a 2-D celestial WCS (got {wcs.pixel_n_dim} pixel axes, "
                         f"types {list(wcs.wcs.ctype)})")
    if wcs.pixel_shape is not None and tuple(wcs.pixel_shape) != (shape[1], shape[0]):
        nx, ny = wcs.pixel_shape
        raise InputError(f"the wcs is for a {nx}x{ny} image but data is {shape[1]}x{shape[0]} pixels")
    return wcs


def pixel_scale_arcsec(wcs) -> float:
    """The mean pixel side of a celestial WCS, in arcsec (its two axes' scales averaged)."""
    import astropy.units as u
    from astropy.wcs.utils import proj_plane_pixel_scales

    celestial = wcs.celestial
    scales = [(s * u.Unit(unit)).to_value(u.arcsec)
              for s, unit in zip(proj_plane_pixel_scales(celestial), celestial.wcs.cunit)]
    return float(np.mean(scales))


def check_pixel_scale(wcs, model) -> tuple[float | None, float | None]:
    """``(image's pixel scale, finder's)`` in arcsec, each None when unknown (no WCS; a model
    without a card, see :func:`lenslib.finder.card.card_beside`), with a
    :class:`PixelScaleWarning` when both are known and differ by more than
    :data:`PIXEL_SCALE_TOLERANCE`: the finder then sees lenses at another angular size, through
    another PSF sampling, than it learned, and its scores mean little."""
    import warnings

    from ..finder.card import trained_pixel_scale

    image = None if wcs is None else pixel_scale_arcsec(wcs)
    trained = trained_pixel_scale(model)
    if image is not None and trained is not None and abs(image / trained - 1) > PIXEL_SCALE_TOLERANCE:
        warnings.warn(f"the image's pixels are {image:.4g} arcsec (from its WCS) but the finder was "
                      f"trained on {trained:.4g} arcsec pixels: Einstein radii and the PSF span "
                      f"{trained / image:.2g}x the pixels it learned, so its scores mean little here; "
                      f"resample the image to {trained:.4g} arcsec pixels, or train a finder on a sky "
                      "of this instrument (`lenslib train-finder`)", PixelScaleWarning, stacklevel=3)
    return image, trained


def check_number(name, value, low, high):
    """``value`` as a float, if it is a real number (not a bool) in ``[low, high]``."""
    if not (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            and low <= value <= high):
        raise InputError(f"{name} must be a number in [{low}, {high}] (got {value!r})")
    return float(value)


def check_int(name, value, low, high) -> int:
    """``value`` as an int, if it is an integer (not a bool) in ``[low, high]``."""
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and low <= value <= high):
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise InputError(f"{name} must be {what} no larger than {high} (got {value!r})")
    return int(value)


def check_checkpoint(checkpoint):
    """A checkpoint directory's path (it need not exist yet), or None."""
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise InputTypeError(f"checkpoint must be a directory path or None (got {type(checkpoint).__name__})")
    path = Path(checkpoint)
    if path.exists() and not path.is_dir():
        raise InputError(f"checkpoint {path} is a file, not a directory")
    return path


def check_model(model):
    """``(keras_model, path or None)``; a path, or a shipped finder's name, is loaded in Keras's
    safe mode."""
    from ..models import load_model
    from ..models.io import resolve_model_path

    path = None
    if isinstance(model, (str, os.PathLike)):
        path = resolve_model_path(model)
        model = load_model(path)
    elif not (hasattr(model, "input_shape") and hasattr(model, "predict")):
        raise InputTypeError(f"model must be a Keras model or the path of a .keras file "
                             f"(got {type(model).__name__})")
    shape = tuple(model.input_shape)
    if shape[1:] != (CUTOUT_SIZE, CUTOUT_SIZE, 1):
        where = f" ({path})" if path else ""
        raise InputError(f"the model{where} takes inputs of shape {shape} but lenslib scans "
                         f"{CUTOUT_SIZE}x{CUTOUT_SIZE}x1 cutouts: train it on lenslib's cutouts")
    return model, path
