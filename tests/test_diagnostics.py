"""lenslib.diagnostics: AUCs by kind and by bin, survey metrics, the statistics-only shortcut test,
shifted test skies, evaluation of a finder on dataset rows, and the learnability recipe."""

import dataclasses

import numpy as np
import pytest
from astropy.table import Table
from sklearn.metrics import roc_auc_score

from lenslib.config import SimulationConfig, config_hash, config_to_dict
from lenslib.diagnostics import (
    auc_by_bins,
    auc_by_kind,
    diagnose,
    shifted_skies,
    shortcut_test,
    summary_table,
    survey_metrics,
)
from lenslib.metrics import purity_at_prevalence, tpr_at_false_positives, tpr_at_fpr


def row(table, **match):
    hit = np.ones(len(table), bool)
    for col, value in match.items():
        hit &= table[col] == value
    assert hit.sum() == 1, f"{match}: {hit.sum()} rows"
    return table[np.flatnonzero(hit)[0]]


# --- AUC by kind and by bin --------------------------------------------------------------------------

def test_auc_by_kind_separates_kinds():
    rng = np.random.default_rng(0)
    lens_scores = rng.uniform(0, 1, 40)
    # Ellipticals score exactly like the lenses (the same multiset): AUC 0.5 by symmetry; stars
    # score below every lens: AUC 1.  Quasars are the lenses with the top scores.
    order = np.argsort(lens_scores)
    lens_kinds = np.where(np.isin(np.arange(40), order[-10:]), "lensed_quasar", "galaxy_galaxy")
    scores = np.concatenate([lens_scores, lens_scores, -rng.uniform(1, 2, 10)])
    labels = np.r_[np.ones(40), np.zeros(50)]
    kinds = np.concatenate([lens_kinds, ["elliptical"] * 40, ["star"] * 10])
    table = auc_by_kind(labels, scores, kinds)

    assert list(table["nonlenses"][:2]) == ["elliptical", "star"]  # most frequent first
    assert row(table, lenses="all", nonlenses="elliptical")["auc"] == pytest.approx(0.5, abs=1e-12)
    assert row(table, lenses="all", nonlenses="star")["auc"] == 1.0
    assert row(table, lenses="all", nonlenses="star")["n_nonlenses"] == 10
    everything = row(table, lenses="all", nonlenses="all")
    assert everything["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert (everything["n_lenses"], everything["n_nonlenses"]) == (40, 50)
    quasars = row(table, lenses="lensed_quasar", nonlenses="all")
    assert quasars["n_lenses"] == 10
    sel = (labels == 0) | (kinds == "lensed_quasar")
    assert quasars["auc"] == pytest.approx(roc_auc_score(labels[sel], scores[sel]))
    assert quasars["auc"] > row(table, lenses="galaxy_galaxy", nonlenses="all")["auc"]
    with pytest.raises(ValueError, match="one entry per image"):
        auc_by_kind(labels, scores, kinds[:-1])


def test_auc_by_bins_counts_lenses_per_bin():
    rng = np.random.default_rng(1)
    non_scores = rng.uniform(0, 1, 30)
    values = np.concatenate([
        rng.uniform(0, 10, 10),  # bin [0, 10): scored above every non-lens
        np.r_[rng.uniform(20, 30, 9), 30.0],  # bin [20, 30] (last edge inclusive): below every non-lens
        [np.nan] * 5, [50.0] * 3,  # left out: no value, beyond the last edge
        np.full(30, 15.0),  # non-lenses' values fall in [10, 20) but are not used
    ])
    scores = np.concatenate([rng.uniform(2, 3, 10), rng.uniform(-2, -1, 10), rng.uniform(0, 1, 8),
                             non_scores])
    labels = np.r_[np.ones(28), np.zeros(30)]
    table = auc_by_bins(values, labels, scores, (0, 10, 20, 30), name="arc_snr")

    assert table.colnames == ["arc_snr_min", "arc_snr_max", "n_lenses", "auc"]
    assert list(table["n_lenses"]) == [10, 0, 10]
    assert table["auc"][0] == 1.0
    assert np.isnan(table["auc"][1])
    assert table["auc"][2] == 0.0
    infinite = auc_by_bins(values, labels, scores, (0, 20, np.inf), name="x")
    assert list(infinite["n_lenses"]) == [10, 13]
    with pytest.raises(ValueError, match="increasing"):
        auc_by_bins(values, labels, scores, (10, 0), name="x")


def test_survey_metrics_are_lenslib_metrics():
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(500), np.zeros(5000)]
    scores = np.r_[rng.normal(2.0, 1.0, 500), rng.normal(0.0, 1.0, 5000)]
    m = survey_metrics(labels, scores)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["tpr0"] == tpr_at_false_positives(labels, scores, 0)
    assert m["tpr10"] == tpr_at_false_positives(labels, scores, 10)
    assert m["tpr_at_fpr_1e-3"] == tpr_at_fpr(labels, scores, 1e-3)
    assert m["tpr_at_fpr_1e-4"] == tpr_at_fpr(labels, scores, 1e-4)
    assert m["purity_at_1e-3"] == pytest.approx(purity_at_prevalence(m["tpr_at_fpr_1e-3"], 1e-3, 1e-3))
    assert m["tpr0"] <= m["tpr_at_fpr_1e-3"] <= m["tpr10"]  # 5 false positives allowed at 1e-3
    assert (m["n_lenses"], m["n_nonlenses"]) == (500, 5000)

    # 30 of 100 lenses above every non-lens, the other 70 below the top non-lens: TPR0 is 0.3.
    labels = np.r_[np.ones(100), np.zeros(100)]
    scores = np.r_[np.full(30, 2.0), rng.uniform(0, 0.5, 70), rng.uniform(0, 1, 99), 1.0]
    assert survey_metrics(labels, scores)["tpr0"] == pytest.approx(0.3)


def fake_metadata(kinds, arc_snr, theta_e, visibility=None):
    table = Table({"kind": kinds, "arc_snr": arc_snr, "theta_e": theta_e})
    if visibility is not None:
        table["arc_visibility"] = visibility
    return table


def test_diagnose_and_summary_table():
    rng = np.random.default_rng(3)
    n = 60
    labels = np.r_[np.ones(n), np.zeros(n)]
    kinds = np.r_[["galaxy_galaxy"] * n, ["elliptical"] * 30, ["spiral"] * 30]
    snr = np.r_[rng.uniform(15, 300, n), np.full(n, np.nan)]
    theta = np.r_[rng.uniform(0.5, 2.5, n), np.full(n, np.nan)]
    good = np.r_[rng.uniform(1, 2, n), rng.uniform(0, 1.2, n)]
    bad = np.r_[rng.uniform(0, 1, n), rng.uniform(0, 1, n)]
    reports = {"default": diagnose(labels, good, fake_metadata(kinds, snr, theta, snr)),
               "shifted": diagnose(labels, bad, fake_metadata(kinds, snr, theta))}
    assert reports["default"].by_visibility is not None and reports["shifted"].by_visibility is None
    assert reports["default"].by_arc_snr["n_lenses"].sum() == n
    spiral = row(reports["default"].by_kind, nonlenses="spiral")
    assert reports["default"].auc_against("spiral") == spiral["auc"]
    assert np.isnan(reports["default"].auc_against("star"))

    table = summary_table(reports)
    assert list(table["sky"]) == ["default", "shifted"]
    for name, r in zip(table["sky"], table):
        assert r["auc"] == reports[name].survey["roc_auc"]
        assert r["auc_vs_elliptical"] == reports[name].auc_against("elliptical")
        assert r["tpr10"] == reports[name].survey["tpr10"]
    assert table["auc_drop"][0] == 0.0
    assert table["auc_drop"][1] == pytest.approx(table["auc"][0] - table["auc"][1])
    assert table["auc_drop"][1] > 0.2  # the good finder against one scoring at random
    with pytest.raises(ValueError, match="metadata"):
        diagnose(labels, good, fake_metadata(kinds, snr, theta)[:-1])


# --- the statistics-only shortcut test ----------------------------------------------------------------

def synthetic_sky(lens_feature: bool, seed: int = 0, n_parents: int = 100):
    """Two noise cutouts per parent; half the parents are lenses, the non-lenses half ellipticals.
    Every cutout has a central blob; with ``lens_feature`` lenses also get a bright ring."""
    rng = np.random.default_rng(seed)
    n = 2 * n_parents
    yy, xx = np.mgrid[:100, :100] - 49.5
    r = np.hypot(xx, yy)
    images = rng.normal(0, 1, (n, 100, 100)).astype(np.float32) + 50 * np.exp(-0.5 * (r / 4) ** 2)
    groups = np.repeat(np.arange(n_parents), 2)
    labels = (groups < n_parents // 2).astype(int)
    kinds = np.where(labels == 1, "galaxy_galaxy", np.where(groups % 2, "elliptical", "spiral"))
    if lens_feature:
        images[labels == 1] += 8 * np.exp(-0.5 * ((r - 22) / 1.5) ** 2)
    return images, labels, kinds, groups


def test_shortcut_test_finds_an_obvious_shortcut_and_no_other():
    images, labels, kinds, groups = synthetic_sky(lens_feature=True)
    obvious = shortcut_test(images, labels, kinds, groups, seed=0)
    assert list(obvious["test"]) == ["lens_vs_elliptical", "lens_vs_all"]
    assert row(obvious, test="lens_vs_elliptical")["n_nonlenses"] == (kinds == "elliptical").sum()
    everything = row(obvious, test="lens_vs_all")
    assert everything["n_lenses"] + everything["n_nonlenses"] == 200
    assert (obvious["auc"] > 0.95).all()
    assert (obvious["auc_min"] <= obvious["auc"]).all() and (obvious["auc"] <= obvious["auc_max"]).all()

    images, labels, kinds, groups = synthetic_sky(lens_feature=False)
    none = shortcut_test(images, labels, kinds, groups, seed=0)
    assert (np.abs(none["auc"] - 0.5) < 0.2).all()

    # Too few elliptical parents for 3 grouped folds: NaN, not an error.
    few = (kinds != "elliptical") | (groups < 55)
    table = shortcut_test(images[few], labels[few], kinds[few], groups[few], seed=0)
    assert np.isnan(row(table, test="lens_vs_elliptical")["auc"])
    assert np.isfinite(row(table, test="lens_vs_all")["auc"])


# --- shifted skies -------------------------------------------------------------------------------------

def changed_fields(a: SimulationConfig, b: SimulationConfig) -> set[str]:
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    fa, fb = flat(config_to_dict(a)), flat(config_to_dict(b))
    return {k for k in fa if fa[k] != fb[k]}


def test_shifted_skies_change_only_what_they_say():
    training = SimulationConfig(n_lenses=300, n_nonlenses=200, seed=7)
    skies = shifted_skies(training)
    assert len(skies) >= 5 and next(iter(skies)) == "default"
    expected = {
        "default": set(),
        "moffat_psf": {"instrument.psf_model"},
        "shallow": {"instrument.exposure_time_range", "instrument.sky_brightness_range"},
        "other_populations": {"deflector_sigma_v_median", "deflector_z_mean", "source_z_mean",
                              "source_mag_range", "source_r_eff_range"},
        "neighbours": {"twin_neighbour_fraction"},
    }
    for name, sky in skies.items():
        assert isinstance(sky, SimulationConfig)
        assert changed_fields(training, sky) - {"instrument.moffat_fwhm", "instrument.moffat_beta"} == (
            expected[name] | {"seed"}), name
        assert (sky.n_lenses, sky.n_nonlenses) == (300, 200)
    seeds = {sky.seed for sky in skies.values()}
    assert len(seeds) == len(skies) and training.seed not in seeds
    hashes = {config_hash(sky) for sky in skies.values()}
    assert len(hashes) == len(skies) and config_hash(training) not in hashes

    moffat = skies["moffat_psf"].instrument
    assert (moffat.psf_model, moffat.moffat_fwhm, moffat.moffat_beta) == ("moffat", 0.15, 3.0)
    shallow, deep = skies["shallow"].instrument, training.instrument
    assert np.mean(shallow.exposure_time_range) < 0.6 * np.mean(deep.exposure_time_range)
    assert max(shallow.sky_brightness_range) <= min(deep.sky_brightness_range) + 0.1  # brighter sky
    assert skies["other_populations"].deflector_sigma_v_median != training.deflector_sigma_v_median
    assert skies["neighbours"].twin_neighbour_fraction == 1.0 != training.twin_neighbour_fraction


# --- evaluation of a finder on dataset rows ------------------------------------------------------------

def test_evaluate_scores_rows_in_any_order(smoke_dataset_path, spot_model_path):
    from lenslib.dataset import load_dataset
    from lenslib.diagnostics import evaluate
    from lenslib.models import load_model, predict

    model = load_model(spot_model_path)
    rows = np.arange(len(load_dataset(smoke_dataset_path)))[::-3]  # decreasing
    streamed = load_dataset(smoke_dataset_path, in_memory=False)
    try:
        report = evaluate(model, streamed, rows, batch_size=16)
    finally:
        streamed.images.file.close()
    memory = load_dataset(smoke_dataset_path)
    np.testing.assert_array_equal(report.rows, np.sort(rows))
    direct = predict(model, memory.images[report.rows])
    np.testing.assert_allclose(report.scores, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(report.labels, memory.labels[report.rows])
    again = evaluate(model, memory, rows)
    np.testing.assert_allclose(again.scores, report.scores, rtol=1e-5, atol=1e-6)
    assert report.survey == pytest.approx(survey_metrics(report.labels, report.scores))
    kinds = memory.metadata["kind"][report.rows]
    assert report.by_kind.pformat() == auc_by_kind(report.labels, report.scores, kinds).pformat()
    assert report.config_hash == memory.config_hash
    assert (report.by_visibility is None) == ("arc_visibility" not in memory.metadata.colnames)
    with pytest.raises(ValueError, match="rows"):
        evaluate(model, memory, [len(memory)])


@pytest.mark.slow
def test_learnability_recipe_end_to_end(tmp_path):
    """The whole recipe on a tiny sky (about 20 s on 2 busy cores): the hold-out is grouped and
    untouched by training, every shifted sky is simulated and scored."""
    from lenslib.dataset import dataset_path, load_dataset
    from lenslib.diagnostics import evaluate_shifted, learnability

    config = SimulationConfig()
    result = learnability(config, n_images=120, epochs=1, data_dir=tmp_path, workers=1)
    data = load_dataset(dataset_path(result.config, tmp_path))
    assert (result.config.n_lenses, result.config.n_nonlenses, len(data)) == (60, 60, 120)
    assert not result.cached
    seen = np.concatenate([result.fit.train_indices, result.fit.val_indices])
    assert np.intersect1d(seen, result.test_rows).size == 0
    assert np.union1d(seen, result.test_rows).size == len(data)
    assert not set(data.parent_ids[seen]) & set(data.parent_ids[result.test_rows])
    assert 0.1 < len(result.test_rows) / len(data) < 0.3
    np.testing.assert_array_equal(result.report.rows, result.test_rows)
    assert set(result.report.labels) == {0, 1}
    assert list(result.shortcut["test"]) == ["lens_vs_elliptical", "lens_vs_all"]
    assert result.shortcut["n_lenses"][1] + result.shortcut["n_nonlenses"][1] == len(data)
    assert set(result.seconds) == {"simulate", "train", "evaluate", "shortcut"}
    assert all(s > 0 for s in result.seconds.values())

    reports = evaluate_shifted(result.model, config, n_images=30, data_dir=tmp_path, workers=1)
    skies = shifted_skies(dataclasses.replace(config, n_lenses=15, n_nonlenses=15))
    assert list(reports) == list(skies)
    for name, report in reports.items():
        assert report.config_hash == config_hash(skies[name])
        assert len(report.scores) == 30 and np.isfinite(report.scores).all()
    table = summary_table({"holdout": result.report, **reports})
    assert len(table) == 1 + len(skies) and table["auc_drop"][0] == 0.0
