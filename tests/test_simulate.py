"""The simulated sky: lenses show their lensed light; non-lenses carry none."""

import numpy as np
import pytest

from lenslib.config import LENS_KINDS, NONLENS_KINDS, SimulationConfig
from lenslib.instrument import noise_variance
from lenslib.simulate import COMPONENTS, simulate_scene

CONFIG = SimulationConfig(n_lenses=10, n_nonlenses=10)
SEEDS = range(6)


def _snr(signal, record, config=CONFIG):
    """Collett (2015) SNR recomputed from the noiseless components, independently of the simulator."""
    variance = noise_variance(signal["total"], exposure_time=record["exposure_time"],
                              sky_brightness=record["sky_brightness"], instrument=config.instrument)
    part = signal["part"]
    above = part > np.sqrt(variance)
    return part[above].sum() / np.sqrt(variance[above].sum()) if above.any() else 0.0


def _visibility(part, other, total, record, config=CONFIG):
    """SNR of ``part`` over the pixels where it exceeds 2 sigma and outshines ``other``,
    recomputed from the noiseless components independently of the simulator."""
    variance = noise_variance(total, exposure_time=record["exposure_time"],
                              sky_brightness=record["sky_brightness"], instrument=config.instrument)
    shows = (part > 2 * np.sqrt(variance)) & (part > other)
    return part[shows].sum() / np.sqrt(variance[shows].sum()) if shows.any() else 0.0


def _scene(kind, seed):
    return simulate_scene(kind, np.random.default_rng(seed), CONFIG)


@pytest.mark.parametrize("kind", LENS_KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_every_lens_shows_detectable_lensed_light(kind, seed):
    scene = _scene(kind, seed)
    rec, comp = scene.record, scene.components
    total = sum(comp[c] for c in COMPONENTS)
    assert rec["label"] == 1 and rec["kind"] == kind
    assert comp["lensed"].sum() > 0
    snr = _snr({"total": total, "part": comp["lensed"]}, rec)
    assert snr >= CONFIG.min_arc_snr
    assert snr == pytest.approx(rec["arc_snr"], rel=1e-6)
    # An observer can point to it: pixels where the lensed light outshines the lens galaxy and
    # the field, well above the noise (label noise otherwise: "lenses" nobody could see).
    visible = _visibility(comp["lensed"], comp["deflector"] + comp["field"], total, rec)
    assert visible >= CONFIG.min_arc_visibility
    assert visible == pytest.approx(rec["arc_visibility"], rel=1e-6)
    assert CONFIG.theta_e_range[0] <= rec["theta_e"] <= CONFIG.theta_e_range[1]
    assert rec["n_source_images"] >= 2 and rec["magnification"] >= CONFIG.min_magnification
    assert rec["image_config"] in ("ring", "quad", "double")


@pytest.mark.parametrize("kind", NONLENS_KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_no_nonlens_carries_lensed_light(kind, seed):
    scene = _scene(kind, seed)
    assert scene.record["label"] == 0 and scene.record["kind"] == kind
    assert not scene.components["lensed"].any()


@pytest.mark.parametrize("kind", ["ring_galaxy", "companion", "tidal_features", "merger", "spiral"])
def test_lookalike_features_are_as_visible_as_arcs(kind):
    for seed in SEEDS:
        scene = _scene(kind, seed)
        comp = scene.components
        assert comp["feature"].sum() > 0
        total = sum(comp[c] for c in COMPONENTS)
        assert _snr({"total": total, "part": comp["feature"]}, scene.record) >= CONFIG.min_arc_snr
        visible = _visibility(comp["feature"], comp["deflector"] + comp["field"], total, scene.record)
        assert visible >= CONFIG.min_arc_visibility


def test_every_cutout_sits_in_a_field():
    counts = [_scene("elliptical", s).record["n_field_objects"] for s in range(20)]
    counts += [_scene("galaxy_galaxy", s).record["n_field_objects"] for s in range(20)]
    assert np.mean(counts) > 1.5  # field galaxies and stars around lenses and non-lenses alike
    field = _scene("empty_field", 3).components["field"]
    assert field.sum() > 0


def test_images_are_float32_in_electrons_per_second():
    scene = _scene("star", 1)
    assert scene.image.dtype == np.float32
    assert scene.image.shape == (CONFIG.image_size, CONFIG.image_size)
    # The observed star's flux matches its noiseless model within the noise.
    model = sum(scene.components[c] for c in COMPONENTS)
    assert abs(scene.image.sum() - model.sum()) < 5 * np.sqrt(noise_variance(
        model, exposure_time=scene.record["exposure_time"], sky_brightness=scene.record["sky_brightness"],
        instrument=CONFIG.instrument).sum()) + 1e3 * scene.record["has_artifact"]


def test_same_seed_same_bytes_other_seed_other_image():
    a, b, c = _scene("galaxy_galaxy", 7), _scene("galaxy_galaxy", 7), _scene("galaxy_galaxy", 8)
    assert a.image.tobytes() == b.image.tobytes()
    assert not np.array_equal(a.image, c.image)


def test_bad_kind_and_rng_are_rejected():
    with pytest.raises(ValueError, match="kind must be one of"):
        simulate_scene("black_hole", np.random.default_rng(0), CONFIG)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        simulate_scene("star", 42, CONFIG)


def test_render_lens_system_obeys_the_lens_equation():
    from lenslib.simulate import critical_curves_and_caustics, render_lens_system

    kw = dict(theta_e=1.2, q=0.7, phi=0.3, config=CONFIG, rng=np.random.default_rng(0))
    quad = render_lens_system(source_x=0.03, source_y=-0.02, **kw)
    double = render_lens_system(source_x=0.0, source_y=-0.5, **kw)
    assert quad.record["n_source_images"] == 4 and double.record["n_source_images"] == 2
    assert quad.record["magnification"] > double.record["magnification"] > 1
    assert quad.components["lensed"].sum() > 0 and not quad.components["feature"].any()
    critical, caustics = critical_curves_and_caustics(quad.record["lens_kwargs"])
    radius = np.hypot(*critical[0])
    assert 0.8 < np.median(radius) < 1.6  # the tangential critical curve sits near theta_E
    cx, cy = caustics[0]
    assert np.hypot(0.03, -0.02) < np.hypot(cx, cy).max()  # the quad's source is inside the caustic


DEFLECTOR_FIELDS = ("deflector_mag", "deflector_r_eff", "sigma_v", "z_lens")


@pytest.fixture(scope="module")
def lenses_and_twins():
    """150 lenses and 150 same-population non-lenses ("elliptical"), drawn with the default mix."""
    config = SimulationConfig(n_lenses=10, n_nonlenses=10)
    rng = np.random.default_rng(2024)
    kinds = rng.choice(LENS_KINDS, size=150, p=[0.75, 0.25])
    lenses = [simulate_scene(k, np.random.default_rng([11, i]), config) for i, k in enumerate(kinds)]
    twins = [simulate_scene("elliptical", np.random.default_rng([12, i]), config) for i in range(150)]
    return lenses, twins


@pytest.mark.parametrize("name", DEFLECTOR_FIELDS)
def test_same_population_nonlenses_share_the_lenses_deflectors(lenses_and_twins, name):
    """An elliptical is a lens's unlensed twin: its deflector comes from the lenses' distribution,
    selection effects included (a two-sample KS test cannot tell them apart)."""
    from scipy.stats import ks_2samp

    lenses, twins = lenses_and_twins
    a = [s.record[name] for s in lenses]
    b = [s.record[name] for s in twins]
    assert ks_2samp(a, b).pvalue > 0.01, name


def test_same_population_nonlenses_differ_only_by_the_lensed_light(lenses_and_twins):
    _, twins = lenses_and_twins
    for scene in twins[:20]:
        assert scene.record["label"] == 0 and not scene.components["lensed"].any()
        assert not scene.components["feature"].any()
        assert scene.components["deflector"].sum() > 0
        assert np.isnan(scene.record.get("theta_e", np.nan))


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_twins_get_an_unlensed_neighbour_when_asked(fraction):
    config = SimulationConfig(n_lenses=10, n_nonlenses=10, twin_neighbour_fraction=fraction)
    for seed in range(4):
        scene = simulate_scene("elliptical", np.random.default_rng(seed), config)
        assert not scene.components["lensed"].any()
        assert scene.components["feature"].any() == (fraction == 1.0)
        # The record says how visible the stand-in is (0 when there is none).
        assert (scene.record["feature_visibility"] > 0) == (fraction == 1.0)


def test_statistics_cannot_tell_a_lens_galaxy_from_its_twin():
    """Without its lensed light, a lens is a same-population non-lens: boosted trees on image
    statistics of the rest of its cutout (deflector, field, noise) score at chance, while on the
    same cutouts with the lensed light in they do not (what they see there is the lensed light)."""
    from lenslib.diagnostics import population_shortcut

    table = population_shortcut(SimulationConfig(), 150, seed=0)
    auc = dict(zip(table["test"], table["auc"]))
    assert auc["lens_without_lensed_light_vs_elliptical"] <= 0.6
    assert auc["lens_vs_elliptical"] >= auc["lens_without_lensed_light_vs_elliptical"] + 0.15
    assert list(table["n_lenses"]) == list(table["n_nonlenses"]) == [150, 150]
    with pytest.raises(ValueError, match="n_pairs"):
        population_shortcut(SimulationConfig(), 2)


def test_every_nonlens_kind_but_the_twins_has_its_drawer():
    from lenslib.config import NONLENS_KINDS
    from lenslib.simulate import NONLENS_DRAWERS

    assert set(NONLENS_DRAWERS) == set(NONLENS_KINDS) - {"elliptical"}


@pytest.mark.parametrize("kwargs, match", [
    ({"theta_e": 0.0, "q": 0.7}, "theta_e, the Einstein radius, must be a positive number"),
    ({"theta_e": 1.2, "q": -0.5}, r"axis ratio q must be a number in \(0, 1\]"),
    ({"theta_e": 1.2, "q": 1.5}, r"axis ratio q must be a number in \(0, 1\]"),
    ({"theta_e": 1.2, "q": 0.7, "shear": 0.05}, r"shear must be a pair \(gamma1, gamma2\)"),
    ({"theta_e": 1.2, "q": 0.7, "phi": float("nan")}, "position angle phi must be a finite number"),
])
def test_a_lens_of_impossible_parameters_is_refused_naming_them(kwargs, match):
    from lenslib.simulate import sie_lens_kwargs

    with pytest.raises(ValueError, match=match):
        sie_lens_kwargs(**kwargs)
    lens = sie_lens_kwargs(theta_e=1.2, q=0.7, shear=[0.03, 0.0])  # a list, as papermill passes it
    assert lens[1]["gamma1"] == 0.03 and lens[0]["theta_E"] == 1.2
