"""The tiling of an image, and how a scan reads its pixels.

* :func:`tile_grid` and :class:`TileGrid`: where the ``size x size`` cutouts lie, every
  ``stride`` pixels, with a last row and column flush with the far edges.
* :class:`TileScores`: one score per tile (NaN: skipped), what a scan returns.
* :class:`ImageSource`, :func:`read_rows`, :func:`read_band`: image rows as float32, NaN where
  there is no data (masked, zero weight, NaN, infinite, BLANK, or in a run of exact zeros).
* :func:`band_tiles`, :func:`fill_missing`: the tiles of a band to score: those with at most
  ``max_missing`` pixels without data, which are filled from their neighbours.
* :func:`survey`: one pass over the image counting the pixels without data and hashing them
  (the image half of a checkpoint's fingerprint).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from ..errors import InputError

#: Pixels a side of the cutouts lenslib's models score (the training images' size).
CUTOUT_SIZE = 100
DEFAULT_STRIDE = 50
#: Exact zeros in a run of at least this many pixels along a row or a column are no data (the
#: fill of a mosaic's edges and gaps); a sky-subtracted image with noise never has such runs.
ZERO_RUN = 32
#: Default largest share of a tile's pixels that may have no data: those are filled from their
#: neighbours (:func:`fill_missing`) and the tile is scored; a tile with more is skipped.  2% is a
#: bad column and a row through a tile, or a few dozen masked cosmic rays.
MAX_MISSING = 0.02
#: Standard deviation (pixels) of the Gaussian weights that fill a missing pixel from its neighbours.
FILL_SIGMA = 1.5
_SURVEY_PIXELS = 1 << 22  # pixels read at a time by the pass that counts no-data pixels and hashes


# --------------------------------------------------------------------------------------------
# The grid and its scores
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TileGrid:
    """Where the cutouts of an image of ``shape`` (ny, nx) lie: tile ``(i, j)`` is
    ``data[y0[i]:y0[i] + size, x0[j]:x0[j] + size]``."""

    shape: tuple[int, int]
    size: int
    stride: int
    x0: np.ndarray
    y0: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.y0)

    @property
    def n_cols(self) -> int:
        return len(self.x0)

    @property
    def n_tiles(self) -> int:
        return self.n_rows * self.n_cols

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (0-based) of every tile's centre, each shaped ``(n_rows, n_cols)``."""
        half = (self.size - 1) / 2
        return np.meshgrid(self.x0 + half, self.y0 + half)


def _starts(n: int, size: int, stride: int) -> np.ndarray:
    starts = np.arange(0, n - size + 1, stride)
    if starts[-1] != n - size:  # one more tile flush with the far edge, so every pixel is covered
        starts = np.append(starts, n - size)
    return starts


def tile_grid(shape: tuple[int, int], *, size: int = CUTOUT_SIZE, stride: int = DEFAULT_STRIDE) -> TileGrid:
    """The tiles covering an image of ``shape``: every ``stride`` pixels, plus a last row and
    column flush with the far edges.  ``stride`` must be in ``[1, size]`` so that no pixel is
    left out."""
    if not (isinstance(size, (int, np.integer)) and size >= 1):
        raise InputError(f"size must be a positive integer (got {size!r})")
    if not (isinstance(stride, (int, np.integer)) and not isinstance(stride, bool) and 1 <= stride <= size):
        raise InputError(f"stride must be an integer in [1, {size}] pixels so that the {size}-pixel "
                         f"tiles overlap or touch (got {stride!r})")
    ny, nx = shape
    if ny < size or nx < size:
        raise InputError(f"the image ({nx}x{ny} pixels) is smaller than one {size}x{size} cutout")
    return TileGrid((int(ny), int(nx)), int(size), int(stride), _starts(nx, size, stride),
                    _starts(ny, size, stride))


@dataclass
class TileScores:
    """The score of every tile of a scan; NaN where a tile was skipped (it touches a pixel with
    no data).

    ``n_scored`` tiles were scored by this call and ``n_resumed`` read back from a checkpoint;
    ``no_data`` is the fraction of the image's pixels that have no data; ``n_refined`` tiles
    were scored again over all eight flips and quarter turns (``refine``: the score they reached).
    ``model`` names the model that scored them (:func:`lenslib.models.io.model_label`),
    ``model_digest`` is the blake2b digest of its file or weights, and ``transforms`` the flips and
    quarter turns each score averages; ``max_missing`` the share of a tile's pixels that could be
    filled.
    """

    grid: TileGrid
    scores: np.ndarray
    n_scored: int = 0
    n_resumed: int = 0
    no_data: float = 0.0
    n_refined: int = 0
    refine: float | None = None
    model: str | None = None
    model_digest: str | None = None
    transforms: int = 1
    max_missing: float | None = None

    @property
    def skipped(self) -> np.ndarray:
        return np.isnan(self.scores)

    @property
    def unsearched(self) -> float:
        """The fraction of the image's pixels that lie in no scored tile: where no lens can be
        found (more than the pixels without data, since a skipped tile's good pixels go too)."""
        grid = self.grid
        shares = []
        for starts, n in ((grid.y0, grid.shape[0]), (grid.x0, grid.shape[1])):
            edges = np.unique(np.concatenate([starts, starts + grid.size, [0, n]]))
            # cell k spans [edges[k], edges[k + 1]); tile t covers it when it starts at or before it
            inside = (starts[None, :] <= edges[:-1, None]) & (edges[1:, None] <= starts[None, :] + grid.size)
            shares.append((inside.astype(np.int64), np.diff(edges)))
        (rows, heights), (cols, widths) = shares
        covered = rows @ np.isfinite(self.scores).astype(np.int64) @ cols.T > 0
        return float(heights @ (~covered) @ widths) / (grid.shape[0] * grid.shape[1])

    @property
    def n_skipped(self) -> int:
        return int(self.skipped.sum())

    def table(self) -> Table:
        """One row per tile: its cutout's corner, its centre and its score (NaN: skipped)."""
        xc, yc = self.grid.centres()
        x0, y0 = np.meshgrid(self.grid.x0, self.grid.y0)
        return Table({"cutout_x0": x0.ravel(), "cutout_y0": y0.ravel(), "x": xc.ravel(),
                      "y": yc.ravel(), "score": self.scores.ravel()})


# --------------------------------------------------------------------------------------------
# Reading pixels, no data marked NaN
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSource:
    """What a scan reads: the image, its mask (True: no data) and weight map (0: no data), the
    length of the runs of exact zeros that are no data (0: none are), and the largest share of a
    tile's pixels that may have no data (filled, :func:`band_tiles`)."""

    data: object
    mask: object = None
    weight: object = None
    zero_run: int = ZERO_RUN
    max_missing: float = MAX_MISSING


def _in_runs(flags: np.ndarray, run: int, axis: int) -> np.ndarray:
    """True where ``flags`` is True inside a run of at least ``run`` Trues along ``axis``."""
    f = np.moveaxis(flags, axis, -1)
    n = f.shape[-1]
    if n < run:
        return np.zeros(flags.shape, dtype=bool)
    pad = np.zeros(f.shape[:-1] + (1,), dtype=np.int32)
    count = np.concatenate([pad, np.cumsum(f, axis=-1, dtype=np.int32)], axis=-1)
    full = (count[..., run:] - count[..., :-run]) == run  # the window starting here is all True
    starts = np.concatenate([pad, np.cumsum(full, axis=-1, dtype=np.int32)], axis=-1)
    j = np.arange(n)
    covered = starts[..., np.minimum(j, n - run) + 1] - starts[..., np.maximum(j - run + 1, 0)] > 0
    return np.moveaxis(covered, -1, axis)


def read_rows(src: ImageSource, top: int, bottom: int) -> np.ndarray:
    """Image rows ``[top, bottom)`` as float32, NaN where there is no data: masked pixels, zero
    or non-finite weights, and runs of ``src.zero_run`` or more exact zeros along a row or a
    column (NaN, infinite and BLANK pixels are NaN or infinite already).  ``zero_run - 1`` rows
    are read beyond each end, so a pixel's fate never depends on the band it was read in."""
    data, run = src.data, src.zero_run
    halo = run - 1 if run else 0
    lo, hi = max(0, top - halo), min(data.shape[0], bottom + halo)
    band = np.array(data[lo:hi], dtype=np.float32)
    zero = band == 0 if run else None
    band = band[top - lo:bottom - lo]
    if zero is not None and np.count_nonzero(zero) >= run:
        no_data = _in_runs(zero, run, axis=1)[top - lo:bottom - lo]
        no_data |= _in_runs(zero, run, axis=0)[top - lo:bottom - lo]
        band[no_data] = np.nan
    if src.mask is not None:
        band[np.asarray(src.mask[top:bottom], dtype=bool)] = np.nan
    if src.weight is not None:
        with np.errstate(invalid="ignore"):
            band[~(np.asarray(src.weight[top:bottom], dtype=np.float64) > 0)] = np.nan
    return band


def read_band(src: ImageSource, grid: TileGrid, rows: np.ndarray) -> np.ndarray:
    """The image rows under tile rows ``rows`` (consecutive), by :func:`read_rows`."""
    return read_rows(src, int(grid.y0[rows[0]]), int(grid.y0[rows[-1]]) + grid.size)


def survey(src: ImageSource, digest: bool) -> tuple[int, str | None]:
    """One pass over the whole image, a band of rows at a time: the number of pixels with no
    data and, with ``digest``, a blake2b digest of the image as the scan sees it (float32, NaN
    where there is no data), which therefore covers the mask, the weights and ``zero_run``."""
    ny, nx = src.data.shape
    rows = max(1, _SURVEY_PIXELS // nx)
    h = hashlib.blake2b(digest_size=16) if digest else None
    n_no_data = 0
    for top in range(0, ny, rows):
        band = read_rows(src, top, min(ny, top + rows))
        n_no_data += int(band.size - np.count_nonzero(np.isfinite(band)))
        if h is not None:
            h.update(band.tobytes())
    return n_no_data, (h.hexdigest() if h is not None else None)


# --------------------------------------------------------------------------------------------
# The tiles of a band, a few missing pixels filled
# --------------------------------------------------------------------------------------------
def fill_missing(cutout: np.ndarray) -> np.ndarray:
    """A copy of ``cutout`` whose non-finite pixels are filled: each with the Gaussian-weighted
    mean (:data:`FILL_SIGMA`, out to 4 sigma; the cutout's edge extended) of the finite pixels
    around it, the normalised convolution that astropy's ``interpolate_replace_nans`` computes,
    evaluated only at the missing pixels; a pixel with almost no finite pixel within 4 sigma
    takes the median of the cutout's finite pixels.  Uses the cutout's own pixels only, so a
    tile's fill never depends on how the image was read."""
    from numpy.lib.stride_tricks import sliding_window_view

    missing = ~np.isfinite(cutout)
    out = np.array(cutout, dtype=np.float32)
    if not missing.any():
        return out
    radius = int(4 * FILL_SIGMA + 0.5)
    profile = np.exp(-0.5 * (np.arange(-radius, radius + 1) / FILL_SIGMA) ** 2)
    kernel = np.outer(profile, profile) / profile.sum() ** 2
    ys, xs = np.nonzero(missing)
    # the missing pixels' neighbourhoods, the cutout's edge extended: rows and columns clipped
    rows = np.clip(np.arange(ys.min() - radius, ys.max() + radius + 1), 0, cutout.shape[0] - 1)
    cols = np.clip(np.arange(xs.min() - radius, xs.max() + radius + 1), 0, cutout.shape[1] - 1)
    around = np.ix_(rows, cols)
    sums = []
    for plane in (np.where(missing[around], 0.0, cutout[around]), (~missing[around]).astype(np.float64)):
        windows = sliding_window_view(plane, kernel.shape)[ys - ys.min(), xs - xs.min()]
        sums.append(np.einsum("kij,ij->k", windows, kernel))
    total, weight = sums
    near = weight > 1e-3
    out[ys[near], xs[near]] = total[near] / weight[near]
    if not near.all():
        out[ys[~near], xs[~near]] = np.median(out[~missing])
    return out


def band_tiles(band: np.ndarray, local_y0, x0, size: int, max_missing: int):
    """The tiles of ``band`` (rows starting at ``local_y0``, columns at ``x0``) with at most
    ``max_missing`` pixels without data: ``(rows, cols, cutouts)``, their row and column indices
    and their float32 pixels, missing ones filled (:func:`fill_missing`); ``cutouts`` is None
    when no tile qualifies."""
    x0 = np.asarray(x0)
    missing = ~np.isfinite(band)
    rows, cols = [], []
    if missing.any():
        area = np.zeros((band.shape[0] + 1, band.shape[1] + 1), dtype=np.int64)  # summed-area table
        np.cumsum(np.cumsum(missing, axis=0), axis=1, out=area[1:, 1:])
        for r, ly in enumerate(local_y0):
            count = area[ly + size, x0 + size] - area[ly, x0 + size] - area[ly + size, x0] + area[ly, x0]
            good = np.flatnonzero(count <= max_missing)
            rows.extend([r] * len(good))
            cols.extend(good)
    else:
        rows = np.repeat(np.arange(len(local_y0)), len(x0)).tolist()
        cols = np.tile(np.arange(len(x0)), len(local_y0)).tolist()
    if not rows:
        return rows, cols, None
    cutouts = np.stack([band[local_y0[r]:local_y0[r] + size, x0[c]:x0[c] + size] for r, c in zip(rows, cols)])
    if missing.any():
        for k in np.flatnonzero(~np.isfinite(cutouts).all(axis=(1, 2))):
            cutouts[k] = fill_missing(cutouts[k])
    return rows, cols, cutouts
