"""One simulated cutout at a time: strong lenses and the non-lenses that look like them.

Lensing physics (ray shooting through an SIE with external shear, the lens equation for point
images, magnifications) and the Sersic light profiles come from lenstronomy; Einstein radii come
from velocity dispersions and redshifts through astropy's Planck 2018 cosmology.

Every cutout sits in a field of fainter and brighter galaxies and stars drawn from I-band number
counts, for lenses and non-lenses alike, so that "more than one object in the stamp" is never
the lens signature.  A scene is rendered as separate noiseless components (``lensed``,
``deflector``, ``feature``, ``field``), each convolved with the PSF, then observed with noise; the
components let the tests check that lenses show their arcs and non-lenses carry no lensed light.
All randomness comes from the ``numpy.random.Generator`` passed in.

One module per job:

- :mod:`~lenslib.simulate.scene`: :func:`simulate_scene`, which sends a kind to its room;
- :mod:`~lenslib.simulate.observation`: the supersampled grid, the observation (exposure, sky,
  component buffers, PSF blur, noise, artifacts) and how visible light is (arc SNR, visibility);
- :mod:`~lenslib.simulate.light`: Sersic profiles and the analytic shapes lenstronomy lacks;
- :mod:`~lenslib.simulate.populations`: deflectors, lensed sources, number counts, cosmology;
- :mod:`~lenslib.simulate.fields`: the field galaxies and stars around every cutout;
- :mod:`~lenslib.simulate.lenses`: lenses, their unlensed twins, lenses of given parameters;
- :mod:`~lenslib.simulate.nonlenses`: one drawing function per non-lens kind.
"""

from __future__ import annotations

from .fields import Field, draw_field, paint_field
from .lenses import critical_curves_and_caustics, render_lens_system, sie_lens_kwargs
from .nonlenses import NONLENS_DRAWERS
from .observation import COMPONENTS, Grid, Scene, supersampled_grid
from .scene import simulate_scene

__all__ = [
    "COMPONENTS", "Field", "Grid", "NONLENS_DRAWERS", "Scene", "critical_curves_and_caustics",
    "draw_field", "paint_field", "render_lens_system", "sie_lens_kwargs", "simulate_scene",
    "supersampled_grid",
]
