"""lenslib.train: the streamed pipeline, validation split, class weights, early stopping,
checkpoints, and the frozen fast path matching end-to-end frozen training."""

import dataclasses
import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import lenslib  # noqa: E402
from lenslib.config import TrainingConfig, get_profile  # noqa: E402
from lenslib.dataset import load_dataset  # noqa: E402
from lenslib.features import cached_features, feature_extractor  # noqa: E402
from lenslib.models import backbone_of, build_model, predict  # noqa: E402
from lenslib.pipeline import class_weights, make_pipeline  # noqa: E402
from lenslib.preprocess import normalize  # noqa: E402
from lenslib.splits import validation_split  # noqa: E402
from lenslib.train import fit, train  # noqa: E402


@pytest.fixture(scope="module")
def smoke_training():
    return get_profile("smoke").training


@pytest.fixture(scope="module")
def vgg16_weights(tmp_path_factory):
    """A fixed (random) VGG16 trunk in a file, so two builds have the same backbone."""
    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.weights.h5"
    keras.utils.set_random_seed(7)
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(100, 100, 3)).save_weights(path)
    return path


def batches(ds):
    return [tuple(np.asarray(t) for t in batch) for batch in ds]


# --- splitting and weighting --------------------------------------------------------------------

def test_validation_split_keeps_families_together(smoke_dataset):
    labels, groups = smoke_dataset.labels, smoke_dataset.parent_ids
    rows = np.arange(len(labels))
    train_pos, val_pos = validation_split(rows, labels, groups, fraction=0.25, seed=1)
    assert len(np.intersect1d(train_pos, val_pos)) == 0
    assert len(train_pos) + len(val_pos) == len(labels)
    assert not set(groups[train_pos]) & set(groups[val_pos])  # an image and its copies stay together
    assert set(labels[val_pos]) == {0, 1}
    assert 0.15 < len(val_pos) / len(labels) < 0.35
    again = validation_split(rows, labels, groups, fraction=0.25, seed=1)
    np.testing.assert_array_equal(val_pos, again[1])
    with pytest.raises(ValueError, match="fraction"):
        validation_split(rows, labels, groups, fraction=0.9)
    with pytest.raises(ValueError, match="holds only"):
        validation_split(np.arange(10), np.ones(10), np.arange(10), fraction=0.2)


def test_class_weights_balance_the_classes():
    labels = np.array([1] * 30 + [0] * 10)
    w = class_weights(labels)
    assert w[1] * 30 == pytest.approx(w[0] * 10)  # each class carries the same total weight
    assert w[1] * 30 + w[0] * 10 == pytest.approx(40)
    with pytest.raises(ValueError, match="both classes"):
        class_weights(np.ones(5))


# --- the pipeline -------------------------------------------------------------------------------

def test_pipeline_streams_the_same_batches_as_memory(smoke_dataset, smoke_dataset_path):
    rows = np.arange(0, len(smoke_dataset), 2)
    weights = class_weights(smoke_dataset.labels[rows])
    kwargs = dict(batch_size=8, shuffle=True, seed=3, class_weight=weights)
    in_memory = batches(make_pipeline(smoke_dataset.images, rows, smoke_dataset.labels, **kwargs))
    streamed_ds = load_dataset(smoke_dataset_path, in_memory=False)
    try:
        assert not isinstance(streamed_ds.images, np.ndarray)  # an open h5py.Dataset
        streamed = batches(make_pipeline(streamed_ds.images, rows, streamed_ds.labels, **kwargs))
    finally:
        streamed_ds.images.file.close()
    assert len(in_memory) == len(streamed) == int(np.ceil(len(rows) / 8))
    for (xa, ya, wa), (xb, yb, wb) in zip(in_memory, streamed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(wa, wb)
    x, y, w = in_memory[0]
    assert x.shape == (8, 100, 100, 1) and x.dtype == np.float32
    assert set(np.unique(w)) <= {np.float32(weights[0]), np.float32(weights[1])}
    seen = np.concatenate([b[1] for b in in_memory])
    assert sorted(seen) == sorted(smoke_dataset.labels[rows])  # every row once per epoch


def test_pipeline_normalises_and_shuffles_per_epoch(smoke_dataset):
    rows = np.arange(len(smoke_dataset))
    ds = make_pipeline(smoke_dataset.images, rows, smoke_dataset.labels, batch_size=len(rows),
                       shuffle=True, seed=0)
    (x1, y1, _), = batches(ds)
    (x2, y2, _), = batches(ds)  # the next epoch
    assert not np.array_equal(x1, x2)
    # Every image appears, normalised by lenslib.preprocess.normalize.
    reference = normalize(smoke_dataset.images)[..., None]
    order = [int(np.flatnonzero((reference == img).all(axis=(1, 2, 3)))[0]) for img in x1[:5]]
    np.testing.assert_array_equal(y1[:5], smoke_dataset.labels[order])
    fixed = make_pipeline(smoke_dataset.images, rows[:10], smoke_dataset.labels, batch_size=4,
                          shuffle=False)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches(fixed)]), reference[:10])


def test_pipeline_augments_training_views_afresh_each_epoch_and_keeps_the_batches_order(smoke_dataset):
    """augment_shift: each cutout is a flipped and turned view of the same normalised image, with
    its label and weight; the rows come in the same order as without augmentation, and each
    image's view is drawn afresh each epoch but repeats with the seed."""
    rows = np.arange(len(smoke_dataset))
    kwargs = dict(batch_size=len(rows), shuffle=True, seed=5)
    plain = make_pipeline(smoke_dataset.images, rows, smoke_dataset.labels, **kwargs)
    turned = make_pipeline(smoke_dataset.images, rows, smoke_dataset.labels, augment_shift=0, **kwargs)

    def views(epoch_plain, epoch_turned):
        """The quarter turns and flip that made each view, in the batch's order."""
        found = []
        for img, view in zip(epoch_plain[0][..., 0], epoch_turned[0][..., 0]):
            (made,) = [(k, f) for k in range(4) for f in (1, -1)
                       if np.array_equal(np.rot90(img, k)[:, ::f], view)]
            found.append(made)
        return found

    (first_plain,), (next_plain,) = batches(plain), batches(plain)
    (first_turned,), (next_turned,) = batches(turned), batches(turned)
    for p, t in ((first_plain, first_turned), (next_plain, next_turned)):
        np.testing.assert_array_equal(p[1], t[1])  # labels and weights in the same order
        np.testing.assert_array_equal(p[2], t[2])
    first, after = views(first_plain, first_turned), views(next_plain, next_turned)
    assert len(set(first)) > 1
    assert first != after  # drawn afresh each epoch, not the same draws over reshuffled rows
    again = make_pipeline(smoke_dataset.images, rows, smoke_dataset.labels, augment_shift=0, **kwargs)
    np.testing.assert_array_equal(batches(again)[0][0], first_turned[0])  # seeded
    with pytest.raises(ValueError, match="augment_shift"):
        make_pipeline(np.zeros((4, 8), np.float32), np.arange(4), np.array([0, 1, 0, 1]), batch_size=2,
                      shuffle=True, features=True, augment_shift=2)


# --- fitting ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fit_lensflow_checkpoints_the_best_epoch(smoke_dataset_path, smoke_training, tmp_path):
    config = dataclasses.replace(smoke_training, epochs=3, patience=3, end_to_end_epochs=None)
    checkpoint = tmp_path / "models" / "lensflow.keras"
    result = train("lensflow", smoke_dataset_path, config=config, checkpoint=checkpoint)
    assert not result.fast_path
    assert len(result.history["loss"]) == 3
    assert result.best_epoch == int(np.argmin(result.history["val_loss"]))
    assert result.best_val_loss == pytest.approx(min(result.history["val_loss"]))
    import tensorflow as tf

    assert result.device == ("GPU" if tf.config.list_physical_devices("GPU") else "CPU")
    assert not set(result.train_indices) & set(result.val_indices)
    assert sorted(os.listdir(checkpoint.parent)) == ["lensflow.keras"]  # nothing half-written left
    loaded = lenslib.load_model(checkpoint)
    images = load_dataset(smoke_dataset_path).images[:16]
    np.testing.assert_array_equal(predict(result.model, images), predict(loaded, images))
    # The restored weights are the best epoch's: evaluating them gives its validation loss.
    val = make_pipeline(load_dataset(smoke_dataset_path).images, result.val_indices,
                        load_dataset(smoke_dataset_path).labels, batch_size=config.batch_size,
                        shuffle=False, class_weight=class_weights(
                            load_dataset(smoke_dataset_path).labels[result.train_indices]))
    loaded.compile(loss="sparse_categorical_crossentropy")
    assert loaded.evaluate(val, verbose=0) == pytest.approx(result.best_val_loss, rel=1e-4)


def test_early_stopping_and_seeding(smoke_dataset, smoke_training):
    config = dataclasses.replace(smoke_training, epochs=6, patience=0, end_to_end_epochs=None)
    a = fit(build_model("lensflow", input_shape=(100, 100, 1), seed=1), smoke_dataset, config=config)
    b = fit(build_model("lensflow", input_shape=(100, 100, 1), seed=1), smoke_dataset, config=config)
    assert a.history == b.history  # same seed, same training
    stopped = len(a.history["loss"])
    losses = a.history["val_loss"]
    # patience 0: training stops at the first epoch that does not improve on the best.
    first_worse = next((i for i in range(1, len(losses)) if losses[i] >= min(losses[:i])), None)
    assert stopped == (config.epochs if first_worse is None else first_worse + 1)


def test_end_to_end_networks_get_the_epoch_cap_wherever_they_are_fitted(smoke_dataset, smoke_training):
    config = dataclasses.replace(smoke_training, epochs=3, patience=3, end_to_end_epochs=2)
    assert len(train("lensflow", smoke_dataset, config=config).history["loss"]) == 2
    head_only = train("finder", smoke_dataset, config=config, regime="frozen", weights=None,
                      fast_path=False)
    assert len(head_only.history["loss"]) == 3  # a frozen trunk: only the head trains, no cap


def test_fit_rows_and_errors(smoke_dataset, smoke_training):
    rows = np.flatnonzero(smoke_dataset.parent_ids % 2 == 0)
    config = dataclasses.replace(smoke_training, epochs=1)
    result = fit(build_model("lensflow"), smoke_dataset, config=config, indices=rows)
    assert set(result.train_indices) | set(result.val_indices) == set(rows)
    with pytest.raises(ValueError, match="model takes 40x40"):
        fit(build_model("lensflow", input_shape=(40, 40, 1)), smoke_dataset, config=config)
    with pytest.raises(ValueError, match="indices"):
        fit(build_model("lensflow"), smoke_dataset, config=config, indices=[10_000])
    with pytest.raises(ValueError, match=r"\.keras"):
        fit(build_model("lensflow"), smoke_dataset, config=config, checkpoint="model.h5")
    with pytest.raises(TypeError, match="TrainingConfig"):
        fit(build_model("lensflow"), smoke_dataset, config={"epochs": 1})
    with pytest.raises(ValueError, match="fast path needs a frozen"):
        fit(build_model("vgg16", weights=None, adapter="deconv"), smoke_dataset, config=config,
            fast_path=True)


def test_training_config_is_validated():
    with pytest.raises(ValueError, match="TrainingConfig.optimizer"):
        TrainingConfig(optimizer="adagrad")
    with pytest.raises(ValueError, match="TrainingConfig.validation_fraction"):
        TrainingConfig(validation_fraction=0.0)
    with pytest.raises(ValueError, match="TrainingConfig.adapter"):
        TrainingConfig(adapter="nearest")
    for name in ("smoke", "quick", "full"):
        assert isinstance(get_profile(name).training, TrainingConfig)


# --- the frozen fast path -----------------------------------------------------------------------

@pytest.mark.slow
def test_fast_path_matches_end_to_end_frozen_training(smoke_dataset, smoke_training, vgg16_weights,
                                                      tmp_path):
    config = dataclasses.replace(smoke_training, epochs=3, patience=3)

    def model():
        return build_model("vgg16", weights=vgg16_weights, regime="frozen", seed=2)

    end_to_end = fit(model(), smoke_dataset, config=config, fast_path=False)
    fast = fit(model(), smoke_dataset, config=config, fast_path=True, cache_dir=tmp_path,
               checkpoint=tmp_path / "fast.keras")
    assert fast.fast_path and not end_to_end.fast_path
    # Same batches, same head initialisation, same dropout masks: the same training, up to
    # floating-point differences in the backbone's arithmetic.
    np.testing.assert_allclose(fast.history["val_loss"], end_to_end.history["val_loss"], rtol=1e-3)
    images = smoke_dataset.images[:32]
    np.testing.assert_allclose(predict(fast.model, images), predict(end_to_end.model, images),
                               atol=1e-3)
    # The complete model, backbone included, is what the fast path returns and checkpoints.
    loaded = lenslib.load_model(tmp_path / "fast.keras")
    np.testing.assert_array_equal(predict(loaded, images), predict(fast.model, images))
    assert backbone_of(loaded).trainable_weights == []


def test_feature_cache_is_keyed_and_reused(smoke_dataset, vgg16_weights, tmp_path):
    model = build_model("vgg16", weights=vgg16_weights, input_shape=(100, 100, 1))
    extractor = feature_extractor(model)
    assert extractor is not None and extractor.output_shape == (None, 512)
    features, path = cached_features(extractor, smoke_dataset, tmp_path, model_name=model.name)
    assert features.shape == (len(smoke_dataset), 512)
    assert path.name.startswith(f"features-vgg16-{smoke_dataset.config_hash}-")
    expected = extractor.predict(normalize(smoke_dataset.images[:8])[..., None], verbose=0)
    np.testing.assert_allclose(features[:8], expected, rtol=1e-5, atol=1e-6)
    mtime = path.stat().st_mtime_ns
    again, same = cached_features(extractor, smoke_dataset, tmp_path, model_name=model.name)
    assert same == path and path.stat().st_mtime_ns == mtime  # read back, not recomputed
    np.testing.assert_array_equal(again, features)
    # The same model built again (Keras numbers its layers anew) hits the same cache.
    rebuilt = build_model("vgg16", weights=vgg16_weights, input_shape=(100, 100, 1))
    _, same = cached_features(feature_extractor(rebuilt), smoke_dataset, tmp_path, model_name="vgg16")
    assert same == path and path.stat().st_mtime_ns == mtime
    # Other weights: another file.
    other = build_model("vgg16", weights=None, input_shape=(100, 100, 1))
    _, other_path = cached_features(feature_extractor(other), smoke_dataset, tmp_path, model_name="vgg16")
    assert other_path != path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, other_path.name])


def test_no_fast_path_for_trainable_feature_layers():
    assert feature_extractor(build_model("lensflow")) is None
    assert feature_extractor(build_model("vgg16", weights=None, regime="finetune")) is None
    assert feature_extractor(build_model("vgg16", weights=None, adapter="deconv")) is None
