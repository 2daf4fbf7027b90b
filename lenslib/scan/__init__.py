"""Find lens candidates in a survey image: tiles -> cutouts -> batched scores -> merged catalog.

A 2-D image in e-/s (a drizzled HST mosaic, or any survey image of the same kind) is cut into
overlapping ``100 x 100`` tiles every ``stride`` pixels.  Each tile is normalised exactly as the
training cutouts were (:func:`lenslib.preprocess.normalize`, through
:func:`lenslib.models.predict`) and scored by a trained lens finder.  A tile with a few pixels
without data (NaN, infinite, BLANK, masked, zero weight, or in a run of exact zeros; at most
``max_missing``, 2%) has them filled from their neighbours; a tile with more is skipped and
reported with the share of the image in no scored tile, never scored as sky.  Tiles scoring at least
``threshold`` are merged by non-maximum suppression: the best tile keeps every other detection
within ``min_separation`` pixels, and the candidate sits at their score-weighted centre.

Memory stays bounded: the image is read one band of tile rows at a time (a memory-mapped FITS
file is never loaded whole) and scored ``batch_size`` cutouts at a time.  With ``checkpoint`` the
scores of each finished tile row are written to disk atomically, so an interrupted scan resumes
where it stopped (a checkpoint is tied to a hash of every pixel, the tiling and the model).
With ``scheduler`` the same blocks are scored on a Dask cluster (a local one
with ``"local"``, any other by its address); every worker loads the model from its ``.keras``
file, and the scores are the same as in one process.

The entry points are :func:`find_lenses` (arrays) and :func:`scan_fits` (files).  One module a
job; everything public is importable from here:

=========================  ==================================================================
:mod:`.find`               :func:`find_lenses`, :func:`scan_fits` (FITS in, catalog and
                           gallery out)
:mod:`.checks`             the checks of every argument; :class:`ScanWarning` and its kinds
:mod:`.tiles`              :func:`tile_grid`, :class:`TileScores`; reading bands of rows with
                           no data as NaN; the pass that counts and hashes the pixels
:mod:`.scoring`            :func:`score_tiles`, in this process or on Dask
                           (:func:`local_cluster`, ``dask_client``)
:mod:`.checkpoint`         the checkpoint directory: format, fingerprint, resuming
:mod:`.catalog`            :func:`merge_detections` (non-maximum suppression),
                           :func:`candidates_table`
=========================  ==================================================================

The score map (:func:`plot_score_map`) and the gallery's drawing live in :mod:`lenslib.plots`
with lenslib's other figures; ``lenslib.scan.plot_score_map`` imports it (and matplotlib) only
when asked for.
"""

from __future__ import annotations

from ..files import check_table_path
from ..fitsio import read_image
from .catalog import candidates_table, merge_detections
from .checkpoint import CHECKPOINT_FORMAT
from .checks import NoCandidatesWarning, NoWCSWarning, PixelScaleWarning, ScanWarning, SkippedTilesWarning
from .find import find_lenses, scan_fits
from .scoring import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, local_cluster, score_tiles
from .tiles import (
    CUTOUT_SIZE,
    DEFAULT_STRIDE,
    MAX_MISSING,
    ZERO_RUN,
    TileGrid,
    TileScores,
    fill_missing,
    tile_grid,
)


def __getattr__(name: str):
    if name == "plot_score_map":  # lives in lenslib.plots (matplotlib is imported only when drawing)
        from ..plots import plot_score_map

        return plot_score_map
    raise AttributeError(f"module 'lenslib.scan' has no attribute {name!r}")


__all__ = ["CHECKPOINT_FORMAT", "CUTOUT_SIZE", "DEFAULT_BATCH_SIZE", "DEFAULT_STRIDE", "MAX_BATCH_SIZE",
           "MAX_MISSING", "NoCandidatesWarning", "NoWCSWarning", "PixelScaleWarning", "ScanWarning",
           "SkippedTilesWarning", "TileGrid", "TileScores", "ZERO_RUN", "candidates_table",
           "check_table_path", "fill_missing", "find_lenses", "local_cluster", "merge_detections",
           "read_image", "scan_fits", "score_tiles", "tile_grid"]
