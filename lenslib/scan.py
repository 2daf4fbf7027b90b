"""Find lens candidates in a survey image: tiles -> cutouts -> batched scores -> merged catalog.

A 2-D image in e-/s (a drizzled HST mosaic, or any survey image of the same kind) is cut into
overlapping ``100 x 100`` tiles every ``stride`` pixels.  Each tile is normalised exactly as the
training cutouts were (:func:`lenslib.preprocess.normalize`, through
:func:`lenslib.models.predict`) and scored by a trained lens finder.  Tiles that touch a pixel
without data (NaN, infinite, BLANK, masked, zero weight, or in a run of exact zeros) are skipped
and reported with the fraction of the image without data, never scored as sky.  Tiles scoring at least
``threshold`` are merged by non-maximum suppression: the best tile keeps every other detection
within ``min_separation`` pixels, and the candidate sits at their score-weighted centre.

Memory stays bounded: the image is read one band of tile rows at a time (a memory-mapped FITS
file is never loaded whole) and scored ``batch_size`` cutouts at a time.  With ``checkpoint`` the
scores of each finished tile row are written to disk atomically, so an interrupted scan resumes
where it stopped (a checkpoint is tied to a hash of every pixel, the tiling and the model).
With ``scheduler`` the same blocks are scored on a Dask cluster (a local one
with ``"local"``, any other by its address); every worker loads the model from its ``.keras``
file, and the scores are the same as in one process.

The entry points are :func:`find_lenses` (arrays) and :func:`scan_fits` (files).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning

from .errors import InputError, InputTypeError
from .files import MARKER, atomic_output, check_output, check_table_path, write_table
from .fitsio import read_image, read_plane

#: Pixels a side of the cutouts lenslib's models score (the training images' size).
CUTOUT_SIZE = 100
DEFAULT_STRIDE = 50
DEFAULT_BATCH_SIZE = 256
#: Largest batch: 8192 cutouts take about 1 GB while normalised; larger batches only cost memory.
MAX_BATCH_SIZE = 8192
#: Exact zeros in a run of at least this many pixels along a row or a column are no data (the
#: fill of a mosaic's edges and gaps); a sky-subtracted image with noise never has such runs.
ZERO_RUN = 32
CHECKPOINT_FORMAT = "lenslib-scan-checkpoint"
_CHECKPOINT_VERSION = 2
_SURVEY_PIXELS = 1 << 22  # pixels read at a time by the pass that counts no-data pixels and hashes


class ScanWarning(AstropyUserWarning):
    """Base class of the warnings of :mod:`lenslib.scan`."""


class NoCandidatesWarning(ScanWarning):
    """No tile scored at or above the threshold: the catalog is empty."""


class NoWCSWarning(ScanWarning):
    """The image has no celestial WCS: the catalog has pixel coordinates only."""


class SkippedTilesWarning(ScanWarning):
    """Some tiles touch NaN, infinite or masked pixels and were not scored."""


# --------------------------------------------------------------------------------------------
# The tiling
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
    ``no_data`` is the fraction of the image's pixels that have no data.
    """

    grid: TileGrid
    scores: np.ndarray
    n_scored: int = 0
    n_resumed: int = 0
    no_data: float = 0.0

    @property
    def skipped(self) -> np.ndarray:
        return np.isnan(self.scores)

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
# Validation
# --------------------------------------------------------------------------------------------
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


def _check_image(data):
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


def _check_mask(mask, shape, name="mask"):
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


def _check_wcs(wcs, shape):
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


def _check_number(name, value, low, high):
    if not (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            and low <= value <= high):
        raise InputError(f"{name} must be a number in [{low}, {high}] (got {value!r})")
    return float(value)


def _check_int(name, value, low, high) -> int:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and low <= value <= high):
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise InputError(f"{name} must be {what} no larger than {high} (got {value!r})")
    return int(value)


def _check_checkpoint(checkpoint):
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise InputTypeError(f"checkpoint must be a directory path or None (got {type(checkpoint).__name__})")
    path = Path(checkpoint)
    if path.exists() and not path.is_dir():
        raise InputError(f"checkpoint {path} is a file, not a directory")
    return path


def _check_model(model):
    """``(keras_model, path or None)``; a path is loaded in Keras's safe mode."""
    from .models import load_model

    path = None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
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


# --------------------------------------------------------------------------------------------
# Scoring one block of tile rows (in this process or on a Dask worker)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    """What a scan reads: the image, its mask (True: no data) and weight map (0: no data), and
    the length of the runs of exact zeros that are no data (0: none are)."""

    data: object
    mask: object = None
    weight: object = None
    zero_run: int = ZERO_RUN


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


def _read_rows(src: _Source, top: int, bottom: int) -> np.ndarray:
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


def _read_band(src: _Source, grid: TileGrid, rows: np.ndarray) -> np.ndarray:
    """The image rows under tile rows ``rows`` (consecutive), by :func:`_read_rows`."""
    return _read_rows(src, int(grid.y0[rows[0]]), int(grid.y0[rows[-1]]) + grid.size)


def _survey(src: _Source, digest: bool) -> tuple[int, str | None]:
    """One pass over the whole image, a band of rows at a time: the number of pixels with no
    data and, with ``digest``, a blake2b digest of the image as the scan sees it (float32, NaN
    where there is no data), which therefore covers the mask, the weights and ``zero_run``."""
    ny, nx = src.data.shape
    rows = max(1, _SURVEY_PIXELS // nx)
    h = hashlib.blake2b(digest_size=16) if digest else None
    n_no_data = 0
    for top in range(0, ny, rows):
        band = _read_rows(src, top, min(ny, top + rows))
        n_no_data += int(band.size - np.count_nonzero(np.isfinite(band)))
        if h is not None:
            h.update(band.tobytes())
    return n_no_data, (h.hexdigest() if h is not None else None)


def _score_band(band: np.ndarray, local_y0, x0, size: int, model, batch_size: int) -> np.ndarray:
    """Scores ``(len(local_y0), len(x0))`` of the tiles of ``band``; NaN for tiles that touch a
    non-finite pixel."""
    from .models import predict

    x0 = np.asarray(x0)
    out = np.full((len(local_y0), len(x0)), np.nan, dtype=np.float32)
    todo = []
    for r, ly in enumerate(local_y0):
        bad_cols = np.concatenate([[0], np.cumsum(~np.isfinite(band[ly:ly + size]).all(axis=0))])
        good = np.flatnonzero(bad_cols[x0 + size] == bad_cols[x0])
        todo.extend((r, c) for c in good)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        cutouts = np.stack([band[local_y0[r]:local_y0[r] + size, x0[c]:x0[c] + size] for r, c in chunk])
        rows, cols = zip(*chunk)
        out[list(rows), list(cols)] = predict(model, cutouts, batch_size=batch_size)
    return out


_WORKER_MODELS: dict = {}


def _worker_model(path: str):
    """The model at ``path``, loaded once per process (keyed by its size and mtime)."""
    from .models import load_model

    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = load_model(path)
    return _WORKER_MODELS[key]


def _score_band_task(model_path: str, band, local_y0, x0, size: int, batch_size: int) -> np.ndarray:
    """A Dask task: load the model from its file (once per worker) and score a band."""
    return _score_band(band, local_y0, x0, size, _worker_model(model_path), batch_size)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def _model_digest(model, path) -> str:
    """blake2b of the model's ``.keras`` file (architecture and weights), or of its weights."""
    h = hashlib.blake2b(digest_size=16)
    if path is not None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for w in model.get_weights():
            h.update(str(np.shape(w)).encode())
            h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _fingerprint(image_digest: str, grid: TileGrid, zero_run: int, model, model_path) -> dict:
    """What a checkpoint must match to be resumed: every pixel of the image as the scan sees it
    (:func:`_survey`'s digest: data, mask, weights, BLANK and zero runs), the tiling and the
    model.  Options that do not change a tile's score (threshold, min_separation, batch_size,
    scheduler) are not part of it: a finished checkpoint can be merged again at another
    threshold without rescoring."""
    return {"shape": list(grid.shape), "size": grid.size, "stride": grid.stride, "zero_run": zero_run,
            "image": image_digest, "model": _model_digest(model, model_path)}


class _Checkpoint:
    """A directory holding ``scan.json`` (the fingerprint) and one ``rows/row-NNNNNN.npy`` of
    scores per finished tile row, each written atomically."""

    def __init__(self, directory, fingerprint: dict, n_cols: int):
        self.dir = Path(directory)
        self.n_cols = n_cols
        manifest = self.dir / "scan.json"
        record = {"format": CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "fingerprint": fingerprint}
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
            except (OSError, ValueError) as err:
                raise InputError(f"{manifest} is not a lenslib scan checkpoint: {err}") from err
            if not isinstance(old, dict) or old.get("format") != CHECKPOINT_FORMAT:
                raise InputError(f"{manifest} is not a lenslib scan checkpoint")
            if old.get("version") != _CHECKPOINT_VERSION:
                raise InputError(f"the checkpoint {self.dir} was written by another version of lenslib "
                                 f"(checkpoint version {old.get('version')!r}); delete it to scan afresh")
            previous = old.get("fingerprint") if isinstance(old.get("fingerprint"), dict) else {}
            differ = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
            if differ:
                raise InputError(f"the checkpoint {self.dir} belongs to another scan (it differs in "
                                 f"{', '.join(differ)}); use a new checkpoint directory or delete it")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic_output(manifest) as tmp:
                tmp.write_text(json.dumps(record, indent=1))
        (self.dir / "rows").mkdir(exist_ok=True)

    def _path(self, row: int) -> Path:
        return self.dir / "rows" / f"row-{row:06d}.npy"

    def load(self, scores: np.ndarray) -> np.ndarray:
        """Fill ``scores`` with every finished row; returns the indices of those rows."""
        done = []
        for row in range(scores.shape[0]):
            path = self._path(row)
            if path.exists():
                try:
                    values = np.load(path, allow_pickle=False)
                except (ValueError, EOFError, OSError) as err:
                    raise InputError(f"{path} is not a readable row of scores ({err}); delete the "
                                     f"checkpoint {self.dir} to scan afresh") from err
                if values.shape != (self.n_cols,):
                    raise InputError(f"{path} holds {values.shape} scores, expected ({self.n_cols},)")
                scores[row] = values
                done.append(row)
        return np.array(done, dtype=int)

    def save(self, row: int, values: np.ndarray) -> None:
        with atomic_output(self._path(row)) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(values, dtype=np.float32))


# --------------------------------------------------------------------------------------------
# Scoring every tile
# --------------------------------------------------------------------------------------------
def _blocks(rows: np.ndarray, per_block: int) -> list[np.ndarray]:
    """Split sorted row indices into runs of consecutive rows, at most ``per_block`` long."""
    if len(rows) == 0:
        return []
    runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
    return [run[i:i + per_block] for run in runs for i in range(0, len(run), per_block)]


def _progress_bar(total: int, progress, initial: int = 0):
    from tqdm import tqdm

    disable = None if progress is None else not progress  # None: only on a terminal
    return tqdm(total=total, initial=initial, unit="tile", desc="lenslib scan", disable=disable)


def score_tiles(data, model, *, mask=None, weight=None, stride: int = DEFAULT_STRIDE,
                batch_size: int = DEFAULT_BATCH_SIZE, zero_run: int = ZERO_RUN, checkpoint=None,
                scheduler=None, n_workers: int | None = None, progress: bool | None = None) -> TileScores:
    """Score every ``100 x 100`` tile of ``data``; see :func:`find_lenses` for the parameters.

    Returns a :class:`TileScores` whose ``scores`` (``n_rows x n_cols``, NaN for skipped tiles)
    are the raw material of :func:`candidates_table` and of a score map.  Warns with
    :class:`SkippedTilesWarning`, and the fraction of the image without data, when tiles touch
    pixels without data.
    """
    data = _check_image(data)
    mask = _check_mask(mask, data.shape)
    weight = _check_mask(weight, data.shape, "weight")
    if np.ma.isMaskedArray(data):
        own = np.ma.getmaskarray(data)
        mask = own if mask is None else own | np.asarray(mask, dtype=bool)
        data = np.ma.getdata(data)
    batch_size = _check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
    zero_run = _check_int("zero_run", zero_run, 0, min(data.shape))
    grid = tile_grid(tuple(data.shape), stride=stride)
    checkpoint = _check_checkpoint(checkpoint)
    if n_workers is not None and scheduler != "local":
        raise InputError(f"n_workers sets the size of a scheduler='local' cluster; it does nothing with "
                         f"scheduler={scheduler!r}")
    model, model_path = _check_model(model)
    if scheduler is not None and model_path is None:
        raise InputError("to scan on Dask, pass the model as the path of its .keras file: every worker "
                         "loads it from there (lenslib.models.save_model writes one)")
    src = _Source(data, mask, weight, zero_run)
    # Connect first: an unreachable scheduler fails before any reading, and leaves no checkpoint.
    client, close = (None, None) if scheduler is None else _dask_client(scheduler, n_workers)
    try:
        result = _score_all(src, grid, model, model_path, batch_size, checkpoint, client, progress)
    finally:
        if close is not None:
            close()
    if result.n_skipped:
        warnings.warn(f"{result.n_skipped} of {grid.n_tiles} tiles touch NaN, infinite or masked pixels "
                      f"and were not scored: {100 * result.no_data:.3g}% of the image has no data (NaN, "
                      f"infinite or BLANK pixels, the mask, zero weights, runs of {zero_run} or more exact "
                      "zeros); no candidates can be found there", SkippedTilesWarning, stacklevel=2)
    return result


def _score_all(src, grid, model, model_path, batch_size, checkpoint, client, progress) -> TileScores:
    n_no_data, digest = _survey(src, digest=checkpoint is not None)
    scores = np.full((grid.n_rows, grid.n_cols), np.nan, dtype=np.float32)
    store = None
    done = np.zeros(0, dtype=int)
    if checkpoint is not None:
        store = _Checkpoint(checkpoint, _fingerprint(digest, grid, src.zero_run, model, model_path),
                            grid.n_cols)
        done = store.load(scores)
    pending = np.setdiff1d(np.arange(grid.n_rows), done)
    per_block = max(1, -(-batch_size // grid.n_cols))  # enough rows to fill a batch
    blocks = _blocks(pending, per_block)
    result = TileScores(grid, scores, n_resumed=int(np.isfinite(scores[done]).sum()),
                        no_data=n_no_data / (grid.shape[0] * grid.shape[1]))

    def finish(rows, values):
        scores[rows] = values
        if store is not None:
            for row, row_values in zip(rows, values):
                store.save(int(row), row_values)
        result.n_scored += int(np.isfinite(values).sum())
        bar.update(values.size)

    with _progress_bar(grid.n_tiles, progress, initial=len(done) * grid.n_cols) as bar:
        if client is None:
            for rows in blocks:
                band = _read_band(src, grid, rows)
                local = grid.y0[rows] - grid.y0[rows[0]]
                finish(rows, _score_band(band, local, grid.x0, grid.size, model, batch_size))
        else:
            _score_on_dask(client, src, grid, blocks, str(model_path.resolve()), batch_size, finish)
    return result


# --------------------------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------------------------
def local_cluster(n_workers: int | None = None):
    """A Dask ``LocalCluster`` for scanning: ``n_workers`` processes (default: one per core), one
    task at a time each, TensorFlow in each limited to its share of the cores."""
    from dask.distributed import LocalCluster

    cores = os.cpu_count() or 1
    n = cores if n_workers is None else n_workers
    if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1):
        raise InputError(f"n_workers must be a positive integer (got {n_workers!r})")
    threads = str(max(1, cores // n))
    env = {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads,
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    return LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True, dashboard_address=None,
                        env=env)


def _dask_client(scheduler, n_workers):
    """``(client, close)``: ``"local"`` starts a :func:`local_cluster`; an address connects to a
    running scheduler; a ``distributed.Client`` is used as it is."""
    from dask.distributed import Client

    if isinstance(scheduler, Client):
        return scheduler, lambda: None
    if scheduler == "local":
        cluster = local_cluster(n_workers)
        client = Client(cluster)

        def close():
            client.close()
            cluster.close()

        return client, close
    if isinstance(scheduler, str) and "://" in scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
        return client, client.close
    raise InputError(f"scheduler must be None, 'local', a scheduler address such as "
                     f"'tcp://host:8786', or a distributed.Client (got {scheduler!r})")


def _score_on_dask(client, src, grid, blocks, model_path, batch_size, finish):
    """Submit one task per block, at most two per worker in flight (memory stays bounded), and
    hand each result to ``finish`` as it arrives."""
    from dask.distributed import wait

    n_running = max(1, len(client.scheduler_info().get("workers", {})))
    in_flight: dict = {}
    queue = list(blocks)
    while queue or in_flight:
        while queue and len(in_flight) < 2 * n_running:
            rows = queue.pop(0)
            band = _read_band(src, grid, rows)
            local = grid.y0[rows] - grid.y0[rows[0]]
            future = client.submit(_score_band_task, model_path, band, local, grid.x0, grid.size,
                                   batch_size, pure=False)
            in_flight[future] = rows
        done, _ = wait(list(in_flight), return_when="FIRST_COMPLETED")
        for future in done:
            finish(in_flight.pop(future), future.result())


# --------------------------------------------------------------------------------------------
# Merging detections
# --------------------------------------------------------------------------------------------
def merge_detections(x, y, scores, *, threshold: float = 0.5, min_separation: float = CUTOUT_SIZE):
    """Greedy non-maximum suppression of detections at pixel positions ``(x, y)``.

    Detections scoring at least ``threshold`` are taken best first; each one not yet claimed
    claims every unclaimed detection closer than ``min_separation`` pixels.  Returns a list of
    index arrays, one per merged candidate, best detection first, candidates in order of their
    best score.  NaN scores are ignored.
    """
    from scipy.spatial import cKDTree

    x, y, scores = (np.asarray(v, dtype=float).ravel() for v in (x, y, scores))
    if not (x.shape == y.shape == scores.shape):
        raise InputError(f"x, y and scores must have the same length (got {x.size}, {y.size}, {scores.size})")
    _check_number("min_separation", min_separation, 0.0, np.inf)
    above = np.flatnonzero(np.nan_to_num(scores, nan=-np.inf) >= threshold)
    order = above[np.argsort(-scores[above], kind="stable")]
    if order.size == 0:
        return []
    tree = cKDTree(np.column_stack([x[order], y[order]]))
    radius = np.nextafter(float(min_separation), 0.0)  # strictly closer than min_separation
    claimed = np.zeros(order.size, dtype=bool)
    groups = []
    for i in range(order.size):
        if claimed[i]:
            continue
        near = np.array(sorted(j for j in tree.query_ball_point((x[order[i]], y[order[i]]), radius)
                               if not claimed[j] and j != i), dtype=int)
        claimed[i] = True
        claimed[near] = True
        groups.append(order[np.concatenate([[i], near])])
    return groups


def candidates_table(tiles: TileScores, *, threshold: float = 0.5, min_separation: float | None = None,
                     wcs=None) -> Table:
    """The candidate catalog of a scan: merged detections (:func:`merge_detections`), best first.

    Columns: ``id``; ``x``, ``y`` (0-based pixels, the score-weighted centre of the merged
    tiles); with ``wcs``, ``ra``, ``dec`` (deg) and ``skycoord``; ``score`` (the best tile's);
    ``n_tiles`` (tiles merged); ``cutout_x0``, ``cutout_y0`` (the best tile is
    ``data[cutout_y0:cutout_y0 + 100, cutout_x0:cutout_x0 + 100]``).
    """
    threshold = _check_number("threshold", threshold, 0.0, 1.0)
    grid = tiles.grid
    min_separation = float(grid.size) if min_separation is None else min_separation
    xc, yc = grid.centres()
    x0, y0 = np.meshgrid(grid.x0, grid.y0)
    flat = tiles.scores.ravel()
    groups = merge_detections(xc, yc, flat, threshold=threshold, min_separation=min_separation)
    rows = []
    for k, members in enumerate(groups, start=1):
        w = flat[members].astype(float)
        best = members[0]
        rows.append((k, float(np.average(xc.ravel()[members], weights=w)),
                     float(np.average(yc.ravel()[members], weights=w)), float(flat[best]), len(members),
                     int(x0.ravel()[best]), int(y0.ravel()[best])))
    names = ("id", "x", "y", "score", "n_tiles", "cutout_x0", "cutout_y0")
    dtypes = (int, float, float, np.float32, int, int, int)
    table = Table(rows=rows or None, names=names, dtype=dtypes)
    if wcs is not None:
        sky = wcs.pixel_to_world(np.asarray(table["x"], float), np.asarray(table["y"], float)).icrs
        table.add_column(sky.ra.to(u.deg), name="ra", index=3)
        table.add_column(sky.dec.to(u.deg), name="dec", index=4)
        table.add_column(sky, name="skycoord", index=5)
    table.meta.update({"stride": grid.stride, "size": grid.size, "thresh": threshold,
                       "min_sep": float(min_separation), "n_tiles": grid.n_tiles,
                       "n_scored": tiles.n_scored, "n_resume": tiles.n_resumed,
                       "n_skip": tiles.n_skipped, "no_data": round(float(tiles.no_data), 6)})
    return table


# --------------------------------------------------------------------------------------------
# The public face
# --------------------------------------------------------------------------------------------
def find_lenses(data, model, wcs=None, mask=None, *, weight=None, stride: int = DEFAULT_STRIDE,
                threshold: float = 0.5, min_separation: float | None = None,
                batch_size: int = DEFAULT_BATCH_SIZE, zero_run: int = ZERO_RUN, checkpoint=None,
                scheduler=None, n_workers: int | None = None, progress: bool | None = None) -> Table:
    """Find strong-lens candidates in a survey image.

    The image is cut into ``100 x 100`` tiles every ``stride`` pixels; each tile is normalised
    as the training cutouts were and scored by ``model``; tiles scoring at least ``threshold``
    are merged by non-maximum suppression into candidates.

    Parameters
    ----------
    data : 2-D array
        The image in electrons per second (sky-subtracted or not: every cutout's own median is
        removed), of real numbers (integers or floating point; complex is refused).  A
        ``numpy.memmap`` (such as a FITS file opened with ``memmap=True``) or a
        :class:`lenslib.fitsio.ScaledImage` is read one band of tile rows at a time.  A
        ``numpy.ma.MaskedArray``'s mask is used.  NaN and infinite pixels, and runs of
        ``zero_run`` or more exact zeros, are no data.
    model : keras.Model or path
        A lens finder taking ``(N, 100, 100, 1)`` cutouts (:func:`lenslib.models.build_model`,
        :func:`lenslib.models.load_model`), or the path of its ``.keras`` file.
    wcs : astropy.wcs.WCS, optional
        The image's celestial WCS.  With it the catalog gets ``ra``, ``dec`` and ``skycoord``
        columns; without it a :class:`NoWCSWarning` says that positions are pixels only.
    mask : 2-D array, optional
        True (nonzero) where pixels are bad.  Tiles that touch a pixel with no data (masked, NaN,
        infinite, zero weight, in a run of zeros) are skipped, never scored as sky; a
        :class:`SkippedTilesWarning` says how many, and what fraction of the image had no data.
    weight : 2-D array, optional
        A weight or exposure map: pixels whose weight is 0 (or negative, or NaN) have no data.
    stride : int
        Pixels between neighbouring tiles, in ``[1, 100]``.  The default, 50, gives each point of
        the sky four looks; smaller strides cost ``(100 / stride)**2`` more tiles.
    threshold : float
        Score in ``[0, 1]`` at or above which a tile is a detection.
    min_separation : float, optional
        Detections closer than this (pixels) merge into one candidate; default 100 (overlapping
        cutouts).  Two lenses closer than that are reported as one.
    batch_size : int
        Cutouts scored at a time, at most :data:`MAX_BATCH_SIZE`; with the image band, it bounds
        the memory in use.
    zero_run : int
        Exact zeros in a run of at least this many pixels along a row or a column are no data
        (how mosaics fill their edges and gaps); 0 keeps every zero as data.  Default 32.
    checkpoint : path, optional
        A directory where each finished tile row's scores are saved atomically.  A scan started
        again with the same directory, the same pixels (every pixel is hashed, with the mask,
        weights and ``zero_run``), tiling and model reads them back instead of scoring those
        tiles; another scan's checkpoint is refused with a ``ValueError``.
    scheduler : None, 'local', str or distributed.Client
        None scores in this process.  ``'local'`` starts a Dask LocalCluster of ``n_workers``
        processes (default: one per core); ``'tcp://host:port'`` uses a running Dask cluster, whose
        workers must see the model file at the same path.  Results equal the single-process ones.
    n_workers : int, optional
        Workers of the ``'local'`` cluster (refused with any other ``scheduler``).
    progress : bool, optional
        A progress bar; by default only when the output is a terminal.

    Returns
    -------
    astropy.table.Table
        One row per candidate, best first: ``id``, ``x``, ``y`` (0-based pixel coordinates of the
        candidate), ``ra``, ``dec`` and ``skycoord`` (with a WCS), ``score``, ``n_tiles`` (tiles
        merged) and ``cutout_x0``, ``cutout_y0`` (the best cutout's corner).  ``meta`` records
        the tiling, how many tiles were scored, resumed and skipped, and the fraction of the
        image with no data (``no_data``).  An empty table, with a
        :class:`NoCandidatesWarning`, when nothing reaches ``threshold``.

    Raises
    ------
    ValueError
        (:class:`lenslib.errors.InputError`) An image that is not 2-D or smaller than one cutout;
        a mask, weight map or WCS that does not match it; a model that does not take
        ``100 x 100 x 1`` cutouts; a bad stride, threshold, batch size or ``zero_run``; a
        checkpoint of another scan; ``n_workers`` without ``scheduler='local'``.
    TypeError
        (:class:`lenslib.errors.InputTypeError`) Non-numeric or complex data, or a model or WCS
        of the wrong kind.
    """
    data = _check_image(data)
    wcs = _check_wcs(wcs, tuple(data.shape))
    threshold = _check_number("threshold", threshold, 0.0, 1.0)
    if min_separation is not None:
        _check_number("min_separation", min_separation, 0.0, np.inf)
    if wcs is None:
        warnings.warn("no WCS given: the candidates have pixel coordinates only", NoWCSWarning, stacklevel=2)
    tiles = score_tiles(data, model, mask=mask, weight=weight, stride=stride, batch_size=batch_size,
                        zero_run=zero_run, checkpoint=checkpoint, scheduler=scheduler, n_workers=n_workers,
                        progress=progress)
    table = candidates_table(tiles, threshold=threshold, min_separation=min_separation, wcs=wcs)
    if len(table) == 0:
        warnings.warn(f"no tile scored at or above threshold={threshold:g} "
                      f"({tiles.n_scored + tiles.n_resumed} tiles scored); the catalog is empty",
                      NoCandidatesWarning, stacklevel=2)
    return table


def _paths(*values) -> list:
    return [v for v in values if isinstance(v, (str, os.PathLike))]


def scan_fits(path, model, out=None, *, hdu=None, mask=None, weight=None, gallery=None,
              n_gallery: int = 24, **kwargs) -> Table:
    """Scan a FITS image for lenses and write the catalog (and a gallery of the best candidates).

    Every output is checked before any work (:func:`lenslib.files.check_output`): it must not
    be an input (the same file under any name), and an existing one is replaced only if lenslib
    wrote it.

    Parameters
    ----------
    path : path
        A FITS file, memory-mapped and read band by band (:func:`lenslib.fitsio.read_image`), so
        its size is not limited by memory; BITPIX 8, 16, 32, 64, -32 or -64, scaled by
        BSCALE/BZERO band by band, BLANK pixels no data.
    model : path or keras.Model
        The lens finder (its ``.keras`` file; a path is required with ``scheduler``).
    out : path, optional
        Where to write the catalog; ``.fits``, ``.ecsv`` or ``.csv`` (CSV gets ``ra`` and ``dec``
        but not the ``skycoord`` column, which CSV cannot hold).
    hdu : int or str, optional
        The extension holding the image; default the first with 2-D image data.
    mask, weight : path or 2-D array, optional
        A bad-pixel mask (nonzero: no data) and a weight or exposure map (0: no data), as arrays
        or FITS files (their first 2-D image), of the image's shape.
    gallery : path, optional
        A PNG of the ``n_gallery`` best candidates' cutouts.
    **kwargs
        Passed to :func:`find_lenses` (``stride``, ``threshold``, ``min_separation``,
        ``batch_size``, ``zero_run``, ``checkpoint``, ``scheduler``, ``n_workers``, ``progress``).
    """
    out = check_table_path(out)
    if gallery is not None and Path(gallery).suffix.lower() != ".png":
        raise InputError(f"gallery must be a .png file (got {gallery})")
    inputs = _paths(path, model, mask, weight)
    check_output(out, inputs, what="the catalog", csv_columns=("id", "x", "y"))
    check_output(gallery, inputs, what="the gallery")
    _check_checkpoint(kwargs.get("checkpoint"))
    hdul, data, wcs, index = read_image(path, hdu)
    opened = [hdul]
    try:
        planes = {}
        for name, value in (("mask", mask), ("weight", weight)):
            if isinstance(value, (str, os.PathLike)):
                plane_hdul, value = read_plane(value, data.shape, what=name)
                opened.append(plane_hdul)
            planes[name] = value
        table = find_lenses(data, model, wcs=wcs, **planes, **kwargs)
        table.meta["image"] = str(path)
        table.meta["hdu"] = index
        if gallery is not None and len(table):
            _write_gallery(data, table[:n_gallery], gallery)
    finally:
        del data, planes
        for h in opened:
            h.close()
    if out is not None:
        written = table
        if out.suffix.lower() == ".csv" and "skycoord" in table.colnames:
            written = table.copy(copy_data=False)
            written.remove_column("skycoord")
        write_table(written, out)
    return table


def _write_gallery(data, table: Table, path) -> None:
    import matplotlib.pyplot as plt

    from .plots import plot_gallery

    size = int(table.meta.get("size", CUTOUT_SIZE))
    cutouts = np.stack([np.asarray(data[r["cutout_y0"]:r["cutout_y0"] + size,
                                        r["cutout_x0"]:r["cutout_x0"] + size], dtype=np.float32)
                        for r in table])
    titles = [f"#{r['id']} p={r['score']:.2f}" for r in table]
    fig = plot_gallery(cutouts, titles, ncols=min(6, len(table)), suptitle="best lens candidates")
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, metadata={"Software": MARKER})
    finally:
        plt.close(fig)


def __getattr__(name: str):
    if name == "plot_score_map":  # lives in lenslib.plots (matplotlib is imported only when drawing)
        from .plots import plot_score_map

        return plot_score_map
    raise AttributeError(f"module 'lenslib.scan' has no attribute {name!r}")


__all__ = ["CUTOUT_SIZE", "MAX_BATCH_SIZE", "NoCandidatesWarning", "NoWCSWarning", "ScanWarning",
           "SkippedTilesWarning", "TileGrid", "TileScores", "ZERO_RUN", "candidates_table",
           "check_table_path", "find_lenses", "local_cluster", "merge_detections", "read_image", "scan_fits",
           "score_tiles", "tile_grid"]
