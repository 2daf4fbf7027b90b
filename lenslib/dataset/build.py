"""Assemble a dataset: plan the parents, simulate them in worker processes, augment, and write
one HDF5 file atomically."""

from __future__ import annotations

import collections
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table
from tqdm import tqdm

from ..augment import augment
from ..config import SimulationConfig, config_hash, config_to_dict
from ..files import atomic_output, remove_stale_partials
from ..integrity import images_digest as _images_digest
from ..simulate import simulate_scene
from .layout import (
    FILE_FORMAT,
    FORMAT_VERSION,
    METADATA_COLUMNS,
    LensDataset,
    ParentPlan,
    dataset_path,
)
from .read import _check_file, load_dataset

_CHUNK_PARENTS = 16  # parents per task handed to a worker process


def _split(n_images: int, per_parent: int) -> list[int]:
    """Children per parent so that parents plus children add to exactly ``n_images``."""
    n_parents = math.ceil(n_images / per_parent)
    counts = [per_parent - 1] * n_parents
    counts[-1] = n_images - per_parent * (n_parents - 1) - 1
    return counts


def plan_parents(config: SimulationConfig) -> list[ParentPlan]:
    """The parents of a dataset: labels, kinds (drawn with the config's weights) and children."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x9A]))
    namespace = int(config_hash(config)[:7], 16) << 32
    plans, index = [], 0
    per_parent = config.augment_copies + 1
    for label, n_images, mix in ((1, config.n_lenses, config.lens_kinds),
                                 (0, config.n_nonlenses, config.nonlens_kinds)):
        names = [k for k, _ in mix]
        weights = np.array([w for _, w in mix], dtype=float)
        children = _split(n_images, per_parent)
        kinds = rng.choice(len(names), size=len(children), p=weights / weights.sum())
        for n_children, k in zip(children, kinds):
            plans.append(ParentPlan(index, namespace + index, label, names[k], n_children))
            index += 1
    return plans


def simulate_parent(plan: ParentPlan, config: SimulationConfig) -> list[tuple[np.ndarray, dict]]:
    """A parent image and its augmented children, each with its metadata record."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, plan.index]))
    scene = simulate_scene(plan.kind, rng, config)
    if scene.record["label"] != plan.label:  # a simulator bug, never a user error
        raise AssertionError(f"{plan.kind} simulated with label {scene.record['label']}")
    base = dict(scene.record, parent_id=plan.parent_id, child_index=0, is_augmented=False)
    out = [(scene.image, base)]
    for child in range(1, plan.n_children + 1):
        child_rng = np.random.default_rng(np.random.SeedSequence([config.seed, plan.index, child]))
        image, params = augment(scene.image, child_rng, config.augmentation)
        out.append((image, dict(base, child_index=child, is_augmented=True, **params)))
    return out


def _simulate_chunk(args):
    plans, config = args
    return [simulate_parent(p, config) for p in plans]


def _metadata_table(records: list[dict], extra_columns: dict | None = None) -> Table:
    columns = {}
    for name, (dtype, unit, description) in {**METADATA_COLUMNS, **(extra_columns or {})}.items():
        if dtype.startswith("U"):
            fill = ""
        elif dtype.startswith("float"):
            fill = np.nan
        elif dtype == "bool":
            fill = False
        else:
            fill = -1
        values = np.array([r.get(name, fill) for r in records], dtype=dtype)
        columns[name] = (values, unit, description)
    table = Table()
    for name, (values, unit, description) in columns.items():
        table[name] = values
        table[name].unit = unit
        table[name].description = description
    return table


def _check_workers(workers: int | None) -> int:
    """``workers`` (None: one per core), refused unless a positive integer."""
    if workers is None:
        return os.cpu_count() or 1
    if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise ValueError(f"workers must be an integer >= 1 (got {workers!r})")
    return workers


def assemble(config: SimulationConfig, path: str | os.PathLike, *, workers: int | None = None,
             progress: bool | None = None) -> Path:
    """Simulate the dataset of ``config`` into ``path`` (atomically); returns the path.

    ``workers``: processes to use (default: all cores; 1 runs in this process).
    ``progress``: show a progress bar (default: only on a terminal).
    """
    workers = _check_workers(workers)
    plans = plan_parents(config)
    chunks = [plans[i:i + _CHUNK_PARENTS] for i in range(0, len(plans), _CHUNK_PARENTS)]
    n, size = config.n_images, config.image_size
    records: list[dict] = []
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        images = f.create_dataset("images", (n, size, size), dtype="float32",
                                  chunks=(min(n, 64), size, size))
        labels = np.empty(n, dtype="int8")
        parent_ids = np.empty(n, dtype="int64")
        order = _family_rows(plans)
        bar = tqdm(total=n, desc="simulating", unit="img", disable=None if progress is None else not progress)
        for chunk_result in _run_chunks(chunks, config, workers):
            for plan, family in chunk_result:
                start = order[plan.index]
                for k, (image, record) in enumerate(family):
                    row = start + k
                    images[row] = image
                    labels[row] = plan.label
                    parent_ids[row] = plan.parent_id
                    records.append(dict(record, index=row))
                bar.update(len(family))
        bar.close()
        records.sort(key=lambda r: r["index"])
        _finish_file(f, labels, parent_ids, records, config)
    return Path(path)


def _finish_file(f: h5py.File, labels, parent_ids, records, config, extra_columns=None) -> None:
    """Write everything but the images, and mark the file complete (last)."""
    f.create_dataset("labels", data=np.asarray(labels, dtype="int8"))
    f.create_dataset("parent_ids", data=np.asarray(parent_ids, dtype="int64"))
    _metadata_table(records, extra_columns).write(f, path="metadata", serialize_meta=True)
    f.attrs["format"] = FILE_FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["config"] = json.dumps(config_to_dict(config), sort_keys=True)
    f.attrs["config_hash"] = config_hash(config)
    f.attrs["images_blake2b"] = _images_digest(f["images"])
    f.attrs["complete"] = True


def write_dataset(path: str | os.PathLike, images, labels, parent_ids, records: list[dict],
                  config: SimulationConfig, *, extra_columns: dict | None = None) -> Path:
    """Write an in-memory set of images in the dataset layout (atomically).

    ``extra_columns`` adds metadata columns beyond :data:`METADATA_COLUMNS`, as
    ``{name: (dtype, unit, description)}``.
    """
    images = np.asarray(images, dtype=np.float32)
    records = [dict(r, index=i) for i, r in enumerate(records)]
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=images)
        _finish_file(f, labels, parent_ids, records, config, extra_columns)
    return Path(path)


def _family_rows(plans: list[ParentPlan]) -> dict[int, int]:
    """First row of each parent's family in the file (parents in plan order)."""
    slots, row = {}, 0
    for p in plans:
        slots[p.index] = row
        row += 1 + p.n_children
    return slots


def _run_chunks(chunks, config, workers):
    """Yield ``[(plan, family), ...]`` per chunk, in order, with a bounded look-ahead."""
    if workers == 1:
        for chunk in chunks:
            yield list(zip(chunk, _simulate_chunk((chunk, config))))
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as pool:
        pending: collections.deque = collections.deque()
        it = iter(chunks)
        for chunk in it:
            pending.append((chunk, pool.submit(_simulate_chunk, (chunk, config))))
            if len(pending) >= 4 * workers:
                break
        while pending:
            chunk, future = pending.popleft()
            result = future.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_simulate_chunk, (nxt, config))))
            yield list(zip(chunk, result))


def _mp_context():
    """"fork" (works from plain scripts and notebooks), unless a Keras backend (TensorFlow, JAX,
    PyTorch) is loaded in this process, whose threads make forking unsafe: then "spawn" (scripts
    need a main guard)."""
    if any(m in sys.modules for m in ("tensorflow", "jax", "torch")) or "fork" not in get_all_start_methods():
        return get_context("spawn")
    return get_context("fork")


def build_dataset(config: SimulationConfig, data_dir: str | os.PathLike | None = None, *,
                  workers: int | None = None, progress: bool | None = None) -> Path:
    """The dataset file of ``config``: loaded from the cache if present and valid, else simulated.

    Partial files left by builds of the same file that were killed are removed first; a cached
    file that fails its checks raises :class:`DatasetError` (delete it and it is rebuilt)."""
    _check_workers(workers)  # a bad value is refused whether or not the file is cached
    path = dataset_path(config, data_dir)
    remove_stale_partials(path)
    if path.exists():
        _check_file(path, expect_hash=config_hash(config))
        return path
    return assemble(config, path, workers=workers, progress=progress)


def get_dataset(config: SimulationConfig, data_dir: str | os.PathLike | None = None, *,
                workers: int | None = None, progress: bool | None = None,
                in_memory: bool = True) -> LensDataset:
    """Build (or reuse from the cache) and load the dataset of ``config``."""
    return load_dataset(build_dataset(config, data_dir, workers=workers, progress=progress),
                        in_memory=in_memory)
