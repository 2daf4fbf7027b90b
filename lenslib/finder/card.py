"""Model cards: what a trained finder is, how it was made and how well it does, as JSON.

A card records the recipe, the sky (its config, hash and simulator version), the code's commit,
images seen, epochs, wall time and machine, the per-epoch history and, once
``bench/bench_finder.py`` has scored the finder, its benchmark under ``"benchmark"``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
from collections import Counter
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

from ..config import (
    LENS_KINDS,
    SIMULATOR_VERSION,
    FinderRecipe,
    SimulationConfig,
    config_hash,
    config_to_dict,
)
from .references import describe_start, lineage_images

CARD_FORMAT = "lenslib-model-card"

#: How a card names each of ``FinderRecipe.architecture``'s networks.
ARCHITECTURE_NAMES = {"residual": "residual network",
                      "p4m": ("residual network of p4m group convolutions (invariant to flips and "
                              "quarter turns)"),
                      "p4m+residual": ("two branches side by side, a residual network of p4m group "
                                       "convolutions and a residual network, their lens logits summed")}


def code_commit() -> str:
    """The git commit of lenslib's source tree, with ``+dirty`` for uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "lenslib"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def machine() -> dict:
    """The machine a run used: CPU, cores, the Keras backend and its accelerators (``gpus``: one
    model name per device, e.g. ``"NVIDIA H200"``, whichever backend found it)."""
    import keras

    backend = keras.backend.backend()
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "keras": keras.__version__,
            "backend": backend}
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = [tf.config.experimental.get_device_details(d).get("device_name", d.name)
                for d in tf.config.list_physical_devices("GPU")]
        info["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        accelerators = [d for d in jax.devices() if d.platform != "cpu"]
        gpus = [d.device_kind for d in accelerators]
        info["jax"] = jax.__version__
        if accelerators and accelerators[0].platform != "gpu":  # a TPU, say
            return {**info, "device": accelerators[0].platform.upper(), "gpus": gpus}
    elif backend == "torch":
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["torch"] = torch.__version__
    else:
        gpus = []
    return {**info, "device": "GPU" if gpus else "CPU", "gpus": gpus}


def describe_machine(machine_record: dict) -> str:
    """A card's ``machine`` in a few words: the device, its cores and the Keras backend's version
    (cards written before the backend was recorded were TensorFlow)."""
    backend = machine_record.get("backend", "tensorflow")
    names = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
    version = machine_record.get(backend, "")
    device = machine_record["device"]
    if machine_record.get("gpus"):
        counts = Counter(machine_record["gpus"])
        device = f"{device} ({', '.join(name if n == 1 else f'{n}x {name}' for name, n in counts.items())})"
    return (f"{device}, {machine_record['cpu_count']} cores, "
            f"{names.get(backend, backend)} {version}".rstrip())


def model_card(recipe: FinderRecipe, sky: SimulationConfig, state: dict, *, n_images: int,
               images_per_epoch: int | None = None, operating_point: dict | None = None) -> dict:
    """The card of a finished run (``state`` from :func:`~lenslib.finder.training.train_finder`).

    ``sky`` is one training shard's config; the sky's hash is taken with the shard's seed and
    counts zeroed out, so every shard of a run shares it.  ``n_images``: the distinct training
    images; ``images_per_epoch``: what an epoch shows, when more (mined negatives repeat some);
    ``operating_point``: what :func:`~lenslib.finder.operating.set_operating_point` returned, if
    the recipe set one."""
    from .. import __version__

    sky_only = dataclasses.replace(sky, seed=0, n_lenses=1, n_nonlenses=1)
    history = state["history"]
    return {
        "format": CARD_FORMAT,
        "name": recipe.name,
        "architecture": (f"{ARCHITECTURE_NAMES[recipe.architecture]}, widths "
                         f"{'/'.join(map(str, recipe.widths))} (lenslib.finder.build_finder)"),
        "recipe": config_to_dict(recipe),
        "sky": {"config": config_to_dict(sky_only), "config_hash": config_hash(sky_only),
                "simulator_version": SIMULATOR_VERSION},
        "lenslib_version": __version__,
        "code_commit": state.get("code_commit") or code_commit(),  # the code that started the run
        "distinct_images": n_images,
        "images_seen": (images_per_epoch or n_images) * state["epochs_done"],
        "epochs": state["epochs_done"],
        "wall_time_s": round(state["seconds"], 1),
        "machine": machine(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": history,
        "final_validation_auc": history[-1]["val_auc"] if history else None,
        # Pinned when the run began (a file's path and digest then); older runs' states lack it.
        "initial_finder": state["initial_finder"] if "initial_finder" in state else describe_start(
            recipe.initial_finder),
        "initial_branches": state.get("initial_branches") or [],
        "operating_point": operating_point,
    }


def training_machines(card: dict) -> list[tuple[str, int]]:
    """The machines that trained a card's finder, in order, each with its number of epochs
    (:func:`describe_machine`; consecutive epochs on one machine grouped).  A run resumed on
    another machine has several; epochs logged before machines were recorded per epoch count
    as the card's ``machine``, the one that finished the run."""
    finished_on = describe_machine(card["machine"])
    machines = (row.get("machine") or finished_on for row in card.get("history", []))
    runs = [(name, len(list(epochs))) for name, epochs in groupby(machines)]
    return runs or [(finished_on, card["epochs"])]


def describe_training(card: dict) -> str:
    """Where a card's finder was trained, in a few words: one machine's description, or each
    machine's epochs in turn (``"18 epochs on GPU (...), then 2 on CPU, 2 cores, ..."``)."""
    runs = training_machines(card)
    if len(runs) == 1:
        return runs[0][0]
    first, *rest = runs
    return ", then ".join([f"{first[1]} epoch{'s' * (first[1] != 1)} on {first[0]}"]
                          + [f"{n} on {name}" for name, n in rest])


def card_facts(card: dict):
    """How a finder was made, as a two-column ``astropy.table.Table`` (field, value) for a reader:
    the network, the training set and its augmentation, the optimiser, where it started, its
    teacher, what it saw, how long it took and on what, the sky and the code.  Cards of older
    finders lack the newer recipe fields; those rows then say so."""
    from astropy.table import Table

    recipe = card["recipe"]
    parents = f"{recipe['shard_parents']:,}"
    start, teacher, sky = card.get("initial_finder"), recipe.get("teacher"), card["sky"]
    rows = [
        ("architecture", card["architecture"]),
        ("distinct simulated images", f"{card['distinct_images']:,} (half lenses), in shards of {parents}"),
        ("augmentation", f"flips, quarter turns, shifts up to {recipe['max_shift']} px, drawn per epoch"),
        ("neighbour-carrying twins",
         f"{recipe['twin_neighbour_fraction']:.0%} of same-population non-lenses"),
        ("epochs, batch, optimizer",
         f"{card['epochs']}, {recipe['batch_size']}, Adam {recipe['learning_rate']:g} cosine-decayed"),
        ("hard-negative shards", f"{recipe.get('hard_negative_shards', 0)} of {parents} images, "
                                 f"non-lenses mixed {dict(recipe.get('hard_negative_kinds', []))}"),
        ("extra-negative shards", f"{recipe.get('extra_negative_shards', 0)} of {parents} images, "
                                  f"non-lenses mixed {dict(recipe.get('extra_negative_kinds', []))}"),
        ("wide-lens shards", "none" if not recipe.get("wide_lens_shards") else
         f"{recipe['wide_lens_shards']} of {parents} images, lenses with Einstein radii "
         f"{recipe['wide_theta_e_range'][0]:g}-{recipe['wide_theta_e_range'][1]:g} arcsec"),
        ("started from", _start_fact(start, card.get("initial_branches"))),
        ("teacher (distillation)", "none: the labels alone" if not teacher else
         f"{teacher}, its score the mean over {recipe['score_transforms']} flips and turns; "
         f"targets {1 - recipe['teacher_weight']:g} label + {recipe['teacher_weight']:g} teacher"),
        ("mined negatives", "none" if not recipe.get("mined_shards") else
         f"the {recipe['mined_shards'] * recipe['shard_parents']:,} training non-lenses "
         f"{recipe['mined_by']} scores highest "
         f"(mean over {recipe['score_transforms']} flips and turns), seen again every epoch"),
        ("score 0.5", _operating_fact(card.get("operating_point"))),
        ("images seen", f"{card['images_seen']:,} in this run"),
        ("lineage", _lineage_fact(card)),
        ("wall time",
         f"{card['wall_time_s'] / 60:.1f} min of training ({describe_training(card)})"),
        ("sky", f"simulator version {sky['simulator_version']}, config hash {sky['config_hash']}"),
        ("code", card["code_commit"]),
        ("trained", card["trained_at"]),
    ]
    return Table(rows=rows, names=("field", "value"), dtype=(str, str))


def _lineage_fact(card: dict) -> str:
    """The distinct images behind a card's finder, its own run's and its shipped ancestors'."""
    by_seed = lineage_images(card)
    if len(by_seed) == 1:
        return f"{sum(by_seed.values()):,} distinct images, all of this run's recipe seed"
    seeds = ", ".join(f"{n:,} of seed {seed}" for seed, n in sorted(by_seed.items()))
    return f"{sum(by_seed.values()):,} distinct images with the finders it started from ({seeds})"


def _start_fact(start: dict | None, branches: list[dict] | None) -> str:
    """Where a card's finder started: random weights, a finder, or two finders joined."""
    def one(start: dict) -> str:
        return (f"{start['name']}{_start_file(start)} ({start['images_seen']:,} images seen, "
                f"{start['wall_time_s'] / 60:.0f} min)")

    if branches:
        return f"{' and '.join(map(one, branches))}, side by side, their logits summed"
    return one(start) if start else "random weights"


def _start_file(start: dict) -> str:
    """For a finder begun from a file rather than a shipped finder: which file, by its digest."""
    return f", the file {Path(start['file']).name} (sha256 {start['sha256'][:12]})" if "file" in start else ""


def _operating_fact(point: dict | None) -> str:
    """What a score of 0.5 means for a card's finder (see :mod:`lenslib.finder.operating`)."""
    if not point:
        return "as trained (no operating point set)"
    # Cards before lenslib-finder-v10 set it on the validation set, with no confidence.
    rates = point.get("flag_rates", point.get("validation_flag_rates"))
    n, held_out = point.get("n_images", point.get("n_validation")), point.get("set_on", "validation")
    lenses = [rates[k] for k in LENS_KINDS if k in rates]
    lens_text = f"; it flags {min(lenses):.0%}-{max(lenses):.0%} of the lenses there" if lenses else ""
    confidence = point.get("confidence")
    bound = f" (a one-sided {confidence:.0%} bound)" if confidence else ""
    return (f"the lens logit shifted by {point['logit_shift']:+.2f} so that 0.5 flags at most "
            f"{point['max_kind_flag_rate']:.0%}{bound} of each non-lens kind of the {n:,} "
            f"{held_out} images{lens_text}")


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically (a model card, a run's state)."""
    from ..files import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))


def read_card(path: str | os.PathLike) -> dict:
    """A model card, checked to be one; a missing card is a ``FileNotFoundError`` that says where a
    card belongs (beside its ``.keras`` file, as ``lenslib train-finder`` writes it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model card at {path}: a finder's card is the .json file of the same "
                                "name beside its .keras file, as `lenslib train-finder` writes it")
    card = json.loads(path.read_text())
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{path} is not a lenslib model card (format {card.get('format')!r})")
    return card


def card_beside(model) -> dict | None:
    """The model card of ``model`` when one can be found: a shipped finder's name, or a ``.keras``
    file with its card (``<stem>.json``, as :func:`lenslib.finder.train_finder` writes it) beside
    it, or a model object :func:`lenslib.load_model` loaded from either; None for another model
    object, a file without a card, or a card that cannot be read."""
    from ..models.io import model_source, resolve_model_path

    if not isinstance(model, (str, os.PathLike)):
        model = model_source(model)
        if model is None:
            return None
    model = resolve_model_path(model)
    path = Path(model).with_suffix(".json")
    try:
        return read_card(path)
    except (OSError, ValueError):
        return None


def trained_pixel_scale(model) -> float | None:
    """The pixel scale (arcsec) of the sky ``model`` was trained on, from its card
    (:func:`card_beside`); None when unknown."""
    card = card_beside(model)
    try:
        return float(card["sky"]["config"]["instrument"]["pixel_scale"])
    except (TypeError, KeyError, ValueError):
        return None
