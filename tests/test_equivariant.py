"""The p4m finder (lenslib.finder.equivariant): exactly invariant to a cutout's eight flips and
quarter turns, saved and loaded by name-registered layers, usable wherever the finder is."""

import numpy as np
import pytest

from lenslib.config import FinderRecipe
from lenslib.models.io import dihedral


def _cutouts(side: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(side).normal(size=(n, side, side)).astype("float32")


def _largest_change(model, x: np.ndarray) -> float:
    """The largest change of a lens probability over the eight flips and quarter turns of ``x``."""
    base = model.predict_on_batch(x[..., None])
    return max(float(np.abs(model.predict_on_batch(dihedral(x, k)[..., None]) - base).max())
               for k in range(1, 8))


@pytest.mark.parametrize("side", [100, 51])  # an even side (padded windows) and an odd one (centred)
def test_the_p4m_finder_scores_every_flip_and_quarter_turn_alike(side):
    from lenslib.finder import build_finder

    x = _cutouts(side)
    p4m = build_finder((side, side, 1), architecture="p4m", seed=2)
    assert _largest_change(p4m, x) < 1e-5
    # The plain finder of the same widths is not invariant: the check can fail.
    assert _largest_change(build_finder((side, side, 1), seed=2), x) > 1e-4


def test_the_p4m_finder_shares_each_filter_eight_ways():
    from lenslib.finder import build_finder
    from lenslib.finder.architecture import finder_layout

    plain, p4m = build_finder(seed=1), build_finder(architecture="p4m", seed=1)
    assert p4m.output_shape == (None, 2) and p4m.get_layer("pool").output.shape == (None, 32)
    assert 7 * p4m.count_params() < plain.count_params() < 9 * p4m.count_params()
    assert finder_layout(p4m) == {"architecture": "p4m", "widths": (16, 32, 64, 128)}
    assert finder_layout(plain) == {"architecture": "residual", "widths": (16, 32, 64, 128)}
    again = build_finder(architecture="p4m", seed=1).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(p4m.get_weights(), again))


def test_a_saved_p4m_finder_loads_with_its_scores_and_resumes_as_a_checkpoint(tmp_path):
    from lenslib.finder import build_finder
    from lenslib.finder.training import _load_checkpoint
    from lenslib.models import load_model, save_model

    model = build_finder(architecture="p4m", widths=(8, 16, 24), seed=5)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = _cutouts(100, 4)[..., None]
    model.train_on_batch(x, np.array([0, 1, 0, 1]))  # moves the batch statistics too
    expected = model.predict_on_batch(x)
    save_model(model, tmp_path / "p4m.keras")
    np.testing.assert_array_equal(load_model(tmp_path / "p4m.keras").predict_on_batch(x), expected)
    np.testing.assert_array_equal(_load_checkpoint(tmp_path / "p4m.keras").predict_on_batch(x), expected)


def test_a_p4m_finder_pretrains_the_table_rows_trunk(tmp_path):
    from lenslib.finder import build_finder
    from lenslib.models import build_model, save_model

    pretrained = build_finder(architecture="p4m", seed=9)
    path = save_model(pretrained, tmp_path / "p4m.keras")
    frozen = build_model("finder", regime="frozen", weights=path)
    trunk = frozen.get_layer("finder_trunk")
    np.testing.assert_array_equal(trunk.get_layer("stage3_conv2").get_weights()[0],
                                  pretrained.get_layer("stage3_conv2").get_weights()[0])
    assert trunk.output.shape == (None, 32)


def test_bad_p4m_shapes_are_refused_naming_the_value():
    from lenslib.finder import build_finder

    with pytest.raises(ValueError, match=r"multiples of 8.*\(16, 30\)"):
        build_finder(architecture="p4m", widths=(16, 30))
    with pytest.raises(ValueError, match="square"):
        build_finder((100, 80, 1), architecture="p4m")
    with pytest.raises(ValueError, match="architecture must be one of"):
        build_finder(architecture="p4"),
    with pytest.raises(ValueError, match="FinderRecipe.architecture"):
        FinderRecipe(architecture="vgg")
    with pytest.raises(ValueError, match="FinderRecipe.widths.*multiples of 8"):
        FinderRecipe(architecture="p4m", widths=(16, 20))
    assert FinderRecipe(architecture="p4m", initial_branches=()).architecture == "p4m"


def test_a_scratch_finder_row_is_the_shipped_finders_network():
    """Table 5-1's scratch row must differ from the pretrained rows by the pretraining alone."""
    from lenslib.finder import DEFAULT_FINDER
    from lenslib.finder.architecture import finder_layout
    from lenslib.models import build_model, load_model

    scratch = build_model("finder", regime="scratch", weights=None).get_layer("finder_trunk")
    assert finder_layout(scratch) == finder_layout(load_model(DEFAULT_FINDER))
