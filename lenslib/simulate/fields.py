"""The field: fainter and brighter galaxies and stars around every cutout, lens or not.

Every scene sits in a field drawn from I-band number counts, so that "more than one object in the
stamp" is never the lens signature.  Drawing (:func:`draw_field`) and painting
(:func:`paint_field`) are apart so that :mod:`lenslib.mosaic` can draw one field over a whole
survey image and paint it chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import SimulationConfig
from ..instrument import magnitude_to_rate
from .light import add_sersic
from .observation import Grid
from .populations import draw_magnitudes_power_law, uniform_angle


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


def draw_field(rng: np.random.Generator, config: SimulationConfig, width: float, height: float) -> Field:
    """Draw the field galaxies (I-band number counts) and stars over ``width`` x ``height``
    arcsec; see :func:`paint_field` to render them."""
    ins = config.instrument
    area_deg2 = (width / 3600.0) * (height / 3600.0)
    m_lo, m_hi = config.field_mag_range
    slope = config.field_count_slope
    n_expected = config.field_density_at_24 * area_deg2 * (10 ** (slope * (m_hi - 24)) -
                                                           10 ** (slope * (m_lo - 24)))
    n_gal = rng.poisson(n_expected)
    mags = draw_magnitudes_power_law(rng, n_gal, m_lo, m_hi, slope)
    low, high = (-width / 2, -height / 2), (width / 2, height / 2)
    components = []
    for mag in mags:
        cx, cy = rng.uniform(low, high)
        r_eff = float(np.clip(0.3 * 10 ** (-0.08 * (mag - 22)) * 10 ** rng.normal(0, 0.2), 0.03, 1.5))
        n = rng.uniform(2.5, 4.5) if rng.uniform() < 0.2 else rng.uniform(0.5, 2.5)
        rate = float(magnitude_to_rate(mag, ins.zero_point_ab))
        clumps = rng.integers(1, 4) if rng.uniform() < 0.25 else 0
        q = rng.uniform(0.25, 1.0)
        components.append((rate * (1 - 0.1 * clumps), cx, cy, r_eff, n, q, uniform_angle(rng)))
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


def paint_field(field: Field, fine: np.ndarray, native_points: np.ndarray, grid: Grid) -> None:
    """Add ``field``'s galaxies to the supersampled buffer ``fine`` and its stars to the
    native-resolution ``native_points`` of ``grid`` (objects off the grid add nothing)."""
    for rate, cx, cy, r_eff, n, q, phi in field.galaxies:
        add_sersic(fine, grid, rate, cx, cy, r_eff, n, q, phi)
    for cx, cy, rate in field.stars:
        grid.add_point(native_points, cx, cy, rate)


def render_field(fine: np.ndarray, native_points: np.ndarray, grid: Grid, rng: np.random.Generator,
                 config: SimulationConfig) -> int:
    """Field galaxies and stars at random positions around one cutout, partly cut by the edges;
    returns how many objects were drawn."""
    side = grid.n_native * config.instrument.pixel_scale + 2.0  # objects up to 1" outside shine in
    field = draw_field(rng, config, side, side)
    paint_field(field, fine, native_points, grid)
    return field.n_objects
