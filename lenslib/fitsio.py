"""Reading FITS images and cutout files, with one set of rules for ``lenslib scan`` and
``lenslib predict``.

* An HDU is chosen by index (negative counts from the end) or by name; by default the first
  image HDU with data of the dimensions wanted (2-D for a scan; 2-D or 3-D for cutouts).  An HDU
  that does not exist, or holds something else, is named in an :class:`InputError` that lists
  the file's HDUs.
* Pixels are memory-mapped and read lazily.  A scaled image (``BSCALE``/``BZERO``, such as
  BITPIX=16 with ``BZERO = 32768``) is read raw and scaled band by band by :class:`ScaledImage`,
  so memory stays flat; its ``BLANK`` pixels become NaN (no data).
* A WCS that cannot convert pixel positions to the sky is refused before any work.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import same_file

#: What astropy raises for a file it cannot parse as FITS (besides OSError and ValueError).
_FITS_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, EOFError)


class ScaledImage:
    """A FITS image read raw and scaled on access: ``physical = raw * bscale + bzero``, NaN where
    ``raw == blank``.  Slicing (``image[top:bottom]``) reads and scales only those pixels;
    values are float32 for 8- and 16-bit data, float64 for wider data."""

    def __init__(self, raw, bscale: float = 1.0, bzero: float = 0.0, blank: int | None = None):
        self.raw, self.bscale, self.bzero, self.blank = raw, float(bscale), float(bzero), blank
        self.shape = tuple(raw.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32 if np.dtype(raw.dtype).itemsize <= 2 else np.float64)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        raw = np.asarray(self.raw[key])
        out = raw.astype(np.float64)
        out *= self.bscale
        out += self.bzero
        if self.blank is not None and np.issubdtype(raw.dtype, np.integer):
            out[raw == self.blank] = np.nan
        return out.astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return (f"ScaledImage(shape={self.shape}, raw dtype {self.raw.dtype}, bscale={self.bscale:g}, "
                f"bzero={self.bzero:g}, blank={self.blank})")


def hdu_spec(value: str):
    """An HDU named on the command line or in brackets: an index (``1``), an extension name
    (``SCI``) or a name and version (``SCI,2``)."""
    value = value.strip()
    name, comma, version = value.partition(",")
    if comma and version.strip().isdigit():
        return name.strip(), int(version)
    return int(value) if value.lstrip("-").isdigit() else value


def split_extension(path) -> tuple[Path, object]:
    """``(file, hdu)`` of a path that names its extension the cfitsio way, ``file.fits[WHT]``
    (also ``[1]`` and ``[SCI,2]``); ``(path, None)`` for a plain path, or one that exists as
    given."""
    text = os.fspath(path)
    if text.endswith("]") and "[" in text and not Path(text).exists():
        base, _, ext = text[:-1].rpartition("[")
        return Path(base), hdu_spec(ext)
    return Path(text), None


def open_fits(path, *, what: str = "image"):
    """``fits.open`` memory-mapped and unscaled, every header read now (so that a broken file
    fails here); ``FileNotFoundError`` for a missing file, :class:`InputError` for one that is
    not FITS."""
    from astropy.io import fits

    path = Path(path)
    if path.is_dir():
        raise InputError(f"the {what} {path} is a directory, not a FITS file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    hdul = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "File may have been truncated" and header fixes
            hdul = fits.open(path, memmap=True, do_not_scale_image_data=True)
            hdul.readall()
    except _FITS_ERRORS as err:
        if hdul is not None:
            hdul.close()
        reason = str(err).split(" If this is really a FITS file")[0]  # not astropy's hint to Python users
        raise InputError(f"{path} is not a FITS file ({reason})") from err
    return hdul


def _int(header, key, default=0):
    value = header.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _shape(h) -> tuple | None:
    naxis = _int(h.header, "NAXIS")
    if naxis is None:
        return None
    axes = tuple(_int(h.header, f"NAXIS{i}") for i in range(naxis, 0, -1))
    return None if any(a is None for a in axes) else axes


def _image_shape(h, ndims) -> tuple | None:
    """The shape of HDU ``h``'s image as read for ``ndims``: a 2-D plane stored with leading axes
    of length 1 (``NAXIS3 = 1``) reads as 2-D when 2-D is wanted."""
    shape = _shape(h) if h.is_image else None
    if shape is not None and 2 in ndims and len(shape) > 2 and set(shape[:-2]) == {1}:
        shape = shape[-2:]
    return shape


def _label(h) -> str:
    """An HDU's name, with its version when it has one (``SCI,2``)."""
    name = h.name or "-"
    return f"{name},{h.ver}" if h.name and h.ver > 1 else name


def _describe(h) -> str:
    if not h.is_image:
        kind = "a table" if "Table" in type(h).__name__ else "not an image"
        return f"{type(h).__name__} ({kind})"
    shape = _shape(h)
    if shape is None:
        return "a broken header (NAXIS)"
    if len(shape) == 0 or 0 in shape:
        return "no data"
    return f"{len(shape)}-D image {shape}"


def _listing(hdul) -> str:
    """Every HDU of a file, for error messages: index, name and what it holds."""
    return "; ".join(f"{i} {_label(h)}: {_describe(h)}" for i, h in enumerate(hdul))


def _holds_image(h, ndims) -> bool:
    """Whether HDU ``h`` holds a non-empty image of one of ``ndims`` dimensions."""
    shape = _image_shape(h, ndims)
    return shape is not None and len(shape) in ndims and 0 not in shape


def select_hdu(hdul, path, hdu=None, ndims=(2,)) -> int:
    """The index of the HDU ``hdu`` (index or name; default the first image HDU whose data has
    one of ``ndims`` dimensions), checked to hold such an image."""
    wanted = " or ".join(f"{n}-D" for n in ndims)
    listing = _listing(hdul)
    if hdu is None:
        for i, h in enumerate(hdul):
            if _holds_image(h, ndims):
                return i
        raise InputError(f"{path} has no HDU with {wanted} image data (HDUs: {listing})")
    if isinstance(hdu, (int, np.integer)) and not isinstance(hdu, bool):
        if not -len(hdul) <= hdu < len(hdul):
            raise InputError(f"{path} has no HDU {hdu}: it has {len(hdul)} (HDUs: {listing})")
        index = int(hdu) % len(hdul)
    else:
        try:
            index = hdul.index_of(hdu)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise InputError(f"{path} has no HDU {hdu!r} (HDUs: {listing})") from err
    if not _holds_image(hdul[index], ndims):
        raise InputError(f"HDU {hdu!r} of {path} holds {_describe(hdul[index])}, not a {wanted} image "
                         f"(HDUs: {listing})")
    return index


def _number(header, key, default, path, index):
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"HDU {index} of {path}: {key} must be a finite number (got {value!r})")
    return float(value)


def image_data(hdul, index: int, path, ndims=(2, 3)):
    """The pixels of HDU ``index``, read lazily: the memory map itself for unscaled data, a
    :class:`ScaledImage` for data with ``BSCALE``/``BZERO`` or an integer image with ``BLANK``;
    a plane stored with leading axes of length 1 drops them when ``ndims`` is ``(2,)``."""
    h = hdul[index]
    header = h.header
    bitpix = header.get("BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise InputError(f"HDU {index} of {path}: BITPIX must be 8, 16, 32, 64, -32 or -64 (got {bitpix!r})")
    bscale = _number(header, "BSCALE", 1.0, path, index)
    bzero = _number(header, "BZERO", 0.0, path, index)
    if bscale == 0:
        raise InputError(f"HDU {index} of {path}: BSCALE must not be 0")
    blank = header.get("BLANK") if bitpix > 0 else None
    if blank is not None and (isinstance(blank, bool) or not isinstance(blank, int)):
        raise InputError(f"HDU {index} of {path}: BLANK must be an integer (got {blank!r})")
    expected = _shape(h)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = h.data
    except _FITS_ERRORS as err:
        raise InputError(f"cannot read the pixels of HDU {index} of {path} ({err}); "
                         "is the file truncated?") from err
    if raw is None or tuple(raw.shape) != expected:
        got = None if raw is None else tuple(raw.shape)
        raise InputError(f"HDU {index} of {path} should hold {expected} pixels but holds {got}: "
                         "the file is truncated or its header is wrong")
    plane = _image_shape(h, ndims)
    if plane != expected:
        raw = raw.reshape(plane)
    if bscale != 1.0 or bzero != 0.0 or blank is not None:
        return ScaledImage(raw, bscale, bzero, blank)
    return raw


def _checked_wcs(hdul, index, path, shape):
    """The celestial WCS of HDU ``index`` (None if it has none), after checking that it turns
    the image's centre into a sky position."""
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FITSFixedWarning for fixable keys
            wcs = WCS(hdul[index].header, fobj=hdul, naxis=2)
            if not wcs.has_celestial:
                return None
            wcs = wcs.celestial
            sky = wcs.pixel_to_world_values((shape[1] - 1) / 2, (shape[0] - 1) / 2)
    except (ValueError, KeyError, TypeError, MemoryError, AttributeError) as err:
        reason = " ".join(str(err).split())  # wcslib's messages span lines
        raise InputError(f"HDU {index} of {path} has a WCS that cannot be used ({reason}); fix its "
                         "WCS keywords, or remove them to scan in pixel coordinates") from err
    if not np.all(np.isfinite(sky)):
        raise InputError(f"HDU {index} of {path} has a WCS that puts the image centre at no sky "
                         "position; fix its WCS keywords, or remove them to scan in pixel coordinates")
    return wcs


#: Extension names a weight map or a mask is looked for under, before the first 2-D image.
PLANE_NAMES = {"weight": ("WHT", "WEIGHT", "WGT"), "mask": ("MASK", "BPM", "BADPIX")}
#: Extension names of planes that describe an image rather than hold it (weights, masks, errors,
#: context, data quality, exposure): never taken as the image to scan unless named.
AUXILIARY_NAMES = frozenset({*PLANE_NAMES["weight"], *PLANE_NAMES["mask"], "ERR", "RMS", "SIG", "SIGMA",
                             "VAR", "IVAR", "CTX", "CON", "DQ", "EXP", "EXPMAP", "EXPTIME"})


def _default_image_hdu(hdul) -> int | None:
    """The HDU a scan reads when none is named: the first 2-D image called ``SCI``, else the first
    2-D image whose name is not one of :data:`AUXILIARY_NAMES` (a file that stores its weight
    map first still scans its science image); None when there is neither."""
    planes = [i for i, h in enumerate(hdul) if _holds_image(h, (2,))]
    named = [i for i in planes if hdul[i].name == "SCI"]
    science = [i for i in planes if hdul[i].name not in AUXILIARY_NAMES]
    return (named or science or [None])[0]


def read_image(path, hdu=None):
    """Open a FITS image memory-mapped: ``(hdul, data, wcs or None, hdu index)``.

    ``hdu`` (index, name, or ``(name, version)``) chooses the extension, as does a path ending
    in ``[EXT]`` (``image.fits[SCI]``); by default the first 2-D image named ``SCI``, else the
    first whose name is not a weight's, mask's, error's or the like (:data:`AUXILIARY_NAMES`),
    else the first 2-D image (a plane stored with ``NAXIS3 = 1`` counts).  ``data`` is read
    lazily (a scaled integer image through :class:`ScaledImage`).  Close ``hdul`` when done with
    ``data``.  Raises ``FileNotFoundError`` for a missing file and :class:`InputError` (a
    ``ValueError``) for a file that is not FITS, an HDU without 2-D image data, broken scaling
    keywords or an unusable WCS.
    """
    path, ext = split_extension(path)
    if ext is not None:
        if hdu is not None and hdu != ext:
            raise InputError(f"two HDUs asked of {path}: [{ext}] in its name and hdu={hdu!r}")
        hdu = ext
    hdul = open_fits(path)
    try:
        index = select_hdu(hdul, path, _default_image_hdu(hdul) if hdu is None else hdu, ndims=(2,))
        data = image_data(hdul, index, path, ndims=(2,))
        wcs = _checked_wcs(hdul, index, path, data.shape)
    except BaseException:
        hdul.close()
        raise
    return hdul, data, wcs, index


def read_plane(path, shape, *, what: str, image=None):
    """A mask or weight map of ``shape`` from the FITS file ``path``: the extension its name gives
    (``weights.fits[WHT]``), else the first 2-D image named as :data:`PLANE_NAMES` says (a
    drizzled HST file's ``WHT``), else the first 2-D image.  ``image``: ``(path, hdu index)`` of
    the scanned image, which the plane must not be (an HST file's first image is ``SCI``).
    Returns ``(hdul, data)`` (data read lazily)."""
    path, hdu = split_extension(path)
    hdul = open_fits(path, what=what)
    try:
        if hdu is None:
            hdu = next((i for i, h in enumerate(hdul) if h.name in PLANE_NAMES.get(what, ())
                        and _holds_image(h, (2,))), None)
        index = select_hdu(hdul, path, hdu, ndims=(2,))
        if image is not None and index == image[1] and same_file(path, image[0]):
            raise InputError(f"the {what} would be HDU {index} ({_label(hdul[index])}) of {path}, the "
                             f"scanned image itself: name the {what}'s extension, as in {path}[1] or "
                             f"{path}[WHT] (HDUs: {_listing(hdul)})")
        data = image_data(hdul, index, path, ndims=(2,))
        if tuple(data.shape) != tuple(shape):
            raise InputError(f"the {what} {path} is {data.shape[1]}x{data.shape[0]} pixels but the "
                             f"image is {shape[1]}x{shape[0]}")
    except BaseException:
        hdul.close()
        raise
    return hdul, data


def read_cutouts(path, hdu=None) -> np.ndarray:
    """Cutouts from a ``.npy`` file or from a FITS image or cube (``hdu`` chooses the HDU, by the
    rules of :func:`select_hdu`); the array is returned as stored, checked later by
    :func:`lenslib.preprocess.validate_cutouts`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cutouts not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            reason = "an empty file" if os.path.getsize(path) == 0 else str(err)
            raise InputError(f"{path} is not a readable .npy array ({reason})") from err
        if not isinstance(array, np.ndarray):
            raise InputError(f"{path} is not a .npy array (an .npz archive?)")
        return array
    try:
        hdul = open_fits(path, what="cutouts")
    except InputError as err:
        raise InputError(f"{path} is neither a .npy file nor a FITS file ({err.__cause__})") from err
    with hdul:
        index = select_hdu(hdul, path, hdu, ndims=(2, 3))
        return np.array(image_data(hdul, index, path)[...])


__all__ = ["PLANE_NAMES", "ScaledImage", "hdu_spec", "image_data", "open_fits", "read_cutouts", "read_image",
           "read_plane", "select_hdu", "split_extension"]
