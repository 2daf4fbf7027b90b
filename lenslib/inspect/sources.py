"""Where a grading page's candidates come from: a ``lenslib scan`` catalog and its mosaic, or a
table with cutouts of its own (the graded candidate set of Table 5-2)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..errors import InputError
from ..files import read_table
from .page import write_page


def read_catalog(path: str | os.PathLike) -> Table:
    """A candidate catalog (``.fits``, ``.ecsv`` or ``.csv``, as ``lenslib scan`` writes it)."""
    return read_table(path, what="catalog")


def _corners(table: Table, size: int, shape: tuple[int, int], path) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's cutout corner: ``cutout_x0``/``cutout_y0`` (the tile the finder scored),
    else a cutout centred on ``x``/``y``, kept inside the image."""
    ny, nx = shape
    if "cutout_x0" in table.colnames and "cutout_y0" in table.colnames:
        x0, y0 = (np.asarray(table[c], dtype=float) for c in ("cutout_x0", "cutout_y0"))
    elif "x" in table.colnames and "y" in table.colnames:
        x0 = np.clip(np.round(np.asarray(table["x"], dtype=float)) - size // 2, 0, nx - size)
        y0 = np.clip(np.round(np.asarray(table["y"], dtype=float)) - size // 2, 0, ny - size)
    else:
        raise InputError(f"the catalog has neither cutout_x0/cutout_y0 nor x/y columns to cut the "
                         f"candidates out of {path} (columns: {', '.join(table.colnames)})")
    bad = ~(np.isfinite(x0) & np.isfinite(y0) & (x0 >= 0) & (y0 >= 0) & (x0 <= nx - size) & (y0 <= ny - size))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"catalog row {row + 1}: a {size}x{size} cutout at ({x0[row]:g}, {y0[row]:g}) "
                         f"does not lie inside the {nx}x{ny} image {path}: is it this image's catalog?")
    return x0.astype(int), y0.astype(int)


def mosaic_cutouts(table: Table, image, *, hdu=None) -> np.ndarray:
    """The candidates' cutouts ``(N, size, size)`` (size: the catalog's ``meta['size']``, else
    100), read from the FITS image with :func:`lenslib.fitsio.read_image`."""
    from ..fitsio import read_image

    size = int(table.meta.get("size", 100))
    hdul, data, _, _ = read_image(image, hdu)
    try:
        if min(data.shape) < size:
            raise InputError(f"the image {image} ({data.shape[1]}x{data.shape[0]}) is smaller than "
                             f"one {size}x{size} cutout")
        x0, y0 = _corners(table, size, tuple(data.shape), image)
        return np.stack([np.asarray(data[y:y + size, x:x + size], dtype=np.float32)
                         for x, y in zip(x0, y0)])
    finally:
        del data
        hdul.close()


def saliency_maps(model, cutouts: np.ndarray, *, steps: int = 32) -> np.ndarray:
    """Integrated-gradients maps of ``model`` (a Keras model or a ``.keras`` path) on ``cutouts``."""
    from ..models import load_model
    from ..saliency import integrated_gradients

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    return integrated_gradients(model, cutouts, steps=steps)


def _top_rows(table: Table, top: int | None) -> np.ndarray:
    """The rows of the ``top`` best scores (every row without ``top``), in the catalog's order."""
    if top is None or top >= len(table):
        return np.arange(len(table))
    if top < 1:
        raise InputError(f"top must be a positive number of candidates (got {top})")
    scores = np.nan_to_num(np.asarray(table["score"], dtype=float), nan=-np.inf)
    return np.sort(np.argsort(-scores, kind="stable")[:top])


def inspect_catalog(catalog, out_dir, *, image=None, cutouts=None, hdu=None, model=None,
                    saliency: bool = False, truth: str | None = None, top: int | None = None,
                    title: str | None = None) -> Path:
    """Write the grading page of a catalog (a path or a Table).

    The cutouts come from ``image`` (a FITS mosaic: the catalog of ``lenslib scan``) or from
    ``cutouts`` (a ``.npy``/FITS file or an array, one cutout per catalog row, in order).  With
    ``saliency`` the ``model``'s integrated gradients are drawn as a fourth stamp.  ``truth``
    names a column tabulated against the grades; ``top`` keeps the best-scoring rows only.
    Returns the page's path.
    """
    if (image is None) == (cutouts is None):
        raise InputError("give the candidates' image (--image) or their cutouts (--cutouts), one of them")
    if saliency and model is None:
        raise InputError("--saliency needs the finder: give --model PATH")
    table = read_catalog(catalog) if isinstance(catalog, (str, os.PathLike)) else catalog
    if "score" not in table.colnames:
        raise InputError(f"the catalog {catalog if isinstance(catalog, (str, os.PathLike)) else ''} "
                         f"has no 'score' column (columns: {', '.join(table.colnames)})")
    rows = _top_rows(table, top)
    keep = table[rows]
    if image is not None:
        stack = mosaic_cutouts(keep, image, hdu=hdu)
    else:
        stack = _own_cutouts(cutouts, len(table), hdu)[rows]
    maps = saliency_maps(model, stack) if saliency else None
    name = Path(catalog).name if isinstance(catalog, (str, os.PathLike)) else "candidates"
    inputs = [p for p in (catalog, image, cutouts, model) if isinstance(p, (str, os.PathLike))]
    return write_page(keep, stack, out_dir, truth=truth, saliency=maps,
                      title=title or f"lenslib: grade the candidates of {name}", inputs=inputs)


def _own_cutouts(cutouts, n: int, hdu) -> np.ndarray:
    from ..fitsio import read_cutouts

    stack = read_cutouts(cutouts, hdu) if isinstance(cutouts, (str, os.PathLike)) else np.asarray(cutouts)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or len(stack) != n:
        raise InputError(f"the cutouts must be one (H, W) image per catalog row ({n}); "
                         f"got shape {stack.shape}")
    return stack
