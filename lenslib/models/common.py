"""What several architectures share: the lazy Keras import, input checks, seeded initializers,
freezing a trunk, and the transfer head that goes on top of one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np

#: Training regimes of a transfer model: ``frozen`` trains the adapter and head only,
#: ``finetune`` trains everything, ``scratch`` trains everything from random Glorot weights.
REGIMES = ("frozen", "finetune", "scratch")


def lazy_keras() -> ModuleType:
    """Keras, imported on first use so that ``import lenslib`` stays fast."""
    import keras

    return keras


def is_integer(value, *, minimum: int = 1) -> bool:
    """Whether ``value`` is an integer (Python or NumPy, never a bool) of at least ``minimum``."""
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and bool(value >= minimum))


def check_input_shape(input_shape) -> tuple[int, int, int]:
    """``input_shape`` as ``(height, width, 1)`` of Python ints, or a ValueError saying what is wrong."""
    ok = (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
          and all(is_integer(v) for v in input_shape))
    if not ok:
        raise ValueError(f"input_shape must be (height, width, 1) with positive integers "
                         f"(got {input_shape!r})")
    if input_shape[2] != 1:
        raise ValueError(f"input_shape must have 1 channel: lenslib cutouts are single-band "
                         f"(got {input_shape!r})")
    return tuple(int(v) for v in input_shape)


def require_side(name: str, input_shape, output_side: Callable[[int], int],
                 why: str) -> tuple[int, int, int]:
    """Validate ``input_shape`` for a network whose last feature map has side ``output_side(side)``."""
    input_shape = check_input_shape(input_shape)
    if output_side(min(input_shape[:2])) < 1:
        minimum = next(side for side in range(1, 1024) if output_side(side) >= 1)
        raise ValueError(f"{name} needs cutouts of at least {minimum}x{minimum} pixels ({why}); "
                         f"got input_shape {input_shape}")
    return input_shape


class Seeds:
    """Distinct, reproducible seeds for every initializer and dropout layer of one model."""

    def __init__(self, seed: int):
        self._next = int(seed) * 1000

    def __call__(self) -> int:
        self._next += 1
        return self._next

    def glorot(self):
        """A Glorot (Xavier) uniform initializer with the next seed."""
        return lazy_keras().initializers.GlorotUniform(seed=self())


def all_layers(model) -> Iterator:
    """Every layer inside ``model``, nested models walked through."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def freeze(backbone) -> None:
    """Make ``backbone`` a fixed feature extractor: no weight trains, its batch normalisations
    always use their stored statistics (Keras does this for untrainable BN layers), and its
    dropout (EfficientNetV2's stochastic depth) is switched off, so that it computes the same
    features in training as in inference; the frozen fast path of :mod:`lenslib.train` relies on it."""
    dropout = lazy_keras().layers.Dropout
    for layer in all_layers(backbone):
        if isinstance(layer, dropout):
            layer.rate = 0.0
    backbone.trainable = False


def transfer_head(n_features: int, *, dropout: float, units: int, seeds: Seeds):
    """The new top: BN -> dropout -> dense ReLU -> BN -> dropout -> softmax 2 (a nested model
    named ``head``, so that the frozen fast path of :mod:`lenslib.train` can train it alone)."""
    keras = lazy_keras()
    layers = keras.layers
    features = keras.Input((n_features,), name="features")
    x = layers.BatchNormalization(name="head_bn1")(features)
    x = layers.Dropout(dropout, seed=seeds(), name="head_dropout1")(x)
    x = layers.Dense(units, activation="relu", kernel_initializer=seeds.glorot(), name="head_dense")(x)
    x = layers.BatchNormalization(name="head_bn2")(x)
    x = layers.Dropout(dropout, seed=seeds(), name="head_dropout2")(x)
    outputs = layers.Dense(2, activation="softmax", kernel_initializer=seeds.glorot(),
                           name="head_softmax")(x)
    return keras.Model(features, outputs, name="head")
