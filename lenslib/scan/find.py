"""The two entry points of a scan: :func:`find_lenses` (arrays) and :func:`scan_fits` (files).

* :func:`find_lenses`: check the image, score its tiles (:func:`~lenslib.scan.score_tiles`),
  merge them into the catalog (:func:`~lenslib.scan.candidates_table`), and warn when there is
  no WCS or no candidate.
* :func:`scan_fits`: check every output before any work (:mod:`lenslib.files`), read the image,
  mask and weight map from FITS files (:mod:`lenslib.fitsio`), run :func:`find_lenses`, and
  write the catalog and a PNG gallery of the best candidates (drawn by
  :func:`lenslib.plots.plot_gallery`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..errors import InputError
from ..files import MARKER, atomic_output, check_output, check_table_path, write_table
from ..fitsio import read_image, read_plane, split_extension
from .catalog import CATALOG_COLUMNS, candidates_table
from .checks import (
    NoCandidatesWarning,
    NoWCSWarning,
    check_checkpoint,
    check_image,
    check_number,
    check_pixel_scale,
    check_wcs,
)
from .scoring import DEFAULT_BATCH_SIZE, score_tiles
from .tiles import CUTOUT_SIZE, DEFAULT_STRIDE, MAX_MISSING, ZERO_RUN


def find_lenses(data, model, wcs=None, mask=None, *, weight=None, stride: int = DEFAULT_STRIDE,
                threshold: float = 0.5, min_separation: float | None = None,
                batch_size: int = DEFAULT_BATCH_SIZE, transforms: int = 1, refine: float | None = None,
                zero_run: int = ZERO_RUN, max_missing: float = MAX_MISSING,
                checkpoint=None, scheduler=None, n_workers: int | None = None,
                progress: bool | None = None) -> Table:
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
        columns; without it a :class:`NoWCSWarning` says that positions are pixels only.  Its
        pixel scale is compared with the one the finder was trained on, when the finder's model
        card says (a shipped finder, or a ``.keras`` file with its card beside it): a
        :class:`PixelScaleWarning` when they differ by more than 5%.
    mask : 2-D array, optional
        True (nonzero) where pixels are bad.  A tile with a few pixels without data (masked, NaN,
        infinite, zero weight, in a run of zeros; see ``max_missing``) has them filled from their
        neighbours and is scored; a tile with more is skipped, never scored as sky, and a
        :class:`SkippedTilesWarning` says how many, and what share of the image lies in no
        scored tile.
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
    transforms : int
        1, 2, 4 or 8: each tile's score is the mean over that many flips and quarter turns
        (:func:`lenslib.models.predict`); costs that many times the scoring.
    refine : float, optional
        Tiles scoring at least this are scored again as the mean over all eight flips and
        quarter turns, and keep that score: the average of eight views ranks the best tiles
        better than one view (on the finder's calibration sky, rescoring every cutout above the
        single-view score of the top 1% of non-lenses lifts TPR0 from 0.38 to 0.51, see
        ``bench/README.md``), at up to eight times the cost of only those tiles.  A value under
        ``threshold`` (such as 0.1) also lets a lens that one view missed reach it.  Needs
        ``transforms`` below 8.
    zero_run : int
        Exact zeros in a run of at least this many pixels along a row or a column are no data
        (how mosaics fill their edges and gaps); 0 keeps every zero as data.  Default 32.
    max_missing : float
        The largest share of a tile's pixels, in ``[0, 0.5]``, that may have no data: they are
        filled with a Gaussian-weighted mean of the pixels around them
        (:func:`lenslib.scan.tiles.fill_missing`) and the tile is scored.  The default, 0.02, keeps
        a bad column, scattered cosmic rays or a footprint's ragged edge from costing every tile
        they touch (at stride 50, one bad pixel touches four tiles); 0 skips every tile that
        touches a pixel without data.
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
        the tiling, how many tiles were scored, resumed and skipped, the fractions of the
        image with no data (``no_data``) and in no scored tile (``unsearch``), ``max_missing``
        (``maxmiss``), the model that scored it (``model``: a shipped finder's name or a file;
        ``modelsum``: the blake2b digest of its file when ``model`` is a path or a name, of its
        weights when it is a model object; ``transfrm``: the views averaged per tile), with
        ``refine`` how many tiles were scored again (``n_refine``) and, where known, the image's
        and the finder's pixel scales in arcsec (``pixscale``, ``finderpx``).  An empty table, with a
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
    data = check_image(data)
    wcs = check_wcs(wcs, tuple(data.shape))
    threshold = check_number("threshold", threshold, 0.0, 1.0)
    if min_separation is not None:
        check_number("min_separation", min_separation, 0.0, np.inf)
    if wcs is None:
        warnings.warn("no WCS given: the candidates have pixel coordinates only", NoWCSWarning, stacklevel=2)
    image_scale, finder_scale = check_pixel_scale(wcs, model)
    tiles = score_tiles(data, model, mask=mask, weight=weight, stride=stride, batch_size=batch_size,
                        transforms=transforms, refine=refine, zero_run=zero_run, max_missing=max_missing,
                        checkpoint=checkpoint,
                        scheduler=scheduler, n_workers=n_workers, progress=progress)
    table = candidates_table(tiles, threshold=threshold, min_separation=min_separation, wcs=wcs)
    for key, scale in (("pixscale", image_scale), ("finderpx", finder_scale)):
        if scale is not None:  # arcsec: the image's (from its WCS), the finder's (from its card)
            table.meta[key] = scale
    if len(table) == 0:
        warnings.warn(f"no tile scored at or above threshold={threshold:g} "
                      f"({tiles.n_scored + tiles.n_resumed} tiles scored); the catalog is empty",
                      NoCandidatesWarning, stacklevel=2)
    return table


def _input_paths(*values) -> list:
    """The files among ``values`` (paths, ``file.fits[EXT]`` included): what an output must not
    overwrite."""
    return [split_extension(v)[0] for v in values if isinstance(v, (str, os.PathLike))]


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
    hdu : int, str or (str, int), optional
        The extension holding the image (index, name, or name and version); default the first
        with 2-D image data.  ``path`` may also name it: ``image.fits[SCI]``.
    mask, weight : path or 2-D array, optional
        A bad-pixel mask (nonzero: no data) and a weight or exposure map (0: no data), as arrays
        or FITS files of the image's shape.  From a file, the extension its name gives
        (``image_drz.fits[WHT]``), else one named ``WHT``, ``WEIGHT`` or ``WGT`` (a weight) or
        ``MASK``, ``BPM`` or ``BADPIX`` (a mask), else the first 2-D image; never the scanned
        image itself (refused: an HST file's first image is its science image).
    gallery : path, optional
        A PNG of the ``n_gallery`` best candidates' cutouts.
    **kwargs
        Passed to :func:`find_lenses` (``stride``, ``threshold``, ``min_separation``,
        ``batch_size``, ``transforms``, ``refine``, ``zero_run``, ``max_missing``, ``checkpoint``,
        ``scheduler``, ``n_workers``, ``progress``).
    """
    out = check_table_path(out)
    if gallery is not None and Path(gallery).suffix.lower() != ".png":
        raise InputError(f"gallery must be a .png file (got {gallery})")
    inputs = _input_paths(path, model, mask, weight)
    check_output(out, inputs, what="the catalog", csv_columns=("id", "x", "y"), csv_only=CATALOG_COLUMNS)
    check_output(gallery, inputs, what="the gallery")
    check_checkpoint(kwargs.get("checkpoint"))
    hdul, data, wcs, index = read_image(path, hdu)
    opened = [hdul]
    try:
        planes = {}
        for name, value in (("mask", mask), ("weight", weight)):
            if isinstance(value, (str, os.PathLike)):
                plane_hdul, value = read_plane(value, data.shape, what=name,
                                               image=(split_extension(path)[0], index))
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
    """A PNG of the cutouts of ``table``'s candidates, titled with their id and score."""
    import matplotlib.pyplot as plt

    from ..plots import plot_gallery

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
