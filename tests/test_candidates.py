"""The graded candidate set: apart from every training set, graded by rules on the truth."""

import pytest

from lenslib.candidates import (
    CANDIDATE_COUNTS,
    GRADES,
    build_candidates,
    candidate_config,
    get_candidates,
    grade,
    grade_summary,
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
        assert grade(record, training_snr=smoke_config.min_arc_snr) == row["grade"]
    # The rules themselves, on hand-made records:
    lens = {"label": 1, "kind": "galaxy_galaxy", "arc_snr": 80.0, "theta_e": 1.2}
    assert grade(lens, training_snr=15) == "A"
    assert grade(dict(lens, theta_e=0.5), training_snr=15) == "B"
    assert grade(dict(lens, arc_snr=5.0), training_snr=15) == "C"
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
