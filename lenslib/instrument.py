"""The camera: PSF, photometric zero point, sky and noise of an ACS/WFC F814W-like image.

Images are in electrons per second per pixel, as drizzled HST images are.  Noise is drawn
with an explicit :class:`numpy.random.Generator` (lenstronomy's own noise helpers seed the
global NumPy state, which would make parallel assembly depend on the worker count).
"""

from __future__ import annotations

from functools import lru_cache

import astropy.units as u
import numpy as np
from scipy import special
from scipy.ndimage import gaussian_filter

from .config import InstrumentConfig

_ARCSEC_PER_RADIAN = u.rad.to(u.arcsec)  # 206264.806...
_PSF_OVERSAMPLING = 5


def magnitude_to_rate(magnitude, zero_point: float):
    """AB magnitude -> e-/s for a camera whose zero point gives 1 e-/s."""
    return 10.0 ** (-0.4 * (np.asarray(magnitude, dtype=float) - zero_point))


def sky_rate_per_pixel(sky_brightness: float, instrument: InstrumentConfig) -> float:
    """Sky in e-/s per pixel for a surface brightness in mag/arcsec^2."""
    return float(magnitude_to_rate(sky_brightness, instrument.zero_point_ab)) * instrument.pixel_scale**2


def _obscured_airy(r_arcsec: np.ndarray, wavelength_um: float, instrument: InstrumentConfig) -> np.ndarray:
    """Intensity of an annular-aperture Airy pattern (Born & Wolf 8.6), peak 1."""
    eps = instrument.obscuration
    x = np.pi * instrument.mirror_diameter_m * (r_arcsec / _ARCSEC_PER_RADIAN) / (wavelength_um * 1e-6)
    x = np.where(x == 0, 1e-12, x)
    amp = (2 * special.j1(x) / x - eps**2 * 2 * special.j1(eps * x) / (eps * x)) / (1 - eps**2)
    return amp**2


def _broadband_airy(r_arcsec: np.ndarray, instrument: InstrumentConfig) -> np.ndarray:
    """Airy pattern averaged over the filter's band (+-15% around the pivot, as F814W's
    ~700-950 nm): the outer rings of a broad-band PSF wash out."""
    lambdas = instrument.wavelength_um * np.linspace(0.85, 1.15, 9)
    return np.mean([_obscured_airy(r_arcsec, lam, instrument) for lam in lambdas], axis=0)


def _moffat(r_arcsec: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    """A Moffat profile of the given FWHM (arcsec) and wing index ``beta``, peak 1: the shape of
    a seeing-limited or degraded PSF, with broader wings than a Gaussian."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    return (1 + (r_arcsec / alpha) ** 2) ** -beta


@lru_cache(maxsize=8)
def _psf_cached(instrument: InstrumentConfig) -> tuple[np.ndarray, np.ndarray]:
    n = instrument.psf_size * _PSF_OVERSAMPLING
    step = instrument.pixel_scale / _PSF_OVERSAMPLING
    coords = (np.arange(n) - (n - 1) / 2) * step
    xx, yy = np.meshgrid(coords, coords)
    if instrument.psf_model == "moffat":
        fine = _moffat(np.hypot(xx, yy), instrument.moffat_fwhm, instrument.moffat_beta)
    else:
        fine = _broadband_airy(np.hypot(xx, yy), instrument)
        # Diffraction spikes of the secondary-mirror spider: faint streaks along the two axes.
        spike_width = 0.6 * step
        spikes = np.exp(-0.5 * (yy / spike_width) ** 2) + np.exp(-0.5 * (xx / spike_width) ** 2)
        spikes *= 2e-3 * (0.1 / np.maximum(np.hypot(xx, yy), 0.1)) ** 2
        fine = fine + spikes
        sigma_cd = instrument.charge_diffusion_fwhm / 2.3548 / step
        fine = gaussian_filter(fine, sigma_cd, mode="constant")
    fine /= fine.sum()
    kernel = fine.reshape(instrument.psf_size, _PSF_OVERSAMPLING, instrument.psf_size, _PSF_OVERSAMPLING)
    kernel = kernel.sum(axis=(1, 3))
    kernel /= kernel.sum()
    fine.setflags(write=False)
    kernel.setflags(write=False)
    return kernel, fine


def psf_kernel(instrument: InstrumentConfig) -> np.ndarray:
    """The pixel-integrated PSF (odd size, sums to 1), read-only and cached per camera."""
    return _psf_cached(instrument)[0]


def psf_fwhm(instrument: InstrumentConfig) -> float:
    """FWHM in arcsec of the optical+detector PSF, from the area above half maximum."""
    fine = _psf_cached(instrument)[1]
    step = instrument.pixel_scale / _PSF_OVERSAMPLING
    area = np.count_nonzero(fine >= fine.max() / 2) * step**2
    return float(2 * np.sqrt(area / np.pi))


def observe(
    rate: np.ndarray,
    rng: np.random.Generator,
    *,
    exposure_time: float,
    sky_brightness: float,
    instrument: InstrumentConfig,
) -> np.ndarray:
    """Turn a noiseless, PSF-convolved image in e-/s into a sky-subtracted noisy one (e-/s).

    Poisson noise of source plus sky over ``exposure_time``, Gaussian read noise of
    ``n_exposures`` reads, then divided by the exposure time as a drizzled image is.
    """
    if np.any(rate < 0) or not np.all(np.isfinite(rate)):
        raise ValueError("observe: the noiseless image must be finite and non-negative")
    sky = sky_rate_per_pixel(sky_brightness, instrument)
    electrons = rng.poisson((rate + sky) * exposure_time).astype(np.float64)
    electrons += rng.normal(0.0, instrument.read_noise * np.sqrt(instrument.n_exposures), rate.shape)
    return (electrons / exposure_time - sky).astype(np.float32)


def noise_variance(
    rate: np.ndarray, *, exposure_time: float, sky_brightness: float, instrument: InstrumentConfig
) -> np.ndarray:
    """Expected per-pixel variance, in (e-/s)^2, of :func:`observe` for a noiseless image."""
    sky = sky_rate_per_pixel(sky_brightness, instrument)
    reads = instrument.n_exposures * instrument.read_noise**2
    return ((rate + sky) * exposure_time + reads) / exposure_time**2
