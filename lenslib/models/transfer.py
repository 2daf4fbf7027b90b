"""Transfer learning as the thesis did it: an input adapter turns the single-band cutout into the
3-channel image a keras.applications backbone expects, the backbone (no top, global average
pooled) extracts features, and a new head ends in the 2-way softmax.  :data:`BACKBONES` lists
the backbones."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..config import ADAPTER_NAMES
from .common import REGIMES, Seeds, all_layers, check_input_shape, freeze, lazy_keras, transfer_head
from .weights import (
    KERAS_WEIGHTS_URL,
    keras_cache_dir,
    load_hed_vgg16,
    load_weights_file,
    resolve_backbone_weights,
)

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


def _input_adapter(x, spec: Backbone, adapter: str, upsample: int, seeds: Seeds):
    """Single-band cutout -> 3-channel image of ``upsample`` times its side, in the pixel range the
    backbone's ImageNet weights expect.  ``resize`` has no weights; ``deconv`` learns two
    transposed convolutions (the first one upsamples)."""
    layers = lazy_keras().layers
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


def _make_backbone(spec: Backbone, input_shape, weights):
    """The keras.applications backbone without top and with global average pooling."""
    keras = lazy_keras()
    constructor = getattr(keras.applications, spec.constructor)
    resolved = resolve_backbone_weights(spec, weights)
    from_file = isinstance(resolved, Path)
    backbone = constructor(include_top=False, weights=None if from_file else resolved,
                           input_shape=input_shape, pooling="avg")
    if from_file:
        load_weights_file(backbone, resolved,
                          f"{spec.name} (keras.applications.{spec.constructor} without its top)")
    if weights == "hed-vgg16":
        load_hed_vgg16(backbone)
    return backbone


def _glorot_reinit(model, seeds: Seeds) -> None:
    """Re-draw every kernel of ``model`` from Glorot (Xavier) uniform, as the thesis's 'scratch'
    runs did; biases, BN and scale parameters keep their constant initial values."""
    for layer in all_layers(model):
        for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            var = getattr(layer, attr, None)
            if var is None or not hasattr(var, "assign"):
                continue
            var.assign(seeds.glorot()(tuple(var.shape), dtype=var.dtype))


def build_transfer_model(name: str, input_shape=(100, 100, 1), *, regime: str = "frozen",
                         weights="imagenet", adapter: str = "resize", upsample: int = 1,
                         dropout: float = 0.5, head_units: int = 256, seed: int = 0):
    """A keras.applications backbone as the thesis used it: input adapter -> backbone without its
    top (global average pooled) -> new head -> softmax 2.  See :func:`lenslib.models.build_model`
    for the arguments."""
    keras = lazy_keras()
    if name not in BACKBONES:
        raise ValueError(f"{name!r} is not a transfer backbone; choose one of {', '.join(BACKBONES)}")
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES} (got {regime!r})")
    if adapter not in ADAPTER_NAMES:
        raise ValueError(f"adapter must be one of {ADAPTER_NAMES} (got {adapter!r})")
    spec = BACKBONES[name]
    input_shape = check_input_shape(input_shape)
    side = min(input_shape[:2]) * upsample
    if side < spec.min_size:
        raise ValueError(
            f"{name} needs at least {spec.min_size}x{spec.min_size} pixels after the input adapter; "
            f"input_shape {input_shape} with upsample={upsample} gives {side} pixels. Use "
            f"upsample >= {math.ceil(spec.min_size / min(input_shape[:2]))} or larger cutouts.")
    seeds = Seeds(seed)
    inputs = keras.Input(input_shape, name="cutout")
    x = _input_adapter(inputs, spec, adapter, upsample, seeds)
    backbone = _make_backbone(spec, tuple(x.shape[1:]), weights)
    if regime == "scratch":
        _glorot_reinit(backbone, seeds)
    if regime == "frozen":
        freeze(backbone)
    features = backbone(x)
    head = transfer_head(features.shape[-1], dropout=dropout, units=head_units, seeds=seeds)
    return keras.Model(inputs, head(features), name=name)


def backbone_of(model):
    """The keras.applications backbone inside a transfer model, or None for lensflow/deeplens."""
    keras = lazy_keras()
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != "head"]
    return nested[0] if nested else None
