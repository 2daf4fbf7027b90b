"""Augmentation: the thesis's stored children (chapter 5.1) and the interpolation-free transforms
drawn afresh every epoch while a network trains.

The thesis's augmentation: rotation, zoom, shear and flips of observed cutouts.

As in the thesis (Keras's ``ImageDataGenerator``), the transforms act on the observed, noisy
pixels with bilinear interpolation; they are drawn from a seeded generator and recorded, so an
augmented child can be traced to its parent and re-made exactly.  Note that interpolation smooths
the pixel noise of a child a little; both classes are augmented alike, so this carries no label.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import affine_transform

from .config import AugmentationConfig

AUGMENT_FIELDS = ("rotation_deg", "zoom", "shear_deg", "flip_h", "flip_v")


def draw_transform(rng: np.random.Generator, config: AugmentationConfig) -> dict:
    """Random transform parameters within the configured ranges."""
    return {
        "rotation_deg": float(rng.uniform(-config.rotation_deg, config.rotation_deg)),
        "zoom": float(rng.uniform(*config.zoom_range)),
        "shear_deg": float(rng.uniform(-config.shear_deg, config.shear_deg)),
        "flip_h": bool(config.horizontal_flip and rng.uniform() < 0.5),
        "flip_v": bool(config.vertical_flip and rng.uniform() < 0.5),
    }


def transform_matrix(params: dict) -> np.ndarray:
    """2x2 matrix mapping output (row, col) offsets from the centre to input offsets.

    Composed as Keras composes it: rotation, then shear, then zoom (a zoom factor below 1
    samples a smaller region, i.e. magnifies); flips mirror the result.
    """
    theta = np.radians(params["rotation_deg"])
    shear = np.radians(params["shear_deg"])
    zoom = params["zoom"]
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shearing = np.array([[1.0, -np.sin(shear)], [0.0, np.cos(shear)]])
    scaling = np.diag([zoom, zoom])
    flips = np.diag([-1.0 if params["flip_v"] else 1.0, -1.0 if params["flip_h"] else 1.0])
    return rotation @ shearing @ scaling @ flips


def apply_transform(image: np.ndarray, params: dict) -> np.ndarray:
    """Apply a transform about the image centre (bilinear, edges reflected); float32 out."""
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (got shape {image.shape})")
    matrix = transform_matrix(params)
    centre = (np.array(image.shape) - 1) / 2.0
    offset = centre - matrix @ centre
    out = affine_transform(image.astype(np.float64), matrix, offset=offset, order=1, mode="reflect")
    return out.astype(np.float32)


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentationConfig):
    """One randomly augmented copy of ``image`` and the parameters that made it."""
    params = draw_transform(rng, config)
    return apply_transform(image, params), params


# --- on the fly -------------------------------------------------------------------------------

def augment_batch(batch: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Random flips, quarter turns and shifts of up to ``max_shift`` pixels (edges reflected) of
    a batch ``(N, H, W)``: no interpolation (pixel values are moved, never blended), so a network
    trained on them sees new views of the same cutouts each epoch (the finder's stream, ``lenslib.train``
    with ``TrainingConfig.augment_shift``)."""
    n, h, w = batch.shape
    out = np.empty((n, h, w), dtype=np.float32)
    turns = rng.integers(0, 4, n)
    flips = rng.integers(0, 2, n).astype(bool)
    shifts = rng.integers(-max_shift, max_shift + 1, (n, 2))
    pad = np.pad(batch, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)), mode="reflect") \
        if max_shift else batch
    for i in range(n):
        dy, dx = shifts[i] + max_shift
        img = pad[i, dy:dy + h, dx:dx + w]
        img = np.rot90(img, turns[i])
        out[i] = img[:, ::-1] if flips[i] else img
    return out
