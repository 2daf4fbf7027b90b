"""Scoring every tile of an image, in this process or on a Dask cluster.

* :func:`score_tiles`: check the inputs, count (and, for a checkpoint, hash) the pixels, read
  back a checkpoint's finished rows, then score the other tile rows block by block; returns a
  :class:`~lenslib.scan.tiles.TileScores`.
* ``_score_band``: the scores of the tiles of one band of image rows, normalised as
  :func:`lenslib.models.predict` normalises and scored ``batch_size`` cutouts at a time (the same
  on a Dask worker); in this process the next band is read and cut into tiles in a second thread
  while the network scores the current one, :class:`_FullBatches` carries the tiles that do not
  fill a batch over to the next band's, so every batch but the last is full, and normalises each
  batch on every core just before the network scores it.
* ``_refine``: the tiles that scored at least ``refine`` scored again, in this process, as the
  mean over all eight flips and quarter turns.
* :func:`local_cluster`, :func:`dask_client`: a Dask cluster to score on (also used by
  :mod:`lenslib.finder.shards`); :func:`worker_model` loads the model once per worker.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InputError
from ..models.io import check_transforms
from .checkpoint import Checkpoint, fingerprint, model_digest
from .checks import (
    SkippedTilesWarning,
    check_checkpoint,
    check_image,
    check_int,
    check_mask,
    check_model,
    check_number,
)
from .tiles import (
    DEFAULT_STRIDE,
    MAX_MISSING,
    ZERO_RUN,
    ImageSource,
    TileGrid,
    TileScores,
    band_tiles,
    fill_missing,
    read_band,
    read_rows,
    survey,
    tile_grid,
)

DEFAULT_BATCH_SIZE = 256
#: Largest batch: 8192 cutouts take about 1 GB while normalised; larger batches only cost memory.
MAX_BATCH_SIZE = 8192
#: A refined tile's score is the mean over this many flips and quarter turns (all of them).
REFINE_TRANSFORMS = 8


# --------------------------------------------------------------------------------------------
# Scoring one block of tile rows (in this process or on a Dask worker)
# --------------------------------------------------------------------------------------------
def _missing_pixels(size: int, max_missing: float) -> int:
    """The most pixels without data a ``size x size`` tile may have and still be scored."""
    return int(max_missing * size * size)


def _score_band(band: np.ndarray, local_y0, x0, size: int, max_missing: float, model, batch_size: int,
                transforms: int = 1) -> np.ndarray:
    """Scores ``(len(local_y0), len(x0))`` of the tiles of ``band``; NaN for tiles with more than
    ``max_missing`` of their pixels without data (:func:`~lenslib.scan.tiles.band_tiles`)."""
    from ..models.io import predict_normalized
    from ..preprocess import normalize

    out = np.full((len(local_y0), len(x0)), np.nan, dtype=np.float32)
    rows, cols, x = band_tiles(band, local_y0, x0, size, _missing_pixels(size, max_missing))
    if x is not None:
        out[rows, cols] = predict_normalized(model, normalize(x), batch_size=batch_size,
                                             transforms=transforms)
    return out


def _read_band_tiles(src: ImageSource, grid: TileGrid, rows: np.ndarray):
    """Read the band under tile rows ``rows`` and cut out its tiles, not yet normalised (run a
    block ahead, in a thread)."""
    band = read_band(src, grid, rows)
    return band_tiles(band, grid.y0[rows] - grid.y0[rows[0]], grid.x0, grid.size,
                      _missing_pixels(grid.size, src.max_missing))


class _FullBatches:
    """Score the tiles of consecutive blocks in batches of exactly ``batch_size`` (the last may
    be shorter): a block's tiles that do not fill a batch wait for the next block's.  A block of
    5 rows of 59 tiles at batch 256 was scored as 256 + 39, and the finder costs 5-15% more per
    cutout in a batch of 39 than of 256 on 2 cores.  Each batch is normalised on every core
    just before the network scores it: a normalisation overlapped with the network in a thread
    of its own slows the network more than it saves, on 2 cores (``bench/README.md``).  Blocks
    are handed to ``finish(rows, scores)`` in order, each once its last tile is scored."""

    def __init__(self, model, n_cols: int, batch_size: int, transforms: int, finish):
        self.model, self.n_cols, self.batch_size, self.transforms = model, n_cols, batch_size, transforms
        self.finish = finish
        self.blocks: deque = deque()  # [rows, scores, tiles left to score], oldest first
        self.waiting: deque = deque()  # (block, tile rows, tile columns, cutouts) not yet scored
        self.n_waiting = 0

    def add(self, rows: np.ndarray, tiles) -> None:
        """Queue the tiles of the block of tile rows ``rows`` (from
        :func:`~lenslib.scan.tiles.band_tiles`, not normalised)."""
        tile_rows, tile_cols, cutouts = tiles
        block = [rows, np.full((len(rows), self.n_cols), np.nan, dtype=np.float32), len(tile_rows)]
        self.blocks.append(block)
        if cutouts is not None:
            self.waiting.append((block, np.asarray(tile_rows), np.asarray(tile_cols), cutouts))
            self.n_waiting += len(tile_rows)
        while self.n_waiting >= self.batch_size:
            self._score(self.batch_size)
        self._finish_done()

    def flush(self) -> None:
        """Score what is still waiting (the last, short batch) and finish every block."""
        while self.n_waiting:
            self._score(min(self.batch_size, self.n_waiting))
        self._finish_done()

    def _score(self, n: int) -> None:
        from ..models.io import predict_normalized
        from ..preprocess import normalize

        parts, taken = [], 0
        while taken < n:
            block, tile_rows, tile_cols, cutouts = self.waiting[0]
            k = min(n - taken, len(tile_rows))
            parts.append((block, tile_rows[:k], tile_cols[:k], cutouts[:k]))
            if k == len(tile_rows):
                self.waiting.popleft()
            else:
                self.waiting[0] = (block, tile_rows[k:], tile_cols[k:], cutouts[k:])
            taken += k
        batch = parts[0][3] if len(parts) == 1 else np.concatenate([part[3] for part in parts])
        scores = predict_normalized(self.model, normalize(batch, threads=None), batch_size=n,
                                    transforms=self.transforms)
        start = 0
        for block, tile_rows, tile_cols, _ in parts:
            block[1][tile_rows, tile_cols] = scores[start:start + len(tile_rows)]
            block[2] -= len(tile_rows)
            start += len(tile_rows)
        self.n_waiting -= n

    def _finish_done(self) -> None:
        while self.blocks and self.blocks[0][2] == 0:
            rows, scores, _ = self.blocks.popleft()
            self.finish(rows, scores)


_WORKER_MODELS: dict = {}


def worker_model(path: str):
    """The model at ``path``, loaded once per process (keyed by its size and mtime)."""
    from ..models import load_model

    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = load_model(path)
    return _WORKER_MODELS[key]


def _score_band_task(model_path: str, band, local_y0, x0, size: int, max_missing: float, batch_size: int,
                     transforms: int) -> np.ndarray:
    """A Dask task: load the model from its file (once per worker) and score a band."""
    return _score_band(band, local_y0, x0, size, max_missing, worker_model(model_path), batch_size,
                       transforms)


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
                batch_size: int = DEFAULT_BATCH_SIZE, transforms: int = 1, refine: float | None = None,
                zero_run: int = ZERO_RUN, max_missing: float = MAX_MISSING, checkpoint=None, scheduler=None,
                n_workers: int | None = None, progress: bool | None = None) -> TileScores:
    """Score every ``100 x 100`` tile of ``data``; see :func:`~lenslib.scan.find_lenses` for the
    parameters.

    Returns a :class:`~lenslib.scan.TileScores` whose ``scores`` (``n_rows x n_cols``, NaN for
    skipped tiles) are the raw material of :func:`~lenslib.scan.candidates_table` and of a score
    map.  Warns with :class:`~lenslib.scan.SkippedTilesWarning`, and the fraction of the image
    without data, when tiles touch pixels without data.
    """
    data = check_image(data)
    mask = check_mask(mask, data.shape)
    weight = check_mask(weight, data.shape, "weight")
    if np.ma.isMaskedArray(data):
        own = np.ma.getmaskarray(data)
        mask = own if mask is None else own | np.asarray(mask, dtype=bool)
        data = np.ma.getdata(data)
    batch_size = check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
    transforms = check_transforms(transforms)
    if refine is not None:
        refine = check_number("refine", refine, 0.0, 1.0)
        if transforms == REFINE_TRANSFORMS:
            raise InputError(f"refine scores tiles again over all {REFINE_TRANSFORMS} flips and quarter "
                             f"turns, which transforms={transforms} already did: use one or the other")
    zero_run = check_int("zero_run", zero_run, 0, min(data.shape))
    max_missing = check_number("max_missing", max_missing, 0.0, 0.5)
    grid = tile_grid(tuple(data.shape), stride=stride)
    checkpoint = check_checkpoint(checkpoint)
    if n_workers is not None and scheduler != "local":
        raise InputError(f"n_workers sets the size of a scheduler='local' cluster; it does nothing with "
                         f"scheduler={scheduler!r}")
    model, model_path = check_model(model)
    if scheduler is not None and model_path is None:
        raise InputError("to scan on Dask, pass the model as the path of its .keras file: every worker "
                         "loads it from there (lenslib.models.save_model writes one)")
    src = ImageSource(data, mask, weight, zero_run, max_missing)
    # Connect first: an unreachable scheduler fails before any reading, and leaves no checkpoint.
    client, close = (None, None) if scheduler is None else dask_client(scheduler, n_workers)
    model_sum = model_digest(model, model_path)  # the catalog's and the checkpoint's, hashed once
    try:
        result = _score_all(src, grid, model, model_path, model_sum, (batch_size, transforms), checkpoint,
                            client, progress)
    finally:
        if close is not None:
            close()
    from ..models.io import model_label

    result.model, result.model_digest = model_label(model, model_path), model_sum
    result.transforms, result.max_missing = transforms, max_missing
    if refine is not None:
        result.refine = refine
        result.n_refined = _refine(src, grid, result.scores, model, refine, batch_size)
    if result.n_skipped:
        warnings.warn(f"{result.n_skipped} of {grid.n_tiles} tiles have more than {100 * max_missing:.3g}% "
                      f"of their pixels without data and were not scored: {100 * result.unsearched:.3g}% of "
                      f"the image lies in no scored tile, where no candidate can be found; "
                      f"{100 * result.no_data:.3g}% has no data (NaN, infinite or BLANK pixels, the mask, "
                      f"zero weights, runs of {zero_run} or more exact zeros)", SkippedTilesWarning,
                      stacklevel=2)
    return result


def _score_all(src: ImageSource, grid: TileGrid, model, model_path, model_sum: str, scoring: tuple[int, int],
               checkpoint, client, progress) -> TileScores:
    """Survey the image, resume from ``checkpoint``, score the rest (saving each finished row);
    ``model_sum`` is the model's digest, ``scoring`` is ``(batch_size, transforms)``."""
    batch_size, transforms = scoring
    n_no_data, digest = survey(src, digest=checkpoint is not None)
    scores = np.full((grid.n_rows, grid.n_cols), np.nan, dtype=np.float32)
    store = None
    done = np.zeros(0, dtype=int)
    if checkpoint is not None:
        store = Checkpoint(checkpoint, fingerprint(digest, grid, src.zero_run, model_sum, transforms,
                                                   src.max_missing), grid.n_cols)
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
            # The next block is read and cut in a second thread while the network scores this
            # one (numpy, file reads and TensorFlow all release the GIL).
            batches = _FullBatches(model, grid.n_cols, batch_size, transforms, finish)
            with ThreadPoolExecutor(1) as pool:
                ahead = pool.submit(_read_band_tiles, src, grid, blocks[0]) if blocks else None
                for k, rows in enumerate(blocks):
                    tiles = ahead.result()
                    if k + 1 < len(blocks):
                        ahead = pool.submit(_read_band_tiles, src, grid, blocks[k + 1])
                    batches.add(rows, tiles)
                batches.flush()
        else:
            _score_on_dask(client, src, grid, blocks, str(model_path.resolve()), scoring, finish)
    return result


def _refine(src: ImageSource, grid: TileGrid, scores: np.ndarray, model, refine: float,
            batch_size: int) -> int:
    """Score again, as the mean over all eight flips and quarter turns, every tile whose score is
    at least ``refine`` (in ``scores``, in place), ``batch_size`` tiles at a time; returns how
    many.  The checkpoint keeps the first pass's scores, so a resumed scan refines the same tiles."""
    from ..models import predict

    hits = np.argwhere(scores >= refine)  # NaN (skipped) compares False
    cutouts, where = [], []

    def score_pending():
        index = tuple(np.array(where).T)
        scores[index] = predict(model, np.stack(cutouts), batch_size=batch_size, transforms=REFINE_TRANSFORMS)
        cutouts.clear()
        where.clear()

    for row in np.unique(hits[:, 0]):
        top = int(grid.y0[row])
        band = read_rows(src, top, top + grid.size)
        for col in hits[hits[:, 0] == row, 1]:
            cutouts.append(fill_missing(band[:, grid.x0[col]:grid.x0[col] + grid.size]))
            where.append((row, col))
            if len(cutouts) == batch_size:
                score_pending()
    if cutouts:
        score_pending()
    return len(hits)


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


def dask_client(scheduler, n_workers):
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


def _score_on_dask(client, src: ImageSource, grid: TileGrid, blocks, model_path: str,
                   scoring: tuple[int, int], finish) -> None:
    """Submit one task per block, at most two per worker in flight (memory stays bounded), and
    hand each result to ``finish`` as it arrives."""
    from dask.distributed import wait

    n_running = max(1, len(client.scheduler_info().get("workers", {})))
    in_flight: dict = {}
    queue = list(blocks)
    while queue or in_flight:
        while queue and len(in_flight) < 2 * n_running:
            rows = queue.pop(0)
            band = read_band(src, grid, rows)
            local = grid.y0[rows] - grid.y0[rows[0]]
            future = client.submit(_score_band_task, model_path, band, local, grid.x0, grid.size,
                                   src.max_missing, *scoring, pure=False)
            in_flight[future] = rows
        done, _ = wait(list(in_flight), return_when="FIRST_COMPLETED")
        for future in done:
            finish(in_flight.pop(future), future.result())
