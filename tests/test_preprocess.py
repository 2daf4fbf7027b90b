"""The one normalisation: depth-invariant, and strict about bad input."""

import numpy as np
import pytest

from lenslib.preprocess import normalize, validate_cutouts


@pytest.fixture
def cutouts():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:100, :100] - 50
    galaxy = 50 * np.exp(-(xx**2 + yy**2) / 50.0)
    return (galaxy + rng.normal(0, 1, size=(4, 100, 100))).astype(np.float32)


def test_normalisation_ignores_depth_and_sky_level(cutouts):
    # A deeper or shallower image (scaled) with a sky pedestal lands on the same scale.
    base = normalize(cutouts)
    np.testing.assert_allclose(normalize(7.5 * cutouts + 3.0), base, atol=1e-4)
    assert base.dtype == np.float32 and base.shape == cutouts.shape
    # Noise maps to order one, the bright core is compressed.
    assert 0.2 < np.median(np.abs(base[:, :10, :10])) < 0.5
    assert base.max() < 6


def test_single_cutout_and_channel_axis_are_accepted(cutouts):
    assert normalize(cutouts[0]).shape == (1, 100, 100)
    np.testing.assert_array_equal(normalize(cutouts[..., None]), normalize(cutouts))


def test_constant_cutout_does_not_divide_by_zero():
    out = normalize(np.zeros((1, 100, 100)))
    assert np.isfinite(out).all() and not out.any()


def test_bad_input_errors_name_the_problem(cutouts):
    bad = cutouts.copy()
    bad[2, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite pixels in 1 cutout.*index 2"):
        normalize(bad)
    with pytest.raises(ValueError, match="empty"):
        normalize(np.zeros((0, 100, 100)))
    with pytest.raises(ValueError, match=r"shape \(N, H, W\).*\(100,\)"):
        normalize(np.zeros(100))
    with pytest.raises(TypeError, match="numeric"):
        normalize(np.array([["a"]]))
    with pytest.raises(ValueError, match="100x100 pixels.*64x64"):
        validate_cutouts(np.zeros((2, 64, 64)), size=100)
