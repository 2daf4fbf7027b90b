"""Layers for a finder that is exactly invariant to a cutout's eight flips and quarter turns.

A lens is a lens whichever way the sky is turned, yet a plain network's score moves when a cutout
is flipped or rotated by 90 degrees, and averaging the eight views was the largest gain any change
to the compact finder found (``bench/README.md``).  Group convolutions over the dihedral group p4m
(Cohen and Welling 2016, "Group Equivariant Convolutional Networks") build that symmetry in: each
filter is applied in its eight orientations, every feature map is carried in eight orientations
(channel ``c * 8 + g`` is channel ``c`` in orientation ``g``), and pooling over the orientations at
the end makes the score invariant.  The weights are shared eight ways, so a network with the
compact finder's feature maps and computation has about 8x fewer weights.

Imported when a p4m finder is built or loaded (``lenslib.models.load_model`` does), so that Keras
finds the layers by their registered names ``lenslib>GroupConv2D`` and ``lenslib>GroupBatchNorm``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from ..models.io import dihedral

#: The order of the group p4m: four quarter turns, each with and without a left-right flip.
ORDER = 8


def _group_tables() -> tuple[np.ndarray, np.ndarray]:
    """p4m's composition table (``compose[a, b]``: ``a`` after ``b``) and inverses, found by acting
    on an asymmetric test array."""
    probe = np.random.default_rng(0).normal(size=(5, 5))
    acted = [dihedral(probe, e, axes=(0, 1)) for e in range(ORDER)]

    def index(a):
        return next(i for i, b in enumerate(acted) if np.allclose(a, b))

    compose = np.array([[index(dihedral(dihedral(probe, b, axes=(0, 1)), a, axes=(0, 1)))
                         for b in range(ORDER)] for a in range(ORDER)])
    inverse = np.array([next(b for b in range(ORDER) if compose[a, b] == 0) for a in range(ORDER)])
    return compose, inverse


COMPOSE, INVERSE = _group_tables()


def kernel_index(size: int, in_channels: int, filters: int, *, lifting: bool) -> np.ndarray:
    """For each entry of the full convolution kernel ``(size, size, in_channels * [8], filters * 8)``,
    the index of the base weight it is (output orientation ``g`` applies ``g`` to the kernel and,
    for a group convolution, permutes the input orientations by ``g^-1``)."""
    shape = (size, size, in_channels) + (() if lifting else (ORDER,)) + (filters,)
    ids = np.arange(int(np.prod(shape))).reshape(shape)
    full = [dihedral(ids if lifting else np.take(ids, COMPOSE[INVERSE[g]], axis=3), g, axes=(0, 1))
            .reshape(size, size, -1, filters) for g in range(ORDER)]
    return np.stack(full, axis=-1).reshape(size, size, -1, filters * ORDER)


@keras.saving.register_keras_serializable(package="lenslib")
class GroupConv2D(layers.Layer):
    """A p4m convolution: ``filters`` base filters, each output in 8 orientations (``filters * 8``
    channels).  ``lifting``: the input is an image (any channels, no orientations), as in a
    network's first layer; otherwise its channels are ``c * 8 + orientation``.  No bias (batch
    normalisation follows)."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, padding: str = "same",
                 lifting: bool = False, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = int(filters), int(kernel_size), int(strides)
        self.padding, self.lifting, self.seed = padding, bool(lifting), seed

    def build(self, input_shape):
        channels = input_shape[-1]
        if not self.lifting and channels % ORDER:
            raise ValueError(f"{self.name}: a group convolution's input has channels in {ORDER} "
                             f"orientations, so a multiple of {ORDER} of them (got {channels})")
        in_channels = channels if self.lifting else channels // ORDER
        shape = (self.kernel_size, self.kernel_size, in_channels) + (() if self.lifting else (ORDER,))
        fan_in = self.kernel_size ** 2 * channels
        self.kernel = self.add_weight(
            shape=shape + (self.filters,), name="kernel",
            initializer=keras.initializers.RandomNormal(stddev=float(np.sqrt(2.0 / fan_in)), seed=self.seed))
        self._index = kernel_index(self.kernel_size, in_channels, self.filters, lifting=self.lifting)

    def call(self, x):
        kernel = ops.take(ops.reshape(self.kernel, (-1,)), self._index)
        return ops.conv(x, kernel, strides=self.strides, padding=self.padding)

    def compute_output_shape(self, input_shape):
        side = [None if s is None else (-(-s // self.strides) if self.padding == "same"
                                        else (s - self.kernel_size) // self.strides + 1)
                for s in input_shape[1:3]]
        return (input_shape[0], *side, self.filters * ORDER)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "lifting": self.lifting, "seed": self.seed}


@keras.saving.register_keras_serializable(package="lenslib")
class GroupBatchNorm(layers.Layer):
    """Batch normalisation with one mean, variance, scale and offset per channel, shared by its
    eight orientations (per feature map, as a plain network's, would break the symmetry)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.norm = layers.BatchNormalization(axis=-2, name="norm")

    def build(self, input_shape):
        self.norm.build((None, None, None, input_shape[-1] // ORDER, ORDER))

    def call(self, x, training=None):
        shape = ops.shape(x)
        grouped = ops.reshape(x, (shape[0], shape[1], shape[2], shape[3] // ORDER, ORDER))
        return ops.reshape(self.norm(grouped, training=training), shape)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="lenslib")
class OrientationPool(layers.Layer):
    """Pooled features ``(N, C * 8)`` -> their mean and maximum over the eight orientations of each
    channel, ``(N, 2 C)``: the same whichever way the cutout was turned."""

    def call(self, x):
        grouped = ops.reshape(x, (-1, x.shape[-1] // ORDER, ORDER))
        return ops.concatenate([ops.mean(grouped, axis=-1), ops.max(grouped, axis=-1)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * (input_shape[-1] // ORDER))
