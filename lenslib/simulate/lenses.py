"""Strong lenses: galaxy-galaxy lenses, lensed quasars, and their unlensed twins.

A lens is a massive elliptical (:mod:`~lenslib.simulate.populations`) with an SIE + external
shear mass model (lenstronomy: ray shooting, the lens equation for point images,
magnifications) and a source placed inside its caustics.  A lens is kept only if its lensed light
passes every cut of the config (magnification, :func:`~lenslib.simulate.observation.arc_snr`,
:func:`~lenslib.simulate.observation.visibility`); otherwise the source, then the whole lens, is
drawn again.  The ``elliptical`` non-lens is a lens drawn by this very code and observed without
its lensed light (:func:`simulate_unlensed_twin`).  :func:`render_lens_system` renders a lens of
given parameters, for figures and tests.
"""

from __future__ import annotations

import numpy as np
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver
from lenstronomy.Util.param_util import phi_q2_ellipticity

from ..config import SimulationConfig
from ..instrument import magnitude_to_rate
from .fields import render_field
from .light import SERSIC, add_sersic, sersic_kwargs
from .observation import Grid, Observation, Scene, arc_snr, blurred, visibility
from .populations import (
    add_deflector_light,
    draw_galaxy_source,
    draw_massive_elliptical,
    draw_quasar_source,
    einstein_radius,
    uniform_angle,
)

#: Draws of a scene before giving up on its cuts (lenses and non-lenses alike).
MAX_TRIES = 200

_LENS_MODEL = LensModel(["SIE", "SHEAR"])
_SOLVER = LensEquationSolver(_LENS_MODEL)

#: What an unlensed twin keeps of its lens's record: the deflector and the observation.
_TWIN_FIELDS = ("z_lens", "sigma_v", "deflector_mag", "deflector_r_eff", "n_field_objects",
                "exposure_time", "sky_brightness", "has_artifact")


def simulate_lens(kind: str, rng: np.random.Generator, config: SimulationConfig, *,
                  lensed_light: bool = True) -> Scene:
    """A lens of ``kind``; with ``lensed_light=False`` the same draw observed without the light of
    its source (the lens population's unlensed twin, see :func:`simulate_unlensed_twin`)."""
    for _ in range(MAX_TRIES):
        gal = draw_massive_elliptical(rng, config)
        z_s = float(np.clip(rng.normal(config.source_z_mean, 0.6), gal["z"] + 0.3, 4.0))
        theta_e = einstein_radius(gal["sigma_v"], gal["z"], z_s)
        if not config.theta_e_range[0] <= theta_e <= config.theta_e_range[1]:
            continue
        obs = Observation(config, rng)
        grid = obs.grid
        lens_kwargs, q_mass, gamma = _lens_model_kwargs(gal, rng, theta_e)
        add_deflector_light(obs.fine["deflector"], grid, gal)
        n_field = render_field(obs.fine["field"], obs.points["field"], grid, rng, config)
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
    raise RuntimeError(f"could not draw a detectable {kind} lens in {MAX_TRIES} tries; "
                       f"check theta_e_range, min_arc_snr and min_arc_visibility")


def simulate_unlensed_twin(rng: np.random.Generator, config: SimulationConfig) -> Scene:
    """A non-lens from the lenses' own population: a lens drawn by the very same code (its kind
    from ``config.lens_kinds``, its deflector, mass and a source that passes every cut, so the
    deflector distribution is the lenses' to the last selection effect), observed without the
    lensed light.  Only the lensed light tells a lens from its twin."""
    names = [k for k, _ in config.lens_kinds]
    weights = np.array([w for _, w in config.lens_kinds], dtype=float)
    lens_kind = names[rng.choice(len(names), p=weights / weights.sum())]
    scene = simulate_lens(lens_kind, rng, config, lensed_light=False)
    record = {"kind": "elliptical", "label": 0, "feature_snr": 0.0, "feature_visibility": 0.0}
    record.update({k: scene.record[k] for k in _TWIN_FIELDS + ("feature_snr", "feature_visibility")
                   if k in scene.record})
    return Scene(image=scene.image, components=scene.components, record=record)


def _lens_model_kwargs(gal, rng, theta_e):
    """SIE + shear keyword arguments: the mass follows the light's shape within 0.1 in axis ratio
    and 10 degrees in angle; the external shear is up to 0.08."""
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


def _try_source(kind, rng, config, obs, gal, lens_kwargs, theta_e, base, base_total, beta_x, beta_y,
                lensed_light=True):
    """One source behind the lens ``gal``: the finished scene, or None if it fails a cut."""
    ins, grid = config.instrument, obs.grid
    # Source centre uniform over a disc that covers the caustics; keep it only if multiply imaged.
    r_beta = theta_e * np.sqrt(rng.uniform()) * 0.9
    a_beta = rng.uniform(0, 2 * np.pi)
    sx, sy = gal["cx"] + r_beta * np.cos(a_beta), gal["cy"] + r_beta * np.sin(a_beta)
    x_img, y_img = _SOLVER.image_position_from_source(sx, sy, lens_kwargs, solver="analytical")
    if len(x_img) < 2:
        return None
    if kind == "galaxy_galaxy":
        mag, point_mag, parts = draw_galaxy_source(rng, config, sx, sy)
    else:  # lensed quasar: a point source in a host galaxy
        mag, point_mag, parts = draw_quasar_source(rng, sx, sy)
    point = None
    if kind == "lensed_quasar":
        # Microlensing and substructure perturb flux ratios: 0.2 mag log-normal per image.
        point = (point_mag, x_img, y_img, 10 ** (-0.4 * rng.normal(0, 0.2, size=len(x_img))))
    lensed_fine, lensed_points, lensed_total, unlensed_total = _render_source(
        grid, ins, lens_kwargs, beta_x, beta_y, mag, parts, point)
    magnification = lensed_total / unlensed_total
    if magnification < config.min_magnification:
        return None
    lensed = blurred(grid, ins, grid.bin(lensed_fine) + lensed_points)
    variance = obs.variance(base_total + lensed)
    snr = arc_snr(lensed, variance)
    if snr < config.min_arc_snr:
        return None
    arc_visibility = visibility(lensed, base_total, variance)
    if arc_visibility < config.min_arc_visibility:
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
        feature_record = {"feature_snr": arc_snr(neighbour, neighbour_variance),
                          "feature_visibility": visibility(neighbour, base_total, neighbour_variance)}
    image = obs.observe(components, rng)
    record = {
        "source_mag": float(mag), "point_source_mag": float(point_mag),
        "source_x": float(sx), "source_y": float(sy), "magnification": float(magnification),
        "n_source_images": n_img, "arc_snr": snr, "arc_visibility": arc_visibility,
        "arc_coverage": coverage, "image_config": config_name, **feature_record,
    }
    record.update(obs.record())
    return Scene(image=image, components=components, record=record)


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
        kw = sersic_kwargs(cx, cy, re, nn, qq, pp)
        kw["amp"] = rate * frac / SERSIC.total_flux([kw])[0]
        near = np.hypot(beta_x - cx, beta_y - cy) < max(10 * re, 0.3)
        if near.any():
            values = SERSIC.surface_brightness(beta_x[near], beta_y[near], [kw])
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


def _azimuthal_coverage(signal, variance, grid: Grid, cx, cy, theta_e, n_sectors=24) -> float:
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


def _stand_in_neighbour(rng, config, grid, gal, theta_e, rate, r_eff):
    """An unlensed galaxy where a twin's arcs would have been: the lensed light's flux (e-/s) and
    surface brightness (the source's size grown by the square root of its magnification), at
    0.7-1.3 Einstein radii from the deflector, but one undistorted image, not arcs and counter-images.
    Only the lensing morphology, not "extra light near a massive galaxy", tells the lens from it."""
    radius, angle = theta_e * rng.uniform(0.7, 1.3), rng.uniform(0, 2 * np.pi)
    fine = np.zeros_like(grid.x)
    add_sersic(fine, grid, rate, gal["cx"] + radius * np.cos(angle), gal["cy"] + radius * np.sin(angle),
               float(np.clip(r_eff, 0.03, 1.0)), 1.0, rng.uniform(0.4, 1.0), uniform_angle(rng))
    return blurred(grid, config.instrument, grid.bin(fine))


# --------------------------------------------------------------------------------------------
# A lens of given parameters
# --------------------------------------------------------------------------------------------
def sie_lens_kwargs(*, theta_e: float, q: float, phi: float = 0.0,
                    shear: tuple[float, float] = (0.0, 0.0)) -> list[dict]:
    """lenstronomy's keyword arguments for a centred SIE of Einstein radius ``theta_e`` (arcsec),
    axis ratio ``q`` and position angle ``phi`` (radians), with external shear ``(gamma1, gamma2)``
    (the lens model ``["SIE", "SHEAR"]``); each parameter checked, and named when refused."""
    import math

    from ..errors import InputError

    def real(value) -> bool:
        return (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
                and math.isfinite(value))

    if not (real(theta_e) and theta_e > 0):
        raise InputError(f"theta_e, the Einstein radius, must be a positive number of arcsec "
                         f"(got {theta_e!r})")
    if not (real(q) and 0 < q <= 1):
        raise InputError(f"the axis ratio q must be a number in (0, 1] (got {q!r})")
    if not real(phi):
        raise InputError(f"the position angle phi must be a finite number of radians (got {phi!r})")
    if not (isinstance(shear, (tuple, list, np.ndarray)) and len(shear) == 2 and all(map(real, shear))
            and math.hypot(*shear) < 1):
        raise InputError(f"shear must be a pair (gamma1, gamma2) of numbers of magnitude below 1 "
                         f"(got {shear!r})")
    e1, e2 = phi_q2_ellipticity(phi, q)
    return [{"theta_E": float(theta_e), "e1": e1, "e2": e2, "center_x": 0.0, "center_y": 0.0},
            {"gamma1": float(shear[0]), "gamma2": float(shear[1]), "ra_0": 0.0, "dec_0": 0.0}]


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
    lens_kwargs = sie_lens_kwargs(theta_e=theta_e, q=q, phi=phi, shear=shear)
    ins = config.instrument
    obs = Observation(config, rng)
    grid = obs.grid
    add_sersic(obs.fine["deflector"], grid, float(magnitude_to_rate(deflector_mag, ins.zero_point_ab)),
               0.0, 0.0, deflector_r_eff, 4.0, q, phi, whole=True)
    n_field = render_field(obs.fine["field"], obs.points["field"], grid, rng, config) if with_field else 0
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
    image = obs.observe(components, rng)
    record = {"kind": "lensed_quasar" if point is not None else "galaxy_galaxy", "label": 1,
              "theta_e": theta_e, "source_x": source_x, "source_y": source_y,
              "magnification": lensed_total / unlensed_total, "n_source_images": len(x_img),
              "arc_snr": arc_snr(components["lensed"], variance),
              "n_field_objects": n_field, "lens_kwargs": lens_kwargs}
    record.update(obs.record())
    return Scene(image=image, components=components, record=record)


def critical_curves_and_caustics(lens_kwargs: list[dict], *, window: float = 6.0,
                                 grid_scale: float = 0.01) -> tuple[list, list]:
    """Critical curves (image plane) and caustics (source plane) of an SIE + shear lens, from
    lenstronomy: lists of (x, y) arrays in arcsec."""
    from lenstronomy.LensModel.lens_model_extensions import LensModelExtensions

    ext = LensModelExtensions(_LENS_MODEL)
    ra_c, dec_c, ra_k, dec_k = ext.critical_curve_caustics(lens_kwargs, compute_window=window,
                                                            grid_scale=grid_scale)
    return list(zip(ra_c, dec_c)), list(zip(ra_k, dec_k))
