"""CMU DeepLens (Lanusse et al. 2018): a pre-activation residual network with ELU units."""

from __future__ import annotations

import math

from .common import Seeds, lazy_keras, require_side


def _deeplens_output_side(size: int) -> int:
    for _ in range(4):  # four stride-2 stages ("same" padding)
        size = math.ceil(size / 2)
    return size - 2  # 3x3 average pooling, stride 1, no padding


def _preact_bottleneck(x, n_in: int, n_out: int, *, downsample: bool, preactivated: bool,
                       seeds: Seeds, name: str):
    """A pre-activation bottleneck unit (He et al. 2016): [BN-ELU]-1x1(n_in)-BN-ELU-3x3(n_in)
    -BN-ELU-1x1(n_out), added to the (projected when shapes change) shortcut."""
    layers = lazy_keras().layers
    stride = 2 if downsample else 1
    if not preactivated:
        x = layers.BatchNormalization(name=f"{name}_bn0")(x)
        x = layers.Activation("elu", name=f"{name}_elu0")(x)
    shortcut = x
    if downsample or x.shape[-1] != n_out:
        shortcut = layers.Conv2D(n_out, 1, strides=stride, use_bias=False,
                                 kernel_initializer=seeds.glorot(), name=f"{name}_proj")(x)
    y = layers.Conv2D(n_in, 1, strides=stride, kernel_initializer=seeds.glorot(),
                      name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("elu", name=f"{name}_elu1")(y)
    y = layers.Conv2D(n_in, 3, padding="same", kernel_initializer=seeds.glorot(),
                      name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Activation("elu", name=f"{name}_elu2")(y)
    y = layers.Conv2D(n_out, 1, kernel_initializer=seeds.glorot(), name=f"{name}_conv3")(y)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def build_deeplens(input_shape=(100, 100, 1), *, seed: int = 0):
    """CMU DeepLens (Lanusse et al. 2018, MNRAS 473, 3895), after its published Lasagne code::

        conv 32 7x7 + BN + ELU
        -> 5 stages of 3 pre-activation bottleneck units, (16->32), (32->64), (64->128),
           (128->256), (256->512) features; the first unit of stages 2-5 downsamples by 2
        -> BN + ELU -> 3x3 average pooling (stride 1) -> softmax 2

    The paper used 45x45 cutouts (the pooling then leaves 1x1); on 100x100 it leaves 5x5x512,
    flattened into the softmax as the original does.  The paper's sigmoid output is the
    thesis's 2-way softmax here.
    """
    keras = lazy_keras()
    layers = keras.layers
    input_shape = require_side("deeplens", input_shape, _deeplens_output_side,
                               "four stride-2 stages and a 3x3 pooling")
    seeds = Seeds(seed)
    inputs = keras.Input(input_shape, name="cutout")
    x = layers.Conv2D(32, 7, padding="same", kernel_initializer=seeds.glorot(), name="conv0")(inputs)
    x = layers.BatchNormalization(name="bn0")(x)
    x = layers.Activation("elu", name="elu0")(x)
    for stage, n_in in enumerate((16, 32, 64, 128, 256), start=1):
        for unit in range(3):
            x = _preact_bottleneck(x, n_in, 2 * n_in, downsample=stage > 1 and unit == 0,
                                   preactivated=stage == 1 and unit == 0, seeds=seeds,
                                   name=f"stage{stage}_unit{unit + 1}")
    x = layers.BatchNormalization(name="bn_final")(x)
    x = layers.Activation("elu", name="elu_final")(x)
    x = layers.AveragePooling2D(3, strides=1, name="avgpool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(2, activation="softmax", kernel_initializer=seeds.glorot(),
                           name="softmax")(x)
    return keras.Model(inputs, outputs, name="deeplens")
