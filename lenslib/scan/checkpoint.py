"""Checkpoints: a scan's finished tile rows on disk, so that an interrupted scan resumes.

A checkpoint is a directory holding ``scan.json`` (:data:`CHECKPOINT_FORMAT`, its version and
the scan's :func:`fingerprint`) and one ``rows/row-NNNNNN.npy`` of float32 scores per finished
tile row, each written atomically (:func:`lenslib.files.atomic_output`).  A scan resumes from a
checkpoint only if the fingerprint matches: every pixel as the scan sees it, the tiling and the
model; any other checkpoint is refused with a message naming what differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_output
from .tiles import TileGrid

CHECKPOINT_FORMAT = "lenslib-scan-checkpoint"
_CHECKPOINT_VERSION = 2


def model_digest(model, path) -> str:
    """blake2b of the model's ``.keras`` file (architecture and weights), or of its weights."""
    h = hashlib.blake2b(digest_size=16)
    if path is not None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for w in model.get_weights():
            h.update(str(np.shape(w)).encode())
            h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def fingerprint(image_digest: str, grid: TileGrid, zero_run: int, model_sum: str,
                transforms: int = 1, max_missing: float = 0.0) -> dict:
    """What a checkpoint must match to be resumed: every pixel of the image as the scan sees it
    (:func:`lenslib.scan.tiles.survey`'s digest: data, mask, weights, BLANK and zero runs), the
    tiling, the model (``model_sum``, its :func:`model_digest`), the test-time ``transforms`` and
    the share of a tile's pixels that may be filled, ``max_missing`` (each recorded only when not
    1 or 0, so checkpoints of earlier versions, which filled none, resume when the scan fills
    none).  Options that do not change a tile's score (threshold, min_separation, batch_size,
    scheduler) are not part of it: a finished checkpoint can be merged again at another threshold
    without rescoring."""
    out = {"shape": list(grid.shape), "size": grid.size, "stride": grid.stride, "zero_run": zero_run,
           "image": image_digest, "model": model_sum}
    if transforms != 1:
        out["transforms"] = transforms
    if max_missing:
        out["max_missing"] = max_missing
    return out


class Checkpoint:
    """A directory holding ``scan.json`` (the fingerprint) and one ``rows/row-NNNNNN.npy`` of
    scores per finished tile row, each written atomically."""

    def __init__(self, directory, fingerprint: dict, n_cols: int):
        self.dir = Path(directory)
        self.n_cols = n_cols
        manifest = self.dir / "scan.json"
        record = {"format": CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "fingerprint": fingerprint}
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
            except (OSError, ValueError) as err:
                raise InputError(f"{manifest} is not a lenslib scan checkpoint: {err}") from err
            if not isinstance(old, dict) or old.get("format") != CHECKPOINT_FORMAT:
                raise InputError(f"{manifest} is not a lenslib scan checkpoint")
            if old.get("version") != _CHECKPOINT_VERSION:
                raise InputError(f"the checkpoint {self.dir} was written by another version of lenslib "
                                 f"(checkpoint version {old.get('version')!r}); delete it to scan afresh")
            previous = old.get("fingerprint") if isinstance(old.get("fingerprint"), dict) else {}
            keys = set(fingerprint) | set(previous)
            differ = sorted(k for k in keys if previous.get(k) != fingerprint.get(k))
            if differ:
                raise InputError(f"the checkpoint {self.dir} belongs to another scan (it differs in "
                                 f"{', '.join(differ)}); use a new checkpoint directory or delete it")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic_output(manifest) as tmp:
                tmp.write_text(json.dumps(record, indent=1))
        (self.dir / "rows").mkdir(exist_ok=True)

    def _path(self, row: int) -> Path:
        return self.dir / "rows" / f"row-{row:06d}.npy"

    def load(self, scores: np.ndarray) -> np.ndarray:
        """Fill ``scores`` with every finished row; returns the indices of those rows."""
        done = []
        for row in range(scores.shape[0]):
            path = self._path(row)
            if path.exists():
                try:
                    values = np.load(path, allow_pickle=False)
                except (ValueError, EOFError, OSError) as err:
                    raise InputError(f"{path} is not a readable row of scores ({err}); delete the "
                                     f"checkpoint {self.dir} to scan afresh") from err
                if values.shape != (self.n_cols,):
                    raise InputError(f"{path} holds {values.shape} scores, expected ({self.n_cols},)")
                scores[row] = values
                done.append(row)
        return np.array(done, dtype=int)

    def save(self, row: int, values: np.ndarray) -> None:
        """Write one finished row's scores (atomically: a row file is whole or absent)."""
        with atomic_output(self._path(row)) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(values, dtype=np.float32))
