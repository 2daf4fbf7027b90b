"""Surface-brightness shapes painted on a :class:`~lenslib.simulate.observation.Grid`.

Elliptical Sersic galaxies come from lenstronomy (:func:`add_sersic`).  The morphologies it has
no profile for (spiral arms, collisional rings, tidal shells and tails, curved unlensed arclets,
star-forming knots) are small analytic maps here (:func:`curved_band`, :func:`gaussian_blob`),
scaled to a total rate by :func:`add_template`.  Nothing here draws random numbers.
"""

from __future__ import annotations

import numpy as np
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Util.param_util import phi_q2_ellipticity

from .observation import Grid

SERSIC = LightModel(["SERSIC_ELLIPSE"])


def sersic_kwargs(cx, cy, r_eff, n, q, phi) -> dict:
    """lenstronomy's keyword arguments of a unit-amplitude elliptical Sersic profile."""
    e1, e2 = phi_q2_ellipticity(phi, q)
    return {"amp": 1.0, "R_sersic": r_eff, "n_sersic": n, "e1": e1, "e2": e2,
            "center_x": cx, "center_y": cy}


def add_sersic(fine: np.ndarray, grid: Grid, rate, cx, cy, r_eff, n, q, phi, *, whole: bool = False) -> None:
    """Add an elliptical Sersic galaxy of total ``rate`` e-/s (lenstronomy's profile)."""
    kw = sersic_kwargs(cx, cy, r_eff, n, q, phi)
    amp = rate / SERSIC.total_flux([kw])[0]
    radius = None if whole else max(0.6, 10.0 * r_eff)
    sy, sx = grid.box(cx, cy, radius)
    xs, ys = grid.x[sy, sx], grid.y[sy, sx]
    if xs.size == 0:
        return
    kw["amp"] = amp
    fine[sy, sx] += SERSIC.surface_brightness(xs, ys, [kw]) * grid.subpixel_area


def elliptical_coords(x, y, cx, cy, q, phi):
    """Coordinates along the major axis and (stretched by 1/q) the minor axis of an ellipse."""
    c, s = np.cos(phi), np.sin(phi)
    dx, dy = x - cx, y - cy
    xp = c * dx + s * dy
    yp = -s * dx + c * dy
    return xp, yp / q


def add_template(fine: np.ndarray, rate, values: np.ndarray) -> None:
    """Scale an arbitrary non-negative surface-brightness map to a total of ``rate`` e-/s."""
    total = values.sum()
    if total > 0:
        fine += values * (rate / total)


def curved_band(grid: Grid, cx, cy, radius, width, *, q=1.0, phi=0.0, angle=0.0, opening=None,
                radius_slope=0.0, sharp_outer_edge=False) -> np.ndarray:
    """Light along an (elliptical) circle around (cx, cy): rings, shells, tails and arclets.

    ``opening`` is the Gaussian angular half-width in radians (None: a full ring);
    ``radius_slope`` makes the radius grow with angle (a tidal tail);
    ``sharp_outer_edge`` gives the steep outer cut-off of a tidal shell.
    """
    xp, yp = elliptical_coords(grid.x, grid.y, cx, cy, q, phi)
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


def gaussian_blob(grid: Grid, cx, cy, sigma) -> np.ndarray:
    """A unit-peak circular Gaussian (a star-forming knot), zero beyond five sigma."""
    sy, sx = grid.box(cx, cy, 5 * sigma + 2 * grid.step)
    out = np.zeros_like(grid.x)
    out[sy, sx] = np.exp(-0.5 * ((grid.x[sy, sx] - cx) ** 2 + (grid.y[sy, sx] - cy) ** 2) / sigma**2)
    return out
