"""Augmentation: the thesis's five transforms, exact where geometry says they must be."""

import numpy as np
import pytest

from lenslib.augment import apply_transform, augment, augment_batch, draw_transform
from lenslib.config import AugmentationConfig

IDENTITY = {"rotation_deg": 0.0, "zoom": 1.0, "shear_deg": 0.0, "flip_h": False, "flip_v": False}


@pytest.fixture
def image():
    return np.random.default_rng(0).normal(size=(100, 100)).astype(np.float32)


def test_identity_leaves_the_image_unchanged(image):
    np.testing.assert_allclose(apply_transform(image, IDENTITY), image, atol=1e-6)


def test_flips_are_mirror_images(image):
    np.testing.assert_allclose(apply_transform(image, dict(IDENTITY, flip_h=True)), image[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(apply_transform(image, dict(IDENTITY, flip_v=True)), image[::-1, :], atol=1e-6)


def test_quarter_turn_is_a_rot90(image):
    out = apply_transform(image, dict(IDENTITY, rotation_deg=90.0))
    assert any(np.allclose(out, np.rot90(image, k), atol=1e-5) for k in (1, 3))


def test_zoom_below_one_magnifies():
    yy, xx = np.mgrid[:100, :100] - 49.5
    blob = np.exp(-(xx**2 + yy**2) / (2 * 5.0**2)).astype(np.float32)
    zoomed = apply_transform(blob, dict(IDENTITY, zoom=0.8))
    assert (zoomed > 0.5).sum() > (blob > 0.5).sum() * 1.3


def test_draws_stay_in_range_and_are_seeded():
    cfg = AugmentationConfig()
    draws = [draw_transform(np.random.default_rng(s), cfg) for s in range(300)]
    assert all(abs(d["rotation_deg"]) <= 45 and 0.9 <= d["zoom"] <= 1.0 and abs(d["shear_deg"]) <= 15
               for d in draws)
    assert 0.3 < np.mean([d["flip_h"] for d in draws]) < 0.7
    assert draw_transform(np.random.default_rng(5), cfg) == draw_transform(np.random.default_rng(5), cfg)
    no_flip = AugmentationConfig(horizontal_flip=False, vertical_flip=False)
    assert not any(draw_transform(np.random.default_rng(s), no_flip)["flip_h"] for s in range(50))


def test_augment_returns_image_and_parameters(image):
    out, params = augment(image, np.random.default_rng(1), AugmentationConfig())
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, apply_transform(image, params))
    with pytest.raises(ValueError, match="2-D"):
        apply_transform(image[None], params)


def test_augment_batch_turns_flips_and_shifts_without_changing_pixels():
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(20, 12, 12)).astype("float32")
    out = augment_batch(batch, np.random.default_rng(1), max_shift=0)
    for a, b in zip(batch, out):  # a dihedral transform keeps every pixel value
        assert any(np.array_equal(np.rot90(a, k)[:, ::f], b) for k in range(4) for f in (1, -1))
    assert not np.array_equal(out, batch)
    shifted = augment_batch(batch, np.random.default_rng(2), max_shift=3)
    np.testing.assert_array_equal(shifted, augment_batch(batch, np.random.default_rng(2), max_shift=3))
    assert shifted.shape == batch.shape and not np.array_equal(shifted, out)
