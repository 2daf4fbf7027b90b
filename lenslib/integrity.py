"""Checks of a dataset file's contents: what :func:`lenslib.dataset.load_dataset` verifies.

``images_blake2b``, an attribute written with the images, is a blake2b digest of them
(little-endian float32, row by row; deterministic, so assembly stays byte for byte the same).
Loading checks, ``_CHUNK_ROWS`` images at a time, that the labels are 0 or 1, that the images
have the config's size and finite pixels, and that they still match the digest.  A file that
fails raises :class:`~lenslib.errors.DatasetError` naming it and saying that deleting it has
lenslib rebuild it.  Each file is checked once per process (while its path, size, modification
time and inode stay the same).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .errors import DatasetError

_CHUNK_ROWS = 256  # images read at a time


def damaged(path: Path, what: str) -> DatasetError:
    return DatasetError(f"{path} {what}; the file is damaged or was changed: delete it and lenslib "
                        "rebuilds it (a cached dataset is simulated again by lenslib simulate or "
                        "get_dataset)")


#: Files whose contents passed :func:`verify_contents` in this process: (path, size, mtime, inode).
_VERIFIED: set = set()


def _file_key(path: Path) -> tuple:
    st = os.stat(path)
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def images_digest(images, *, path: Path | None = None) -> str:
    """blake2b of ``images`` (an array or an ``h5py.Dataset``) read ``_CHUNK_ROWS`` rows at a
    time as little-endian float32; with ``path``, also checks that every pixel is finite."""
    h = hashlib.blake2b(digest_size=16)
    for start in range(0, len(images), _CHUNK_ROWS):
        block = np.asarray(images[start:start + _CHUNK_ROWS]).astype("<f4", copy=False)
        if path is not None:
            bad = ~np.isfinite(block).all(axis=tuple(range(1, block.ndim)))
            if bad.any():
                raise damaged(path, f"has NaN or infinite pixels in image {start + int(np.argmax(bad))}")
        h.update(np.ascontiguousarray(block).tobytes())
    return h.hexdigest()


def verify_contents(f, path: Path, images=None) -> None:
    """For the open ``h5py.File`` ``f`` of ``path``: labels in {0, 1}, images of the config's
    size with finite pixels, and the stored digest (``images``: the images already in memory,
    else they are streamed from the file)."""
    key = _file_key(path)
    if key in _VERIFIED:
        return
    try:
        size = int(json.loads(f.attrs["config"])["image_size"])
    except (KeyError, ValueError, TypeError) as err:
        raise damaged(path, f"has no readable config ({err})") from err
    dset = f["images"]
    if dset.ndim != 3 or dset.shape[1:] != (size, size) or dset.dtype != np.float32:
        raise damaged(path, f"holds images of shape {dset.shape[1:]} and dtype {dset.dtype}, but its "
                       f"config makes float32 images of {size}x{size}")
    labels = f["labels"][...]
    wrong = ~np.isin(labels, (0, 1))
    if wrong.any():
        i = int(np.argmax(wrong))
        raise damaged(path, f"has label {labels[i].item()!r} at row {i}; labels must be 0 or 1")
    digest = images_digest(dset if images is None else images, path=path)
    stored = f.attrs.get("images_blake2b")
    if stored is not None and str(stored) != digest:
        raise damaged(path, "has images that do not match the checksum written with them")
    _VERIFIED.add(key)


__all__ = ["damaged", "images_digest", "verify_contents"]
