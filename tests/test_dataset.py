"""Dataset assembly: counts, parents, determinism, caching and crash safety."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import astropy.units as u
import h5py
import numpy as np
import pytest

import lenslib.dataset.build as dsmod  # where the builder looks its parts up
from lenslib.config import config_hash
from lenslib.dataset import DatasetError, assemble, build_dataset, dataset_path, load_dataset, plan_parents


def test_counts_labels_and_parents(smoke_dataset, smoke_config):
    ds, cfg = smoke_dataset, smoke_config
    assert ds.images.shape == (cfg.n_images, 100, 100) and ds.images.dtype == np.float32
    assert int(ds.labels.sum()) == cfg.n_lenses and len(ds) == cfg.n_images
    meta = ds.metadata
    assert list(meta["index"]) == list(range(len(ds)))
    np.testing.assert_array_equal(meta["parent_id"], ds.parent_ids)
    np.testing.assert_array_equal(meta["label"], ds.labels)
    # Each parent and its augmented children share an id, a label and a kind; one un-augmented row each.
    for pid in np.unique(ds.parent_ids):
        rows = meta[meta["parent_id"] == pid]
        assert len(set(rows["label"])) == 1 and len(set(rows["kind"])) == 1
        assert (~rows["is_augmented"]).sum() == 1
        assert len(rows) <= cfg.augment_copies + 1
    assert meta["theta_e"].unit == u.arcsec and meta["exposure_time"].unit == u.s


def test_lenses_are_detectable_and_nonlenses_unlensed(smoke_dataset, smoke_config):
    meta = smoke_dataset.metadata
    lenses = meta[meta["label"] == 1]
    assert (lenses["arc_snr"] >= smoke_config.min_arc_snr).all()
    assert set(lenses["kind"]) <= {"galaxy_galaxy", "lensed_quasar"}
    nonlenses = meta[meta["label"] == 0]
    assert np.isnan(nonlenses["arc_snr"]).all() and np.isnan(nonlenses["theta_e"]).all()


def test_children_are_augmented_copies_of_their_parent(smoke_dataset):
    from lenslib.augment import apply_transform

    meta, images = smoke_dataset.metadata, smoke_dataset.images
    child = meta[meta["is_augmented"]][0]
    parent = meta[(meta["parent_id"] == child["parent_id"]) & ~meta["is_augmented"]][0]
    params = {k: child[k].item() for k in ("rotation_deg", "zoom", "shear_deg", "flip_h", "flip_v")}
    np.testing.assert_array_equal(images[child["index"]], apply_transform(images[parent["index"]], params))


def test_same_bytes_whatever_the_number_of_workers(smoke_config, smoke_dataset_path, tmp_path):
    two = load_dataset(assemble(smoke_config, tmp_path / "two.h5", workers=2))
    one = load_dataset(smoke_dataset_path)
    assert one.images.tobytes() == two.images.tobytes()
    np.testing.assert_array_equal(one.parent_ids, two.parent_ids)
    for name in ("kind", "arc_snr", "rotation_deg"):
        np.testing.assert_array_equal(one.metadata[name], two.metadata[name])


def test_cache_is_reused_and_never_stale(smoke_config, tmp_path, monkeypatch):
    path = build_dataset(smoke_config, tmp_path, workers=1)
    assert path == dataset_path(smoke_config, tmp_path) and config_hash(smoke_config) in path.name
    calls = []
    monkeypatch.setattr(dsmod, "assemble", lambda *a, **k: calls.append(a))
    assert build_dataset(smoke_config, tmp_path) == path and not calls  # loaded, not simulated
    monkeypatch.undo()
    changed = dataclasses.replace(smoke_config, seed=smoke_config.seed + 1)
    other = build_dataset(changed, tmp_path, workers=1)
    assert other != path
    assert load_dataset(other).config == changed
    assert not np.array_equal(load_dataset(other).images, load_dataset(path).images)
    # A file sitting under a config's name but made by another config is refused, not reused.
    shutil.copy(path, other)
    with pytest.raises(DatasetError, match=f"made by config {config_hash(smoke_config)}"):
        build_dataset(changed, tmp_path)


def test_interrupted_assembly_leaves_no_file(smoke_config, tmp_path, monkeypatch):
    real = dsmod.simulate_parent
    calls = []

    def dying(plan, config):
        calls.append(plan)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(plan, config)

    monkeypatch.setattr(dsmod, "simulate_parent", dying)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(smoke_config, tmp_path, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_killed_assembly_leaves_nothing_that_looks_complete(smoke_config, tmp_path):
    big = dataclasses.replace(smoke_config, n_lenses=900, n_nonlenses=900)
    script = textwrap.dedent(f"""
        import dataclasses
        from lenslib.config import get_profile
        from lenslib.dataset import build_dataset
        cfg = dataclasses.replace(get_profile("smoke").simulation, n_lenses=900, n_nonlenses=900)
        build_dataset(cfg, {str(tmp_path)!r}, workers=1, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        time.sleep(0.1)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    final = dataset_path(big, tmp_path)
    assert not final.exists()
    partials = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert partials, "the writer should have been killed mid-file"
    with pytest.raises(DatasetError, match=str(partials[0].name)):
        load_dataset(partials[0])


def test_truncated_foreign_and_missing_files_are_named(smoke_dataset_path, tmp_path):
    truncated = tmp_path / "truncated.h5"
    data = smoke_dataset_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated.h5"):
        load_dataset(truncated)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["images"] = np.zeros((2, 4, 4))
    with pytest.raises(DatasetError, match="foreign.h5 is not a lenslib dataset"):
        load_dataset(foreign)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(DatasetError, match="notes.h5 is not a readable HDF5 file"):
        load_dataset(text)
    with pytest.raises(DatasetError, match="not found.*missing.h5"):
        load_dataset(tmp_path / "missing.h5")
    incomplete = tmp_path / "incomplete.h5"
    shutil.copy(smoke_dataset_path, incomplete)
    with h5py.File(incomplete, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(DatasetError, match="incomplete.h5 is incomplete"):
        load_dataset(incomplete)


def test_streaming_load_keeps_images_on_disk(smoke_dataset_path):
    ds = load_dataset(smoke_dataset_path, in_memory=False)
    try:
        assert isinstance(ds.images, h5py.Dataset)
        assert ds.images[3].shape == (100, 100)
    finally:
        ds.images.file.close()


def test_plan_matches_the_thesis_mix_at_full_scale():
    from lenslib.config import get_profile

    cfg = get_profile("full").simulation
    plans = plan_parents(cfg)
    assert sum(1 + p.n_children for p in plans if p.label == 1) == 15000
    assert sum(1 + p.n_children for p in plans if p.label == 0) == 13239
    assert len({p.parent_id for p in plans}) == len(plans)
    kinds = {p.kind for p in plans}
    assert {"galaxy_galaxy", "lensed_quasar", "ring_galaxy", "companion", "empty_field"} <= kinds


# --- contents checked on load (issue 14) ------------------------------------------------------------

def _copy(src, tmp_path, name):
    path = tmp_path / name
    shutil.copy(src, path)
    return path


def test_a_checksum_is_written_with_the_images_the_same_on_every_build(smoke_dataset_path, smoke_config,
                                                                        tmp_path):
    from lenslib.integrity import images_digest

    with h5py.File(smoke_dataset_path) as f:
        stored = f.attrs["images_blake2b"]
        assert stored == images_digest(f["images"][...])
    again = assemble(smoke_config, tmp_path / "again.h5", workers=1)
    with h5py.File(again) as f:
        assert f.attrs["images_blake2b"] == stored


@pytest.mark.parametrize("damage, message", [
    ("zeroed", "do not match the checksum"),
    ("label", "has label 7 at row 3; labels must be 0 or 1"),
    ("nan", "has NaN or infinite pixels in image 5"),
])
def test_damaged_files_are_refused_naming_the_file(smoke_dataset_path, tmp_path, damage, message):
    path = _copy(smoke_dataset_path, tmp_path, f"{damage}.h5")
    if damage == "zeroed":  # 200 kB zeroed in the middle of the file (inside the images)
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 200_000] = bytes(200_000)
        path.write_bytes(bytes(data))
    else:
        with h5py.File(path, "a") as f:
            if damage == "label":
                f["labels"][3] = 7
            else:
                f["images"][5, 50, 50] = np.nan
    for in_memory in (True, False):
        with pytest.raises(DatasetError, match=rf"{damage}.h5 .*{message}.*delete it and lenslib rebuilds"):
            ds = load_dataset(path, in_memory=in_memory)
            if not in_memory:
                ds.images.file.close()
    ds = load_dataset(path, verify=False)  # still readable for a post-mortem, if asked
    assert len(ds) == 114


def test_images_of_another_size_than_the_config_are_refused(smoke_config, tmp_path):
    from lenslib.dataset import write_dataset

    records = [{"label": i % 2, "kind": "galaxy_galaxy"} for i in range(4)]
    path = write_dataset(tmp_path / "small.h5", np.zeros((4, 50, 50), np.float32), [0, 1, 0, 1],
                         np.arange(4), records, smoke_config)
    with pytest.raises(DatasetError, match=r"small.h5 holds images of shape \(50, 50\).*100x100"):
        load_dataset(path)


def test_a_damaged_cache_file_is_named_when_building(smoke_config, smoke_dataset_path, tmp_path):
    cached = dataset_path(smoke_config, tmp_path)
    shutil.copy(smoke_dataset_path, cached)
    with h5py.File(cached, "a") as f:
        f["images"][0, 0, 0] += 1.0
    with pytest.raises(DatasetError, match=rf"{cached.name} has images that do not match the checksum.*"
                                           "delete it and lenslib rebuilds it"):
        build_dataset(smoke_config, tmp_path)
    cached.unlink()
    assert load_dataset(build_dataset(smoke_config, tmp_path, workers=1)).config == smoke_config


def test_stale_partial_files_of_dead_builds_are_removed(smoke_config, smoke_dataset_path, tmp_path):
    final = dataset_path(smoke_config, tmp_path)
    shutil.copy(smoke_dataset_path, final)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".{final.name}.{dead.pid}.partial"
    alive = tmp_path / f".{final.name}.{os.getpid()}.partial"  # a build still running (this process)
    other = tmp_path / f".lenslib-0123456789abcdef.h5.{dead.pid}.partial"  # another dataset's
    for p in (stale, alive, other):
        p.write_bytes(b"half a dataset")
    assert build_dataset(smoke_config, tmp_path) == final
    assert not stale.exists() and alive.exists() and other.exists()


def test_parent_subset_keeps_whole_families_and_a_hash_of_its_own(smoke_dataset):
    from lenslib.dataset import parent_subset

    sub = parent_subset(smoke_dataset, 0.5, seed=3)
    parents = np.unique(smoke_dataset.parent_ids)
    assert np.unique(sub.parent_ids).size == round(0.5 * parents.size)
    for p in np.unique(sub.parent_ids):  # every child of a kept parent is kept
        assert (sub.parent_ids == p).sum() == (smoke_dataset.parent_ids == p).sum()
    rows = np.flatnonzero(np.isin(smoke_dataset.parent_ids, sub.parent_ids))
    np.testing.assert_array_equal(sub.images, smoke_dataset.images[rows])
    assert len(sub.metadata) == len(sub.labels) == len(sub.images)
    assert sub.config_hash != smoke_dataset.config_hash
    assert sub.config_hash != parent_subset(smoke_dataset, 0.5, seed=4).config_hash
    with pytest.raises(ValueError, match="fraction"):
        parent_subset(smoke_dataset, 0.0)
    assert parent_subset(smoke_dataset, 1.0) is smoke_dataset  # the whole shares its caches


def test_summarize_counts_parents_and_images_per_kind(smoke_dataset):
    from lenslib.dataset import summarize

    table = summarize(smoke_dataset)
    meta = smoke_dataset.metadata
    total = table[table["class"] == "all"][0]
    assert total["images"] == len(smoke_dataset)
    assert total["parents"] == np.unique(smoke_dataset.parent_ids).size
    body = table[table["class"] != "all"]
    assert body["images"].sum() == len(smoke_dataset)
    for row in body:
        rows = meta["kind"] == row["kind"]
        assert row["images"] == rows.sum()
        assert row["parents"] == np.unique(np.asarray(meta["parent_id"])[rows]).size
        assert row["class"] == ("lens" if meta["label"][rows][0] else "non-lens")


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_bad_workers_are_refused_even_when_the_dataset_is_cached(smoke_config, smoke_dataset_path, workers):
    from lenslib.dataset import build_dataset

    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        build_dataset(smoke_config, smoke_dataset_path.parent, workers=workers)
