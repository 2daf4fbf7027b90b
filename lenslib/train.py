"""Training: early stopping and checkpoints over the streamed pipeline of :mod:`lenslib.pipeline`,
with the frozen fast path of :mod:`lenslib.features`.

:func:`fit` trains a model from :func:`lenslib.models.build_model` on rows of a
:class:`~lenslib.dataset.LensDataset` (or its file).  Rows are read from the file batch by batch
(never all in memory when the dataset is opened with ``in_memory=False`` or given as a path),
normalised with :func:`lenslib.preprocess.normalize`, shuffled per epoch with a seeded generator,
weighted to balance the classes, and prefetched.  A validation split of whole parent groups
(an image and its augmented copies never straddle it) drives early stopping on the validation
loss; the best epoch's weights are restored and written atomically to ``checkpoint``.

**Frozen fast path.**  A transfer model in the ``frozen`` regime with the fixed ``resize``
adapter computes exactly the same backbone features for an image in every epoch.  The fast path
computes them once per image, caches them on disk (:func:`lenslib.features.cached_features`)
and trains only the head on them, with the same batches, class weights and dropout seeds as
end-to-end training; the head it trains is the model's own, so the returned model is complete.
The same code runs on a GPU when TensorFlow sees one and on the CPU otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import TrainingConfig, get_profile
from .features import cached_features, feature_extractor
from .models import build_model, make_optimizer, save_model
from .pipeline import class_weights, make_pipeline
from .splits import validation_split


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (best epoch restored) and its record."""

    model: object
    history: dict[str, list[float]]
    best_epoch: int  # 0-based
    best_val_loss: float
    fast_path: bool
    train_indices: np.ndarray
    val_indices: np.ndarray
    checkpoint: Path | None
    seconds: float
    device: str
    features_path: Path | None = None
    config: TrainingConfig = field(default_factory=TrainingConfig)


# --- fitting ------------------------------------------------------------------------------------

def _callbacks_class():
    import keras

    class BestEpoch(keras.callbacks.Callback):
        """Tracks the lowest validation loss, keeps those weights, restores them at the end and
        writes ``save`` (the full model, which may contain the model being trained) to
        ``checkpoint``: at each improvement, or once at the end when ``save_each=False``."""

        def __init__(self, save, checkpoint, save_each):
            super().__init__()
            self.save, self.checkpoint, self.save_each = save, checkpoint, save_each
            self.best, self.best_epoch, self.best_weights = np.inf, -1, None

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("val_loss", np.inf)
            if np.isfinite(loss) and loss < self.best:
                self.best, self.best_epoch = float(loss), epoch
                self.best_weights = self.model.get_weights()
                if self.checkpoint is not None and self.save_each:
                    save_model(self.save, self.checkpoint)

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            if self.checkpoint is not None and (not self.save_each or self.best_weights is None):
                save_model(self.save, self.checkpoint)

    return BestEpoch


def _open(dataset):
    from .dataset import LensDataset, load_dataset

    if isinstance(dataset, LensDataset):
        return dataset, False
    if isinstance(dataset, (str, os.PathLike)):
        return load_dataset(dataset, in_memory=False), True
    raise TypeError(f"dataset must be a LensDataset or the path of a dataset file (got {type(dataset)})")


def fit(model, dataset, *, config: TrainingConfig | None = None, indices=None, val_indices=None,
        checkpoint: str | os.PathLike | None = None, fast_path="auto",
        cache_dir: str | os.PathLike | None = None, verbose: int = 0) -> FitResult:
    """Train ``model`` on ``dataset`` and return it with the best epoch's weights.

    Parameters
    ----------
    model : keras.Model
        From :func:`lenslib.models.build_model` (compiled here with ``config``'s optimizer).
    dataset : LensDataset or path
        A dataset from :mod:`lenslib.dataset`; a path is opened for streaming.
    config : TrainingConfig, optional
        Epochs, batch size, optimizer, learning rate, patience, validation fraction, class
        balancing and seed.  Default: the training config of the current profile.
    indices : array of int, optional
        Rows to train on (e.g. a cross-validation fold's training rows); default all rows.  A
        ``config.validation_fraction`` of them, whole parent groups at a time, is held out for
        early stopping, unless ``val_indices`` are given.
    val_indices : array of int, optional
        Rows for early stopping (e.g. the validation part of a cross-validation training fold);
        then every row of ``indices`` trains.
    checkpoint : path, optional
        A ``.keras`` file for the best model (written atomically).
    fast_path : 'auto', True or False
        Train a frozen transfer model's head on cached backbone features (see the module
        docstring).  ``auto`` uses it whenever the model allows; True requires it.
    cache_dir : path, optional
        Where the fast path caches features; default ``features/`` beside the dataset file.
    verbose : int
        Keras's progress output (0: silent).
    """
    import keras
    import tensorflow as tf

    config = get_profile().training if config is None else config
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config must be a TrainingConfig (got {type(config).__name__})")
    if fast_path not in ("auto", True, False):
        raise ValueError(f"fast_path must be 'auto', True or False (got {fast_path!r})")
    if checkpoint is not None and Path(checkpoint).suffix != ".keras":
        raise ValueError(f"checkpoint must be a .keras file (got {checkpoint})")
    data, opened = _open(dataset)
    try:
        size = tuple(model.input_shape[1:3])
        if tuple(data.images.shape[1:]) != size:
            raise ValueError(f"the dataset's images are {data.images.shape[1]}x{data.images.shape[2]} "
                             f"but the model takes {size[0]}x{size[1]}")
        rows = np.arange(len(data)) if indices is None else np.asarray(indices, dtype=np.int64)
        if rows.ndim != 1 or len(rows) == 0 or rows.min() < 0 or rows.max() >= len(data):
            raise ValueError(f"indices must be a non-empty 1-d array of rows in [0, {len(data)})")
        if val_indices is None:
            train_rows, val_rows = validation_split(rows, data.labels, data.parent_ids, mode="grouped",
                                                    fraction=config.validation_fraction, seed=config.seed)
        else:
            train_rows, val_rows = rows, np.asarray(val_indices, dtype=np.int64)
            if len(val_rows) == 0 or np.intersect1d(train_rows, val_rows).size:
                raise ValueError("val_indices must be non-empty and share no row with indices")
        train_rows, val_rows = np.sort(train_rows), np.sort(val_rows)
        weights = class_weights(data.labels[train_rows]) if config.balance_classes else None

        frozen_features = feature_extractor(model)  # None: layers before the head train too
        extractor = frozen_features if fast_path is not False else None
        if fast_path is True and extractor is None:
            raise ValueError(f"the fast path needs a frozen transfer model with the 'resize' adapter; "
                             f"{model.name} has trainable layers before its head (or no head)")
        keras.utils.set_random_seed(config.seed)
        start = time.perf_counter()
        features_path = None
        if extractor is not None:
            cache = Path(cache_dir) if cache_dir is not None else data.path.parent / "features"
            source, features_path = cached_features(extractor, data, cache, model_name=model.name,
                                                    batch_size=config.batch_size, verbose=verbose)
            trained = model.get_layer("head")
        else:
            source, trained = data.images, model
        is_features = extractor is not None
        epochs = config.epochs  # a network trained end to end gets the config's cap, wherever it is fitted
        if frozen_features is None and config.end_to_end_epochs is not None:
            epochs = min(epochs, config.end_to_end_epochs)
        common = dict(batch_size=config.batch_size, seed=config.seed, class_weight=weights,
                      features=is_features)
        augment = None if is_features else config.augment_shift  # views of images, not of features
        train_ds = make_pipeline(source, train_rows, data.labels, shuffle=True, augment_shift=augment,
                                 **common)
        val_ds = make_pipeline(source, val_rows, data.labels, shuffle=False, **common)

        trained.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate),
                        loss="sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
        best = _callbacks_class()(model, None if checkpoint is None else Path(checkpoint),
                                  save_each=not is_features)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience)
        hist = trained.fit(train_ds, validation_data=val_ds, epochs=epochs,
                           callbacks=[best, stop], shuffle=False, verbose=verbose)
        seconds = time.perf_counter() - start
    finally:
        if opened:
            data.images.file.close()
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    return FitResult(model=model, history={k: [float(v) for v in vals] for k, vals in hist.history.items()},
                     best_epoch=best.best_epoch, best_val_loss=best.best, fast_path=is_features,
                     train_indices=train_rows, val_indices=val_rows,
                     checkpoint=None if checkpoint is None else Path(checkpoint), seconds=seconds,
                     device=device, features_path=features_path, config=config)


def _build_for(name: str, data, config: TrainingConfig, *, regime, weights):
    """``name`` built for ``data``'s cutouts with ``config``'s adapter, upsampling, head and seed."""
    size = data.images.shape[1]
    return build_model(name, regime=regime, weights=weights, input_shape=(size, size, 1),
                       adapter=config.adapter, upsample=config.upsample, dropout=config.dropout,
                       head_units=config.head_units, seed=config.seed)


def train(name: str, dataset, *, config: TrainingConfig | None = None, regime: str | None = None,
          weights="auto", indices=None, checkpoint=None, fast_path="auto", cache_dir=None,
          verbose: int = 0) -> FitResult:
    """Build ``name`` with ``config``'s adapter, upsampling, head and seed
    (:func:`lenslib.models.build_model`) and :func:`fit` it."""
    config = get_profile().training if config is None else config
    data, opened = _open(dataset)
    try:
        model = _build_for(name, data, config, regime=regime, weights=weights)
        return fit(model, data, config=config, indices=indices, checkpoint=checkpoint,
                   fast_path=fast_path, cache_dir=cache_dir, verbose=verbose)
    finally:
        if opened:
            data.images.file.close()


__all__ = ["FitResult", "fit", "train", "cv_fit_predict", "score_rows"]


# --- cross-validation -------------------------------------------------------------------------------

def score_rows(result: FitResult, dataset, rows, *, batch_size: int = 128) -> np.ndarray:
    """Lens probabilities of ``rows`` of ``dataset`` from a fitted model; with the fast path,
    from its cached backbone features (the same numbers, without recomputing the backbone)."""
    from .models import predict_rows

    rows = np.asarray(rows, dtype=np.int64)
    if result.fast_path and result.features_path is not None:
        import h5py

        with h5py.File(result.features_path, "r") as f:
            features = f["features"][...][rows]
        head = result.model.get_layer("head")
        return head.predict(features, batch_size=batch_size, verbose=0)[:, 1].astype(np.float32)
    data, opened = _open(dataset)
    try:
        return predict_rows(result.model, data.images, rows, batch_size=batch_size)
    finally:
        if opened:
            data.images.file.close()


def fold_model_path(model_dir: str | os.PathLike, row: str, fold: int) -> Path:
    """Where :func:`cv_fit_predict` saves the model of cross-validation row ``row``'s fold ``fold``."""
    return Path(model_dir) / f"{row}-fold{fold}.keras"


def cv_fit_predict(name: str, dataset, *, config: TrainingConfig, regime: str | None = None,
                   weights="auto", model_dir: str | os.PathLike | None = None, row: str | None = None,
                   cache_dir: str | os.PathLike | None = None):
    """A ``fit_predict(fit, val, test, fold)`` for :func:`lenslib.cv.cross_validate`.

    Each fold builds ``name`` afresh from the same seed, trains it (shuffling with seed
    ``config.seed + fold``) on the ``fit`` rows
    with early stopping on the ``val`` rows, saves it as ``<model_dir>/<row>-fold<k>.keras`` and
    returns its scores on the validation and test rows.  Networks trained end to end get
    ``config.end_to_end_epochs`` at most (:func:`fit` applies it).
    """
    row = row or name

    def fit_predict(fit_rows, val_rows, test_rows, fold):
        cfg = dataclasses.replace(config, seed=config.seed + fold)
        data, opened = _open(dataset)
        try:
            # The same initial model in every fold (built from config.seed, not the fold's; a
            # frozen random backbone is then one fixed feature extractor, cached once); the
            # folds differ by their data and shuffling.
            model = _build_for(name, data, config, regime=regime, weights=weights)
            checkpoint = None if model_dir is None else fold_model_path(model_dir, row, fold)
            result = fit(model, data, config=cfg, indices=fit_rows, val_indices=val_rows,
                         checkpoint=checkpoint, cache_dir=cache_dir)
            scores = score_rows(result, data, np.concatenate([val_rows, test_rows]))
        finally:
            if opened:
                data.images.file.close()
        return scores[:len(val_rows)], scores[len(val_rows):]

    return fit_predict
