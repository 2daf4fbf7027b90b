"""Where a network looks: integrated gradients (Sundararajan et al. 2017) of the lens probability.

Attributions are computed on the normalised cutout (the network's own input), from a blank-sky
baseline (zeros after normalisation: the sky level), so a pixel's attribution says how much its
light, against empty sky, pushed the model towards "lens".  Used by the candidates chapter to
show whether a model looks at the arcs or at the lens galaxy's light.
"""

from __future__ import annotations

import numpy as np

from .preprocess import normalize


def integrated_gradients(model, cutouts, *, steps: int = 32, batch_size: int = 32) -> np.ndarray:
    """Integrated-gradients attribution maps ``(N, H, W)`` of the lens probability.

    ``cutouts`` are in e-/s, ``(N, H, W)``; the maps are in the units of the lens probability
    and sum (over pixels) to about ``p(cutout) - p(blank sky)`` (the completeness property).
    The ``steps + 1`` points of every cutout's path are streamed through one compiled gradient
    function in full batches of ``batch_size`` (points of several cutouts share a batch), which
    is several times faster than calling a large network eagerly image by image.
    """
    import tensorflow as tf

    if not (isinstance(steps, int) and steps >= 2):
        raise ValueError(f"steps must be an integer >= 2 (got {steps!r})")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer (got {batch_size!r})")
    x = normalize(cutouts)[..., None].astype(np.float32)
    points = steps + 1
    alphas = np.linspace(0.0, 1.0, points, dtype=np.float32)  # the baseline is all zeros
    # Trapezoidal rule along the straight path from the baseline to the image.
    rule = np.full(points, 1.0 / steps, dtype=np.float32)
    rule[[0, -1]] /= 2

    @tf.function
    def gradients(batch):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            prob = model(batch, training=False)[:, 1]
        return tape.gradient(prob, batch)

    mean_grads = np.zeros_like(x)
    flat = np.arange(len(x) * points)
    batch = np.zeros((batch_size,) + x.shape[1:], dtype=np.float32)
    for start in range(0, flat.size, batch_size):
        image, step = np.divmod(flat[start:start + batch_size], points)
        batch[:] = 0.0  # a short last batch is padded, so the function is traced once
        batch[:len(image)] = alphas[step, None, None, None] * x[image]
        grads = gradients(tf.constant(batch)).numpy()[:len(image)]
        np.add.at(mean_grads, image, grads * rule[step, None, None, None])
    return (mean_grads * x)[..., 0]
