"""Shared fixtures: a smoke-profile dataset built once per test session."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def smoke_config():
    from lenslib.config import get_profile

    return get_profile("smoke").simulation


@pytest.fixture(scope="session")
def smoke_dataset_path(smoke_config, tmp_path_factory):
    """Path of the smoke dataset (about 1 s to simulate), shared by every test that needs one."""
    from lenslib.dataset import build_dataset

    return build_dataset(smoke_config, tmp_path_factory.mktemp("data"), workers=1)


@pytest.fixture(scope="session")
def smoke_dataset(smoke_dataset_path):
    from lenslib.dataset import load_dataset

    return load_dataset(smoke_dataset_path)


# --- survey scanning (tests/test_scan.py, tests/test_cli.py) ------------------------------------

SPOT_SIGMA = 1.5  # pixels


@pytest.fixture(scope="session")
def spot_model_path(tmp_path_factory):
    """A tiny lens finder saved as .keras: it scores a tile by the brightest of its central 4x4
    normalised pixels, so a bright point source is 'found' exactly where it sits (p ~ 1 on it,
    ~0.02 on noise).  Plain Keras layers: it loads in safe mode like any lenslib model."""
    import keras
    import numpy as np

    from lenslib.models import save_model

    inputs = keras.Input((100, 100, 1), name="cutout")
    x = keras.layers.Cropping2D(48)(inputs)
    x = keras.layers.GlobalMaxPooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax", name="softmax")
    model = keras.Model(inputs, dense(x), name="spot_finder")
    dense.set_weights([np.array([[-2.0, 2.0]], dtype="float32"), np.array([3.0, -3.0], dtype="float32")])
    return save_model(model, tmp_path_factory.mktemp("models") / "spot.keras")


@pytest.fixture(scope="session")
def spot_image():
    """``spot_image(shape, spots, seed)``: unit-noise image (e-/s) with bright Gaussian spots
    (peak 60 sigma) at the given (x, y) pixel positions."""
    import numpy as np

    def make(shape, spots=(), seed=0):
        rng = np.random.default_rng(seed)
        image = rng.normal(0.0, 1.0, shape).astype(np.float32)
        yy, xx = np.mgrid[:shape[0], :shape[1]]
        for x, y in spots:
            image += 60.0 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / SPOT_SIGMA**2)
        return image

    return make
