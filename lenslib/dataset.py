"""Assemble the training set (simulate -> augment -> one HDF5 file) and load it back.

A dataset file is named by the hash of the :class:`~lenslib.config.SimulationConfig` that made
it, so the same config loads instead of simulating and a changed config never reuses stale
data.  Assembly runs in worker processes, each parent image drawn from its own seed
(``SeedSequence([seed, parent_index])``), so the bytes do not depend on the number of workers.
The file is written under a temporary name and renamed only when complete.

Layout of the HDF5 file::

    /images      float32 (N, S, S), e-/s
    /labels      int8 (N,), 1 = lens
    /parent_ids  int64 (N,), shared by a parent and its augmented children
    /metadata    astropy Table (one row per image, with units)
    attrs        format, format_version, config (JSON), config_hash, images_blake2b, complete

Loading checks the contents too (:mod:`lenslib.integrity`): labels, image size, finite pixels
and the ``images_blake2b`` digest written with the images.
"""

from __future__ import annotations

import collections
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
from astropy.table import Table
from tqdm import tqdm

from .augment import AUGMENT_FIELDS, augment
from .config import SimulationConfig, config_from_dict, config_hash, config_to_dict
from .errors import DatasetError
from .files import atomic_output, remove_stale_partials
from .integrity import damaged as _damaged
from .integrity import images_digest as _images_digest
from .integrity import verify_contents as _verify_contents
from .simulate import simulate_scene

FILE_FORMAT = "lenslib-dataset"
FORMAT_VERSION = 1
_CHUNK_PARENTS = 16

#: Every image's record: name -> (numpy dtype, unit, description).
METADATA_COLUMNS: dict[str, tuple[str, object, str]] = {
    "index": ("int64", None, "row in the images array"),
    "parent_id": ("int64", None, "id shared by a simulated parent and its augmented children"),
    "label": ("int8", None, "1 for a strong lens, 0 otherwise"),
    "kind": ("U16", None, "what was simulated (galaxy_galaxy, lensed_quasar, spiral, ...)"),
    "child_index": ("int16", None, "0 for the simulated parent, k for its k-th augmented copy"),
    "is_augmented": ("bool", None, "True for an augmented copy"),
    "image_config": ("U8", None, "lenses: ring, quad or double; empty for non-lenses"),
    "theta_e": ("float32", u.arcsec, "Einstein radius"),
    "z_lens": ("float32", None, "redshift of the deflector (or of the look-alike's galaxy)"),
    "z_source": ("float32", None, "redshift of the lensed source"),
    "sigma_v": ("float32", u.km / u.s, "velocity dispersion of the deflector-like galaxy"),
    "deflector_mag": ("float32", u.mag, "I-band AB magnitude of the deflector-like galaxy"),
    "deflector_r_eff": ("float32", u.arcsec, "effective radius of the deflector-like galaxy"),
    "q_mass": ("float32", None, "axis ratio of the lens mass"),
    "shear": ("float32", None, "external shear strength"),
    "source_mag": ("float32", u.mag, "unlensed I-band magnitude of the source (host) galaxy"),
    "point_source_mag": ("float32", u.mag, "unlensed magnitude of a lensed quasar"),
    "source_x": ("float32", u.arcsec, "source-plane position of the source, x"),
    "source_y": ("float32", u.arcsec, "source-plane position of the source, y"),
    "magnification": ("float32", None, "total magnification of the source"),
    "n_source_images": ("int16", None, "images of the source centre (lens equation)"),
    "arc_snr": ("float32", None, "signal-to-noise of the lensed light (Collett 2015)"),
    "arc_visibility": ("float32", None, "signal-to-noise of the lensed light over the pixels where it "
                       "exceeds 2 sigma and outshines all other light"),
    "arc_coverage": ("float32", None, "fraction of azimuth around the lens covered by arcs"),
    "central_mag": ("float32", u.mag, "magnitude of a central object that is not deflector-like"),
    "feature_mag": ("float32", u.mag, "magnitude of a look-alike feature (ring, arclet, shell...)"),
    "feature_snr": ("float32", None, "signal-to-noise of the look-alike feature (Collett 2015)"),
    "feature_visibility": ("float32", None, "the look-alike feature's SNR where it exceeds 2 sigma and "
                           "outshines all other light"),
    "feature_radius": ("float32", u.arcsec, "distance or radius of the look-alike feature"),
    "n_field_objects": ("int16", None, "field galaxies and stars drawn around the cutout"),
    "exposure_time": ("float32", u.s, "exposure time of this cutout"),
    "sky_brightness": ("float32", u.mag / u.arcsec**2, "sky surface brightness"),
    "has_artifact": ("bool", None, "cosmic-ray residuals or hot pixels were added"),
    "rotation_deg": ("float64", u.deg, "augmentation: rotation"),
    "zoom": ("float64", None, "augmentation: zoom factor"),
    "shear_deg": ("float64", u.deg, "augmentation: shear angle"),
    "flip_h": ("bool", None, "augmentation: horizontal flip"),
    "flip_v": ("bool", None, "augmentation: vertical flip"),
}


@dataclass(frozen=True)
class ParentPlan:
    """One simulated parent image and how many augmented children it gets."""

    index: int
    parent_id: int
    label: int
    kind: str
    n_children: int


@dataclass
class LensDataset:
    """A loaded dataset. ``images`` is an array, or an open ``h5py.Dataset`` when streamed."""

    path: Path
    config: SimulationConfig
    config_hash: str
    images: np.ndarray
    labels: np.ndarray
    parent_ids: np.ndarray
    metadata: Table

    def __len__(self) -> int:
        return len(self.labels)


def default_data_dir() -> Path:
    """``$LENSLIB_DATA_DIR``, else ``~/.cache/lenslib``."""
    env = os.environ.get("LENSLIB_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lenslib"


def dataset_path(config: SimulationConfig, data_dir: str | os.PathLike | None = None) -> Path:
    """Where the dataset made by ``config`` lives: ``<data_dir>/lenslib-<hash>.h5``."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return root / f"lenslib-{config_hash(config)}.h5"


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


def assemble(config: SimulationConfig, path: str | os.PathLike, *, workers: int | None = None,
             progress: bool | None = None) -> Path:
    """Simulate the dataset of ``config`` into ``path`` (atomically); returns the path.

    ``workers``: processes to use (default: all cores; 1 runs in this process).
    ``progress``: show a progress bar (default: only on a terminal).
    """
    if workers is None:
        workers = os.cpu_count() or 1
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be an integer >= 1 (got {workers!r})")
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
    """"fork" (works from plain scripts and notebooks), unless TensorFlow's threads are already
    running in this process, where forking is unsafe: then "spawn" (scripts need a main guard)."""
    if "tensorflow" in sys.modules or "fork" not in get_all_start_methods():
        return get_context("spawn")
    return get_context("fork")


def build_dataset(config: SimulationConfig, data_dir: str | os.PathLike | None = None, *,
                  workers: int | None = None, progress: bool | None = None) -> Path:
    """The dataset file of ``config``: loaded from the cache if present and valid, else simulated.

    Partial files left by builds of the same file that were killed are removed first; a cached
    file that fails its checks raises :class:`DatasetError` (delete it and it is rebuilt)."""
    path = dataset_path(config, data_dir)
    remove_stale_partials(path)
    if path.exists():
        _check_file(path, expect_hash=config_hash(config))
        return path
    return assemble(config, path, workers=workers, progress=progress)


_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError)


def _check_file(path: Path, expect_hash: str | None = None) -> None:
    with _open_h5(path) as f:
        try:
            _validate(f, path, expect_hash)
            _verify_contents(f, path)
        except DatasetError:
            raise
        except _READ_ERRORS as err:  # h5py and astropy on a damaged file
            raise _damaged(path, f"cannot be read ({type(err).__name__}: {err})") from err


def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        raise DatasetError(f"dataset file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path} is not a readable HDF5 file (truncated or foreign?): {err}") from err


def _validate(f: h5py.File, path: Path, expect_hash: str | None) -> None:
    if f.attrs.get("format") != FILE_FORMAT:
        raise DatasetError(f"{path} is not a lenslib dataset (no format={FILE_FORMAT!r} attribute)")
    if not f.attrs.get("complete", False):
        raise DatasetError(f"{path} is incomplete: its assembly did not finish")
    if f.attrs.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path} has format version {f.attrs.get('format_version')}, "
                           f"this lenslib reads {FORMAT_VERSION}; rebuild it")
    for name in ("images", "labels", "parent_ids", "metadata"):
        if name not in f:
            raise DatasetError(f"{path} lacks the {name!r} dataset")
    for name in ("images", "labels", "parent_ids"):
        if not isinstance(f[name], h5py.Dataset):
            raise _damaged(path, f"has a {name!r} that is not an array")
    n = f["images"].shape[0]
    for name in ("labels", "parent_ids", "metadata"):
        if f[name].shape[0] != n:
            raise DatasetError(f"{path}: {name} has {f[name].shape[0]} rows but images has {n}")
    if expect_hash is not None and f.attrs.get("config_hash") != expect_hash:
        raise DatasetError(f"{path} was made by config {f.attrs.get('config_hash')}, "
                           f"expected {expect_hash}")


def load_dataset(path: str | os.PathLike, *, in_memory: bool = True, verify: bool = True) -> LensDataset:
    """Open a dataset file, validated.  ``in_memory=False`` keeps ``images`` as an open
    ``h5py.Dataset`` for streaming (close it with ``dataset.images.file.close()``).

    ``verify`` (default) also checks the contents once per process: labels, image size, finite
    pixels and the stored checksum, streamed a chunk at a time when ``in_memory=False``.  A file
    that fails raises :class:`DatasetError`, which names it."""
    path = Path(path)
    f = _open_h5(path)
    try:
        _validate(f, path, None)
        config = config_from_dict(json.loads(f.attrs["config"]))
        metadata = Table.read(f, path="metadata")
        metadata.convert_bytestring_to_unicode()  # HDF5 stores strings as bytes
        images = f["images"][...] if in_memory else f["images"]
        labels = f["labels"][...]
        if verify:
            _verify_contents(f, path, images if in_memory else None)
            if "label" in metadata.colnames and not np.array_equal(np.asarray(metadata["label"]), labels):
                raise _damaged(path, "has metadata labels that differ from its labels")
        ds = LensDataset(path=path, config=config, config_hash=str(f.attrs["config_hash"]),
                         images=images, labels=labels, parent_ids=f["parent_ids"][...],
                         metadata=metadata)
    except DatasetError:
        f.close()
        raise
    except _READ_ERRORS as err:
        f.close()
        raise _damaged(path, f"cannot be read ({type(err).__name__}: {err})") from err
    except BaseException:
        f.close()
        raise
    if in_memory:
        f.close()
    return ds


def summarize(dataset: LensDataset) -> Table:
    """Counts of simulated parents and of images (after augmentation) per class and kind."""
    meta = dataset.metadata
    rows = []
    for label in (1, 0):
        sub = meta[meta["label"] == label]
        for kind in sorted(set(sub["kind"]), key=list(sub["kind"]).index):
            part = sub[sub["kind"] == kind]
            n_parents = int((~part["is_augmented"]).sum())
            rows.append(("lens" if label else "non-lens", kind, n_parents, len(part)))
    table = Table(rows=rows, names=("class", "kind", "parents", "images"))
    table.add_row(("all", "", int((~meta["is_augmented"]).sum()), len(meta)))
    return table


def parent_subset(dataset: LensDataset, fraction: float, *, seed: int = 0,
                  min_parents: int = 4) -> LensDataset:
    """A random ``fraction`` of a dataset's parents with all their augmented children, in memory.

    Its ``config_hash`` is the dataset's with the fraction and seed appended, so caches keyed by
    it (cross-validation folds, cached features) never mix a subset with the whole."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1] (got {fraction!r})")
    parents = np.unique(dataset.parent_ids)
    n = min(parents.size, max(min_parents, int(round(fraction * parents.size))))
    keep = np.isin(dataset.parent_ids, np.random.default_rng(seed).choice(parents, n, replace=False))
    return LensDataset(path=dataset.path, config=dataset.config,
                       config_hash=f"{dataset.config_hash}-subset{fraction:g}-seed{seed}",
                       images=np.asarray(dataset.images[np.flatnonzero(keep)]), labels=dataset.labels[keep],
                       parent_ids=dataset.parent_ids[keep], metadata=dataset.metadata[keep])


def get_dataset(config: SimulationConfig, data_dir: str | os.PathLike | None = None, *,
                workers: int | None = None, progress: bool | None = None,
                in_memory: bool = True) -> LensDataset:
    """Build (or reuse from the cache) and load the dataset of ``config``."""
    return load_dataset(build_dataset(config, data_dir, workers=workers, progress=progress),
                        in_memory=in_memory)


__all__ = [
    "AUGMENT_FIELDS", "DatasetError", "LensDataset", "METADATA_COLUMNS", "ParentPlan", "assemble",
    "build_dataset", "dataset_path", "default_data_dir", "get_dataset", "load_dataset",
    "parent_subset", "plan_parents", "simulate_parent", "summarize", "write_dataset",
]
