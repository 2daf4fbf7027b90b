"""The two-branch finder (lenslib.finder.architecture): a p4m finder and a residual finder side by
side, their lens logits summed; built from random weights or joined from two trained finders."""

import numpy as np
import pytest

from lenslib.config import FinderRecipe


def _finder(architecture: str, seed: int, widths=(8, 16)):
    """A small finder of ``architecture`` with a softmax far from its initial symmetry."""
    from lenslib.finder import build_finder

    finder = build_finder((32, 32, 1), widths=widths, seed=seed, architecture=architecture)
    kernel, bias = finder.get_layer("softmax").get_weights()
    rng = np.random.default_rng(seed)
    finder.get_layer("softmax").set_weights([rng.normal(size=kernel.shape).astype("float32"),
                                             rng.normal(size=bias.shape).astype("float32")])
    return finder


def test_a_joined_finder_scores_the_sum_of_its_two_finders_logits(tmp_path):
    from lenslib.finder import build_finder
    from lenslib.finder.architecture import finder_layout, join_finders
    from lenslib.finder.operating import lens_logits
    from lenslib.models import load_model, save_model

    p4m, residual = _finder("p4m", 1), _finder("residual", 2)
    joined = join_finders(p4m, residual, name="joined")
    x = np.random.default_rng(3).normal(size=(6, 32, 32, 1)).astype("float32")
    expected = lens_logits(p4m, x) + lens_logits(residual, x)
    assert np.abs(expected).max() > 0.1  # a sum that a dropped branch would miss
    np.testing.assert_allclose(lens_logits(joined, x), expected, rtol=1e-5, atol=1e-5)
    probabilities = joined.predict_on_batch(x)[:, 1]
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-expected)), rtol=1e-4, atol=1e-6)
    assert finder_layout(joined) == {"architecture": "p4m+residual", "widths": (8, 16)}
    loaded = load_model(save_model(joined, tmp_path / "joined.keras"))
    np.testing.assert_allclose(lens_logits(loaded, x), lens_logits(joined, x), rtol=1e-6, atol=1e-6)
    built = build_finder((32, 32, 1), widths=(8, 16), architecture="p4m+residual", seed=4)
    assert [w.shape for w in built.get_weights()] == [w.shape for w in joined.get_weights()]
    assert built.get_layer("pool").output.shape == (None, 16 // 8 * 2 + 16)


def test_join_finders_refuses_finders_of_the_wrong_kind_or_shape():
    from lenslib.finder.architecture import join_finders

    p4m, residual = _finder("p4m", 1), _finder("residual", 2)
    with pytest.raises(ValueError, match="p4m_finder must be a p4m finder"):
        join_finders(residual, p4m)
    with pytest.raises(ValueError, match="residual_finder must be a residual finder"):
        join_finders(p4m, _finder("p4m", 5))
    with pytest.raises(ValueError, match="must share their input and widths"):
        join_finders(p4m, _finder("residual", 2, widths=(8, 24)))


@pytest.mark.parametrize("changes, field", [
    ({"architecture": "p4m"}, "initial_branches"),
    ({"initial_finder": "lenslib-finder-v21"}, "initial_finder"),
    ({"initial_branches": ("lenslib-finder-v21",)}, "initial_branches"),
    ({"initial_branches": ("lenslib-finder-v21", "")}, "initial_branches"),
    ({"initial_branches": ["lenslib-finder-v21", "lenslib-finder-v14"]}, "initial_branches"),
    ({"widths": (16, 30)}, "widths"),
])
def test_a_recipe_names_two_branches_only_for_the_two_branch_finder(changes, field):
    recipe = dict(architecture="p4m+residual", initial_finder="", mined_shards=0, mined_by="",
                  initial_branches=("lenslib-finder-v21", "lenslib-finder-v14"))
    FinderRecipe(**recipe)
    with pytest.raises(ValueError, match=f"FinderRecipe.{field} must be"):
        FinderRecipe(**{**recipe, **changes})


def test_the_shipped_pair_joined_scores_the_sum_of_the_shipped_finders():
    import lenslib
    from lenslib.finder import join_finders
    from lenslib.finder.operating import lens_logits

    names = ("lenslib-finder-v21", "lenslib-finder-v14")
    x = np.random.default_rng(5).normal(size=(4, 100, 100, 1)).astype("float32")
    expected = sum(lens_logits(lenslib.load_model(name), x) for name in names)
    np.testing.assert_allclose(lens_logits(join_finders(*names), x), expected, rtol=1e-5, atol=1e-5)


def test_averaging_views_runs_the_invariant_p4m_branch_once_with_the_same_scores():
    from lenslib.finder.architecture import join_finders
    from lenslib.models.io import dihedral, predict_normalized

    joined = join_finders(_finder("p4m", 1), _finder("residual", 2))
    x = np.random.default_rng(6).normal(size=(5, 32, 32)).astype("float32")
    views = np.array([joined.predict_on_batch(dihedral(x, k)[..., None])[:, 1] for k in range(8)])
    assert (views.std(axis=0) / views.mean(axis=0)).max() > 0.05  # the residual branch sees each apart
    calls, p4m = [], joined.get_layer("p4m_branch")
    original = p4m.predict_on_batch
    p4m.predict_on_batch = lambda batch: calls.append(len(batch)) or original(batch)
    for n in (2, 4, 8):
        calls.clear()
        np.testing.assert_allclose(predict_normalized(joined, x, batch_size=2, transforms=n),
                                   views[:n].mean(axis=0), rtol=1e-4, atol=0)
        assert calls == [2, 2, 1]  # once per batch, not once per view
