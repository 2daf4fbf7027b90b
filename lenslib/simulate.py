"""One simulated cutout at a time: strong lenses and the non-lenses that look like them.

Lensing physics (ray shooting through an SIE with external shear, the lens equation for point
images, magnifications) and the Sersic light profiles come from lenstronomy; Einstein radii come
from velocity dispersions and redshifts through astropy's Planck 2018 cosmology.  Morphologies
that lenstronomy has no profile for (spiral arms, collisional rings, tidal shells and tails,
curved unlensed arclets, dust lanes) are small analytic surface-brightness functions here.

Every cutout sits in a field of fainter and brighter galaxies and stars drawn from I-band number
counts, for lenses and non-lenses alike, so that "more than one object in the stamp" is never
the lens signature.  A scene is rendered as separate noiseless components (``lensed``,
``deflector``, ``feature``, ``field``), each convolved with the PSF, then observed with noise; the
components let the tests check that lenses show their arcs and non-lenses carry no lensed light.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import astropy.units as u
import numpy as np
from astropy import constants as const
from astropy.cosmology import Planck18
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Util.param_util import phi_q2_ellipticity
from scipy.signal import fftconvolve

from .config import LENS_KINDS, NONLENS_KINDS, SimulationConfig
from .instrument import magnitude_to_rate, noise_variance, observe, psf_kernel

COMPONENTS = ("lensed", "deflector", "feature", "field")
_PAD = 10  # native pixels rendered around the cutout so that light from outside scatters in
_ARCSEC_PER_RADIAN = u.rad.to(u.arcsec)  # 206264.806...
_C_KM_S = const.c.to_value("km/s")
_MAX_TRIES = 200

_LENS_MODEL = LensModel(["SIE", "SHEAR"])
_SOLVER = LensEquationSolver(_LENS_MODEL)
_SERSIC = LightModel(["SERSIC_ELLIPSE"])


@dataclass
class Scene:
    """A simulated cutout: the observed image (e-/s), its noiseless parts and its record."""

    image: np.ndarray
    components: dict[str, np.ndarray]
    record: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# The pixel grid
# --------------------------------------------------------------------------------------------
class _Grid:
    """A supersampled grid covering the cutout plus a margin, in arcsec from its centre."""

    def __init__(self, size: int, pixel_scale: float, supersampling: int):
        self.size, self.ss, self.pixel_scale = size, supersampling, pixel_scale
        self.n_native = size + 2 * _PAD
        n = self.n_native * supersampling
        self.step = pixel_scale / supersampling
        self.coords = (np.arange(n) - (n - 1) / 2) * self.step
        self.x, self.y = np.meshgrid(self.coords, self.coords)
        self.subpixel_area = self.step**2

    def box(self, cx: float, cy: float, radius: float | None):
        """Slices of the supersampled grid within ``radius`` of (cx, cy); the whole grid if None."""
        if radius is None:
            return slice(None), slice(None)
        lo_x = np.searchsorted(self.coords, cx - radius)
        hi_x = np.searchsorted(self.coords, cx + radius)
        lo_y = np.searchsorted(self.coords, cy - radius)
        hi_y = np.searchsorted(self.coords, cy + radius)
        return slice(lo_y, hi_y), slice(lo_x, hi_x)

    def bin(self, fine: np.ndarray) -> np.ndarray:
        s = self.ss
        return fine.reshape(self.n_native, s, self.n_native, s).sum(axis=(1, 3))

    def crop(self, native: np.ndarray) -> np.ndarray:
        return native[_PAD:-_PAD, _PAD:-_PAD]

    def add_point(self, native: np.ndarray, x: float, y: float, rate: float) -> None:
        """Add a point source (e-/s) to a native-resolution buffer by bilinear splatting."""
        px = x / self.pixel_scale + (self.n_native - 1) / 2
        py = y / self.pixel_scale + (self.n_native - 1) / 2
        i0, j0 = int(np.floor(py)), int(np.floor(px))
        fy, fx = py - i0, px - j0
        for di, wy in ((0, 1 - fy), (1, fy)):
            for dj, wx in ((0, 1 - fx), (1, fx)):
                i, j = i0 + di, j0 + dj
                if 0 <= i < self.n_native and 0 <= j < self.n_native:
                    native[i, j] += rate * wy * wx


@lru_cache(maxsize=4)
def _grid(size: int, pixel_scale: float, supersampling: int) -> _Grid:
    return _Grid(size, pixel_scale, supersampling)


# --------------------------------------------------------------------------------------------
# Light profiles
# --------------------------------------------------------------------------------------------
def _sersic_kwargs(cx, cy, r_eff, n, q, phi):
    e1, e2 = phi_q2_ellipticity(phi, q)
    return {"amp": 1.0, "R_sersic": r_eff, "n_sersic": n, "e1": e1, "e2": e2,
            "center_x": cx, "center_y": cy}


def _add_sersic(fine, grid, rate, cx, cy, r_eff, n, q, phi, *, whole=False):
    """Add an elliptical Sersic galaxy of total ``rate`` e-/s (lenstronomy's profile)."""
    kw = _sersic_kwargs(cx, cy, r_eff, n, q, phi)
    amp = rate / _SERSIC.total_flux([kw])[0]
    radius = None if whole else max(0.6, 10.0 * r_eff)
    sy, sx = grid.box(cx, cy, radius)
    xs, ys = grid.x[sy, sx], grid.y[sy, sx]
    if xs.size == 0:
        return
    kw["amp"] = amp
    fine[sy, sx] += _SERSIC.surface_brightness(xs, ys, [kw]) * grid.subpixel_area


def _elliptical_coords(x, y, cx, cy, q, phi):
    c, s = np.cos(phi), np.sin(phi)
    dx, dy = x - cx, y - cy
    xp = c * dx + s * dy
    yp = -s * dx + c * dy
    return xp, yp / q


def _add_template(fine, rate, values):
    """Scale an arbitrary non-negative surface-brightness map to a total of ``rate`` e-/s."""
    total = values.sum()
    if total > 0:
        fine += values * (rate / total)


def _curved_band(grid, cx, cy, radius, width, *, q=1.0, phi=0.0, angle=0.0, opening=None,
                 radius_slope=0.0, sharp_outer_edge=False):
    """Light along an (elliptical) circle around (cx, cy): rings, shells, tails and arclets.

    ``opening`` is the Gaussian angular half-width in radians (None: a full ring);
    ``radius_slope`` makes the radius grow with angle (a tidal tail);
    ``sharp_outer_edge`` gives the steep outer cut-off of a tidal shell.
    """
    xp, yp = _elliptical_coords(grid.x, grid.y, cx, cy, q, phi)
    r = np.hypot(xp, yp)
    theta = np.arctan2(yp, xp)
    dtheta = np.angle(np.exp(1j * (theta - angle)))
    r0 = radius + radius_slope * dtheta
    d = r - r0
    if sharp_outer_edge:
        profile = np.where(d < 0, np.exp(d / (2 * width)), np.exp(-0.5 * (d / (0.3 * width)) ** 2))
    else:
        profile = np.exp(-0.5 * (d / width) ** 2)
    if opening is not None:
        profile = profile * np.exp(-0.5 * (dtheta / opening) ** 2)
    return profile


def _gaussian_blob(grid, cx, cy, sigma):
    sy, sx = grid.box(cx, cy, 5 * sigma + 2 * grid.step)
    out = np.zeros_like(grid.x)
    out[sy, sx] = np.exp(-0.5 * ((grid.x[sy, sx] - cx) ** 2 + (grid.y[sy, sx] - cy) ** 2) / sigma**2)
    return out


# --------------------------------------------------------------------------------------------
# Populations
# --------------------------------------------------------------------------------------------
def _uniform_angle(rng):
    return rng.uniform(0, np.pi)


def _draw_massive_elliptical(rng, config):
    """A massive early-type galaxy: the lens population and its look-alikes share it.

    Velocity dispersion log-normal around ``config.deflector_sigma_v_median`` (0.08 dex, the
    SDSS velocity-function shape), redshift ~ N(``config.deflector_z_mean``, 0.2) clipped to
    [0.1, 1.0]; I-band luminosity from a Faber-Jackson relation (M_I = -22.0 - 10 log10(sigma /
    200 km/s), 0.4 mag scatter) with a crude k-correction; size from the sigma-R_e correlation
    (R_e = 4 kpc (sigma/200)^1.2, 0.15 dex scatter).  Four in ten are lenticulars with an
    exponential disk holding 20-50% of the light, lenses and non-lenses alike.
    """
    zero_point = config.instrument.zero_point_ab
    sigma_v = float(np.clip(config.deflector_sigma_v_median * 10 ** rng.normal(0, 0.08), 140.0, 420.0))
    z = float(np.clip(rng.normal(config.deflector_z_mean, 0.2), 0.1, 1.0))
    dist_mod = Planck18.distmod(z).value
    abs_mag = -22.0 - 10 * np.log10(sigma_v / 200.0) + rng.normal(0, 0.4)
    mag = abs_mag + dist_mod + 2.5 * np.log10(1 + z)
    kpc_per_arcsec = Planck18.angular_diameter_distance(z).to_value("kpc") / _ARCSEC_PER_RADIAN
    r_eff = 4.0 * (sigma_v / 200.0) ** 1.2 * 10 ** rng.normal(0, 0.15) / kpc_per_arcsec
    return {
        "z": z, "sigma_v": sigma_v, "mag": float(mag), "rate": float(magnitude_to_rate(mag, zero_point)),
        "r_eff": float(np.clip(r_eff, 0.1, 3.0)), "n": float(rng.uniform(3.0, 5.5)),
        "q": float(rng.uniform(0.55, 1.0)), "phi": _uniform_angle(rng),
        "cx": float(rng.normal(0, 0.05)), "cy": float(rng.normal(0, 0.05)),
        "disk_fraction": float(rng.uniform(0.2, 0.5)) if rng.uniform() < 0.4 else 0.0,
        "disk_scale": float(rng.uniform(1.2, 2.0)), "disk_q": float(rng.uniform(0.25, 0.7)),
    }


def _einstein_radius(sigma_v, z_lens, z_source):
    """SIS Einstein radius in arcsec: 4 pi (sigma/c)^2 D_ls / D_s."""
    d_ls = Planck18.angular_diameter_distance(z_lens, z_source).value
    d_s = Planck18.angular_diameter_distance(z_source).value
    return 4 * np.pi * (sigma_v / _C_KM_S) ** 2 * d_ls / d_s * _ARCSEC_PER_RADIAN


def _draw_magnitudes_power_law(rng, n, m_lo, m_hi, slope):
    """Magnitudes with dN/dm proportional to 10**(slope m) between m_lo and m_hi."""
    a, b = 10 ** (slope * m_lo), 10 ** (slope * m_hi)
    return np.log10(a + rng.uniform(size=n) * (b - a)) / slope


@dataclass
class Field:
    """Field galaxies and stars drawn over a ``width`` x ``height`` arcsec rectangle centred on 0.

    ``galaxies`` holds one row per Sersic component (a galaxy's disk and its clumps):
    ``rate`` (e-/s), ``cx``, ``cy`` (arcsec), ``r_eff`` (arcsec), ``n``, ``q``, ``phi`` (radians);
    ``stars`` one row per star: ``cx``, ``cy``, ``rate``.  ``n_objects`` counts galaxies (not
    components) and stars.
    """

    galaxies: np.ndarray
    stars: np.ndarray
    n_objects: int

    def shifted(self, dx: float, dy: float) -> Field:
        """The same objects with positions moved by ``(-dx, -dy)`` (a grid centred at (dx, dy))."""
        gal, stars = self.galaxies.copy(), self.stars.copy()
        gal[:, 1] -= dx
        gal[:, 2] -= dy
        stars[:, 0] -= dx
        stars[:, 1] -= dy
        return Field(gal, stars, self.n_objects)


def draw_field(rng, config, width: float, height: float) -> Field:
    """Draw the field galaxies (I-band number counts) and stars over ``width`` x ``height``
    arcsec; see :func:`paint_field` to render them."""
    ins = config.instrument
    area_deg2 = (width / 3600.0) * (height / 3600.0)
    m_lo, m_hi = config.field_mag_range
    slope = config.field_count_slope
    n_expected = config.field_density_at_24 * area_deg2 * (10 ** (slope * (m_hi - 24)) -
                                                           10 ** (slope * (m_lo - 24)))
    n_gal = rng.poisson(n_expected)
    mags = _draw_magnitudes_power_law(rng, n_gal, m_lo, m_hi, slope)
    low, high = (-width / 2, -height / 2), (width / 2, height / 2)
    components = []
    for mag in mags:
        cx, cy = rng.uniform(low, high)
        r_eff = float(np.clip(0.3 * 10 ** (-0.08 * (mag - 22)) * 10 ** rng.normal(0, 0.2), 0.03, 1.5))
        n = rng.uniform(2.5, 4.5) if rng.uniform() < 0.2 else rng.uniform(0.5, 2.5)
        rate = float(magnitude_to_rate(mag, ins.zero_point_ab))
        clumps = rng.integers(1, 4) if rng.uniform() < 0.25 else 0
        q = rng.uniform(0.25, 1.0)
        components.append((rate * (1 - 0.1 * clumps), cx, cy, r_eff, n, q, _uniform_angle(rng)))
        for _ in range(clumps):
            off = rng.normal(0, r_eff, size=2)
            components.append((rate * 0.1, cx + off[0], cy + off[1], max(0.02, 0.15 * r_eff),
                               1.0, 1.0, 0.0))
    area_arcmin2 = (width / 60.0) * (height / 60.0)
    n_star = rng.poisson(config.star_density_per_arcmin2 * area_arcmin2)
    stars = []
    for _ in range(n_star):
        cx, cy = rng.uniform(low, high)
        stars.append((cx, cy, float(magnitude_to_rate(rng.uniform(18, 26), ins.zero_point_ab))))
    return Field(np.array(components, dtype=float).reshape(-1, 7),
                 np.array(stars, dtype=float).reshape(-1, 3), int(n_gal + n_star))


def paint_field(field: Field, fine, native_points, grid) -> None:
    """Add ``field``'s galaxies to the supersampled buffer ``fine`` and its stars to the
    native-resolution ``native_points`` of ``grid`` (objects off the grid add nothing)."""
    for rate, cx, cy, r_eff, n, q, phi in field.galaxies:
        _add_sersic(fine, grid, rate, cx, cy, r_eff, n, q, phi)
    for cx, cy, rate in field.stars:
        grid.add_point(native_points, cx, cy, rate)


def _render_field(fine, native_points, grid, rng, config) -> int:
    """Field galaxies and stars at random positions, partly cut by the edges."""
    side = grid.n_native * config.instrument.pixel_scale + 2.0  # objects up to 1" outside shine in
    field = draw_field(rng, config, side, side)
    paint_field(field, fine, native_points, grid)
    return field.n_objects


def _add_deflector_light(fine, grid, gal):
    """A massive galaxy's light: its Sersic bulge and, for a lenticular, its exponential disk."""
    disk_fraction = gal["disk_fraction"]
    _add_sersic(fine, grid, gal["rate"] * (1 - disk_fraction), gal["cx"], gal["cy"], gal["r_eff"],
                gal["n"], gal["q"], gal["phi"], whole=True)
    if disk_fraction > 0:
        _add_sersic(fine, grid, gal["rate"] * disk_fraction, gal["cx"], gal["cy"],
                    gal["r_eff"] * gal["disk_scale"], 1.0, gal["disk_q"], gal["phi"], whole=True)


# --------------------------------------------------------------------------------------------
# Lenses
# --------------------------------------------------------------------------------------------
def _lens_model_kwargs(gal, rng, theta_e):
    q_mass = float(np.clip(gal["q"] + rng.normal(0, 0.1), 0.4, 0.99))
    phi_mass = gal["phi"] + rng.normal(0, np.radians(10))
    e1, e2 = phi_q2_ellipticity(phi_mass, q_mass)
    gamma = rng.uniform(0, 0.08)
    gamma_angle = rng.uniform(0, np.pi)
    kwargs = [
        {"theta_E": theta_e, "e1": e1, "e2": e2, "center_x": gal["cx"], "center_y": gal["cy"]},
        {"gamma1": gamma * np.cos(2 * gamma_angle), "gamma2": gamma * np.sin(2 * gamma_angle),
         "ra_0": 0.0, "dec_0": 0.0},
    ]
    return kwargs, q_mass, gamma


def _visibility(signal, other, variance, n_sigma: float = 2.0):
    """Signal-to-noise of light an observer can point to: summed over the pixels where it
    exceeds ``n_sigma`` times the noise *and* outshines every other light (the lens galaxy, the
    field), over the noise of those pixels; 0 where no pixel qualifies.

    Collett's :func:`_arc_snr` sums every pixel above 1 sigma, so faint light spread under a bright
    lens galaxy can pass it while no pixel shows it; this measure cannot.
    """
    mask = (signal > n_sigma * np.sqrt(variance)) & (signal > other)
    if not mask.any():
        return 0.0
    return float(signal[mask].sum() / np.sqrt(variance[mask].sum()))


def _arc_snr(signal, variance):
    """Collett (2015) detectability: summed signal over pixels above 1 sigma / its noise."""
    sigma = np.sqrt(variance)
    mask = signal > sigma
    if not mask.any():
        return 0.0
    return float(signal[mask].sum() / np.sqrt(variance[mask].sum()))


def _azimuthal_coverage(signal, variance, grid, cx, cy, theta_e, n_sectors=24):
    """Fraction of azimuthal sectors around the deflector where lensed light is above 1 sigma."""
    size = grid.size
    coords = (np.arange(size) - (size - 1) / 2) * grid.pixel_scale
    xx, yy = np.meshgrid(coords, coords)
    r = np.hypot(xx - cx, yy - cy)
    ring = (r > 0.5 * theta_e) & (r < 1.5 * theta_e) & (signal > np.sqrt(variance))
    if not ring.any():
        return 0.0
    sectors = ((np.arctan2(yy - cy, xx - cx)[ring] + np.pi) / (2 * np.pi) * n_sectors).astype(int)
    return len(np.unique(np.clip(sectors, 0, n_sectors - 1))) / n_sectors


class _Observation:
    """Per-cutout observing conditions and the shared render buffers."""

    def __init__(self, config: SimulationConfig, rng: np.random.Generator):
        ins = config.instrument
        self.config = config
        self.grid = _grid(config.image_size, ins.pixel_scale, config.supersampling)
        self.exposure_time = float(rng.uniform(*ins.exposure_time_range))
        self.sky_brightness = float(rng.uniform(*ins.sky_brightness_range))
        self.has_artifact = False  # drawn when the image is observed
        shape_fine = self.grid.x.shape
        shape_native = (self.grid.n_native, self.grid.n_native)
        self.fine = {c: np.zeros(shape_fine) for c in COMPONENTS}
        self.points = {c: np.zeros(shape_native) for c in COMPONENTS}

    def rates(self) -> dict[str, np.ndarray]:
        """PSF-convolved noiseless components on the cutout, e-/s per pixel."""
        out = {}
        for c in COMPONENTS:
            native = self.grid.bin(self.fine[c]) + self.points[c]
            if native.any():
                out[c] = _blurred(self.grid, self.config.instrument, native)
            else:
                out[c] = np.zeros((self.grid.size, self.grid.size))
        return out

    def variance(self, total):
        return noise_variance(total, exposure_time=self.exposure_time,
                              sky_brightness=self.sky_brightness, instrument=self.config.instrument)


def _simulate_lens(kind: str, rng: np.random.Generator, config: SimulationConfig, *,
                   lensed_light: bool = True) -> Scene:
    """A lens of ``kind``; with ``lensed_light=False`` the same draw observed without the light of
    its source (the lens population's unlensed twin, see :func:`_simulate_unlensed_twin`)."""
    for _ in range(_MAX_TRIES):
        gal = _draw_massive_elliptical(rng, config)
        z_s = float(np.clip(rng.normal(config.source_z_mean, 0.6), gal["z"] + 0.3, 4.0))
        theta_e = _einstein_radius(gal["sigma_v"], gal["z"], z_s)
        if not config.theta_e_range[0] <= theta_e <= config.theta_e_range[1]:
            continue
        obs = _Observation(config, rng)
        grid = obs.grid
        lens_kwargs, q_mass, gamma = _lens_model_kwargs(gal, rng, theta_e)
        _add_deflector_light(obs.fine["deflector"], grid, gal)
        n_field = _render_field(obs.fine["field"], obs.points["field"], grid, rng, config)
        base = obs.rates()
        base_total = base["deflector"] + base["field"]
        beta_x, beta_y = _LENS_MODEL.ray_shooting(grid.x, grid.y, lens_kwargs)
        for _ in range(8):
            scene = _try_source(kind, rng, config, obs, gal, lens_kwargs, theta_e, base, base_total,
                                beta_x, beta_y, lensed_light)
            if scene is not None:
                scene.record.update({
                    "kind": kind, "label": 1, "theta_e": theta_e, "z_lens": gal["z"], "z_source": z_s,
                    "sigma_v": gal["sigma_v"], "deflector_mag": gal["mag"],
                    "deflector_r_eff": gal["r_eff"], "q_mass": q_mass, "shear": gamma,
                    "n_field_objects": n_field,
                })
                return scene
    raise RuntimeError(f"could not draw a detectable {kind} lens in {_MAX_TRIES} tries; "
                       f"check theta_e_range, min_arc_snr and min_arc_visibility")


#: What an unlensed twin keeps of its lens's record: the deflector and the observation.
_TWIN_FIELDS = ("z_lens", "sigma_v", "deflector_mag", "deflector_r_eff", "n_field_objects",
                "exposure_time", "sky_brightness", "has_artifact")


def _simulate_unlensed_twin(rng: np.random.Generator, config: SimulationConfig) -> Scene:
    """A non-lens from the lenses' own population: a lens drawn by the very same code (its kind
    from ``config.lens_kinds``, its deflector, mass and a source that passes every cut, so the
    deflector distribution is the lenses' to the last selection effect), observed without the
    lensed light.  Only the lensed light tells a lens from its twin."""
    names = [k for k, _ in config.lens_kinds]
    weights = np.array([w for _, w in config.lens_kinds], dtype=float)
    lens_kind = names[rng.choice(len(names), p=weights / weights.sum())]
    scene = _simulate_lens(lens_kind, rng, config, lensed_light=False)
    record = {"kind": "elliptical", "label": 0, "feature_snr": 0.0, "feature_visibility": 0.0}
    record.update({k: scene.record[k] for k in _TWIN_FIELDS + ("feature_snr", "feature_visibility")
                   if k in scene.record})
    return Scene(image=scene.image, components=scene.components, record=record)


def _render_source(grid, ins, lens_kwargs, beta_x, beta_y, mag, parts, point=None):
    """Lensed light of a source made of Sersic ``parts`` (flux fraction, x, y, R_e, n, q, phi)
    of total magnitude ``mag``, plus an optional lensed point source ``(magnitude, x_images,
    y_images, flux_factors)``.  Returns the supersampled map, the point map, and the lensed and
    unlensed total rates (e-/s)."""
    lensed_fine = np.zeros_like(grid.x)
    lensed_points = np.zeros((grid.n_native, grid.n_native))
    rate = float(magnitude_to_rate(mag, ins.zero_point_ab))
    unlensed_total = rate
    for frac, cx, cy, re, nn, qq, pp in parts:
        kw = _sersic_kwargs(cx, cy, re, nn, qq, pp)
        kw["amp"] = rate * frac / _SERSIC.total_flux([kw])[0]
        near = np.hypot(beta_x - cx, beta_y - cy) < max(10 * re, 0.3)
        if near.any():
            values = _SERSIC.surface_brightness(beta_x[near], beta_y[near], [kw])
            lensed_fine[near] += values * grid.subpixel_area
    lensed_total = float(lensed_fine.sum())
    if point is not None:
        point_mag, x_img, y_img, factors = point
        point_rate = float(magnitude_to_rate(point_mag, ins.zero_point_ab))
        mags = np.abs(_LENS_MODEL.magnification(x_img, y_img, lens_kwargs)) * factors
        for xi, yi, mu in zip(x_img, y_img, mags):
            grid.add_point(lensed_points, xi, yi, point_rate * mu)
        unlensed_total += point_rate
        lensed_total += point_rate * float(mags.sum())
    return lensed_fine, lensed_points, lensed_total, unlensed_total


def _try_source(kind, rng, config, obs, gal, lens_kwargs, theta_e, base, base_total, beta_x, beta_y,
                lensed_light=True):
    ins, grid = config.instrument, obs.grid
    # Source centre uniform over a disc that covers the caustics; keep it only if multiply imaged.
    r_beta = theta_e * np.sqrt(rng.uniform()) * 0.9
    a_beta = rng.uniform(0, 2 * np.pi)
    sx, sy = gal["cx"] + r_beta * np.cos(a_beta), gal["cy"] + r_beta * np.sin(a_beta)
    x_img, y_img = _SOLVER.image_position_from_source(sx, sy, lens_kwargs, solver="analytical")
    if len(x_img) < 2:
        return None
    if kind == "galaxy_galaxy":
        # Faint sources outnumber bright ones as in I-band counts (dN/dm ~ 10^(0.3 m)); the
        # detectability cut below then keeps many lenses near the threshold, as real samples are.
        mag = float(_draw_magnitudes_power_law(rng, 1, *config.source_mag_range, 0.3)[0])
        r_eff = rng.uniform(*config.source_r_eff_range)
        n = rng.uniform(0.5, 2.0)
        q, phi = rng.uniform(0.3, 1.0), _uniform_angle(rng)
        n_clumps = rng.integers(0, 5)
        clump_fraction = rng.uniform(0.05, 0.2, size=n_clumps)
        parts = [(1 - clump_fraction.sum(), sx, sy, r_eff, n, q, phi)]
        for f in clump_fraction:
            off = rng.normal(0, r_eff, size=2)
            parts.append((f, sx + off[0], sy + off[1], rng.uniform(0.015, 0.05), 1.0, 1.0, 0.0))
        point_mag = np.nan
    else:  # lensed quasar: a point source in a host galaxy
        point_mag = float(_draw_magnitudes_power_law(rng, 1, 19.0, 25.0, 0.3)[0])
        mag = point_mag + rng.uniform(0.3, 2.5)
        parts = [(1.0, sx, sy, rng.uniform(0.08, 0.4), rng.uniform(1.0, 4.0), rng.uniform(0.4, 1.0),
                  _uniform_angle(rng))]
    point = None
    if kind == "lensed_quasar":
        # Microlensing and substructure perturb flux ratios: 0.2 mag log-normal per image.
        point = (point_mag, x_img, y_img, 10 ** (-0.4 * rng.normal(0, 0.2, size=len(x_img))))
    lensed_fine, lensed_points, lensed_total, unlensed_total = _render_source(
        grid, ins, lens_kwargs, beta_x, beta_y, mag, parts, point)
    magnification = lensed_total / unlensed_total
    if magnification < config.min_magnification:
        return None
    lensed = _blurred(grid, ins, grid.bin(lensed_fine) + lensed_points)
    variance = obs.variance(base_total + lensed)
    snr = _arc_snr(lensed, variance)
    if snr < config.min_arc_snr:
        return None
    visibility = _visibility(lensed, base_total, variance)
    if visibility < config.min_arc_visibility:
        return None
    coverage = _azimuthal_coverage(lensed, variance, grid, gal["cx"], gal["cy"], theta_e)
    n_img = len(x_img)
    if kind == "lensed_quasar":
        config_name = "quad" if n_img >= 4 else "double"
    else:
        config_name = "ring" if coverage >= 0.75 else ("quad" if n_img >= 4 else "double")
    components = dict(base)
    components["lensed"] = lensed if lensed_light else np.zeros_like(lensed)
    components["feature"] = np.zeros_like(lensed)
    feature_record = {}
    if not lensed_light and rng.uniform() < config.twin_neighbour_fraction:
        source_size = 0.05 if kind == "lensed_quasar" else parts[0][3]
        neighbour = _stand_in_neighbour(rng, config, grid, gal, theta_e, float(lensed.sum()),
                                        source_size * np.sqrt(magnification))
        components["feature"] = neighbour
        neighbour_variance = obs.variance(base_total + neighbour)
        feature_record = {"feature_snr": _arc_snr(neighbour, neighbour_variance),
                          "feature_visibility": _visibility(neighbour, base_total, neighbour_variance)}
    image = _observe(components, rng, obs)
    record = {
        "source_mag": float(mag), "point_source_mag": float(point_mag),
        "source_x": float(sx), "source_y": float(sy), "magnification": float(magnification),
        "n_source_images": n_img, "arc_snr": snr, "arc_visibility": visibility, "arc_coverage": coverage,
        "image_config": config_name, **feature_record,
    }
    record.update(_observing_record(obs))
    return Scene(image=image, components=components, record=record)


def _stand_in_neighbour(rng, config, grid, gal, theta_e, rate, r_eff):
    """An unlensed galaxy where a twin's arcs would have been: the lensed light's flux (e-/s) and
    surface brightness (the source's size grown by the square root of its magnification), at
    0.7-1.3 Einstein radii from the deflector, but one undistorted image, not arcs and counter-images.
    Only the lensing morphology, not "extra light near a massive galaxy", tells the lens from it."""
    radius, angle = theta_e * rng.uniform(0.7, 1.3), rng.uniform(0, 2 * np.pi)
    fine = np.zeros_like(grid.x)
    _add_sersic(fine, grid, rate, gal["cx"] + radius * np.cos(angle), gal["cy"] + radius * np.sin(angle),
                float(np.clip(r_eff, 0.03, 1.0)), 1.0, rng.uniform(0.4, 1.0), _uniform_angle(rng))
    return _blurred(grid, config.instrument, grid.bin(fine))


def _blurred(grid, instrument, native):
    """A native-resolution map (e-/s, with the margin) convolved with the PSF and cut to the cutout."""
    return np.clip(grid.crop(fftconvolve(native, psf_kernel(instrument), mode="same")), 0.0, None)


def render_lens_system(*, theta_e: float, source_x: float, source_y: float, config: SimulationConfig,
                       rng: np.random.Generator, q: float = 0.8, phi: float = 0.0,
                       shear: tuple[float, float] = (0.0, 0.0), source_mag: float = 22.5,
                       source_r_eff: float = 0.12, point_source_mag: float | None = None,
                       deflector_mag: float = 19.5, deflector_r_eff: float = 0.8,
                       with_field: bool = False) -> Scene:
    """A lens of given parameters (not drawn at random): for figures, injections and tests.

    An SIE of Einstein radius ``theta_e`` (arcsec), axis ratio ``q`` and position angle ``phi``
    (radians) with external shear ``(gamma1, gamma2)``, centred in the cutout, with a de
    Vaucouleurs light profile; an elliptical exponential source at ``(source_x, source_y)``
    arcsec, and, if ``point_source_mag`` is given, a quasar at its centre.  ``rng`` draws only
    the noise (and the field, if ``with_field``).
    """
    ins = config.instrument
    obs = _Observation(config, rng)
    grid = obs.grid
    e1, e2 = phi_q2_ellipticity(phi, q)
    lens_kwargs = [{"theta_E": theta_e, "e1": e1, "e2": e2, "center_x": 0.0, "center_y": 0.0},
                   {"gamma1": shear[0], "gamma2": shear[1], "ra_0": 0.0, "dec_0": 0.0}]
    _add_sersic(obs.fine["deflector"], grid, float(magnitude_to_rate(deflector_mag, ins.zero_point_ab)),
                0.0, 0.0, deflector_r_eff, 4.0, q, phi, whole=True)
    n_field = _render_field(obs.fine["field"], obs.points["field"], grid, rng, config) if with_field else 0
    beta_x, beta_y = _LENS_MODEL.ray_shooting(grid.x, grid.y, lens_kwargs)
    x_img, y_img = _SOLVER.image_position_from_source(source_x, source_y, lens_kwargs, solver="analytical")
    point = None
    if point_source_mag is not None:
        point = (point_source_mag, x_img, y_img, np.ones(len(x_img)))
    parts = [(1.0, source_x, source_y, source_r_eff, 1.0, 0.7, 0.3)]
    fine, points, lensed_total, unlensed_total = _render_source(grid, ins, lens_kwargs, beta_x, beta_y,
                                                                source_mag, parts, point)
    obs.fine["lensed"], obs.points["lensed"] = fine, points
    components = obs.rates()
    variance = obs.variance(sum(components.values()))
    image = _observe(components, rng, obs)
    record = {"kind": "lensed_quasar" if point is not None else "galaxy_galaxy", "label": 1,
              "theta_e": theta_e, "source_x": source_x, "source_y": source_y,
              "magnification": lensed_total / unlensed_total, "n_source_images": len(x_img),
              "arc_snr": _arc_snr(components["lensed"], variance),
              "n_field_objects": n_field, "lens_kwargs": lens_kwargs}
    record.update(_observing_record(obs))
    return Scene(image=image, components=components, record=record)


def critical_curves_and_caustics(lens_kwargs, *, window: float = 6.0, grid_scale: float = 0.01):
    """Critical curves (image plane) and caustics (source plane) of an SIE + shear lens, from
    lenstronomy: lists of (x, y) arrays in arcsec."""
    from lenstronomy.LensModel.lens_model_extensions import LensModelExtensions

    ext = LensModelExtensions(_LENS_MODEL)
    ra_c, dec_c, ra_k, dec_k = ext.critical_curve_caustics(lens_kwargs, compute_window=window,
                                                            grid_scale=grid_scale)
    return list(zip(ra_c, dec_c)), list(zip(ra_k, dec_k))


def _observe(components, rng, obs):
    total = sum(components[c] for c in COMPONENTS)
    image = observe(total, rng, exposure_time=obs.exposure_time, sky_brightness=obs.sky_brightness,
                    instrument=obs.config.instrument)
    obs.has_artifact = bool(rng.uniform() < obs.config.artifact_probability)
    if obs.has_artifact:
        _add_artifacts(image, rng, obs)
    return image


def _add_artifacts(image, rng, obs):
    """Residual cosmic rays (short sharp tracks) and hot pixels left after drizzling."""
    sigma = np.sqrt(obs.variance(np.zeros(1)))[0]
    size = image.shape[0]
    for _ in range(rng.integers(1, 4)):
        length = int(rng.integers(1, 6))
        angle = rng.uniform(0, np.pi)
        x0, y0 = rng.uniform(0, size, size=2)
        level = rng.uniform(5, 60) * sigma
        for t in range(length):
            i = int(y0 + t * np.sin(angle))
            j = int(x0 + t * np.cos(angle))
            if 0 <= i < size and 0 <= j < size:
                image[i, j] += level


def _observing_record(obs):
    return {"exposure_time": obs.exposure_time, "sky_brightness": obs.sky_brightness,
            "has_artifact": obs.has_artifact}


# --------------------------------------------------------------------------------------------
# Non-lenses
# --------------------------------------------------------------------------------------------
def _simulate_nonlens(kind: str, rng: np.random.Generator, config: SimulationConfig) -> Scene:
    """A non-lens; a look-alike feature (ring, arclet, shell, tail, arm, second star) must be
    as visible as a lens's arcs must be (``min_arc_snr`` and ``min_arc_visibility``), or the
    scene is drawn again.  An ``elliptical`` is a lens's unlensed twin."""
    if kind == "elliptical":
        return _simulate_unlensed_twin(rng, config)
    for _ in range(_MAX_TRIES):
        scene = _draw_nonlens(kind, rng, config)
        if scene is not None:
            return scene
    raise RuntimeError(f"could not draw a {kind} with a visible feature in {_MAX_TRIES} tries; "
                       f"check min_arc_snr and min_arc_visibility")


#: Non-lens kinds that have no look-alike feature to show.
_FEATURELESS = ("star", "edge_on_disk", "empty_field")


def _draw_nonlens(kind: str, rng: np.random.Generator, config: SimulationConfig) -> Scene | None:
    ins = config.instrument
    obs = _Observation(config, rng)
    grid = obs.grid
    zp = ins.zero_point_ab
    rec = {"kind": kind, "label": 0}
    defl, feat = obs.fine["deflector"], obs.fine["feature"]
    feature_radius = np.nan

    def massive():
        gal = _draw_massive_elliptical(rng, config)
        rec.update({"deflector_mag": gal["mag"], "deflector_r_eff": gal["r_eff"],
                    "z_lens": gal["z"], "sigma_v": gal["sigma_v"]})
        return gal

    if kind == "spiral":
        mag = rng.uniform(18.5, 22.5)
        rate = float(magnitude_to_rate(mag, zp))
        h = rng.uniform(0.25, 0.9)
        q, phi = rng.uniform(0.4, 1.0), _uniform_angle(rng)
        bulge = rng.uniform(0.1, 0.4)
        cx, cy = rng.normal(0, 0.05, size=2)
        _add_sersic(defl, grid, rate * bulge, cx, cy, h * rng.uniform(0.2, 0.5), rng.uniform(1.5, 4),
                    min(1.0, q + 0.2), phi, whole=True)
        xp, yp = _elliptical_coords(grid.x, grid.y, cx, cy, q, phi)
        r = np.hypot(xp, yp) + 1e-3
        theta = np.arctan2(yp, xp)
        m = int(rng.choice([1, 2, 2, 3]))
        pitch = np.radians(rng.uniform(10, 30))
        phase0 = rng.uniform(0, 2 * np.pi)
        phase = m * (theta - np.log(r / h) / np.tan(pitch)) + phase0
        contrast = rng.uniform(0.4, 1.0)
        arms = np.exp(-r / h) * (1 + contrast * np.cos(phase)) ** 2 * (1 - np.exp(-(r / (0.5 * h)) ** 2))
        # Star-forming knots along the arms: clumpy, arc-like structure.
        knots = np.zeros_like(arms)
        for _ in range(rng.integers(3, 12)):
            rr = h * rng.uniform(0.5, 2.5)
            # on an arm ridge, where the phase is a multiple of 2 pi
            th = np.log(rr / h) / np.tan(pitch) + (2 * np.pi * rng.integers(0, m) - phase0) / m
            kx = cx + rr * np.cos(th) * np.cos(phi) - rr * q * np.sin(th) * np.sin(phi)
            ky = cy + rr * np.cos(th) * np.sin(phi) + rr * q * np.sin(th) * np.cos(phi)
            knots += _gaussian_blob(grid, kx, ky, rng.uniform(0.02, 0.06))
        tmpl = arms / arms.sum() * 0.85 + (knots / knots.sum() * 0.15 if knots.sum() > 0 else 0)
        _add_template(feat, rate * (1 - bulge), tmpl)
        feature_radius = h
        rec["central_mag"] = mag
    elif kind == "ring_galaxy":
        # Collisional and resonance rings: the closest look-alike of an Einstein ring.
        if rng.uniform() < 0.5:
            gal = massive()
            _add_deflector_light(defl, grid, gal)
            cx, cy, core_rate = gal["cx"], gal["cy"], gal["rate"]
        else:
            mag = rng.uniform(19.5, 23.0)
            cx, cy = rng.normal(0, 0.05, size=2)
            core_rate = float(magnitude_to_rate(mag, zp))
            _add_sersic(defl, grid, core_rate, cx, cy, rng.uniform(0.05, 0.3), rng.uniform(1, 4),
                        rng.uniform(0.6, 1), _uniform_angle(rng), whole=True)
            rec["central_mag"] = mag
        feature_radius = rng.uniform(*config.theta_e_range)
        ring = _curved_band(grid, cx, cy, feature_radius, rng.uniform(0.04, 0.15),
                            q=rng.uniform(0.6, 1.0), phi=_uniform_angle(rng))
        ring *= 1 + rng.uniform(0, 0.8) * np.cos(np.arctan2(grid.y - cy, grid.x - cx) - rng.uniform(0, 6.3))
        for _ in range(rng.integers(0, 6)):
            a = rng.uniform(0, 2 * np.pi)
            ring += 3 * _gaussian_blob(grid, cx + feature_radius * np.cos(a),
                                       cy + feature_radius * np.sin(a), rng.uniform(0.02, 0.05))
        ring_mag = float(_draw_magnitudes_power_law(rng, 1, 20.5, 26.0, 0.3)[0])
        _add_template(feat, float(magnitude_to_rate(ring_mag, zp)), ring)
        rec["feature_mag"] = ring_mag
    elif kind == "edge_on_disk":
        mag = rng.uniform(18.5, 22.5)
        rate = float(magnitude_to_rate(mag, zp))
        cx, cy = rng.normal(0, 0.05, size=2)
        phi, q = _uniform_angle(rng), rng.uniform(0.08, 0.25)
        h = rng.uniform(0.3, 1.2)
        bulge = rng.uniform(0.05, 0.3)
        _add_sersic(defl, grid, rate * bulge, cx, cy, h * 0.3, rng.uniform(1, 3), rng.uniform(0.5, 0.9),
                    phi, whole=True)
        disk = np.zeros_like(defl)
        _add_sersic(disk, grid, rate * (1 - bulge), cx, cy, h, 1.0, q, phi, whole=True)
        if rng.uniform() < 0.6:  # a dust lane along the major axis
            xp, yp = _elliptical_coords(grid.x, grid.y, cx, cy, 1.0, phi)
            disk *= 1 - rng.uniform(0.3, 0.8) * np.exp(-0.5 * (yp / (h * q * 0.25)) ** 2)
        defl += disk
        rec["central_mag"] = mag
    elif kind == "merger":
        sep = rng.uniform(0.3, 1.8)
        a = rng.uniform(0, 2 * np.pi)
        mags = rng.uniform(19.0, 23.0, size=2)
        centres = [(-sep / 2 * np.cos(a), -sep / 2 * np.sin(a)), (sep / 2 * np.cos(a), sep / 2 * np.sin(a))]
        tails = np.zeros_like(defl)
        for (cx, cy), m in zip(centres, mags):
            r_eff = rng.uniform(0.1, 0.6)
            _add_sersic(defl, grid, float(magnitude_to_rate(m, zp)), cx, cy, r_eff, rng.uniform(0.7, 4),
                        rng.uniform(0.4, 1), _uniform_angle(rng), whole=True)
            tails += _curved_band(grid, cx, cy, rng.uniform(0.5, 1.8), rng.uniform(0.06, 0.2),
                                  angle=rng.uniform(0, 2 * np.pi), opening=rng.uniform(0.4, 1.2),
                                  radius_slope=rng.uniform(-0.4, 0.4))
        tail_mag = float(min(mags) + rng.uniform(1.5, 5.0))
        _add_template(feat, float(magnitude_to_rate(tail_mag, zp)), tails)
        feature_radius = sep
        rec.update({"central_mag": float(-2.5 * np.log10(np.sum(10 ** (-0.4 * mags)))),
                    "feature_mag": tail_mag})
    elif kind == "companion":
        # A massive galaxy with unlensed neighbours: compact blue knots, a star, or an
        # elongated arclet curved around it by chance (no counter-image, no lensing).
        gal = massive()
        _add_deflector_light(defl, grid, gal)
        n_comp = int(rng.integers(1, 4))
        for i in range(n_comp):
            d = rng.uniform(0.4, 2.5)
            a = rng.uniform(0, 2 * np.pi)
            cx, cy = gal["cx"] + d * np.cos(a), gal["cy"] + d * np.sin(a)
            m = float(_draw_magnitudes_power_law(rng, 1, 21.0, 26.5, 0.3)[0])
            rate = float(magnitude_to_rate(m, zp))
            style = rng.choice(["knot", "star", "arclet"], p=[0.4, 0.2, 0.4])
            if style == "knot":
                _add_sersic(feat, grid, rate, cx, cy, rng.uniform(0.03, 0.2), rng.uniform(0.5, 1.5),
                            rng.uniform(0.3, 1), _uniform_angle(rng))
            elif style == "star":
                grid.add_point(obs.points["feature"], cx, cy, rate)
            else:
                centre_dist = d * rng.uniform(1.0, 2.5)
                arc = _curved_band(grid, cx - centre_dist * np.cos(a), cy - centre_dist * np.sin(a),
                                   centre_dist, rng.uniform(0.03, 0.1), angle=a,
                                   opening=rng.uniform(0.1, 0.35) * d / centre_dist)
                _add_template(feat, rate, arc)
            if i == 0:
                feature_radius, rec["feature_mag"] = d, m
    elif kind == "tidal_features":
        gal = massive()
        _add_deflector_light(defl, grid, gal)
        shells = np.zeros_like(defl)
        for _ in range(rng.integers(1, 4)):
            radius = gal["r_eff"] * rng.uniform(1.0, 3.0) + rng.uniform(0.3, 1.0)
            shells += _curved_band(grid, gal["cx"], gal["cy"], radius, rng.uniform(0.05, 0.15),
                                   q=rng.uniform(0.7, 1), phi=_uniform_angle(rng),
                                   angle=rng.uniform(0, 2 * np.pi), opening=rng.uniform(0.4, 1.5),
                                   sharp_outer_edge=bool(rng.uniform() < 0.7),
                                   radius_slope=rng.choice([0.0, rng.uniform(-0.3, 0.3)]))
            feature_radius = radius
        shell_mag = gal["mag"] + rng.uniform(2.0, 6.0)
        _add_template(feat, float(magnitude_to_rate(shell_mag, zp)), shells)
        rec["feature_mag"] = shell_mag
    elif kind == "star":
        m = rng.uniform(16.0, 23.5)
        grid.add_point(obs.points["deflector"], *rng.normal(0, 0.05, size=2),
                       float(magnitude_to_rate(m, zp)))
        rec["central_mag"] = m
    elif kind == "double_star":
        sep = rng.uniform(0.3, 2.5)
        a = rng.uniform(0, 2 * np.pi)
        m1 = rng.uniform(17.0, 23.5)
        m2 = m1 + rng.uniform(0, 2.0)
        grid.add_point(obs.points["deflector"], -sep / 2 * np.cos(a), -sep / 2 * np.sin(a),
                       float(magnitude_to_rate(m1, zp)))
        grid.add_point(obs.points["feature"], sep / 2 * np.cos(a), sep / 2 * np.sin(a),
                       float(magnitude_to_rate(m2, zp)))
        feature_radius = sep
        rec.update({"central_mag": m1, "feature_mag": m2})
    elif kind == "empty_field":
        pass
    else:  # pragma: no cover - guarded by simulate_scene
        raise ValueError(kind)

    n_field = _render_field(obs.fine["field"], obs.points["field"], grid, rng, config)
    components = obs.rates()
    variance = obs.variance(sum(components.values()))
    rec["feature_snr"] = _arc_snr(components["feature"], variance)
    rec["feature_visibility"] = _visibility(components["feature"],
                                            components["deflector"] + components["field"], variance)
    if kind not in _FEATURELESS and (rec["feature_snr"] < config.min_arc_snr
                                     or rec["feature_visibility"] < config.min_arc_visibility):
        return None  # a look-alike whose feature nobody could see (or that fell off the cutout)
    rec["feature_radius"] = float(feature_radius)
    rec["n_field_objects"] = n_field
    image = _observe(components, rng, obs)
    rec.update(_observing_record(obs))
    return Scene(image=image, components=components, record=rec)


def simulate_scene(kind: str, rng: np.random.Generator, config: SimulationConfig) -> Scene:
    """Simulate one cutout of ``kind`` (a lens kind or a non-lens kind) with ``rng``.

    Returns a :class:`Scene` whose ``image`` is float32 ``(image_size, image_size)`` in e-/s.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (got {type(rng).__name__})")
    if kind in LENS_KINDS:
        return _simulate_lens(kind, rng, config)
    if kind in NONLENS_KINDS:
        return _simulate_nonlens(kind, rng, config)
    raise ValueError(f"kind must be one of {LENS_KINDS + NONLENS_KINDS} (got {kind!r})")
