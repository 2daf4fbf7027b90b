"""The lenslib finder's network: a compact residual network for 100x100 single-band cutouts.

Chosen for two CPU cores (measurements in the finder chapter and ``bench/README.md``): a strided
5x5 stem and one residual block per stage, each halving the image, then global average pooling,
so that the network trains at about 600 images/s and scores about 1,800-2,300/s on 2 cores,
3x and 4x LensFlow, with 30x fewer parameters.  Two blocks per stage, or wider stages, halved the
training speed; XLA (``jit_compile``) was slower on this CPU and is not used.
"""

from __future__ import annotations

from ..models.common import REGIMES, Seeds, freeze, lazy_keras, require_side, transfer_head
from ..models.io import load_model


def _finder_output_side(size: int) -> int:
    return -(-size // 2 ** 4)  # a stride-2 stem and three stride-2 stages, "same" padding


def _residual_block(x, filters: int, *, name: str, seeds: Seeds):
    """Two 3x3 convolutions (the first strided) with batch normalisation, and a strided 1x1
    projection as the shortcut (He et al. 2016)."""
    layers = lazy_keras().layers
    init = dict(use_bias=False, kernel_initializer=lazy_keras().initializers.HeNormal(seed=seeds()))
    y = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv1", **init)(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    init = dict(use_bias=False, kernel_initializer=lazy_keras().initializers.HeNormal(seed=seeds()))
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2", **init)(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    init = dict(use_bias=False, kernel_initializer=lazy_keras().initializers.HeNormal(seed=seeds()))
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
    keras = lazy_keras()
    layers = keras.layers
    input_shape = require_side("the finder", input_shape, _finder_output_side, "a strided stem")
    seeds = Seeds(seed)
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


def build_finder_model(input_shape=(100, 100, 1), *, regime: str = "frozen", weights=None,
                       dropout: float = 0.5, head_units: int = 256, seed: int = 0):
    """The finder as Table 5-1's transfer rows use a backbone: its trunk (everything up to the
    pooled 128 features) under lenslib's transfer head (:func:`lenslib.models.common.transfer_head`).

    ``weights``: a shipped finder's name or a ``.keras`` file of a finder, whose trunk weights
    are copied in (lens-domain pretraining, the offline stand-in for ImageNet), or None (random).
    ``regime``: ``frozen`` (only the head trains: the frozen fast path applies), ``finetune``
    (everything trains) or ``scratch`` (random weights, everything trains).
    """
    keras = lazy_keras()
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES} (got {regime!r})")
    if regime == "scratch" and weights is not None:
        raise ValueError(f"regime='scratch' starts from random weights: weights must be None "
                         f"(got {weights!r})")
    finder = build_finder(input_shape, seed=seed)
    if weights is not None:
        pretrained = load_model(weights)
        trunk_layers = [layer for layer in pretrained.layers if layer.weights and layer.name != "softmax"]
        for layer in trunk_layers:
            finder.get_layer(layer.name).set_weights(layer.get_weights())
    trunk = keras.Model(finder.input, finder.get_layer("pool").output, name="finder_trunk")
    if regime == "frozen":
        freeze(trunk)
    inputs = keras.Input(tuple(finder.input_shape[1:]), name="cutout")
    features = trunk(inputs)
    head = transfer_head(features.shape[-1], dropout=dropout, units=head_units, seeds=Seeds(seed + 1))
    return keras.Model(inputs, head(features), name="finder")
