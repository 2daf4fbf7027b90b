"""From tile scores to the candidate catalog.

* :func:`merge_detections`: greedy non-maximum suppression of the tiles scoring at least the
  threshold.
* :func:`candidates_table`: the catalog of a scan, one row per merged candidate (an
  ``astropy.table.Table``, with sky coordinates given a WCS, and the scan's bookkeeping in
  ``meta``).
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..errors import InputError
from .checks import check_number
from .tiles import CUTOUT_SIZE, TileScores

#: Every column a catalog can have, in order, and what it holds (``ra``, ``dec`` and ``skycoord``
#: only with a WCS; CSV files leave out ``skycoord``).
CATALOG_COLUMNS = {
    "id": "candidate number, best score first",
    "x": "column of the candidate's centre: the score-weighted centre of its merged tiles (0-based pixels)",
    "y": "row of the candidate's centre (0-based pixels)",
    "ra": "right ascension of (x, y), ICRS",
    "dec": "declination of (x, y), ICRS",
    "skycoord": "(ra, dec) as a SkyCoord",
    "score": "the best merged tile's lens score",
    "n_tiles": "tiles merged into the candidate",
    "cutout_x0": "first column of the best tile's cutout (0-based pixels)",
    "cutout_y0": "first row of the best tile's cutout (0-based pixels)",
}
_PIXEL_COLUMNS = ("x", "y", "cutout_x0", "cutout_y0")


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
    check_number("min_separation", min_separation, 0.0, np.inf)
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
    threshold = check_number("threshold", threshold, 0.0, 1.0)
    grid = tiles.grid
    min_separation = float(grid.size) if min_separation is None else min_separation
    xc, yc = grid.centres()
    x0, y0 = np.meshgrid(grid.x0, grid.y0)
    flat = tiles.scores.ravel()
    groups = merge_detections(xc, yc, flat, threshold=threshold, min_separation=min_separation)
    rows = []
    for k, members in enumerate(groups, start=1):
        w = flat[members].astype(float)
        if not w.sum() > 0:  # every merged tile scored 0 (threshold 0): their plain centre
            w = np.ones_like(w)
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
    for name in table.colnames:
        table[name].description = CATALOG_COLUMNS[name]
    for name in _PIXEL_COLUMNS:
        table[name].unit = u.pix
    table.meta.update({"stride": grid.stride, "size": grid.size, "thresh": threshold,
                       "min_sep": float(min_separation), "n_tiles": grid.n_tiles,
                       "n_scored": tiles.n_scored, "n_resume": tiles.n_resumed,
                       "n_skip": tiles.n_skipped, "no_data": round(float(tiles.no_data), 6),
                       "unsearch": round(tiles.unsearched, 6)})
    if tiles.max_missing is not None:
        table.meta["maxmiss"] = tiles.max_missing
    if tiles.model is not None:  # which model scored the tiles, and how
        table.meta.update({"model": tiles.model, "modelsum": tiles.model_digest,
                           "transfrm": tiles.transforms})
    if tiles.refine is not None:
        table.meta.update({"refine": tiles.refine, "n_refine": tiles.n_refined})
    return table
