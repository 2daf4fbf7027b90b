"""A mock survey mosaic with known answers: a field of galaxies and stars, lenses and look-alikes.

:func:`make_mosaic` builds an image as a drizzled HST/ACS F814W mosaic would look, with a TAN
WCS, from the same simulator as the training set:

- the field (I-band number counts of galaxies and stars) is drawn once for the whole mosaic with
  :func:`lenslib.simulate.draw_field` and painted chunk by chunk with
  :func:`lenslib.simulate.paint_field`, then convolved once with the camera's PSF;
- lenses and hard look-alike non-lenses come from :func:`lenslib.simulate.simulate_scene`; their
  noiseless, PSF-convolved ``lensed``, ``deflector`` and ``feature`` light is pasted at known
  positions (their stamps' own field is left out: the mosaic has its own);
- noise (Poisson of source and sky, read noise) is added once, with
  :func:`lenslib.instrument.observe`, for one exposure time and sky level over the mosaic.

The truth table lists every injected object with its pixel and sky position and its simulated
parameters, so that a scan (:mod:`lenslib.scan`) can be scored for completeness, purity and false
positives per square degree (:func:`evaluate_scan`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from functools import lru_cache
from typing import NamedTuple

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS
from scipy.signal import oaconvolve

from .candidates import LOOKALIKE_KINDS
from .config import LENS_KINDS, NONLENS_KINDS, SimulationConfig, get_profile
from .files import atomic_output
from .instrument import observe, psf_kernel
from .simulate import Field, draw_field, paint_field, simulate_scene
from .simulate import supersampled_grid as _grid

#: COSMOS, the largest contiguous HST/ACS F814W survey: the default pointing of a mock mosaic.
DEFAULT_CENTER = SkyCoord(150.1163 * u.deg, 2.2009 * u.deg)

#: Light of an injected object pasted into the mosaic (its stamp's own field is left out).
INJECTED_COMPONENTS = ("lensed", "deflector", "feature")

_CHUNK = 400  # native pixels a side of one painting chunk of the field
_NOISE_ROWS = 512  # rows of the mosaic given noise at a time (bounds the temporaries)
_TRUTH_FLOATS = ("theta_e", "arc_snr", "feature_snr", "magnification", "source_mag", "deflector_mag",
                 "z_lens", "feature_radius")


class MockMosaic(NamedTuple):
    """A mock survey image: ``data`` (float32, e-/s, sky-subtracted), its ``wcs`` and ``truth``."""

    data: np.ndarray
    wcs: WCS
    truth: Table

    def to_fits(self, path: str | os.PathLike, *, overwrite: bool = False) -> os.PathLike:
        """Write the image with its WCS as a FITS primary HDU (atomically)."""
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
        header = self.wcs.to_header()
        header["BUNIT"] = ("ELECTRONS/S", "drizzled count rate")
        for key in ("EXPTIME", "SKYMAG"):
            if key in self.truth.meta:
                header[key] = self.truth.meta[key]
        with atomic_output(path) as tmp:
            fits.PrimaryHDU(self.data, header=header).writeto(tmp, output_verify="exception")
        return path


def make_wcs(shape: tuple[int, int], pixel_scale: float, center: SkyCoord = DEFAULT_CENTER) -> WCS:
    """A north-up, east-left TAN WCS for an image of ``shape`` (ny, nx) centred on ``center``,
    with ``pixel_scale`` arcsec per pixel."""
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]  # FITS pixels are 1-based
    wcs.wcs.cdelt = [-pixel_scale / 3600.0, pixel_scale / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    icrs = center.icrs
    wcs.wcs.crval = [icrs.ra.deg, icrs.dec.deg]
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (nx, ny)
    return wcs


def _check_shape(shape) -> tuple[int, int]:
    ok = (isinstance(shape, (tuple, list)) and len(shape) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shape))
    if not ok or min(shape) < 100:
        raise ValueError(f"shape must be (ny, nx), integers of at least 100 pixels (got {shape!r})")
    return int(shape[0]), int(shape[1])


def _check_count(name, value) -> int:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be a non-negative integer (got {value!r})")
    return int(value)


def _place(rng, n: int, shape, *, edge: float, min_separation: float, max_tries: int = 20_000):
    """``n`` positions (x, y) at least ``edge`` from the borders and ``min_separation`` apart."""
    ny, nx = shape
    if n and (nx - 2 * edge <= 0 or ny - 2 * edge <= 0):
        raise ValueError(f"a {nx}x{ny} mosaic leaves no room {edge} pixels from its edges")
    points: list[tuple[float, float]] = []
    for _ in range(max_tries):
        if len(points) == n:
            break
        x, y = rng.uniform((edge, edge), (nx - 1 - edge, ny - 1 - edge))
        if all((x - px) ** 2 + (y - py) ** 2 >= min_separation**2 for px, py in points):
            points.append((float(x), float(y)))
    if len(points) < n:
        raise ValueError(f"cannot place {n} objects {min_separation} pixels apart and {edge} pixels "
                         f"from the edges of a {nx}x{ny} mosaic; make it larger or inject fewer")
    return np.array(points).reshape(-1, 2)


def _paint_mosaic_field(field: Field, shape, config: SimulationConfig) -> np.ndarray:
    """Noiseless, unconvolved field light (e-/s per native pixel), painted chunk by chunk."""
    ny, nx = shape
    ps = config.instrument.pixel_scale
    grid = _grid(_CHUNK, ps, config.supersampling)
    pad = (grid.n_native - _CHUNK) / 2
    reach = np.maximum(0.6, 10 * field.galaxies[:, 3]) if len(field.galaxies) else np.zeros(0)
    out = np.zeros(shape)
    for row0 in range(0, ny, _CHUNK):
        for col0 in range(0, nx, _CHUNK):
            # arcsec of the chunk's centre from the mosaic's centre
            cx = (col0 + (_CHUNK - 1) / 2 - (nx - 1) / 2) * ps
            cy = (row0 + (_CHUNK - 1) / 2 - (ny - 1) / 2) * ps
            half = (_CHUNK / 2 + pad) * ps
            gal, stars = field.galaxies, field.stars
            near = ((np.abs(gal[:, 1] - cx) < half + reach) & (np.abs(gal[:, 2] - cy) < half + reach))
            near_star = (np.abs(stars[:, 0] - cx) < half + ps) & (np.abs(stars[:, 1] - cy) < half + ps)
            if not near.any() and not near_star.any():
                continue
            fine = np.zeros_like(grid.x)
            points = np.zeros((grid.n_native, grid.n_native))
            paint_field(Field(gal[near], stars[near_star], 0).shifted(cx, cy), fine, points, grid)
            native = grid.crop(grid.bin(fine) + points)
            h, w = min(_CHUNK, ny - row0), min(_CHUNK, nx - col0)
            out[row0:row0 + h, col0:col0 + w] += native[:h, :w]
    return out


@lru_cache(maxsize=4)
def _taper(size: int) -> np.ndarray:
    """1 within half a cutout of a stamp's centre, falling as cos^2 to 0 at the stamp's edge: an
    injected object's far wings end smoothly instead of at the stamp's square border."""
    coords = np.arange(size) - (size - 1) / 2
    r = np.hypot(*np.meshgrid(coords, coords))
    inner, outer = 50.0, size / 2
    t = np.clip((r - inner) / (outer - inner), 0.0, 1.0)
    window = np.cos(0.5 * np.pi * t) ** 2
    window.setflags(write=False)
    return window


def _paste(canvas: np.ndarray, stamp: np.ndarray, x: float, y: float) -> None:
    """Add ``stamp`` to ``canvas`` with its centre on pixel (x, y), clipped at the borders."""
    size = stamp.shape[0]
    x0, y0 = round(x - (size - 1) / 2), round(y - (size - 1) / 2)
    ys = slice(max(y0, 0), min(y0 + size, canvas.shape[0]))
    xs = slice(max(x0, 0), min(x0 + size, canvas.shape[1]))
    canvas[ys, xs] += stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]


def _lens_kinds(rng, config: SimulationConfig, n: int) -> list[str]:
    names = [k for k, _ in config.lens_kinds]
    weights = np.array([w for _, w in config.lens_kinds], dtype=float)
    return [names[i] for i in rng.choice(len(names), size=n, p=weights / weights.sum())]


def make_mosaic(shape: tuple[int, int] = (4000, 4000), *, n_lenses: int = 20, n_lookalikes: int = 20,
                config: SimulationConfig | None = None, seed: int = 0, center: SkyCoord = DEFAULT_CENTER,
                lookalike_kinds: tuple[str, ...] = LOOKALIKE_KINDS, exposure_time: float | None = None,
                sky_brightness: float | None = None, stamp_size: int = 256, edge: int = 60,
                min_separation: int = 150) -> MockMosaic:
    """Simulate a survey mosaic with lenses and look-alike non-lenses at known positions.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` pixels; at least 100 each.  A 4000x4000 mosaic at 0.05"/px covers 200"x200"
        (0.0031 square degrees) and takes some seconds.
    n_lenses, n_lookalikes : int
        How many lenses (kinds drawn with ``config.lens_kinds``' weights) and look-alikes (drawn
        evenly from ``lookalike_kinds``) to inject.
    config : SimulationConfig, optional
        The sky and camera; default the ``quick`` profile's (the training sky).
    seed : int
        Everything random (field, kinds, positions, objects, noise) follows from it.
    center : SkyCoord
        The sky position of the mosaic's centre.
    lookalike_kinds : tuple of str
        Non-lens kinds of :mod:`lenslib.simulate` to inject as look-alikes.
    exposure_time, sky_brightness : float, optional
        Seconds and mag/arcsec^2 of the whole mosaic; default the middle of the camera's ranges.
    stamp_size : int
        Pixels a side of each injected object's stamp.  Its light is kept whole within 50 pixels
        of the centre (a centred cutout) and tapered smoothly (cos^2) to zero at the stamp's edge,
        so the far wings of bright galaxies end without a square border.
    edge, min_separation : int
        Injected objects lie at least ``edge`` pixels from the borders and ``min_separation``
        pixels from one another.

    Returns
    -------
    MockMosaic
        ``(data, wcs, truth)``: the image (float32, e-/s), a TAN WCS, and a Table of the injected
        objects (``id``, ``kind``, ``label`` 1 for lenses, ``x``, ``y`` pixel (0-based),
        ``skycoord``, and simulated parameters; NaN where one does not apply).
    """
    shape = _check_shape(shape)
    n_lenses = _check_count("n_lenses", n_lenses)
    n_lookalikes = _check_count("n_lookalikes", n_lookalikes)
    config = get_profile("quick").simulation if config is None else config
    if not isinstance(config, SimulationConfig):
        raise TypeError(f"config must be a SimulationConfig (got {type(config).__name__})")
    bad = [k for k in lookalike_kinds if k not in NONLENS_KINDS]
    if bad or (n_lookalikes and not lookalike_kinds):
        raise ValueError(f"lookalike_kinds must be non-lens kinds from {NONLENS_KINDS} "
                         f"(got {lookalike_kinds!r})")
    if not (isinstance(stamp_size, int) and 128 <= stamp_size <= 512):
        raise ValueError(f"stamp_size must be an integer in [128, 512] (got {stamp_size!r})")
    ins = config.instrument
    if exposure_time is None:
        exposure_time = float(np.mean(ins.exposure_time_range))
    if sky_brightness is None:
        sky_brightness = float(np.mean(ins.sky_brightness_range))
    if not exposure_time > 0:
        raise ValueError(f"exposure_time must be positive seconds (got {exposure_time!r})")

    field_seq, plan_seq, object_seq, noise_seq = np.random.SeedSequence([seed, 0x5CA7]).spawn(4)
    ny, nx = shape
    ps = ins.pixel_scale
    field = draw_field(np.random.default_rng(field_seq), config, nx * ps + 2.0, ny * ps + 2.0)
    rate = _paint_mosaic_field(field, shape, config)
    rate = np.clip(oaconvolve(rate, psf_kernel(ins), mode="same"), 0.0, None)

    plan_rng = np.random.default_rng(plan_seq)
    kinds = _lens_kinds(plan_rng, config, n_lenses)
    kinds += [lookalike_kinds[i % len(lookalike_kinds)] for i in range(n_lookalikes)]
    order = plan_rng.permutation(len(kinds))
    kinds = [kinds[i] for i in order]
    positions = _place(plan_rng, len(kinds), shape, edge=edge, min_separation=min_separation)
    half = (stamp_size - 1) / 2  # a stamp's centre; snap it to where the pasted stamp puts it
    positions = np.round(positions - half) + half
    stamp_config = dataclasses.replace(config, image_size=stamp_size)
    rows = []
    for i, (kind, (x, y), obj_seq) in enumerate(zip(kinds, positions, object_seq.spawn(len(kinds)))):
        scene = simulate_scene(kind, np.random.default_rng(obj_seq), stamp_config)
        _paste(rate, sum(scene.components[c] for c in INJECTED_COMPONENTS) * _taper(stamp_size), x, y)
        rec = scene.record
        rows.append({"id": i + 1, "kind": kind, "label": int(kind in LENS_KINDS), "x": x, "y": y,
                     **{k: float(rec.get(k, np.nan)) for k in _TRUTH_FLOATS}})

    noise_rng = np.random.default_rng(noise_seq)
    data = np.empty(shape, dtype=np.float32)
    for row0 in range(0, ny, _NOISE_ROWS):
        data[row0:row0 + _NOISE_ROWS] = observe(rate[row0:row0 + _NOISE_ROWS], noise_rng,
                                                exposure_time=exposure_time,
                                                sky_brightness=sky_brightness, instrument=ins)
    wcs = make_wcs(shape, ps, center)
    truth = _truth_table(rows, wcs)
    truth.meta.update({"EXPTIME": exposure_time, "SKYMAG": sky_brightness, "PIXSCALE": ps,
                       "SEED": seed, "NFIELD": field.n_objects,
                       "AREA": ny * nx * (ps / 3600.0) ** 2})
    return MockMosaic(data, wcs, truth)


def _truth_table(rows: list[dict], wcs: WCS) -> Table:
    names = ["id", "kind", "label", "x", "y", *_TRUTH_FLOATS]
    if rows:
        table = Table(rows=[[r[n] for n in names] for r in rows], names=names)
    else:
        table = Table(names=names, dtype=[int, "U16", int, float, float, *[float] * len(_TRUTH_FLOATS)])
    sky = wcs.pixel_to_world(np.asarray(table["x"], float), np.asarray(table["y"], float))
    table.add_column(sky, name="skycoord", index=5)
    for name in ("theta_e", "feature_radius"):
        table[name].unit = u.arcsec
    return table


def match_to_truth(x, y, truth: Table, *, radius: float) -> np.ndarray:
    """For each position ``(x, y)`` (pixels), the row of the nearest ``truth`` object within
    ``radius`` pixels, or -1."""
    from scipy.spatial import cKDTree

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(truth) == 0 or x.size == 0:
        return np.full(x.size, -1, dtype=int)
    tree = cKDTree(np.column_stack([np.asarray(truth["x"], float), np.asarray(truth["y"], float)]))
    dist, idx = tree.query(np.column_stack([x, y]), distance_upper_bound=radius)
    return np.where(np.isfinite(dist), idx, -1).astype(int)


def evaluate_scan(tiles, truth: Table, *, thresholds=None, min_separation: float | None = None,
                  match_radius: float = 50.0, pixel_scale: float | None = None) -> Table:
    """Completeness, purity and false positives of a scan of a mock mosaic, per score threshold.

    ``tiles`` is the :class:`lenslib.scan.TileScores` of a scan of the mosaic whose ``truth``
    is given; candidates come from :func:`lenslib.scan.candidates_table` at each threshold and
    match the nearest injected object within ``match_radius`` pixels (half a cutout by default).

    Columns: ``threshold``; ``n_candidates``; ``n_recovered`` lenses (matched by at least one
    candidate) and ``completeness`` (their fraction of all injected lenses); ``n_true``
    candidates (on a lens) and ``purity`` (their fraction of the candidates, NaN when there are
    none); ``n_lookalikes`` (candidates on an injected look-alike); ``n_false`` (candidates not on
    a lens) and ``false_per_deg2`` (over the scanned area, skipped tiles excluded).
    """
    from .scan import candidates_table

    thresholds = np.round(np.linspace(0.05, 0.95, 19), 2) if thresholds is None else np.asarray(thresholds)
    pixel_scale = float(truth.meta.get("PIXSCALE", 0.05)) if pixel_scale is None else float(pixel_scale)
    grid = tiles.grid
    ny, nx = grid.shape
    if len(truth) and (np.max(truth["x"]) > nx - 0.5 or np.max(truth["y"]) > ny - 0.5):
        raise ValueError(f"the truth table has objects outside the scanned {nx}x{ny} image")
    area_deg2 = (1.0 - tiles.unsearched) * ny * nx * (pixel_scale / 3600.0) ** 2
    is_lens = np.asarray(truth["label"]) == 1
    n_lenses = int(is_lens.sum())
    rows = []
    for t in thresholds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            cands = candidates_table(tiles, threshold=float(t), min_separation=min_separation)
        match = match_to_truth(cands["x"], cands["y"], truth, radius=match_radius)
        on_lens = (match >= 0) & (is_lens[np.clip(match, 0, None)] if len(truth) else False)
        n_true = int(on_lens.sum())
        n_recovered = len(np.unique(match[on_lens]))
        n_false = len(cands) - n_true
        rows.append((float(t), len(cands), n_recovered, n_recovered / n_lenses if n_lenses else np.nan,
                     n_true, n_true / len(cands) if len(cands) else np.nan,
                     int(((match >= 0) & ~on_lens).sum()), n_false,
                     n_false / area_deg2 if area_deg2 > 0 else np.nan))
    names = ("threshold", "n_candidates", "n_recovered", "completeness", "n_true", "purity", "n_lookalikes",
             "n_false", "false_per_deg2")
    table = Table(rows=rows, names=names)
    table["false_per_deg2"].unit = u.deg**-2
    table.meta.update({"n_lenses": n_lenses, "n_lookalikes": int((~is_lens).sum()), "area_deg2": area_deg2,
                       "match_radius": match_radius})
    return table


def truth_scores(tiles, truth: Table, *, radius: float = 50.0) -> np.ndarray:
    """The best score of the scanned tiles centred within ``radius`` pixels of each injected
    object (NaN where none was scored): how close each one came to being found."""
    xc, yc = tiles.grid.centres()
    flat, xc, yc = tiles.scores.ravel(), xc.ravel(), yc.ravel()
    best = np.full(len(truth), np.nan)
    for k, (x, y) in enumerate(zip(np.asarray(truth["x"], float), np.asarray(truth["y"], float))):
        near = (np.hypot(xc - x, yc - y) <= radius) & np.isfinite(flat)
        if near.any():
            best[k] = flat[near].max()
    return best


def plot_truth(ax, truth: Table, candidates: Table, *, match_radius: float = 50.0) -> None:
    """Mark on ``ax`` (pixel axes) the injected lenses, found (green) or missed (red), the
    look-alikes (orange squares, filled when a candidate fell on one) and every candidate (cyan +)."""
    match = match_to_truth(candidates["x"], candidates["y"], truth, radius=match_radius)
    hit = np.zeros(len(truth), dtype=bool)
    hit[match[match >= 0]] = True
    lens = np.asarray(truth["label"]) == 1
    x, y = np.asarray(truth["x"], float), np.asarray(truth["y"], float)
    style = dict(s=160, linewidths=1.5)
    ax.scatter(x[lens & hit], y[lens & hit], facecolors="none", edgecolors="lime", label="lens, found",
               **style)
    ax.scatter(x[lens & ~hit], y[lens & ~hit], facecolors="none", edgecolors="red", label="lens, missed",
               **style)
    ax.scatter(x[~lens & hit], y[~lens & hit], marker="s", color="orange", alpha=0.6,
               label="look-alike, flagged", **style)
    ax.scatter(x[~lens & ~hit], y[~lens & ~hit], marker="s", facecolors="none", edgecolors="orange",
               label="look-alike, not flagged", **style)
    ax.scatter(candidates["x"], candidates["y"], marker="+", color="cyan", s=60, label="candidate")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
