"""Who is in the sky: the deflector population, lensed sources, and the cosmology that links them.

Massive early-type galaxies (:func:`draw_massive_elliptical`) are the lenses' deflectors and the
centres of several look-alikes alike; :func:`einstein_radius` turns a velocity dispersion and two
redshifts into an Einstein radius through astropy's Planck 2018 cosmology; the lensed sources
(:func:`draw_galaxy_source`, :func:`draw_quasar_source`) and the field follow I-band number
counts (:func:`draw_magnitudes_power_law`).  The field itself is drawn in
:mod:`lenslib.simulate.fields`.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy import constants as const
from astropy.cosmology import Planck18

from ..config import SimulationConfig
from ..instrument import magnitude_to_rate
from .light import add_sersic
from .observation import Grid

_ARCSEC_PER_RADIAN = u.rad.to(u.arcsec)  # 206264.806...
_C_KM_S = const.c.to_value("km/s")


def uniform_angle(rng: np.random.Generator) -> float:
    """A position angle uniform in [0, pi) radians."""
    return rng.uniform(0, np.pi)


def draw_magnitudes_power_law(rng: np.random.Generator, n: int, m_lo: float, m_hi: float,
                              slope: float) -> np.ndarray:
    """Magnitudes with dN/dm proportional to 10**(slope m) between m_lo and m_hi."""
    a, b = 10 ** (slope * m_lo), 10 ** (slope * m_hi)
    return np.log10(a + rng.uniform(size=n) * (b - a)) / slope


# --------------------------------------------------------------------------------------------
# Deflectors
# --------------------------------------------------------------------------------------------
def draw_massive_elliptical(rng: np.random.Generator, config: SimulationConfig) -> dict:
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
        "q": float(rng.uniform(0.55, 1.0)), "phi": uniform_angle(rng),
        "cx": float(rng.normal(0, 0.05)), "cy": float(rng.normal(0, 0.05)),
        "disk_fraction": float(rng.uniform(0.2, 0.5)) if rng.uniform() < 0.4 else 0.0,
        "disk_scale": float(rng.uniform(1.2, 2.0)), "disk_q": float(rng.uniform(0.25, 0.7)),
    }


def add_deflector_light(fine: np.ndarray, grid: Grid, gal: dict) -> None:
    """A massive galaxy's light: its Sersic bulge and, for a lenticular, its exponential disk."""
    disk_fraction = gal["disk_fraction"]
    add_sersic(fine, grid, gal["rate"] * (1 - disk_fraction), gal["cx"], gal["cy"], gal["r_eff"],
               gal["n"], gal["q"], gal["phi"], whole=True)
    if disk_fraction > 0:
        add_sersic(fine, grid, gal["rate"] * disk_fraction, gal["cx"], gal["cy"],
                   gal["r_eff"] * gal["disk_scale"], 1.0, gal["disk_q"], gal["phi"], whole=True)


def einstein_radius(sigma_v: float, z_lens: float, z_source: float) -> float:
    """SIS Einstein radius in arcsec: 4 pi (sigma/c)^2 D_ls / D_s."""
    d_ls = Planck18.angular_diameter_distance(z_lens, z_source).value
    d_s = Planck18.angular_diameter_distance(z_source).value
    return 4 * np.pi * (sigma_v / _C_KM_S) ** 2 * d_ls / d_s * _ARCSEC_PER_RADIAN


# --------------------------------------------------------------------------------------------
# Lensed sources: (magnitude, point-source magnitude, Sersic parts (flux fraction, x, y, R_e, n, q, phi))
# --------------------------------------------------------------------------------------------
def draw_galaxy_source(rng: np.random.Generator, config: SimulationConfig, sx: float,
                       sy: float) -> tuple[float, float, list[tuple]]:
    """A star-forming galaxy at (sx, sy): a disk and up to four compact clumps, no point source."""
    # Faint sources outnumber bright ones as in I-band counts (dN/dm ~ 10^(0.3 m)); the
    # detectability cut of the lens then keeps many lenses near the threshold, as real samples are.
    mag = float(draw_magnitudes_power_law(rng, 1, *config.source_mag_range, 0.3)[0])
    r_eff = rng.uniform(*config.source_r_eff_range)
    n = rng.uniform(0.5, 2.0)
    q, phi = rng.uniform(0.3, 1.0), uniform_angle(rng)
    n_clumps = rng.integers(0, 5)
    clump_fraction = rng.uniform(0.05, 0.2, size=n_clumps)
    parts = [(1 - clump_fraction.sum(), sx, sy, r_eff, n, q, phi)]
    for f in clump_fraction:
        off = rng.normal(0, r_eff, size=2)
        parts.append((f, sx + off[0], sy + off[1], rng.uniform(0.015, 0.05), 1.0, 1.0, 0.0))
    return mag, np.nan, parts


def draw_quasar_source(rng: np.random.Generator, sx: float, sy: float) -> tuple[float, float, list[tuple]]:
    """A quasar at (sx, sy) in a host galaxy 0.3-2.5 mag fainter than it."""
    point_mag = float(draw_magnitudes_power_law(rng, 1, 19.0, 25.0, 0.3)[0])
    mag = point_mag + rng.uniform(0.3, 2.5)
    parts = [(1.0, sx, sy, rng.uniform(0.08, 0.4), rng.uniform(1.0, 4.0), rng.uniform(0.4, 1.0),
              uniform_angle(rng))]
    return mag, point_mag, parts
