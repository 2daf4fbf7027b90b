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
    """
    import tensorflow as tf

    if not (isinstance(steps, int) and steps >= 2):
        raise ValueError(f"steps must be an integer >= 2 (got {steps!r})")
    x = normalize(cutouts)[..., None]
    alphas = tf.reshape(tf.linspace(0.0, 1.0, steps + 1), (-1, 1, 1, 1))
    maps = []
    for image in x:
        image = tf.convert_to_tensor(image[None], dtype=tf.float32)
        grads = []
        path = alphas * image  # the baseline is all zeros
        for start in range(0, steps + 1, batch_size):
            chunk = path[start:start + batch_size]
            with tf.GradientTape() as tape:
                tape.watch(chunk)
                prob = model(chunk, training=False)[:, 1]
            grads.append(tape.gradient(prob, chunk))
        grads = tf.concat(grads, axis=0)
        # Trapezoidal rule along the straight path from the baseline to the image.
        avg = tf.reduce_mean((grads[:-1] + grads[1:]) / 2.0, axis=0)
        maps.append((avg * image[0]).numpy()[..., 0])
    return np.stack(maps)
