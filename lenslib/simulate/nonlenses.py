"""Non-lenses: the galaxies, stars and blends a lens finder must not call lenses.

Each kind has one drawing function here, found through :data:`NONLENS_DRAWERS`.  A drawer paints
its object into the ``deflector`` (the central galaxy or star) and ``feature`` (the look-alike:
ring, arclet, shell, tail, arm, second star) buffers of an
:class:`~lenslib.simulate.observation.Observation`, adds what it drew to the record, and returns
the feature's distance from the centre (NaN when there is none).  :func:`simulate_nonlens` then
adds the field and keeps the scene only if its feature is as visible as a lens's arcs must be.
The ``elliptical`` kind is a lens's unlensed twin, drawn in :mod:`lenslib.simulate.lenses`.

Morphologies lenstronomy has no profile for (spiral arms, collisional rings, tidal shells and
tails, curved unlensed arclets, dust lanes) are the analytic maps of :mod:`lenslib.simulate.light`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import SimulationConfig
from ..instrument import magnitude_to_rate
from .fields import render_field
from .lenses import MAX_TRIES, simulate_unlensed_twin
from .light import add_sersic, add_template, curved_band, elliptical_coords, gaussian_blob
from .observation import Observation, Scene, arc_snr, visibility
from .populations import (
    add_deflector_light,
    draw_magnitudes_power_law,
    draw_massive_elliptical,
    uniform_angle,
)

#: Non-lens kinds that have no look-alike feature to show.
_FEATURELESS = ("star", "edge_on_disk", "empty_field")


def simulate_nonlens(kind: str, rng: np.random.Generator, config: SimulationConfig) -> Scene:
    """A non-lens; a look-alike feature (ring, arclet, shell, tail, arm, second star) must be
    as visible as a lens's arcs must be (``min_arc_snr`` and ``min_arc_visibility``), or the
    scene is drawn again.  An ``elliptical`` is a lens's unlensed twin."""
    if kind == "elliptical":
        return simulate_unlensed_twin(rng, config)
    for _ in range(MAX_TRIES):
        scene = _draw_nonlens(kind, rng, config)
        if scene is not None:
            return scene
    raise RuntimeError(f"could not draw a {kind} with a visible feature in {MAX_TRIES} tries; "
                       f"check min_arc_snr and min_arc_visibility")


def _draw_nonlens(kind: str, rng: np.random.Generator, config: SimulationConfig) -> Scene | None:
    """One draw of a non-lens of ``kind`` in its field; None if its feature is not visible."""
    obs = Observation(config, rng)
    record = {"kind": kind, "label": 0}
    feature_radius = NONLENS_DRAWERS[kind](rng, obs, record)
    n_field = render_field(obs.fine["field"], obs.points["field"], obs.grid, rng, config)
    components = obs.rates()
    variance = obs.variance(sum(components.values()))
    record["feature_snr"] = arc_snr(components["feature"], variance)
    record["feature_visibility"] = visibility(components["feature"],
                                              components["deflector"] + components["field"], variance)
    if kind not in _FEATURELESS and (record["feature_snr"] < config.min_arc_snr
                                     or record["feature_visibility"] < config.min_arc_visibility):
        return None  # a look-alike whose feature nobody could see (or that fell off the cutout)
    record["feature_radius"] = float(feature_radius)
    record["n_field_objects"] = n_field
    image = obs.observe(components, rng)
    record.update(obs.record())
    return Scene(image=image, components=components, record=record)


def _massive_galaxy(rng: np.random.Generator, obs: Observation, record: dict) -> dict:
    """A massive elliptical from the deflector population, painted as the central galaxy."""
    gal = draw_massive_elliptical(rng, obs.config)
    record.update({"deflector_mag": gal["mag"], "deflector_r_eff": gal["r_eff"],
                   "z_lens": gal["z"], "sigma_v": gal["sigma_v"]})
    add_deflector_light(obs.fine["deflector"], obs.grid, gal)
    return gal


# --------------------------------------------------------------------------------------------
# One drawer per kind: (rng, observation, record) -> the feature's radius in arcsec (NaN: none)
# --------------------------------------------------------------------------------------------
def _draw_spiral(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """A spiral: a small bulge and logarithmic arms studded with star-forming knots."""
    grid, zp = obs.grid, obs.config.instrument.zero_point_ab
    mag = rng.uniform(18.5, 22.5)
    rate = float(magnitude_to_rate(mag, zp))
    h = rng.uniform(0.25, 0.9)
    q, phi = rng.uniform(0.4, 1.0), uniform_angle(rng)
    bulge = rng.uniform(0.1, 0.4)
    cx, cy = rng.normal(0, 0.05, size=2)
    add_sersic(obs.fine["deflector"], grid, rate * bulge, cx, cy, h * rng.uniform(0.2, 0.5),
               rng.uniform(1.5, 4), min(1.0, q + 0.2), phi, whole=True)
    xp, yp = elliptical_coords(grid.x, grid.y, cx, cy, q, phi)
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
        knots += gaussian_blob(grid, kx, ky, rng.uniform(0.02, 0.06))
    tmpl = arms / arms.sum() * 0.85 + (knots / knots.sum() * 0.15 if knots.sum() > 0 else 0)
    add_template(obs.fine["feature"], rate * (1 - bulge), tmpl)
    record["central_mag"] = mag
    return h


def _draw_ring_galaxy(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """Collisional and resonance rings: the closest look-alike of an Einstein ring, around a
    massive elliptical (half of them) or a smaller galaxy."""
    grid, zp = obs.grid, obs.config.instrument.zero_point_ab
    if rng.uniform() < 0.5:
        gal = _massive_galaxy(rng, obs, record)
        cx, cy = gal["cx"], gal["cy"]
    else:
        mag = rng.uniform(19.5, 23.0)
        cx, cy = rng.normal(0, 0.05, size=2)
        core_rate = float(magnitude_to_rate(mag, zp))
        add_sersic(obs.fine["deflector"], grid, core_rate, cx, cy, rng.uniform(0.05, 0.3), rng.uniform(1, 4),
                   rng.uniform(0.6, 1), uniform_angle(rng), whole=True)
        record["central_mag"] = mag
    radius = rng.uniform(*obs.config.theta_e_range)
    ring = curved_band(grid, cx, cy, radius, rng.uniform(0.04, 0.15),
                       q=rng.uniform(0.6, 1.0), phi=uniform_angle(rng))
    ring *= 1 + rng.uniform(0, 0.8) * np.cos(np.arctan2(grid.y - cy, grid.x - cx) - rng.uniform(0, 6.3))
    for _ in range(rng.integers(0, 6)):
        a = rng.uniform(0, 2 * np.pi)
        ring += 3 * gaussian_blob(grid, cx + radius * np.cos(a), cy + radius * np.sin(a),
                                  rng.uniform(0.02, 0.05))
    ring_mag = float(draw_magnitudes_power_law(rng, 1, 20.5, 26.0, 0.3)[0])
    add_template(obs.fine["feature"], float(magnitude_to_rate(ring_mag, zp)), ring)
    record["feature_mag"] = ring_mag
    return radius


def _draw_edge_on_disk(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """A disk seen edge on, most with a dust lane along its major axis: no look-alike feature."""
    grid, zp = obs.grid, obs.config.instrument.zero_point_ab
    defl = obs.fine["deflector"]
    mag = rng.uniform(18.5, 22.5)
    rate = float(magnitude_to_rate(mag, zp))
    cx, cy = rng.normal(0, 0.05, size=2)
    phi, q = uniform_angle(rng), rng.uniform(0.08, 0.25)
    h = rng.uniform(0.3, 1.2)
    bulge = rng.uniform(0.05, 0.3)
    add_sersic(defl, grid, rate * bulge, cx, cy, h * 0.3, rng.uniform(1, 3), rng.uniform(0.5, 0.9),
               phi, whole=True)
    disk = np.zeros_like(defl)
    add_sersic(disk, grid, rate * (1 - bulge), cx, cy, h, 1.0, q, phi, whole=True)
    if rng.uniform() < 0.6:  # a dust lane along the major axis
        xp, yp = elliptical_coords(grid.x, grid.y, cx, cy, 1.0, phi)
        disk *= 1 - rng.uniform(0.3, 0.8) * np.exp(-0.5 * (yp / (h * q * 0.25)) ** 2)
    defl += disk
    record["central_mag"] = mag
    return np.nan


def _draw_merger(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """Two galaxies 0.3-1.8 arcsec apart, each trailing a curved tidal tail."""
    grid, zp = obs.grid, obs.config.instrument.zero_point_ab
    sep = rng.uniform(0.3, 1.8)
    a = rng.uniform(0, 2 * np.pi)
    mags = rng.uniform(19.0, 23.0, size=2)
    centres = [(-sep / 2 * np.cos(a), -sep / 2 * np.sin(a)), (sep / 2 * np.cos(a), sep / 2 * np.sin(a))]
    tails = np.zeros_like(grid.x)
    for (cx, cy), m in zip(centres, mags):
        r_eff = rng.uniform(0.1, 0.6)
        add_sersic(obs.fine["deflector"], grid, float(magnitude_to_rate(m, zp)), cx, cy, r_eff,
                   rng.uniform(0.7, 4), rng.uniform(0.4, 1), uniform_angle(rng), whole=True)
        tails += curved_band(grid, cx, cy, rng.uniform(0.5, 1.8), rng.uniform(0.06, 0.2),
                             angle=rng.uniform(0, 2 * np.pi), opening=rng.uniform(0.4, 1.2),
                             radius_slope=rng.uniform(-0.4, 0.4))
    tail_mag = float(min(mags) + rng.uniform(1.5, 5.0))
    add_template(obs.fine["feature"], float(magnitude_to_rate(tail_mag, zp)), tails)
    record.update({"central_mag": float(-2.5 * np.log10(np.sum(10 ** (-0.4 * mags)))),
                   "feature_mag": tail_mag})
    return sep


def _draw_companion(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """A massive galaxy with unlensed neighbours: compact blue knots, a star, or an elongated
    arclet curved around it by chance (no counter-image, no lensing)."""
    grid, zp = obs.grid, obs.config.instrument.zero_point_ab
    feat = obs.fine["feature"]
    gal = _massive_galaxy(rng, obs, record)
    feature_radius = np.nan
    n_comp = int(rng.integers(1, 4))
    for i in range(n_comp):
        d = rng.uniform(0.4, 2.5)
        a = rng.uniform(0, 2 * np.pi)
        cx, cy = gal["cx"] + d * np.cos(a), gal["cy"] + d * np.sin(a)
        m = float(draw_magnitudes_power_law(rng, 1, 21.0, 26.5, 0.3)[0])
        rate = float(magnitude_to_rate(m, zp))
        style = rng.choice(["knot", "star", "arclet"], p=[0.4, 0.2, 0.4])
        if style == "knot":
            add_sersic(feat, grid, rate, cx, cy, rng.uniform(0.03, 0.2), rng.uniform(0.5, 1.5),
                       rng.uniform(0.3, 1), uniform_angle(rng))
        elif style == "star":
            grid.add_point(obs.points["feature"], cx, cy, rate)
        else:
            centre_dist = d * rng.uniform(1.0, 2.5)
            arc = curved_band(grid, cx - centre_dist * np.cos(a), cy - centre_dist * np.sin(a),
                              centre_dist, rng.uniform(0.03, 0.1), angle=a,
                              opening=rng.uniform(0.1, 0.35) * d / centre_dist)
            add_template(feat, rate, arc)
        if i == 0:
            feature_radius, record["feature_mag"] = d, m
    return feature_radius


def _draw_tidal_features(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """A massive galaxy with one to three tidal shells or tails from a past merger."""
    grid, zp = obs.grid, obs.config.instrument.zero_point_ab
    gal = _massive_galaxy(rng, obs, record)
    feature_radius = np.nan
    shells = np.zeros_like(grid.x)
    for _ in range(rng.integers(1, 4)):
        radius = gal["r_eff"] * rng.uniform(1.0, 3.0) + rng.uniform(0.3, 1.0)
        shells += curved_band(grid, gal["cx"], gal["cy"], radius, rng.uniform(0.05, 0.15),
                              q=rng.uniform(0.7, 1), phi=uniform_angle(rng),
                              angle=rng.uniform(0, 2 * np.pi), opening=rng.uniform(0.4, 1.5),
                              sharp_outer_edge=bool(rng.uniform() < 0.7),
                              radius_slope=rng.choice([0.0, rng.uniform(-0.3, 0.3)]))
        feature_radius = radius
    shell_mag = gal["mag"] + rng.uniform(2.0, 6.0)
    add_template(obs.fine["feature"], float(magnitude_to_rate(shell_mag, zp)), shells)
    record["feature_mag"] = shell_mag
    return feature_radius


def _draw_star(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """A single star near the centre: no look-alike feature."""
    m = rng.uniform(16.0, 23.5)
    obs.grid.add_point(obs.points["deflector"], *rng.normal(0, 0.05, size=2),
                       float(magnitude_to_rate(m, obs.config.instrument.zero_point_ab)))
    record["central_mag"] = m
    return np.nan


def _draw_double_star(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """Two stars 0.3-2.5 arcsec apart, the second up to 2 mag fainter: a false double image."""
    grid, zp = obs.grid, obs.config.instrument.zero_point_ab
    sep = rng.uniform(0.3, 2.5)
    a = rng.uniform(0, 2 * np.pi)
    m1 = rng.uniform(17.0, 23.5)
    m2 = m1 + rng.uniform(0, 2.0)
    grid.add_point(obs.points["deflector"], -sep / 2 * np.cos(a), -sep / 2 * np.sin(a),
                   float(magnitude_to_rate(m1, zp)))
    grid.add_point(obs.points["feature"], sep / 2 * np.cos(a), sep / 2 * np.sin(a),
                   float(magnitude_to_rate(m2, zp)))
    record.update({"central_mag": m1, "feature_mag": m2})
    return sep


def _draw_empty_field(rng: np.random.Generator, obs: Observation, record: dict) -> float:
    """Nothing at the centre: the field alone."""
    return np.nan


#: How each non-lens kind but ``elliptical`` (a lens's twin) is drawn.
NONLENS_DRAWERS: dict[str, Callable[[np.random.Generator, Observation, dict], float]] = {
    "spiral": _draw_spiral,
    "ring_galaxy": _draw_ring_galaxy,
    "edge_on_disk": _draw_edge_on_disk,
    "merger": _draw_merger,
    "companion": _draw_companion,
    "tidal_features": _draw_tidal_features,
    "star": _draw_star,
    "double_star": _draw_double_star,
    "empty_field": _draw_empty_field,
}
