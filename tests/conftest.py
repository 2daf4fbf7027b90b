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
