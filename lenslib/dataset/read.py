"""Load a dataset file back, checking its contents (:mod:`lenslib.integrity`), and summarise it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table

from ..config import config_from_dict
from ..errors import DatasetError
from ..integrity import damaged as _damaged
from ..integrity import verify_contents as _verify_contents
from .layout import FILE_FORMAT, FORMAT_VERSION, LensDataset

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
    """A random ``fraction`` of a dataset's parents with all their augmented children, in memory
    (``fraction=1``: the dataset itself).

    A part's ``config_hash`` is the dataset's with the fraction and seed appended, so caches
    keyed by it (cross-validation folds, cached features) never mix a subset with the whole."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1] (got {fraction!r})")
    if fraction == 1:
        return dataset  # the whole: the same hash, so its cached folds and features are reused
    parents = np.unique(dataset.parent_ids)
    n = min(parents.size, max(min_parents, int(round(fraction * parents.size))))
    keep = np.isin(dataset.parent_ids, np.random.default_rng(seed).choice(parents, n, replace=False))
    return LensDataset(path=dataset.path, config=dataset.config,
                       config_hash=f"{dataset.config_hash}-subset{fraction:g}-seed{seed}",
                       images=np.asarray(dataset.images[np.flatnonzero(keep)]), labels=dataset.labels[keep],
                       parent_ids=dataset.parent_ids[keep], metadata=dataset.metadata[keep])
