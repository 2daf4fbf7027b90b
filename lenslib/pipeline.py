"""The input pipeline of training: balanced class weights and a seeded, streamed ``tf.data``
pipeline of normalised batches read from a dataset's images (or from cached backbone features).

Rows are read from the source batch by batch (an ``h5py.Dataset`` is streamed, never read whole),
normalised with :func:`lenslib.preprocess.normalize`, shuffled per epoch with a seeded generator
and prefetched.  :func:`lenslib.train.fit` builds its training and validation data with it.
"""

from __future__ import annotations

import numpy as np

from .augment import augment_batch
from .preprocess import normalize


def class_weights(labels) -> dict[int, float]:
    """Balanced class weights ``n / (2 n_c)`` (scikit-learn's ``compute_class_weight("balanced")``),
    so both classes weigh the same in the loss."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels)
    counts = {c: int((labels == c).sum()) for c in (0, 1)}
    if min(counts.values()) == 0:
        raise ValueError(f"both classes are needed to weight them (counts {counts})")
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    return {0: float(weights[0]), 1: float(weights[1])}


# --- the pipeline -------------------------------------------------------------------------------

class _Batches:
    """Callable generator of ``(x, y, w)`` batches over ``rows`` of ``source``; each call is one
    epoch, shuffled by ``SeedSequence([seed, epoch])`` so that two pipelines with the same rows
    and seed (images or cached features) visit the same batches in the same order."""

    def __init__(self, source, rows, labels, weights, batch_size, *, shuffle, seed, transform,
                 augment_shift=None):
        self.source, self.rows = source, np.asarray(rows, dtype=np.int64)
        self.labels, self.weights = labels, weights
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.transform, self.augment_shift = transform, augment_shift
        self.epoch = 0

    def __call__(self):
        rows = self.rows
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
            rows = rows[rng.permutation(len(rows))]
        # Its own stream, so that augmenting leaves the order of the batches unchanged.
        views = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, 1]))
        self.epoch += 1
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            order = np.argsort(batch)  # h5py reads increasing indices
            data = np.empty((len(batch), *self.source.shape[1:]), dtype=np.float32)
            data[order] = self.source[batch[order]]
            y = self.labels[batch].astype(np.int32)
            x = self.transform(data)
            if self.augment_shift is not None:
                x = augment_batch(x[..., 0], views, self.augment_shift)[..., None]
            yield x, y, self.weights[y].astype(np.float32)


def _image_transform(batch):
    return normalize(batch)[..., None]


def make_pipeline(source, rows, labels, *, batch_size: int, shuffle: bool, seed: int = 0,
                  class_weight: dict[int, float] | None = None, features: bool = False,
                  augment_shift: int | None = None):
    """A ``tf.data.Dataset`` of ``(x, y, sample_weight)`` batches over ``rows`` of ``source``.

    ``source`` is the dataset's images (array or ``h5py.Dataset``, e-/s; normalised here) or,
    with ``features=True``, an array of cached backbone features.  Batches are read lazily, so
    an ``h5py.Dataset`` is streamed from the file; the next batches are prefetched.
    ``augment_shift`` (images only): every cutout flipped, turned and shifted by up to that many
    pixels (:func:`lenslib.augment.augment_batch`), drawn afresh each epoch from ``seed``.
    """
    import tensorflow as tf

    labels = np.asarray(labels)
    weights = np.ones(2, dtype=np.float32)
    if class_weight is not None:
        weights = np.array([class_weight[0], class_weight[1]], dtype=np.float32)
    if features and augment_shift is not None:
        raise ValueError("augment_shift transforms images; cached features cannot be augmented")
    transform = (lambda b: b) if features else _image_transform
    x_shape = (None, *source.shape[1:]) if features else (None, *source.shape[1:], 1)
    gen = _Batches(source, rows, labels, weights, batch_size, shuffle=shuffle, seed=seed,
                   transform=transform, augment_shift=augment_shift)
    signature = (tf.TensorSpec(x_shape, tf.float32), tf.TensorSpec((None,), tf.int32),
                 tf.TensorSpec((None,), tf.float32))
    n_batches = -(-len(gen.rows) // batch_size)
    ds = tf.data.Dataset.from_generator(gen, output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(tf.data.AUTOTUNE)


__all__ = ["class_weights", "make_pipeline"]
