"""LensFlow (Pourrahmani, Nayyeri & Cooray 2018), the thesis's early CNN (its Table 3-1)."""

from __future__ import annotations

from .common import Seeds, lazy_keras, require_side


def _lensflow_output_side(size: int) -> int:
    for _ in range(3):  # 5x5 valid convolution, then 2x2 max-pooling
        size = (size - 4) // 2
    return size


def build_lensflow(input_shape=(100, 100, 1), *, seed: int = 0):
    """LensFlow (Pourrahmani, Nayyeri & Cooray 2018) exactly as Table 3-1 of the thesis::

        input 1x100x100 -> conv 30 5x5 tanh (30x96x96) -> max-pool 2 (30x48x48)
        -> conv 60 5x5 tanh (60x44x44) -> max-pool 2 (60x22x22)
        -> conv 90 5x5 tanh (90x18x18) -> max-pool 2 (90x9x9 = 7290 features)
        -> dense 1000 ReLU -> dense 800 ReLU -> dense 600 ReLU -> softmax 2
    """
    keras = lazy_keras()
    layers = keras.layers
    input_shape = require_side("lensflow", input_shape, _lensflow_output_side,
                               "three 5x5 convolutions and 2x2 poolings")
    seeds = Seeds(seed)
    x = inputs = keras.Input(input_shape, name="cutout")
    for i, filters in enumerate((30, 60, 90), start=1):
        x = layers.Conv2D(filters, 5, activation="tanh", kernel_initializer=seeds.glorot(),
                          name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    for units in (1000, 800, 600):
        x = layers.Dense(units, activation="relu", kernel_initializer=seeds.glorot(),
                         name=f"dense{units}")(x)
    outputs = layers.Dense(2, activation="softmax", kernel_initializer=seeds.glorot(),
                           name="softmax")(x)
    return keras.Model(inputs, outputs, name="lensflow")
