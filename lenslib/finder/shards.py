"""The finder's training set: many distinct simulated images in shards, streamed batch by batch.

Each shard is an ordinary lenslib dataset (:func:`lenslib.dataset.build_dataset`): half lenses,
half non-lenses of the default sky, no stored augmentation, its own seed, so every image is a
distinct parent.  A shard is simulated once, cached by its config hash, written atomically, and
a killed simulation resumes at the first missing shard.  Beside each shard a float16 copy of its
images after :func:`lenslib.preprocess.normalize` is cached (``.x16.npy``): normalised pixels lie
in about [-3, 8], where float16 keeps 3 significant digits, far below the noise, and reading it
is cheaper than normalising every epoch.  Shards can be simulated on a Dask cluster.

:class:`ShardStream` yields shuffled, augmented batches: per epoch it visits the shards in a
seeded order, two at a time, shuffles their rows together and applies a random dihedral
transform (flips, quarter turns) and a shift of up to ``max_shift`` pixels to each image.  The
order and transforms depend only on ``(seed, epoch)``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ..augment import augment_batch
from ..config import FinderRecipe, SimulationConfig
from ..dataset import build_dataset, dataset_path, load_dataset
from ..dataset.build import _mp_context
from ..files import atomic_output
from ..preprocess import normalize
from .references import finder_tag

_NORMALIZE_BATCH = 1000


#: The held-out sets of a recipe and the offsets of their seeds (training shards use their index).
HELD_OUT_SEED_OFFSETS = {"validation": 999_999, "calibration": 999_998}


def shard_config(recipe: FinderRecipe, index: int, *,
                 sky: SimulationConfig | None = None) -> SimulationConfig:
    """The sky of training shard ``index``: ``sky`` (default: the default sky) with the recipe's
    counts, neighbour fraction, no stored augmentation and a seed of its own; shards from
    ``recipe.n_default_shards`` on are hard- or extra-negative shards, whose non-lenses follow the
    recipe's mix for them (:meth:`FinderRecipe.nonlens_mix`), then wide-lens shards, whose lenses
    (and unlensed twins) have Einstein radii in ``recipe.wide_theta_e_range``."""
    if not 0 <= index < recipe.n_shards:
        raise ValueError(f"shard index must be in [0, {recipe.n_shards}) for this recipe (got {index})")
    mix = recipe.nonlens_mix(index)
    if index >= recipe.n_default_shards:
        n = recipe.shard_parents
    else:
        n = min(recipe.shard_parents, recipe.train_parents - index * recipe.shard_parents)
    changes = {} if mix is None else {"nonlens_kinds": mix}
    if recipe.is_wide_lens_shard(index):
        changes["theta_e_range"] = tuple(float(v) for v in recipe.wide_theta_e_range)
    return _shard_sky(recipe, sky, n, recipe.seed * 1_000_003 + index, changes)


def held_out_config(recipe: FinderRecipe, role: str, *,
                    sky: SimulationConfig | None = None) -> SimulationConfig:
    """The sky of a held-out set of the default mix: ``role`` "validation" (scored after each epoch;
    ``recipe.validation_parents`` images) or "calibration" (where the operating point is set;
    ``recipe.calibration_parents``), each with a seed no training shard uses."""
    if role not in HELD_OUT_SEED_OFFSETS:
        raise ValueError(f"role must be one of {tuple(HELD_OUT_SEED_OFFSETS)} (got {role!r})")
    if role == "calibration" and recipe.calibration_parents < 2:
        raise ValueError(f"this recipe sets its operating point on the validation set "
                         f"(calibration_parents={recipe.calibration_parents})")
    n = recipe.validation_parents if role == "validation" else recipe.calibration_parents
    return _shard_sky(recipe, sky, n, recipe.seed * 1_000_003 + HELD_OUT_SEED_OFFSETS[role], {})


def _shard_sky(recipe: FinderRecipe, sky: SimulationConfig | None, n: int, seed: int, changes: dict):
    sky = SimulationConfig() if sky is None else sky
    return dataclasses.replace(sky, n_lenses=n // 2, n_nonlenses=n - n // 2, augment_copies=0,
                               twin_neighbour_fraction=recipe.twin_neighbour_fraction, seed=seed, **changes)


def shard_configs(recipe: FinderRecipe, *, sky: SimulationConfig | None = None) -> list[SimulationConfig]:
    """Every training shard's config, in order."""
    return [shard_config(recipe, k, sky=sky) for k in range(recipe.n_shards)]


def normalized_path(shard: Path) -> Path:
    return shard.with_suffix(".x16.npy")


def _build_shard(config: SimulationConfig, data_dir: str, workers: int) -> str:
    path = build_dataset(config, data_dir, workers=workers, progress=False)
    cached = normalized_path(path)
    if not cached.exists():
        data = load_dataset(path, in_memory=False, verify=False)
        try:
            out = np.empty(data.images.shape, dtype=np.float16)
            for start in range(0, len(out), _NORMALIZE_BATCH):
                out[start:start + _NORMALIZE_BATCH] = normalize(data.images[start:start + _NORMALIZE_BATCH])
        finally:
            data.images.file.close()
        with atomic_output(cached) as tmp, open(tmp, "wb") as f:
            np.save(f, out)
    return str(path)


def simulate_shards(configs: list[SimulationConfig], data_dir: str | os.PathLike, *,
                    workers: int | None = None, scheduler=None, progress: bool | None = None) -> list[Path]:
    """Simulate (or find cached) every shard of ``configs`` under ``data_dir``; returns their paths.

    ``scheduler``: None (this machine: a whole shard per process when ``workers`` or more shards
    are still to simulate, else each shard on ``workers`` processes in turn), ``"local"`` or the
    address of a Dask scheduler (one shard per Dask task; ``data_dir`` must be shared).  The bytes
    are the same every way.
    """
    from tqdm import tqdm

    data_dir = str(Path(data_dir))
    if scheduler is None:
        workers = os.cpu_count() or 1 if workers is None else workers
        bar = tqdm(total=len(configs), desc="simulating shards", unit="shard",
                   disable=None if progress is None else not progress)
        with bar:
            to_make = [c for c in configs if not normalized_path(dataset_path(c, data_dir)).exists()]
            if workers == 1 or len(to_make) < workers:  # each shard on all the workers, in turn
                paths = []
                for c in configs:
                    paths.append(Path(_build_shard(c, data_dir, workers)))
                    bar.update()
                return paths
            # As many shards as workers or more: a whole shard per process, so that each process
            # starts (imports, first-call caches) once per shard rather than once per shard per worker.
            with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as pool:
                futures = [pool.submit(_build_shard, c, data_dir, 1) for c in configs]
                try:
                    for future in as_completed(futures):
                        future.result()
                        bar.update()
                except BaseException:
                    # A failed shard (or Ctrl-C) stops the run now: the shards not yet started are
                    # cancelled, those running finish (each is written atomically: kept for the rerun).
                    pool.shutdown(cancel_futures=True)
                    raise
                return [Path(f.result()) for f in futures]
    from ..scan.scoring import dask_client as _dask_client

    client, close = _dask_client(scheduler, None)
    try:
        futures = [client.submit(_build_shard, c, data_dir, 1, pure=False) for c in configs]
        return [Path(p) for p in client.gather(futures)]
    finally:
        close()


def shard_paths(configs: list[SimulationConfig], data_dir: str | os.PathLike) -> list[Path]:
    """Where the shards of ``configs`` live (simulated or not)."""
    return [dataset_path(c, data_dir) for c in configs]


def load_normalized(shard: Path) -> tuple[np.ndarray, np.ndarray]:
    """A shard's normalised float16 images (memory-mapped) and its labels."""
    import h5py

    images = np.load(normalized_path(shard), mmap_mode="r")
    with h5py.File(shard, "r") as f:
        labels = np.asarray(f["labels"], dtype=np.int32)
    if len(images) != len(labels):
        raise ValueError(f"{normalized_path(shard)} holds {len(images)} images but {shard} "
                         f"{len(labels)} labels; "
                         "delete the .x16.npy file and it is remade")
    return images, labels


def shard_metadata(shard: Path):
    """A simulated shard's metadata (``kind``, ``arc_snr``, ``theta_e``...), an
    ``astropy.table.Table`` with a row per image, read without its images."""
    data = load_dataset(shard, in_memory=False, verify=False)
    try:
        return data.metadata
    finally:
        data.images.file.close()


def scores_path(shard: Path, tag: str, transforms: int) -> Path:
    """Where the scores of a finder on a shard's images are cached: ``tag`` is its
    :func:`~lenslib.finder.references.finder_tag` (a shipped finder's name as it is)."""
    return shard.with_suffix(f".{tag}-t{transforms}.npy")


def finder_scores(shards: list[Path], finder: str, *, transforms: int = 8, batch_size: int = 512,
                  progress: bool | None = None) -> list[np.ndarray]:
    """Per shard, the lens probability the finder ``finder`` (a shipped name or a ``.keras`` file)
    gives each image, averaged over ``transforms`` flips and quarter turns (float32, cached beside
    the shard, written atomically): a distilled recipe's soft targets (``FinderRecipe.teacher``),
    or what picks a recipe's mined negatives (``FinderRecipe.mined_by``)."""
    from tqdm import tqdm

    from ..models import load_model
    from ..models.io import predict_normalized

    model, out, tag = None, [], finder_tag(finder)
    for shard in tqdm(shards, desc=f"scoring with {finder}", unit="shard",
                      disable=None if progress is None else not progress):
        path = scores_path(shard, tag, transforms)
        images, labels = load_normalized(shard)
        if not path.exists():
            model = load_model(finder) if model is None else model
            scores = np.concatenate([
                predict_normalized(model, np.asarray(images[i:i + batch_size], dtype=np.float32),
                                   batch_size=batch_size, transforms=transforms)
                for i in range(0, len(images), batch_size)])
            with atomic_output(path) as tmp, open(tmp, "wb") as f:
                np.save(f, scores.astype(np.float32))
        scores = np.load(path)
        if len(scores) != len(labels):
            raise ValueError(f"{path} holds {len(scores)} scores but {shard} more or fewer images; "
                             "delete it and it is remade")
        out.append(scores)
    return out


def mine_negatives(shards: list[Path], scores: list[np.ndarray], *, n_shards: int, shard_size: int,
                   data_dir: str | os.PathLike, tag: str) -> list[Path]:
    """The ``n_shards * shard_size`` non-lenses of ``shards`` that ``scores`` (one array per shard,
    say :func:`finder_scores`) rank highest, hardest first, written as ``n_shards`` more shards
    of ``shard_size`` (labels and normalised images only, as :class:`ShardStream` reads them)
    named ``mined-<tag>-<k>``; cached, written atomically.  Hard-negative mining: a second pass
    trained on the look-alikes the first pass flags, as lens searches on real surveys do."""
    import h5py

    held = [load_normalized(shard) for shard in shards]  # memory maps: each shard opened once
    picks = [(-float(score), k, row) for k, ((_, labels), s) in enumerate(zip(held, scores))
             for row, (score, label) in enumerate(zip(s, labels)) if label == 0]
    wanted = n_shards * shard_size
    if len(picks) < wanted:
        raise ValueError(f"mined_shards: {wanted} non-lenses wanted, but the training shards hold only "
                         f"{len(picks)} non-lenses")
    picks = sorted(picks)[:wanted]  # by score, then shard and row: the same picks every time
    out = []
    for part in range(n_shards):
        path = Path(data_dir) / f"mined-{tag}-{part}.h5"
        chosen = picks[part * shard_size:(part + 1) * shard_size]
        if not normalized_path(path).exists():
            images = np.stack([np.asarray(held[k][0][row]) for _, k, row in chosen])
            with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
                f["labels"] = np.zeros(len(chosen), np.int32)
            with atomic_output(normalized_path(path)) as tmp, open(tmp, "wb") as f:
                np.save(f, images.astype(np.float16))
        out.append(path)
    return out


def recipe_mined_shards(recipe: FinderRecipe, shards: list[Path], data_dir: str | os.PathLike, *,
                        progress: bool | None = None) -> list[Path]:
    """The mined shards a :class:`~lenslib.config.FinderRecipe` adds to its training ``shards``
    (none when ``recipe.mined_shards`` is 0): :func:`finder_scores` by ``recipe.mined_by``, then
    :func:`mine_negatives`, both cached, so a second call (another run on the same shards, say
    several finders trained side by side) finds them made."""
    if not recipe.mined_shards:
        return []
    scores = finder_scores(shards, recipe.mined_by, transforms=recipe.score_transforms, progress=progress)
    miner = finder_tag(recipe.mined_by, field="mined_by")
    what = json.dumps([[p.name for p in shards], miner, recipe.score_transforms, recipe.mined_shards,
                       recipe.shard_parents])
    tag = hashlib.sha256(what.encode()).hexdigest()[:16]
    return mine_negatives(shards, scores, n_shards=recipe.mined_shards, shard_size=recipe.shard_parents,
                          data_dir=data_dir, tag=tag)


def _in_memory(shard: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = shard
    return np.array(images), labels  # a copy in memory, not the memory map


class ShardStream:
    """Callable generator of ``(x, y)`` training batches over ``shards``; one call is one epoch.

    ``epoch`` is the epoch the next call yields (set it to resume).  ``in_memory``: read every
    shard's float16 images once and keep them (2 bytes a pixel: 2.6 GB for the shipped recipe's
    130,000), instead of reading two shards from disk at a time each epoch; the batches are the
    same.  Worth it where reading the disk, not the network, bounds training (a GPU).

    ``teacher``: per shard, a teacher's lens probability for each image (:func:`finder_scores`).
    Given, each batch's targets are soft, float32 ``(n, 2)`` rows ``[1 - t, t]`` with
    ``t = (1 - teacher_weight) * label + teacher_weight * score`` (knowledge distillation: the
    cross-entropy against ``t`` is the same blend of the cross-entropies against the label and
    against the teacher); without, they are the int32 labels."""

    def __init__(self, shards: list[Path], *, batch_size: int, max_shift: int, seed: int, epoch: int = 0,
                 in_memory: bool = False, teacher: list[np.ndarray] | None = None,
                 teacher_weight: float = 0.0):
        if not shards:
            raise ValueError("no shards to train on")
        if teacher is not None and len(teacher) != len(shards):
            raise ValueError(f"teacher must hold one array of scores per shard ({len(shards)}; "
                             f"got {len(teacher)})")
        self.teacher, self.teacher_weight = teacher, float(teacher_weight)
        self.shards, self.batch_size, self.max_shift = list(shards), batch_size, max_shift
        self.seed, self.epoch = seed, epoch
        self._held = [_in_memory(load_normalized(s)) for s in self.shards] if in_memory else None
        sizes = {len(self._shard(k)[1]) for k in range(len(self.shards))}
        if len(sizes) > 1:  # shuffled pairs of unequal shards would change the batches per epoch
            raise ValueError(f"every shard must hold as many images (got sizes {sorted(sizes)}); "
                             "make train_parents a multiple of shard_parents")
        self.n_images = sizes.pop() * len(self.shards)

    def _shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._held[k] if self._held is not None else load_normalized(self.shards[k])

    def __len__(self) -> int:
        """Batches per epoch (the last batch of each pair of shards may be short)."""
        sizes = [sum(len(self._shard(k)[1]) for k in range(i, min(i + 2, len(self.shards))))
                 for i in range(0, len(self.shards), 2)]
        return sum(-(-n // self.batch_size) for n in sizes)

    def __call__(self):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch]))
        self.epoch += 1
        order = rng.permutation(len(self.shards))
        for i in range(0, len(order), 2):
            parts = [self._shard(k) for k in order[i:i + 2]]
            images = np.concatenate([np.asarray(p[0]) for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            if self.teacher is not None:
                soft = np.concatenate([self.teacher[k] for k in order[i:i + 2]])
                soft = (1 - self.teacher_weight) * labels + self.teacher_weight * soft
                labels = np.stack([1 - soft, soft], axis=1).astype(np.float32)
            rows = rng.permutation(len(labels))
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start:start + self.batch_size]
                x = augment_batch(images[batch], rng, self.max_shift)
                yield x[..., None], labels[batch]
