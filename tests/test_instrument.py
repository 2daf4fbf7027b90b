"""The camera: PSF shape, photometry and noise."""

import numpy as np
import pytest

from lenslib.config import InstrumentConfig
from lenslib.instrument import (
    magnitude_to_rate,
    noise_variance,
    observe,
    psf_fwhm,
    psf_kernel,
    sky_rate_per_pixel,
)

CAMERA = InstrumentConfig()


def test_psf_is_normalised_centred_and_acs_like():
    kernel = psf_kernel(CAMERA)
    assert kernel.shape == (CAMERA.psf_size, CAMERA.psf_size)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-9)
    centre = CAMERA.psf_size // 2
    assert np.unravel_index(kernel.argmax(), kernel.shape) == (centre, centre)
    # ACS/WFC F814W: FWHM about 0.09-0.1 arcsec.
    assert 0.085 <= psf_fwhm(CAMERA) <= 0.105
    # A wider charge diffusion gives a wider PSF: the FWHM measure responds to the input.
    assert psf_fwhm(InstrumentConfig(charge_diffusion_fwhm=0.12)) > psf_fwhm(CAMERA) + 0.01


def test_zero_point_defines_one_electron_per_second():
    assert magnitude_to_rate(CAMERA.zero_point_ab, CAMERA.zero_point_ab) == pytest.approx(1.0)
    assert magnitude_to_rate(CAMERA.zero_point_ab - 2.5, CAMERA.zero_point_ab) == pytest.approx(10.0)
    # F814W sky of ~22.2 mag/arcsec^2 gives ~0.08 e-/s per 0.05" pixel, as in the ACS handbook.
    assert 0.05 < sky_rate_per_pixel(22.2, CAMERA) < 0.12


def test_noise_matches_its_expected_variance():
    rng = np.random.default_rng(0)
    rate = np.full((200, 200), 0.5)
    kw = dict(exposure_time=2000.0, sky_brightness=22.2, instrument=CAMERA)
    image = observe(rate, rng, **kw)
    assert image.dtype == np.float32
    expected = np.sqrt(noise_variance(rate, **kw))[0, 0]
    assert image.std() == pytest.approx(expected, rel=0.03)
    assert image.mean() == pytest.approx(0.5, abs=4 * expected / 200)  # sky subtracted


def test_observe_rejects_negative_or_nan_models():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="finite and non-negative"):
        observe(np.full((3, 3), -1.0), rng, exposure_time=1.0, sky_brightness=22.0, instrument=CAMERA)
