"""The one normalisation: depth-invariant, and strict about bad input."""

import numpy as np
import pytest

from lenslib.preprocess import normalize, normalize_reference, validate_cutouts


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


def _hard_cutouts():
    rng = np.random.default_rng(11)
    noise = rng.normal(10, 3, (40, 100, 100))
    noise[:10, 40:60, 40:60] += rng.exponential(500, (10, 20, 20))  # bright cores
    yield noise.astype(np.float32)
    yield np.round(noise)  # many ties
    yield rng.integers(0, 3, (20, 100, 100))  # integer images, three values
    yield np.zeros((3, 100, 100))  # constant
    yield rng.exponential(1.0, (20, 101, 99))  # skewed, odd number of pixels
    yield rng.standard_cauchy((20, 64, 64)) * 1e30  # heavy tails, huge values
    sorted_rows = np.sort(rng.normal(size=(5, 10_000)), axis=1).reshape(5, 100, 100)
    yield sorted_rows  # every-16th subsample of sorted rows is not a random sample
    half = np.zeros((4, 100, 100))
    half[:, 50:] = 1.0  # two values, half each: the middle ranks straddle them
    yield half


def test_fast_normalisation_is_bit_for_bit_the_reference():
    for cutouts in _hard_cutouts():
        reference = normalize_reference(cutouts)
        np.testing.assert_array_equal(normalize(cutouts), reference)
        # Split over threads (the survey scan's way, between network calls): the same numbers.
        np.testing.assert_array_equal(normalize(cutouts, threads=3), reference)
        np.testing.assert_array_equal(normalize(cutouts, threads=None), reference)  # one per core
    with pytest.raises(ValueError, match="threads"):
        normalize(np.ones((2, 10, 10)), threads=0)


def test_row_medians_equal_numpys_and_survive_a_missed_bracket():
    from lenslib.preprocess import row_medians

    rng = np.random.default_rng(5)
    rows = rng.normal(size=(50, 4_000))
    np.testing.assert_array_equal(row_medians(rows), np.median(rows, axis=1))
    # Adversarial: the every-16th subsample sees only large values, so its bracket misses.
    tricky = rng.normal(size=(3, 4_096))
    tricky[:, ::16] += 100.0
    np.testing.assert_array_equal(row_medians(tricky), np.median(tricky, axis=1))
    assert row_medians(np.arange(7.0)[None]).tolist() == [3.0]  # short rows: numpy itself
    single = rng.normal(size=(4, 4_000)).astype(np.float32)  # numpy averages float32 in float32
    assert row_medians(single).dtype == np.float32
    np.testing.assert_array_equal(row_medians(single), np.median(single, axis=1))


def test_compiled_selection_puts_the_kth_value_in_place_for_any_order():
    from lenslib._medians import _select

    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(1, 2_000))
        kind = trial % 4
        if kind == 0:
            values = rng.normal(size=n)
        elif kind == 1:  # few distinct values: the pivot's ties end the search
            values = rng.integers(0, int(rng.integers(1, 6)), n).astype(float)
        elif kind == 2:  # sorted, then reversed: median-of-three must still make progress
            values = np.sort(rng.normal(size=n))[:: 1 if trial % 8 == 2 else -1].copy()
        else:  # organ pipe
            half = np.sort(rng.normal(size=n // 2 + 1))
            values = np.concatenate([half, half[::-1]])[:n].copy()
        k = int(rng.integers(0, n))
        work = values.copy()
        assert _select(work, 0, n - 1, k) == np.partition(values, k)[k]
        assert (work[:k] <= work[k]).all() and (work[k:] >= work[k]).all()
        np.testing.assert_array_equal(np.sort(work), np.sort(values))  # a permutation, nothing lost
