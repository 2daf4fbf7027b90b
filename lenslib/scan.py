"""Find lens candidates in a survey image: tiles -> cutouts -> batched scores -> merged catalog.

A 2-D image in e-/s (a drizzled HST mosaic, or any survey image of the same kind) is cut into
overlapping ``100 x 100`` tiles every ``stride`` pixels.  Each tile is normalised exactly as the
training cutouts were (:func:`lenslib.preprocess.normalize`, through
:func:`lenslib.models.predict`) and scored by a trained lens finder.  Tiles that touch a NaN,
infinite or masked pixel are skipped and reported, never scored as sky.  Tiles scoring at least
``threshold`` are merged by non-maximum suppression: the best tile keeps every other detection
within ``min_separation`` pixels, and the candidate sits at their score-weighted centre.

Memory stays bounded: the image is read one band of tile rows at a time (a memory-mapped FITS
file is never loaded whole) and scored ``batch_size`` cutouts at a time.  With ``checkpoint`` the
scores of each finished tile row are written to disk atomically, so an interrupted scan resumes
where it stopped.  With ``scheduler`` the same blocks are scored on a Dask cluster (a local one
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

from .files import atomic_output, write_table

#: Pixels a side of the cutouts lenslib's models score (the training images' size).
CUTOUT_SIZE = 100
DEFAULT_STRIDE = 50
DEFAULT_BATCH_SIZE = 256
CHECKPOINT_FORMAT = "lenslib-scan-checkpoint"
_CHECKPOINT_VERSION = 1
_TABLE_SUFFIXES = (".fits", ".fit", ".ecsv", ".csv")


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
        raise ValueError(f"size must be a positive integer (got {size!r})")
    if not (isinstance(stride, (int, np.integer)) and not isinstance(stride, bool) and 1 <= stride <= size):
        raise ValueError(f"stride must be an integer in [1, {size}] pixels so that the {size}-pixel "
                         f"tiles overlap or touch (got {stride!r})")
    ny, nx = shape
    if ny < size or nx < size:
        raise ValueError(f"the image ({nx}x{ny} pixels) is smaller than one {size}x{size} cutout")
    return TileGrid((int(ny), int(nx)), int(size), int(stride), _starts(nx, size, stride),
                    _starts(ny, size, stride))


@dataclass
class TileScores:
    """The score of every tile of a scan; NaN where a tile was skipped (NaN or masked pixels).

    ``n_scored`` tiles were scored by this call and ``n_resumed`` read back from a checkpoint.
    """

    grid: TileGrid
    scores: np.ndarray
    n_scored: int = 0
    n_resumed: int = 0

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
def _check_image(data):
    """A 2-D numeric image; a memory map or any sliceable array with ``shape`` and ``dtype``
    is kept as it is (read band by band later); anything else goes through ``np.asarray``."""
    if not (hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__")):
        data = np.asarray(data)
    dtype = np.dtype(data.dtype)
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"data must be a numeric image (got dtype {dtype})")
    if len(data.shape) != 2:
        raise ValueError(f"data must be a 2-D image (got shape {tuple(data.shape)}); pick one plane "
                         "or one HDU of a cube")
    if min(data.shape) < CUTOUT_SIZE:
        raise ValueError(f"data must be at least {CUTOUT_SIZE}x{CUTOUT_SIZE} pixels, one cutout "
                         f"(got {data.shape[1]}x{data.shape[0]})")
    return data


def _check_mask(mask, shape):
    if mask is None:
        return None
    if not (hasattr(mask, "shape") and hasattr(mask, "__getitem__")):
        mask = np.asarray(mask)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask must have the same shape as data: mask is {tuple(mask.shape)}, "
                         f"data is {tuple(shape)}")
    return mask


def _check_wcs(wcs, shape):
    if wcs is None:
        return None
    from astropy.wcs import WCS

    if not isinstance(wcs, WCS):
        raise TypeError(f"wcs must be an astropy.wcs.WCS or None (got {type(wcs).__name__})")
    if wcs.pixel_n_dim != 2 or not wcs.has_celestial:
        raise ValueError(f"wcs must be a 2-D celestial WCS (got {wcs.pixel_n_dim} pixel axes, "
                         f"types {list(wcs.wcs.ctype)})")
    if wcs.pixel_shape is not None and tuple(wcs.pixel_shape) != (shape[1], shape[0]):
        nx, ny = wcs.pixel_shape
        raise ValueError(f"the wcs is for a {nx}x{ny} image but data is {shape[1]}x{shape[0]} pixels")
    return wcs


def _check_number(name, value, low, high):
    if not (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            and low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}] (got {value!r})")
    return float(value)


def _check_batch_size(batch_size) -> int:
    if not (isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
            and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer (got {batch_size!r})")
    return int(batch_size)


def _check_model(model):
    """``(keras_model, path or None)``; a path is loaded in Keras's safe mode."""
    from .models import load_model

    path = None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        model = load_model(path)
    elif not (hasattr(model, "input_shape") and hasattr(model, "predict")):
        raise TypeError(f"model must be a Keras model or the path of a .keras file "
                        f"(got {type(model).__name__})")
    shape = tuple(model.input_shape)
    if shape[1:] != (CUTOUT_SIZE, CUTOUT_SIZE, 1):
        where = f" ({path})" if path else ""
        raise ValueError(f"the model{where} takes inputs of shape {shape} but lenslib scans "
                         f"{CUTOUT_SIZE}x{CUTOUT_SIZE}x1 cutouts: train it on lenslib's cutouts")
    return model, path


# --------------------------------------------------------------------------------------------
# Scoring one block of tile rows (in this process or on a Dask worker)
# --------------------------------------------------------------------------------------------
def _read_band(data, mask, grid: TileGrid, rows: np.ndarray) -> np.ndarray:
    """The image rows under tile rows ``rows`` (consecutive) as float32, masked pixels NaN."""
    top, bottom = int(grid.y0[rows[0]]), int(grid.y0[rows[-1]]) + grid.size
    band = np.array(data[top:bottom], dtype=np.float32)
    if mask is not None:
        band[np.asarray(mask[top:bottom], dtype=bool)] = np.nan
    return band


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
def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _model_digest(model, path) -> str:
    if path is not None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()[:16]
    return _digest(*model.get_weights())


def _fingerprint(data, mask, grid: TileGrid, model, model_path) -> dict:
    """What a checkpoint must match to be resumed: the image (a sample of its pixels), the
    mask, the tiling and the model's weights."""
    ny, nx = grid.shape
    step = (max(1, ny // 64), max(1, nx // 64))
    sample = np.asarray(data[::step[0], ::step[1]], dtype=np.float32)
    mask_sample = None if mask is None else np.asarray(mask[::step[0], ::step[1]], dtype=bool)
    return {"shape": list(grid.shape), "size": grid.size, "stride": grid.stride,
            "image": _digest(sample), "mask": None if mask is None else _digest(mask_sample),
            "model": _model_digest(model, model_path)}


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
                raise ValueError(f"{manifest} is not a lenslib scan checkpoint: {err}") from err
            if old.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"{manifest} is not a lenslib scan checkpoint")
            differ = sorted(k for k in fingerprint if old.get("fingerprint", {}).get(k) != fingerprint[k])
            if differ:
                raise ValueError(f"the checkpoint {self.dir} belongs to another scan (it differs in "
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
                values = np.load(path)
                if values.shape != (self.n_cols,):
                    raise ValueError(f"{path} holds {values.shape} scores, expected ({self.n_cols},)")
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


def score_tiles(data, model, *, mask=None, stride: int = DEFAULT_STRIDE,
                batch_size: int = DEFAULT_BATCH_SIZE, checkpoint=None, scheduler=None,
                n_workers: int | None = None, progress: bool | None = None) -> TileScores:
    """Score every ``100 x 100`` tile of ``data``; see :func:`find_lenses` for the parameters.

    Returns a :class:`TileScores` whose ``scores`` (``n_rows x n_cols``, NaN for skipped tiles)
    are the raw material of :func:`candidates_table` and of a score map.  Warns with
    :class:`SkippedTilesWarning` when tiles touch NaN, infinite or masked pixels.
    """
    data = _check_image(data)
    mask = _check_mask(mask, data.shape)
    if np.ma.isMaskedArray(data):
        own = np.ma.getmaskarray(data)
        mask = own if mask is None else own | np.asarray(mask, dtype=bool)
        data = np.ma.getdata(data)
    batch_size = _check_batch_size(batch_size)
    grid = tile_grid(tuple(data.shape), stride=stride)
    model, model_path = _check_model(model)
    if scheduler is not None and model_path is None:
        raise ValueError("to scan on Dask, pass the model as the path of its .keras file: every worker "
                         "loads it from there (lenslib.models.save_model writes one)")

    scores = np.full((grid.n_rows, grid.n_cols), np.nan, dtype=np.float32)
    store = None
    done = np.zeros(0, dtype=int)
    if checkpoint is not None:
        store = _Checkpoint(checkpoint, _fingerprint(data, mask, grid, model, model_path), grid.n_cols)
        done = store.load(scores)
    pending = np.setdiff1d(np.arange(grid.n_rows), done)
    per_block = max(1, -(-batch_size // grid.n_cols))  # enough rows to fill a batch
    blocks = _blocks(pending, per_block)
    result = TileScores(grid, scores, n_resumed=int(np.isfinite(scores[done]).sum()))

    def finish(rows, values):
        scores[rows] = values
        if store is not None:
            for row, row_values in zip(rows, values):
                store.save(int(row), row_values)
        result.n_scored += int(np.isfinite(values).sum())
        bar.update(values.size)

    with _progress_bar(grid.n_tiles, progress, initial=len(done) * grid.n_cols) as bar:
        if scheduler is None:
            for rows in blocks:
                band = _read_band(data, mask, grid, rows)
                local = grid.y0[rows] - grid.y0[rows[0]]
                finish(rows, _score_band(band, local, grid.x0, grid.size, model, batch_size))
        else:
            _score_on_dask(data, mask, grid, blocks, str(model_path.resolve()), batch_size, scheduler,
                           n_workers, finish)

    n_skipped = result.n_skipped
    if n_skipped:
        warnings.warn(f"{n_skipped} of {grid.n_tiles} tiles touch NaN, infinite or masked pixels and "
                      "were not scored; no candidates can be found there", SkippedTilesWarning,
                      stacklevel=2)
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
        raise ValueError(f"n_workers must be a positive integer (got {n_workers!r})")
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
        except (OSError, TimeoutError) as err:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err
        return client, client.close
    raise ValueError(f"scheduler must be None, 'local', a scheduler address such as "
                     f"'tcp://host:8786', or a distributed.Client (got {scheduler!r})")


def _score_on_dask(data, mask, grid, blocks, model_path, batch_size, scheduler, n_workers, finish):
    """Submit one task per block, at most two per worker in flight (memory stays bounded), and
    hand each result to ``finish`` as it arrives."""
    from dask.distributed import wait

    client, close = _dask_client(scheduler, n_workers)
    try:
        n_running = max(1, len(client.scheduler_info().get("workers", {})))
        in_flight: dict = {}
        queue = list(blocks)
        while queue or in_flight:
            while queue and len(in_flight) < 2 * n_running:
                rows = queue.pop(0)
                band = _read_band(data, mask, grid, rows)
                local = grid.y0[rows] - grid.y0[rows[0]]
                future = client.submit(_score_band_task, model_path, band, local, grid.x0, grid.size,
                                       batch_size, pure=False)
                in_flight[future] = rows
            done, _ = wait(list(in_flight), return_when="FIRST_COMPLETED")
            for future in done:
                finish(in_flight.pop(future), future.result())
    finally:
        close()


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
        raise ValueError(f"x, y and scores must have the same length (got {x.size}, {y.size}, {scores.size})")
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
                       "n_skip": tiles.n_skipped})
    return table


# --------------------------------------------------------------------------------------------
# The public face
# --------------------------------------------------------------------------------------------
def find_lenses(data, model, wcs=None, mask=None, *, stride: int = DEFAULT_STRIDE, threshold: float = 0.5,
                min_separation: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE, checkpoint=None,
                scheduler=None, n_workers: int | None = None, progress: bool | None = None) -> Table:
    """Find strong-lens candidates in a survey image.

    The image is cut into ``100 x 100`` tiles every ``stride`` pixels; each tile is normalised
    as the training cutouts were and scored by ``model``; tiles scoring at least ``threshold``
    are merged by non-maximum suppression into candidates.

    Parameters
    ----------
    data : 2-D array
        The image in electrons per second (sky-subtracted or not: every cutout's own median is
        removed).  A ``numpy.memmap`` (such as a FITS file opened with ``memmap=True``) is read one
        band of tile rows at a time.  A ``numpy.ma.MaskedArray``'s mask is used.
    model : keras.Model or path
        A lens finder taking ``(N, 100, 100, 1)`` cutouts (:func:`lenslib.models.build_model`,
        :func:`lenslib.models.load_model`), or the path of its ``.keras`` file.
    wcs : astropy.wcs.WCS, optional
        The image's celestial WCS.  With it the catalog gets ``ra``, ``dec`` and ``skycoord``
        columns; without it a :class:`NoWCSWarning` says that positions are pixels only.
    mask : 2-D bool array, optional
        True where pixels are bad.  Tiles that touch a masked, NaN or infinite pixel are skipped
        (a :class:`SkippedTilesWarning` says how many), never scored as sky.
    stride : int
        Pixels between neighbouring tiles, in ``[1, 100]``.  The default, 50, gives each point of
        the sky four looks; smaller strides cost ``(100 / stride)**2`` more tiles.
    threshold : float
        Score in ``[0, 1]`` at or above which a tile is a detection.
    min_separation : float, optional
        Detections closer than this (pixels) merge into one candidate; default 100 (overlapping
        cutouts).  Two lenses closer than that are reported as one.
    batch_size : int
        Cutouts scored at a time; with the image band, it bounds the memory in use.
    checkpoint : path, optional
        A directory where each finished tile row's scores are saved atomically.  A scan started
        again with the same directory, image, tiling and model reads them back instead of scoring
        those tiles; another scan's checkpoint is refused with a ``ValueError``.
    scheduler : None, 'local', str or distributed.Client
        None scores in this process.  ``'local'`` starts a Dask LocalCluster of ``n_workers``
        processes (default: one per core); ``'tcp://host:port'`` uses a running Dask cluster, whose
        workers must see the model file at the same path.  Results equal the single-process ones.
    n_workers : int, optional
        Workers of the ``'local'`` cluster.
    progress : bool, optional
        A progress bar; by default only when the output is a terminal.

    Returns
    -------
    astropy.table.Table
        One row per candidate, best first: ``id``, ``x``, ``y`` (0-based pixel coordinates of the
        candidate), ``ra``, ``dec`` and ``skycoord`` (with a WCS), ``score``, ``n_tiles`` (tiles
        merged) and ``cutout_x0``, ``cutout_y0`` (the best cutout's corner).  ``meta`` records
        the tiling and how many tiles were scored, resumed and skipped.  An empty table, with a
        :class:`NoCandidatesWarning`, when nothing reaches ``threshold``.

    Raises
    ------
    ValueError
        An image that is not 2-D or smaller than one cutout; a mask or WCS that does not match
        it; a model that does not take ``100 x 100 x 1`` cutouts; a bad stride, threshold or batch
        size; a checkpoint of another scan.
    TypeError
        Non-numeric data, or a model or WCS of the wrong kind.
    """
    data = _check_image(data)
    wcs = _check_wcs(wcs, tuple(data.shape))
    threshold = _check_number("threshold", threshold, 0.0, 1.0)
    if min_separation is not None:
        _check_number("min_separation", min_separation, 0.0, np.inf)
    if wcs is None:
        warnings.warn("no WCS given: the candidates have pixel coordinates only", NoWCSWarning, stacklevel=2)
    tiles = score_tiles(data, model, mask=mask, stride=stride, batch_size=batch_size, checkpoint=checkpoint,
                        scheduler=scheduler, n_workers=n_workers, progress=progress)
    table = candidates_table(tiles, threshold=threshold, min_separation=min_separation, wcs=wcs)
    if len(table) == 0:
        warnings.warn(f"no tile scored at or above threshold={threshold:g} "
                      f"({tiles.n_scored + tiles.n_resumed} tiles scored); the catalog is empty",
                      NoCandidatesWarning, stacklevel=2)
    return table


def read_image(path, hdu=None):
    """Open a FITS image memory-mapped: ``(hdul, data, wcs or None, hdu index)``.

    ``hdu`` (index or name) chooses the extension; by default the first one with 2-D image
    data.  Close ``hdul`` when done with ``data``.  Raises ``FileNotFoundError`` for a missing
    file and ``ValueError`` for a file that is not FITS or an HDU without 2-D image data.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        hdul = fits.open(path, memmap=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a FITS file ({err})") from err
    try:
        index = _image_hdu(hdul, path, hdu)
        data = hdul[index].data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)  # FITSFixedWarning for fixable keys
            wcs = WCS(hdul[index].header, fobj=hdul, naxis=2)
    except BaseException:
        hdul.close()
        raise
    return hdul, data, (wcs.celestial if wcs.has_celestial else None), index


def _describe(h) -> str:
    naxis = h.header.get("NAXIS", 0)
    if not h.is_image:
        return f"{type(h).__name__} (a table)"
    if naxis == 0:
        return "no data"
    shape = tuple(h.header.get(f"NAXIS{i}") for i in range(naxis, 0, -1))
    return f"{naxis}-D image {shape}"


def _image_hdu(hdul, path, hdu) -> int:
    def is_2d(h):
        return h.is_image and h.header.get("NAXIS", 0) == 2

    listing = "; ".join(f"{i} {h.name or '-'}: {_describe(h)}" for i, h in enumerate(hdul))
    if hdu is None:
        for i, h in enumerate(hdul):
            if is_2d(h):
                return i
        raise ValueError(f"{path} has no HDU with 2-D image data (HDUs: {listing})")
    try:
        index = hdul.index_of(hdu)
    except (KeyError, IndexError) as err:
        raise ValueError(f"{path} has no HDU {hdu!r} (HDUs: {listing})") from err
    if not is_2d(hdul[index]):
        raise ValueError(f"HDU {hdu!r} of {path} holds {_describe(hdul[index])}, not a 2-D image "
                         f"(HDUs: {listing})")
    return index


def check_table_path(path) -> Path | None:
    """``path`` as a Path, after checking that its extension names a table format that
    :func:`lenslib.files.write_table` writes (checked before a long run, not after it)."""
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in _TABLE_SUFFIXES:
        raise ValueError(f"a table's format follows its extension: use one of {_TABLE_SUFFIXES} "
                         f"(got {path})")
    return path


def scan_fits(path, model, out=None, *, hdu=None, gallery=None, n_gallery: int = 24, **kwargs) -> Table:
    """Scan a FITS image for lenses and write the catalog (and a gallery of the best candidates).

    Parameters
    ----------
    path : path
        A FITS file; it is memory-mapped, so its size is not limited by memory (floating-point
        images; astropy loads an integer image with BSCALE/BZERO scaling whole).
    model : path or keras.Model
        The lens finder (its ``.keras`` file; a path is required with ``scheduler``).
    out : path, optional
        Where to write the catalog; ``.fits``, ``.ecsv`` or ``.csv`` (CSV gets ``ra`` and ``dec``
        but not the ``skycoord`` column, which CSV cannot hold).
    hdu : int or str, optional
        The extension holding the image; default the first with 2-D image data.
    gallery : path, optional
        A PNG of the ``n_gallery`` best candidates' cutouts.
    **kwargs
        Passed to :func:`find_lenses` (``stride``, ``threshold``, ``min_separation``,
        ``batch_size``, ``checkpoint``, ``scheduler``, ``n_workers``, ``progress``).
    """
    out = check_table_path(out)
    if gallery is not None and Path(gallery).suffix.lower() != ".png":
        raise ValueError(f"gallery must be a .png file (got {gallery})")
    hdul, data, wcs, index = read_image(path, hdu)
    try:
        table = find_lenses(data, model, wcs=wcs, **kwargs)
        table.meta["image"] = str(path)
        table.meta["hdu"] = index
        if gallery is not None and len(table):
            _write_gallery(data, table[:n_gallery], gallery)
    finally:
        del data
        hdul.close()
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
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def _cell_edges(centres: np.ndarray, size: int) -> np.ndarray:
    """Edges of the cells around tile centres: midway between neighbours, half a step (or half
    a tile, for a single one) beyond the first and last."""
    if len(centres) == 1:
        return np.array([centres[0] - size / 2, centres[0] + size / 2])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def plot_score_map(tiles: TileScores, data=None, *, ax=None, threshold: float | None = None,
                   cmap: str = "magma", max_display: int = 1500):
    """Draw the tile scores over the image (or alone): each tile's score in a cell around its
    centre, skipped tiles blank, and with ``threshold`` its contour.  Returns the Axes; a colour
    bar shows the score.  A large image is shown decimated to about ``max_display`` pixels."""
    import matplotlib.pyplot as plt

    from .plots import DISPLAY_RANGE
    from .preprocess import normalize

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    grid = tiles.grid
    ny, nx = grid.shape
    half = (grid.size - 1) / 2
    xc, yc = grid.x0 + half, grid.y0 + half
    if data is not None:
        step = max(1, -(-max(ny, nx) // max_display))
        view = np.asarray(data[::step, ::step], dtype=np.float32)
        finite = np.isfinite(view)
        shown = np.full(view.shape, np.nan, dtype=np.float32)
        if finite.any():
            filled = np.where(finite, view, np.median(view[finite]))
            shown = np.where(finite, normalize(filled)[0], np.nan)
        ax.imshow(shown, cmap="gray", origin="lower", vmin=DISPLAY_RANGE[0], vmax=DISPLAY_RANGE[1],
                  extent=(-0.5, nx - 0.5, -0.5, ny - 0.5), interpolation="nearest")
    mesh = ax.pcolormesh(_cell_edges(xc, grid.size), _cell_edges(yc, grid.size),
                         np.ma.masked_invalid(tiles.scores), cmap=cmap, vmin=0, vmax=1,
                         alpha=0.5 if data is not None else 1.0, shading="flat")
    if threshold is not None and min(tiles.scores.shape) > 1:
        ax.contour(xc, yc, np.nan_to_num(tiles.scores, nan=0.0), levels=[threshold], colors="cyan",
                   linewidths=0.8)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.figure.colorbar(mesh, ax=ax, label="lens score", shrink=0.85)
    return ax


__all__ = ["CUTOUT_SIZE", "NoCandidatesWarning", "NoWCSWarning", "ScanWarning", "SkippedTilesWarning",
           "TileGrid", "TileScores", "candidates_table", "check_table_path", "find_lenses", "local_cluster",
           "merge_detections", "plot_score_map", "read_image", "scan_fits", "score_tiles", "tile_grid"]
