"""The lenslib finder's network: a compact residual network for 100x100 single-band cutouts.

Chosen for two CPU cores (measurements in the finder chapter and ``bench/README.md``): a strided
5x5 stem and one residual block per stage, each halving the image, then global average pooling,
so that the network trains at about 550-600 images/s and scores about 1,800/s on 2 cores, 3x
and 5x LensFlow, with 30x fewer parameters.  Two blocks per stage, or wider stages, halved the
training speed; XLA (``jit_compile``) was slower on this CPU and is not used.
"""

from __future__ import annotations

from ..models import _keras, _require_side, _Seeds


def _finder_output_side(size: int) -> int:
    return -(-size // 2 ** 4)  # a stride-2 stem and three stride-2 stages, "same" padding


def _residual_block(x, filters: int, *, name: str, seeds: _Seeds):
    """Two 3x3 convolutions (the first strided) with batch normalisation, and a strided 1x1
    projection as the shortcut (He et al. 2016)."""
    layers = _keras().layers
    init = dict(use_bias=False, kernel_initializer=_keras().initializers.HeNormal(seed=seeds()))
    y = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv1", **init)(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    init = dict(use_bias=False, kernel_initializer=_keras().initializers.HeNormal(seed=seeds()))
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2", **init)(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    init = dict(use_bias=False, kernel_initializer=_keras().initializers.HeNormal(seed=seeds()))
    shortcut = layers.Conv2D(filters, 1, strides=2, name=f"{name}_project", **init)(x)
    shortcut = layers.BatchNormalization(name=f"{name}_project_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def build_finder(input_shape=(100, 100, 1), *, widths=(16, 32, 64, 128), seed: int = 0,
                 name: str = "lenslib_finder"):
    """The finder::

        input 100x100x1 -> conv 16 5x5 stride 2, BN, ReLU (50x50x16)
        -> residual block 32 (25x25) -> residual block 64 (13x13) -> residual block 128 (7x7)
        -> global average pooling (128) -> softmax 2

    ``widths``: the stem's filters, then one residual stage per further entry.
    """
    keras = _keras()
    layers = keras.layers
    input_shape = _require_side("the finder", input_shape, _finder_output_side, "a strided stem")
    seeds = _Seeds(seed)
    x = inputs = keras.Input(input_shape, name="cutout")
    x = layers.Conv2D(widths[0], 5, strides=2, padding="same", use_bias=False, name="stem_conv",
                      kernel_initializer=keras.initializers.HeNormal(seed=seeds()))(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate(widths[1:], start=1):
        x = _residual_block(x, filters, name=f"stage{stage}", seeds=seeds)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(2, activation="softmax", kernel_initializer=seeds.glorot(), name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)
