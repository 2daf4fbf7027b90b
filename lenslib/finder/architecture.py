"""The lenslib finder's network: a compact residual network for 100x100 single-band cutouts.

Chosen for two CPU cores (measurements in the finder chapter and ``bench/README.md``): a strided
5x5 stem and one residual block per stage, each halving the image, then global average pooling,
so that the network trains at about 600 images/s and scores about 1,800-2,300/s on 2 cores,
3x and 4x LensFlow, with 30x fewer parameters.  Two blocks per stage, or wider stages, halved the
training speed; XLA (``jit_compile``) was slower on this CPU and is not used.

A second architecture, ``"p4m"``, has the same layout and feature maps built from p4m group
convolutions (:mod:`lenslib.finder.equivariant`): its score is exactly the same for a cutout's
eight flips and quarter turns, with 8x fewer weights.  The third, ``"p4m+residual"``, runs both
side by side on every cutout (:func:`build_two_branch_finder`): the two make different mistakes,
so their summed logits rank lenses better than either (:func:`join_finders` builds one from a
trained finder of each kind).
"""

from __future__ import annotations

import os

from ..config.recipes import FINDER_ARCHITECTURES as ARCHITECTURES
from ..config.recipes import FINDER_BRANCHES as BRANCHES
from ..config.recipes import TWO_BRANCHES
from ..models.common import REGIMES, Seeds, freeze, lazy_keras, require_side, transfer_head
from ..models.io import finder_branches, load_model


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
                 name: str = "lenslib_finder", architecture: str = "residual"):
    """The finder (``architecture="residual"``; ``"p4m"``: :func:`build_p4m_finder`)::

        input 100x100x1 -> conv 16 5x5 stride 2, BN, ReLU (50x50x16)
        -> residual block 32 (25x25) -> residual block 64 (13x13) -> residual block 128 (7x7)
        -> global average pooling (128) -> softmax 2

    ``widths``: the stem's filters, then one residual stage per further entry.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES} (got {architecture!r})")
    if architecture == "p4m":
        return build_p4m_finder(input_shape, widths=widths, seed=seed, name=name)
    if architecture == TWO_BRANCHES:
        return build_two_branch_finder(input_shape, widths=widths, seed=seed, name=name)
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


def _p4m_block(x, filters: int, *, name: str, seeds: Seeds):
    """The residual block of :func:`_residual_block` in p4m group convolutions (``filters`` per
    orientation), its stride-2 steps placed so that a turned image's sampling grid maps onto
    itself: on an even side a 4x4 window (2x2 average then 1x1 on the shortcut) after one pixel
    of padding all round; on an odd side a centred 3x3 (1x1 on the shortcut)."""
    from .equivariant import GroupBatchNorm, GroupConv2D

    layers = lazy_keras().layers
    if x.shape[1] % 2 == 0:
        y = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        y = GroupConv2D(filters, 4, 2, "valid", seed=seeds(), name=f"{name}_conv1")(y)
        shortcut = layers.AveragePooling2D(2, name=f"{name}_pool")(x)
        shortcut = GroupConv2D(filters, 1, seed=seeds(), name=f"{name}_project")(shortcut)
    else:
        y = GroupConv2D(filters, 3, 2, "same", seed=seeds(), name=f"{name}_conv1")(x)
        shortcut = GroupConv2D(filters, 1, 2, "valid", seed=seeds(), name=f"{name}_project")(x)
    y = layers.ReLU(name=f"{name}_relu1")(GroupBatchNorm(name=f"{name}_bn1")(y))
    y = GroupConv2D(filters, 3, seed=seeds(), name=f"{name}_conv2")(y)
    y = GroupBatchNorm(name=f"{name}_bn2")(y)
    shortcut = GroupBatchNorm(name=f"{name}_project_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def build_p4m_finder(input_shape=(100, 100, 1), *, widths=(16, 32, 64, 128), seed: int = 0,
                     name: str = "lenslib_finder"):
    """The finder's layout in p4m group convolutions: exactly invariant to the eight flips and
    quarter turns of a square cutout::

        input 100x100x1 -> p4m conv 2x8 6x6 stride 2 (after 2 pixels of padding), BN, ReLU
        -> p4m residual blocks 4x8 (25x25), 8x8 (13x13), 16x8 (7x7)
        -> global average pooling (16x8) -> mean and max over orientations (32) -> softmax 2

    ``widths``: feature maps per stage, as :func:`build_finder`'s (each a multiple of 8: its
    eighth are the base filters, each carried in eight orientations).  An even side is halved
    by a 6x6 stem window after 2 pixels of padding, an odd side by a centred 5x5.
    """
    from .equivariant import ORDER, GroupBatchNorm, GroupConv2D, OrientationPool

    keras = lazy_keras()
    layers = keras.layers
    input_shape = require_side("the finder", input_shape, _finder_output_side, "a strided stem")
    if input_shape[0] != input_shape[1]:
        raise ValueError(f"the p4m finder turns cutouts by quarter turns, so they must be square "
                         f"(got input_shape {input_shape})")
    if any(w % ORDER for w in widths):
        raise ValueError(f"the p4m finder's widths must be multiples of {ORDER} (each feature map is "
                         f"carried in {ORDER} orientations); got widths {tuple(widths)}")
    seeds = Seeds(seed)
    x = inputs = keras.Input(input_shape, name="cutout")
    if input_shape[0] % 2 == 0:
        x = layers.ZeroPadding2D(2, name="stem_pad")(x)
        x = GroupConv2D(widths[0] // ORDER, 6, 2, "valid", lifting=True, seed=seeds(), name="stem_conv")(x)
    else:
        x = GroupConv2D(widths[0] // ORDER, 5, 2, "same", lifting=True, seed=seeds(), name="stem_conv")(x)
    x = GroupBatchNorm(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate(widths[1:], start=1):
        x = _p4m_block(x, filters // ORDER, name=f"stage{stage}", seeds=seeds)
    x = layers.GlobalAveragePooling2D(name="orientations_pool")(x)
    x = OrientationPool(name="pool")(x)
    outputs = layers.Dense(2, activation="softmax", kernel_initializer=seeds.glorot(), name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def _branch(input_shape, architecture: str, *, widths, seed: int):
    """One finder network up to its pooled features, as a named sub-model (``"p4m_branch"``)."""
    keras = lazy_keras()
    finder = build_finder(input_shape, widths=widths, seed=seed, architecture=architecture)
    return keras.Model(finder.input, finder.get_layer("pool").output, name=f"{architecture}_branch")


def build_two_branch_finder(input_shape=(100, 100, 1), *, widths=(16, 32, 64, 128), seed: int = 0,
                            name: str = "lenslib_finder"):
    """The p4m finder and the residual finder side by side on the same cutout::

        input 100x100x1 -> p4m branch (build_p4m_finder up to its 32 pooled features)
                        -> residual branch (build_finder up to its 128 pooled features)
        -> concatenated (160) -> softmax 2

    The softmax over the joined features makes the lens logit the sum of one logit from each
    branch: an ensemble of two networks with different inductive biases (one exactly invariant
    to flips and quarter turns, one not), trained or fine-tuned as one model.  ``widths``: both
    branches' (multiples of 8, for the p4m branch).
    """
    keras = lazy_keras()
    layers = keras.layers
    seeds = Seeds(seed)
    inputs = keras.Input(tuple(input_shape), name="cutout")
    features = [_branch(input_shape, architecture, widths=widths, seed=seeds())(inputs)
                for architecture in BRANCHES]
    x = layers.Concatenate(name="pool")(features)
    outputs = layers.Dense(2, activation="softmax", kernel_initializer=seeds.glorot(), name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def join_finders(p4m_finder, residual_finder, *, name: str = "lenslib_finder"):
    """A two-branch finder (:func:`build_two_branch_finder`) whose branches are two trained
    finders, one of each architecture (models, shipped names or ``.keras`` files), with the same
    input and widths: its lens logit is exactly the sum of theirs (each one's softmax kernel
    stacked, their biases added).  Set its operating point again before use: the sum moves it."""
    import numpy as np

    finders = [load_model(f) if isinstance(f, (str, os.PathLike)) else f
               for f in (p4m_finder, residual_finder)]
    layouts = [finder_layout(f) for f in finders]
    for argument, finder, layout, architecture in zip(("p4m_finder", "residual_finder"), finders, layouts,
                                                       BRANCHES):
        if layout["architecture"] != architecture:
            raise ValueError(f"join_finders: {argument} must be a {architecture} finder "
                             f"(got a {layout['architecture']} finder, {finder.name})")
    if layouts[0]["widths"] != layouts[1]["widths"] or finders[0].input_shape != finders[1].input_shape:
        raise ValueError(f"join_finders: the two finders must share their input and widths (got "
                         f"{finders[0].input_shape[1:]} and {layouts[0]['widths']} for the p4m finder, "
                         f"{finders[1].input_shape[1:]} and {layouts[1]['widths']} for the residual one)")
    joined = build_two_branch_finder(tuple(finders[0].input_shape[1:]), widths=layouts[0]["widths"],
                                     name=name)
    kernels, biases = [], []
    for finder, architecture in zip(finders, BRANCHES):
        branch = joined.get_layer(f"{architecture}_branch")
        for layer in finder.layers:
            if layer.weights and layer.name != "softmax":
                branch.get_layer(layer.name).set_weights(layer.get_weights())
        kernel, bias = finder.get_layer("softmax").get_weights()
        kernels.append(kernel)
        biases.append(bias)
    joined.get_layer("softmax").set_weights([np.concatenate(kernels), np.sum(biases, axis=0)])
    return joined


def finder_layout(model) -> dict:
    """The :func:`build_finder` arguments that rebuild ``model``'s network (a lenslib finder):
    ``{"architecture": ..., "widths": ...}``, read from its layers."""
    from .equivariant import ORDER, GroupConv2D

    branches = finder_branches(model)
    if branches is not None:
        return {"architecture": TWO_BRANCHES, "widths": finder_layout(branches[0])["widths"]}
    stem = model.get_layer("stem_conv")
    p4m = isinstance(stem, GroupConv2D)
    convs = [stem] + [layer for layer in model.layers if layer.name.endswith("_conv1")]
    return {"architecture": "p4m" if p4m else "residual",
            "widths": tuple(int(c.filters) * (ORDER if p4m else 1) for c in convs)}


def build_finder_model(input_shape=(100, 100, 1), *, regime: str = "frozen", weights=None,
                       dropout: float = 0.5, head_units: int = 256, seed: int = 0):
    """The finder as Table 5-1's transfer rows use a backbone: its trunk (everything up to the
    pooled features: 128 for the residual network, 32 for p4m, 160 for both) under lenslib's
    transfer head (:func:`lenslib.models.common.transfer_head`).

    ``weights``: a shipped finder's name or a ``.keras`` file of a finder, whose trunk weights
    are copied in (lens-domain pretraining, the offline stand-in for ImageNet), or None (random).
    ``regime``: ``frozen`` (only the head trains: the frozen fast path applies), ``finetune``
    (everything trains) or ``scratch`` (random weights, everything trains).  With no weights the
    trunk is the shipped finders' network (``FinderRecipe``'s default architecture and widths), so
    that a scratch row differs from the pretrained rows by the pretraining alone.
    """
    from ..config import FinderRecipe

    keras = lazy_keras()
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES} (got {regime!r})")
    if regime == "scratch" and weights is not None:
        raise ValueError(f"regime='scratch' starts from random weights: weights must be None "
                         f"(got {weights!r})")
    layout = {"architecture": FinderRecipe.architecture, "widths": FinderRecipe.widths}
    if weights is not None:
        pretrained = load_model(weights)
        layout = finder_layout(pretrained)
    finder = build_finder(input_shape, seed=seed, **layout)
    if weights is not None:
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
