"""Shipping a finder (lenslib.finder.shipped.ship_finder): its card's references to finder files
become the shipped finders of the same content, so its lineage is followed from the package."""

import json
import shutil

import pytest

from lenslib.errors import InputError


def _run_card(tmp_path, name: str, **recipe) -> dict:
    """A finished run's card as train_finder writes it (the fields shipping reads)."""
    card = {"format": "lenslib-model-card", "name": name, "distinct_images": 1000,
            "recipe": {"initial_finder": "", "mined_by": "", "teacher": "", **recipe}, "initial_finder": None}
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    return card


def test_a_card_naming_a_shipped_finder_by_file_names_it_by_name(tmp_path):
    from lenslib.finder import DEFAULT_FINDER, shipped_path
    from lenslib.finder.references import as_shipped, describe_start

    copy = tmp_path / "elsewhere" / "warm.keras"
    copy.parent.mkdir()
    shutil.copyfile(shipped_path(DEFAULT_FINDER), copy)
    shutil.copyfile(shipped_path(DEFAULT_FINDER).with_suffix(".json"), copy.with_suffix(".json"))
    card = _run_card(tmp_path, "new", initial_finder=str(copy), mined_by=str(copy))
    card["initial_finder"] = describe_start(str(copy))
    copy.unlink()  # gone since the run (a device's /tmp): the sha256 the card recorded still tells
    with pytest.raises(InputError, match="FinderRecipe.mined_by.*gone"):
        as_shipped(card)
    shutil.copyfile(shipped_path(DEFAULT_FINDER), copy)
    shipped = as_shipped(card)
    assert shipped["recipe"]["initial_finder"] == shipped["recipe"]["mined_by"] == DEFAULT_FINDER
    assert shipped["initial_finder"]["name"] == DEFAULT_FINDER and "file" not in shipped["initial_finder"]
    assert shipped["initial_finder"]["trained_from_file"] == str(copy.resolve())
    assert card["recipe"]["initial_finder"] == str(copy)  # the card given is left as it was


def test_a_two_branch_card_names_each_branch_file_by_its_shipped_name(tmp_path):
    from lenslib.finder import shipped_path
    from lenslib.finder.references import as_shipped, describe_start

    p4m, residual = "lenslib-finder-v21", "lenslib-finder-v14"
    copy = tmp_path / "p4m.keras"
    shutil.copyfile(shipped_path(p4m), copy)
    shutil.copyfile(shipped_path(p4m).with_suffix(".json"), copy.with_suffix(".json"))
    card = _run_card(tmp_path, "joined", initial_branches=[str(copy), residual])
    card["initial_branches"] = [describe_start(str(copy), field="initial_branches"), describe_start(residual)]
    copy.unlink()  # the digest recorded when the run began still tells which finder it was
    shipped = as_shipped(card)
    assert shipped["recipe"]["initial_branches"] == [p4m, residual]
    assert [start["name"] for start in shipped["initial_branches"]] == [p4m, residual]
    assert shipped["initial_branches"][0]["trained_from_file"] == str(copy.resolve())
    assert "file" not in shipped["initial_branches"][0]
    other = tmp_path / "other.keras"
    other.write_bytes(b"not a shipped finder")
    with pytest.raises(InputError, match="FinderRecipe.initial_branches.*no shipped finder"):
        as_shipped(_run_card(tmp_path, "new", initial_branches=[str(other), residual]))


def test_a_finder_descending_from_an_unshipped_file_is_refused_naming_the_field(tmp_path):
    from lenslib.finder.references import as_shipped

    other = tmp_path / "other.keras"
    other.write_bytes(b"not a shipped finder")
    with pytest.raises(InputError, match="FinderRecipe.teacher.*no shipped finder"):
        as_shipped(_run_card(tmp_path, "new", teacher=str(other)))


def test_ship_finder_writes_the_weights_and_the_shipped_card(tmp_path):
    from lenslib.finder import DEFAULT_FINDER, shipped_path
    from lenslib.finder.card import read_card
    from lenslib.finder.shipped import ship_finder

    run = tmp_path / "run"
    run.mkdir()
    model = run / "lenslib-finder-test.keras"
    model.write_bytes(b"weights")
    _run_card(run, "lenslib-finder-test", mined_by=str(shipped_path(DEFAULT_FINDER)))
    weights, card = ship_finder(model, tmp_path / "weights")
    assert weights.read_bytes() == b"weights"
    assert read_card(card)["recipe"]["mined_by"] == DEFAULT_FINDER
    model.rename(run / "renamed.keras")
    (run / "lenslib-finder-test.json").rename(run / "renamed.json")
    with pytest.raises(InputError, match="names the finder 'lenslib-finder-test'"):
        ship_finder(run / "renamed.keras", tmp_path / "weights")


def test_a_lineage_counts_each_branchs_ancestors_and_each_recipe_seed_once(tmp_path):
    from lenslib.finder import shipped_card
    from lenslib.finder.card import _lineage_fact
    from lenslib.finder.references import describe_start, lineage_images

    branches = ["lenslib-finder-v21", "lenslib-finder-v14"]
    p4m, residual = (lineage_images(shipped_card(name)) for name in branches)
    assert len(p4m) > 1 and len(residual) > 1 and not set(p4m) & set(residual)  # other seeds
    card = {**_run_card(tmp_path, "joined", seed=2051, initial_branches=branches),
            "initial_branches": [describe_start(name) for name in branches]}
    card["distinct_images"] = 7  # fewer than v21's run of the same seed, which counts instead
    assert lineage_images(card) == {**p4m, **residual}
    assert _lineage_fact(card).startswith(f"{sum(p4m.values()) + sum(residual.values()):,} distinct images")
    card["distinct_images"] = 10**9
    assert lineage_images(card)[2051] == 10**9
    alone = _run_card(tmp_path, "alone", seed=1)
    assert lineage_images(alone) == {1: 1000}
    assert _lineage_fact(alone) == "1,000 distinct images, all of this run's recipe seed"
