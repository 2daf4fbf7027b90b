"""Profiles and configs: validated on construction, hashed stably."""

import dataclasses

import pytest

from lenslib.config import (
    MIN_IMAGE_SIZE,
    AugmentationConfig,
    InstrumentConfig,
    SimulationConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
    get_profile,
)


def test_full_profile_has_the_thesis_counts():
    sim = get_profile("full").simulation
    assert (sim.n_lenses, sim.n_nonlenses, sim.image_size) == (15000, 13239, 100)
    assert get_profile("full").cv_folds == 7


def test_profiles_differ_in_size_not_in_logic():
    smoke, quick, full = (get_profile(n).simulation for n in ("smoke", "quick", "full"))
    assert smoke.n_images < quick.n_images < full.n_images
    # Everything but the counts is shared, so the three profiles simulate the same sky.
    for a, b in ((smoke, full), (quick, full)):
        assert dataclasses.replace(a, n_lenses=1, n_nonlenses=1) == dataclasses.replace(
            b, n_lenses=1, n_nonlenses=1)


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("LENSLIB_PROFILE", "smoke")
    assert get_profile().name == "smoke"


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match=r"profile must be one of \('smoke', 'quick', 'full'\).*'huge'"):
        get_profile("huge")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_lenses": -3}, "n_lenses"),
        ({"n_nonlenses": 0}, "n_nonlenses"),
        ({"image_size": MIN_IMAGE_SIZE - 1}, "image_size"),
        ({"image_size": 100.0}, "image_size"),
        ({"augment_copies": -1}, "augment_copies"),
        ({"theta_e_range": (2.0, 1.0)}, "theta_e_range"),
        ({"theta_e_range": (0.5, 4.0)}, "theta_e_range"),  # beyond half of a 5" cutout
        ({"min_arc_snr": float("nan")}, "min_arc_snr"),
        ({"lens_kinds": (("spiral", 1.0),)}, "lens_kinds"),
        ({"nonlens_kinds": (("star", -1.0),)}, "nonlens_kinds"),
    ],
)
def test_bad_simulation_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"SimulationConfig\.{field} must be"):
        SimulationConfig(**kwargs)


def test_image_size_error_gives_the_allowed_range():
    with pytest.raises(ValueError, match=rf"\[{MIN_IMAGE_SIZE}, 512\].*got 20"):
        SimulationConfig(image_size=20)


def test_bad_instrument_and_augmentation_values():
    with pytest.raises(ValueError, match="InstrumentConfig.psf_size"):
        InstrumentConfig(psf_size=40)
    with pytest.raises(ValueError, match="InstrumentConfig.pixel_scale"):
        InstrumentConfig(pixel_scale=0.0)
    with pytest.raises(ValueError, match="AugmentationConfig.zoom_range"):
        AugmentationConfig(zoom_range=(1.0, 0.9))
    with pytest.raises(ValueError, match="AugmentationConfig.horizontal_flip"):
        AugmentationConfig(horizontal_flip="yes")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_profile("smoke").simulation.n_lenses = 5


def test_hash_is_stable_and_sensitive():
    a = SimulationConfig(n_lenses=10, n_nonlenses=10)
    assert config_hash(a) == config_hash(SimulationConfig(n_lenses=10, n_nonlenses=10))
    changed = [
        dataclasses.replace(a, seed=a.seed + 1),
        dataclasses.replace(a, min_arc_snr=a.min_arc_snr + 1),
        dataclasses.replace(a, instrument=InstrumentConfig(read_noise=5.0)),
        dataclasses.replace(a, augmentation=AugmentationConfig(shear_deg=10.0)),
    ]
    hashes = {config_hash(c) for c in changed}
    assert config_hash(a) not in hashes and len(hashes) == len(changed)


def test_config_round_trips_through_a_dict():
    cfg = get_profile("quick").simulation
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="not a SimulationConfig"):
        config_from_dict({"n_lenses": 3})


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("field", ["lens_kinds", "nonlens_kinds"])
def test_non_finite_mix_weights_are_refused(field, weight):
    mix = (("galaxy_galaxy", weight), ("lensed_quasar", 1.0)) if field == "lens_kinds" else (
        ("spiral", weight), ("star", 1.0))
    with pytest.raises(ValueError, match=rf"SimulationConfig\.{field} must be .*finite weights"):
        SimulationConfig(**{field: mix})


def test_no_notebook_branches_on_a_profile_name():
    """Profiles change sizes, never logic: notebooks read sizes from the profile, never compare its name."""
    import json
    import re
    from pathlib import Path

    pattern = re.compile(r"profile\s*[!=]=|\[\s*profile\s*\]|\.get\(\s*profile\b|profile\s+in\s*[\(\[{]")
    for path in sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                found = pattern.search(source)
                assert not found, f"{path.name} branches on the profile's name: {source[:200]}"


def test_profile_sizes_for_the_book_are_validated():
    import dataclasses

    quick = get_profile("quick")
    assert "deeplens" in quick.table_5_1_skip and 0 < quick.regime_fraction <= 1
    with pytest.raises(ValueError, match="Profile.regime_fraction"):
        dataclasses.replace(quick, regime_fraction=0.0)
    with pytest.raises(ValueError, match="Profile.mosaic_size"):
        dataclasses.replace(quick, mosaic_size=10)
