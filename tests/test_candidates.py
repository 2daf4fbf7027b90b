"""The graded candidate set: apart from every training set, graded by rules on the truth."""

import numpy as np
import pytest

from lenslib.candidates import (
    CANDIDATE_COUNTS,
    GRADES,
    build_candidates,
    candidate_config,
    get_candidates,
    grade,
    grade_summary,
    pick_per_grade,
)
from lenslib.config import get_profile
from lenslib.dataset import load_dataset, plan_parents


@pytest.fixture(scope="session")
def candidates(smoke_config, tmp_path_factory):
    return get_candidates(smoke_config, tmp_path_factory.mktemp("cand"))


def test_92_candidates_in_the_planned_mix(candidates):
    meta = candidates.metadata
    assert len(candidates) == 92 == sum(CANDIDATE_COUNTS.values())
    for (g, label), n in CANDIDATE_COUNTS.items():
        assert ((meta["grade"] == g) & (meta["label"] == label)).sum() == n
    summary = grade_summary(candidates)
    assert list(summary["grade"]) == list(GRADES)
    assert summary["true-lens fraction"][0] == 1.0 > summary["true-lens fraction"][1] > summary[
        "true-lens fraction"][2] > 0


def test_grading_is_a_deterministic_function_of_the_truth(candidates, smoke_config):
    meta = candidates.metadata
    for row in meta:
        record = {name: row[name] for name in meta.colnames}
        assert grade(record, training_snr=smoke_config.min_arc_snr,
                     training_visibility=smoke_config.min_arc_visibility) == row["grade"]
    # The rules themselves, on hand-made records:
    lens = {"label": 1, "kind": "galaxy_galaxy", "arc_snr": 80.0, "theta_e": 1.2}
    assert grade(lens, training_snr=15) == "A"
    assert grade(dict(lens, theta_e=0.5), training_snr=15) == "B"
    assert grade(dict(lens, arc_snr=5.0), training_snr=15) == "C"
    # Light nobody could point to (below the training visibility cut) is no lens for a grader.
    assert grade(dict(lens, arc_visibility=10.0), training_snr=15, training_visibility=30) == "C"
    assert grade(dict(lens, arc_visibility=35.0), training_snr=15, training_visibility=30) == "B"
    ring = {"label": 0, "kind": "ring_galaxy", "feature_snr": 90.0, "feature_radius": 1.0}
    assert grade(ring, training_snr=15) == "B"
    assert grade(dict(ring, feature_radius=3.5), training_snr=15) == "C"
    assert grade(dict(ring, kind="spiral"), training_snr=15) == "C"


def test_same_seed_same_candidates(candidates, smoke_config, tmp_path):
    again = load_dataset(build_candidates(smoke_config, tmp_path))
    assert again.images.tobytes() == candidates.images.tobytes()


@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_no_candidate_shares_a_parent_with_a_training_set(candidates, profile):
    training = get_profile(profile).simulation
    training_parents = {p.parent_id for p in plan_parents(training)}
    assert not training_parents & set(candidates.parent_ids.tolist())
    assert candidate_config(training).seed != training.seed


def test_no_candidate_image_is_in_the_training_set(candidates, smoke_dataset):
    train = {img.tobytes() for img in smoke_dataset.images}
    assert not any(img.tobytes() in train for img in candidates.images)


def test_candidate_seed_must_differ_from_training(smoke_config):
    with pytest.raises(ValueError, match="candidate seed must differ"):
        candidate_config(smoke_config, seed=smoke_config.seed)


def _synthetic_scores():
    from astropy.table import Table

    return Table({"index": [0, 1, 2, 3, 4, 5], "grade": ["A", "A", "B", "B", "C", "C"],
                  "label": [1, 1, 1, 0, 0, 1], "kind": ["galaxy_galaxy"] * 6,
                  "xception": [0.9, 0.7, 0.8, 0.6, 0.2, 0.1],
                  "xception_fold_std": [0.0] * 6})


def test_table_5_2_is_computed_from_the_scores():
    from lenslib.candidates import THESIS_TABLE_5_2, table_5_2

    t = table_5_2(_synthetic_scores())
    a = t[(t["model"] == "xception") & (t["grade"] == "A")][0]
    assert a["n"] == 2 and a["mean"] == pytest.approx(0.8) and a["std"] == pytest.approx(0.1)
    assert a["thesis_mean"] == THESIS_TABLE_5_2["xception"]["A"][0]


def test_truth_table_asks_whether_high_scores_are_right():
    from lenslib.candidates import truth_table

    t = truth_table(_synthetic_scores(), threshold=0.5)
    b = t[t["grade"] == "B"][0]
    # Grade B: a lens scored 0.8 (right) and an impostor scored 0.6 (called a lens: wrong).
    assert b["accuracy"] == pytest.approx(0.5) and b["impostors called lenses"] == 1
    assert b["roc_auc"] == pytest.approx(1.0)
    c = t[t["grade"] == "C"][0]
    assert c["lenses called lenses"] == 0 and c["roc_auc"] == pytest.approx(0.0)
    import numpy as np

    assert np.isnan(t[t["grade"] == "A"][0]["roc_auc"])  # one class only: no AUC, said as NaN


def test_candidate_scores_average_the_fold_models(candidates, tmp_path):
    import numpy as np

    from lenslib.candidates import score_candidates
    from lenslib.models import build_model, predict, save_model

    paths = [save_model(build_model("lensflow", seed=s), tmp_path / f"fold{s}.keras") for s in (1, 2)]
    scores = score_candidates(candidates, {"lensflow": paths})
    each = np.stack([predict(p, candidates.images) for p in paths])
    np.testing.assert_allclose(scores["lensflow"], each.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(scores["lensflow_fold_std"], each.std(axis=0), rtol=1e-5, atol=1e-7)
    assert list(scores["grade"]) == list(candidates.metadata["grade"])
    with pytest.raises(ValueError, match="no fold models"):
        score_candidates(candidates, {"lensflow": []})


def test_integrated_gradients_are_complete(candidates):
    import numpy as np

    from lenslib.models import build_model
    from lenslib.preprocess import normalize
    from lenslib.saliency import integrated_gradients

    model = build_model("lensflow", seed=4)
    images = candidates.images[:2]
    maps = integrated_gradients(model, images, steps=64)
    assert maps.shape == images.shape
    p = model.predict(normalize(images)[..., None], verbose=0)[:, 1]
    p0 = model.predict(np.zeros((1, 100, 100, 1), dtype=np.float32), verbose=0)[0, 1]
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), p - p0, atol=0.02 + 0.05 * np.abs(p - p0).max())


def test_integrated_gradients_do_not_mix_cutouts_that_share_a_batch(candidates):
    import numpy as np

    from lenslib.models import build_model
    from lenslib.saliency import integrated_gradients

    model = build_model("lensflow", seed=4)
    images = candidates.images[:3]
    together = integrated_gradients(model, images, steps=8, batch_size=7)  # batches straddle cutouts
    alone = np.stack([integrated_gradients(model, images[i:i + 1], steps=8, batch_size=9)[0]
                      for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="batch_size"):
        integrated_gradients(model, images, batch_size=0)


def test_fold_models_are_the_last_runs_not_the_folders(tmp_path):
    from lenslib.candidates import fold_models_from_summary
    from lenslib.errors import InputError

    kept = [tmp_path / f"xception-fold{k}.keras" for k in range(2)]
    for path in kept:
        path.write_bytes(b"")
    (tmp_path / "resnet50-fold0.keras").write_bytes(b"")  # an earlier run's, still in the folder
    summary = {"fold_models": {"xception": [str(p) for p in kept]}}
    assert fold_models_from_summary(summary, ["xception"]) == {"xception": kept}
    with pytest.raises(InputError, match=r"of 'resnet50' \(it kept: xception\).*fold_model_rows"):
        fold_models_from_summary(summary, ["xception", "resnet50"])
    kept[1].unlink()
    with pytest.raises(InputError, match="are gone"):
        fold_models_from_summary(summary, ["xception"])


def test_pick_per_grade_draws_each_grade_and_refuses_nonsense(candidates):
    grades = np.asarray(candidates.metadata["grade"])
    picks = pick_per_grade(candidates, 3, random_state=0)
    assert len(set(picks)) == len(picks)
    for g in GRADES:
        assert (grades[picks] == g).sum() == min(3, (grades == g).sum())
    assert list(grades[picks]) == sorted(grades[picks])  # grade A first
    assert np.array_equal(picks, pick_per_grade(candidates, 3, random_state=0))
    assert sorted(pick_per_grade(candidates, 10_000)) == list(range(len(grades)))  # every one, once
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="per_grade"):
            pick_per_grade(candidates, bad)
