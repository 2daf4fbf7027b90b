"""The frozen fast path: backbone features computed once and cached on disk.

A transfer model in the ``frozen`` regime with the fixed ``resize`` adapter computes exactly the
same backbone features for an image in every epoch.  :func:`feature_extractor` finds that frozen
part of a model, and :func:`cached_features` computes its features once per image and caches
them (keyed by the dataset's hash, the model's name and a digest of the extractor's architecture
and weights), so that :func:`lenslib.train.fit` trains only the head on them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .files import atomic_output
from .pipeline import make_pipeline

FEATURES_FORMAT = "lenslib-features"

def feature_extractor(model):
    """The part of ``model`` before its ``head`` if nothing in it trains (a ``frozen`` transfer
    model with the ``resize`` adapter), else None.  Its output is what the head sees."""
    import keras

    try:
        head = model.get_layer("head")
    except ValueError:
        return None
    # The head's input in *this* graph (``head.input`` is the nested model's own Input): the
    # tensors of its first call, through the base-class property that Functional overrides.
    features = keras.Operation.input.fget(head)
    extractor = keras.Model(model.input, features, name=f"{model.name}_features")
    if extractor.trainable_weights:
        return None
    return extractor


def _weights_digest(extractor) -> str:
    """A digest of what the extractor computes, its 'weights identity': input and output shapes,
    the configuration of every layer but the weighted backbone (adapter sizes and scalings), and
    the value of every weight in order.  Layer names are left out: Keras numbers unnamed layers
    per process, and the same model built twice must hit the same cache."""
    import keras

    h = hashlib.sha256()
    h.update(repr((extractor.input_shape, extractor.output_shape)).encode())
    for layer in extractor.layers:
        if isinstance(layer, keras.Model):
            h.update(type(layer).__name__.encode())
            continue
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        h.update(type(layer).__name__.encode() + json.dumps(config, sort_keys=True, default=str).encode())
    for w in extractor.weights:
        h.update(repr(tuple(w.shape)).encode())
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


def cached_features(extractor, dataset, cache_dir: str | os.PathLike, *, model_name: str,
                    batch_size: int = 64, verbose: int = 0) -> tuple[np.ndarray, Path]:
    """Backbone features of every image of ``dataset``, computed once and cached on disk.

    The file ``<cache_dir>/features-<model>-<dataset hash>-<weights digest>.h5`` holds a float32
    ``(N, F)`` array; it is written atomically and reused whenever the dataset, the model and
    its weights are the same.  Returns the features (in memory) and the file's path.
    """
    import h5py

    digest = _weights_digest(extractor)
    path = Path(cache_dir) / f"features-{model_name}-{dataset.config_hash}-{digest}.h5"
    n = len(dataset)
    if path.exists():
        with h5py.File(path, "r") as f:
            ok = (f.attrs.get("format") == FEATURES_FORMAT and f.attrs.get("complete", False)
                  and f["features"].shape[0] == n)
            if ok:
                return f["features"][...], path
    images = make_pipeline(dataset.images, np.arange(n), dataset.labels, batch_size=batch_size,
                           shuffle=False)
    features = extractor.predict(images, verbose=verbose).astype(np.float32)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=features)
        f.attrs.update(format=FEATURES_FORMAT, model=model_name, dataset_hash=dataset.config_hash,
                       weights_digest=digest, complete=True)
    return features, path


__all__ = ["FEATURES_FORMAT", "cached_features", "feature_extractor"]
