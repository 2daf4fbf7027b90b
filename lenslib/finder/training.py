"""Train the finder at scale on one machine: simulate shards, stream them, checkpoint every epoch.

:func:`train_finder` is what ``lenslib train-finder`` and ``make finder`` run.  A run directory
holds everything a run needs to resume::

    state.json               the commit point: recipe, epochs done, history, wall time
    checkpoint-<k>.keras     the model and its optimizer after epoch k (the last one kept)
    log.csv                  one row per epoch (loss, accuracy, validation loss and ROC AUC, time)
    <name>.keras, <name>.json  the finished finder (no optimizer) and its model card

A killed run started again with the same recipe resumes after its last finished epoch and
reaches the same weights as a run that was never stopped: the batches of an epoch depend only on
``(seed, epoch)``, and the checkpoint carries the optimizer's state.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import FinderRecipe, SimulationConfig, config_to_dict
from ..errors import InputError
from ..files import atomic_output
from .card import code_commit, describe_machine, machine, write_json
from .operating import set_operating_point
from .references import check_finder_references, check_unchanged, describe_start
from .shards import (
    ShardStream,
    finder_scores,
    held_out_config,
    load_normalized,
    recipe_mined_shards,
    shard_configs,
    shard_metadata,
    simulate_shards,
)

LOG_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_auc", "seconds", "images_per_s", "machine")


@dataclass
class FinderRun:
    """What :func:`train_finder` returns.  A run that stops before its last epoch (``stop_after``,
    or a callback that sets ``stop_training``, such as ``EarlyStopping``) is not finished: it has
    no finder or card yet (``model``, ``model_path`` and ``card_path`` are None), and calling
    :func:`train_finder` again resumes it."""

    model: object | None
    model_path: Path | None
    card_path: Path | None
    history: list[dict]
    seconds: float
    resumed_from: int  # epochs already done when this call started
    finished: bool = True


def _read_state(run_dir: Path, recipe: FinderRecipe) -> dict | None:
    path = run_dir / "state.json"
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    if state.get("recipe") != config_to_dict(recipe):
        raise InputError(f"{run_dir} holds a run of another recipe ({state.get('recipe', {}).get('name')}); "
                         "choose another run directory (the command: --run-dir, or --set name=... for a "
                         "new finder) or delete this one")
    return state


def _held_out(shard: Path) -> tuple[np.ndarray, np.ndarray]:
    """A held-out shard's normalised cutouts, as the network takes them (float32, (N, H, W, 1)),
    and its labels."""
    x, y = load_normalized(shard)
    return np.asarray(x, dtype=np.float32)[..., None], y


def _write_log(path: Path, history: list[dict]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in LOG_COLUMNS} for row in history)


def _warm_start(model, recipe: FinderRecipe) -> None:
    """Copy into ``model`` (the recipe's architecture) the weights of the finder the recipe starts
    from: ``initial_finder`` (a shipped finder's name, or a ``.keras`` file with its model card
    beside it; checked by :func:`check_finder_references`), or its two ``initial_branches``
    joined (:func:`~lenslib.finder.architecture.join_finders`)."""
    from ..models import load_model
    from .architecture import join_finders

    if recipe.initial_branches:
        field, name = "initial_branches", " and ".join(recipe.initial_branches)
        initial = join_finders(*recipe.initial_branches)
    else:
        field, name = "initial_finder", recipe.initial_finder
        initial = load_model(name)
    if [w.shape for w in initial.get_weights()] != [w.shape for w in model.get_weights()]:
        raise ValueError(f"FinderRecipe.{field}: {name} has another architecture than the "
                         "recipe's architecture and widths build; give the ones it was trained "
                         "with, or ''")
    model.set_weights(initial.get_weights())


def _load_checkpoint(path: Path):
    """A run's checkpoint, compiled, with its optimizer's state, to train on here.  The saved
    compile config keeps the XLA choice of the backend that wrote it (under JAX, always on); this
    machine's backend chooses again (TensorFlow on a CPU: off, which is faster there: a run begun
    under JAX on a GPU and resumed on 2 cores trained at about 340 images/s with XLA on)."""
    import keras

    from ..models.io import register_finder_layers

    register_finder_layers()
    model = keras.saving.load_model(path, safe_mode=True, compile=True)
    model.jit_compile = None  # Keras resolves None ("auto") for this backend and machine
    return model


def _compile(model, recipe: FinderRecipe, steps_per_epoch: int) -> None:
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(recipe.learning_rate,
                                                      decay_steps=recipe.epochs * steps_per_epoch)
    # A distilled recipe's targets are soft [1 - t, t] rows (ShardStream), the others int labels.
    soft = bool(recipe.teacher)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="categorical_crossentropy" if soft else "sparse_categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy") if soft else "accuracy"])


def _dataset(stream: ShardStream, image_size: int):
    """The training batches as ``model.fit`` takes them, and the steps per epoch to give it.

    Under TensorFlow: a ``tf.data`` pipeline that calls ``stream`` once per epoch and prefetches.
    Under another Keras backend (JAX or PyTorch, say on a GPU machine without TensorFlow): one
    endless generator of epoch after epoch, the next batches made in a thread (see
    :func:`_prefetched`); ``fit`` then needs the steps per epoch."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return _prefetched(stream), len(stream)
    import tensorflow as tf

    targets = (tf.TensorSpec((None,), tf.int32) if stream.teacher is None
               else tf.TensorSpec((None, 2), tf.float32))
    signature = (tf.TensorSpec((None, image_size, image_size, 1), tf.float32), targets)
    ds = tf.data.Dataset.from_generator(stream, output_signature=signature)
    return ds.apply(tf.data.experimental.assert_cardinality(len(stream))).prefetch(4), None


def _prefetched(stream: ShardStream, depth: int = 8):
    """Every epoch of ``stream`` in turn, forever; a thread keeps up to ``depth`` batches ready.
    The thread stops when the generator is closed (``fit`` ends and drops it)."""
    import queue
    import threading

    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def hand_over(item) -> bool:
        """Put ``item`` in the queue once there is room; False if the generator was closed first."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def fill():
        try:
            while True:
                for batch in stream():
                    if not hand_over(batch):
                        return
        except BaseException as error:  # handed to the training thread, which raises it
            hand_over(error)

    thread = threading.Thread(target=fill, name="lenslib-finder-batches", daemon=True)
    thread.start()
    try:
        while True:
            batch = ready.get()
            if isinstance(batch, BaseException):
                raise batch
            yield batch
    finally:
        stop.set()


def _stop_after(seconds: float, start: float):
    """A Keras callback that ends training after an epoch when the next one, taking as long as the
    longest so far, would end more than ``seconds`` after ``start`` (a ``time.perf_counter()``)."""
    import keras

    class StopAfter(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.longest = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.longest = max(self.longest, now - self.epoch_start)
            if now + self.longest - start > seconds:
                self.model.stop_training = True

    return StopAfter()


def _epoch_callback(run_dir: Path, state: dict, val_x, val_y, n_train: int, trained_on: str):
    import keras
    from sklearn.metrics import log_loss, roc_auc_score

    from ..models import save_model

    class CommitEpoch(keras.callbacks.Callback):
        """After each epoch: score the validation set, save the checkpoint, then commit the state
        (the state names the checkpoint, so a kill between the two loses at most one epoch)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start
            scores = np.concatenate([self.model.predict_on_batch(val_x[i:i + 512])[:, 1]
                                     for i in range(0, len(val_x), 512)])
            row = {"epoch": epoch + 1, "loss": float(logs["loss"]), "accuracy": float(logs["accuracy"]),
                   "val_loss": float(log_loss(val_y, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1])),
                   "val_auc": float(roc_auc_score(val_y, scores)), "seconds": round(seconds, 2),
                   "images_per_s": round(n_train / seconds, 1), "machine": trained_on}
            checkpoint = run_dir / f"checkpoint-{epoch + 1}.keras"
            save_model(self.model, checkpoint)
            previous = state.get("checkpoint")
            state.update(epochs_done=epoch + 1, checkpoint=checkpoint.name,
                         history=state["history"] + [row], seconds=state["seconds"] + seconds)
            write_json(run_dir / "state.json", state)
            _write_log(run_dir / "log.csv", state["history"])
            if previous and previous != checkpoint.name:
                (run_dir / previous).unlink(missing_ok=True)

    return CommitEpoch()


def train_finder(recipe: FinderRecipe, run_dir: str | os.PathLike, *, data_dir: str | os.PathLike,
                 sky: SimulationConfig | None = None, workers: int | None = None, scheduler=None,
                 callbacks=(), verbose: int = 1, in_memory: bool = False,
                 stop_after: float | None = None) -> FinderRun:
    """Simulate the recipe's shards (or find them cached in ``data_dir``), train the finder in
    ``run_dir`` (resuming a killed run there), and write it with its model card.

    ``sky``: the sky the shards are drawn from (default: the default sky).  ``workers`` and
    ``scheduler``: where shards are simulated (see :func:`~lenslib.finder.shards.simulate_shards`).
    ``callbacks``: more Keras callbacks (run after each epoch is committed).
    ``verbose``: Keras's progress bar (1) or silence (0).
    ``in_memory``: hold the shards in memory (:class:`~lenslib.finder.shards.ShardStream`); the
    same batches, for machines where reading them bounds training.
    ``stop_after``: seconds this call may take, from its start (simulating the shards included);
    it stops after the last epoch that fits (committed, so that calling again resumes) and returns
    an unfinished :class:`FinderRun`.
    """
    import keras

    from ..models import load_model, save_model
    from .architecture import build_finder
    from .card import model_card

    if not isinstance(recipe, FinderRecipe):
        raise TypeError(f"recipe must be a FinderRecipe (got {type(recipe).__name__})")
    call_start = time.perf_counter()
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, (int, float))
                                   or not 0 < stop_after < float("inf")):
        raise InputError(f"stop_after must be a positive number of seconds, or None (got {stop_after!r})")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(run_dir, recipe)
    finders = check_finder_references(recipe)  # before any simulation: a bad name fails now
    if state is not None:
        check_unchanged(state.get("finder_tags", {}), finders, run_dir)
    progress = None if verbose else False
    train_configs = shard_configs(recipe, sky=sky)
    val_config = held_out_config(recipe, "validation", sky=sky)
    shards = simulate_shards(train_configs, data_dir, workers=workers, scheduler=scheduler, progress=progress)
    held_out = [val_config]
    if recipe.max_kind_flag_rate is not None and recipe.calibration_parents:
        held_out.append(held_out_config(recipe, "calibration", sky=sky))  # for the operating point
    val_shard, *calibration_shard = simulate_shards(held_out, data_dir, workers=workers, scheduler=scheduler,
                                                    progress=False)
    val_x, val_y = _held_out(val_shard)

    size = train_configs[0].image_size
    shards = shards + recipe_mined_shards(recipe, shards, data_dir, progress=progress)
    teacher = None
    if recipe.teacher:
        teacher = finder_scores(shards, recipe.teacher, transforms=recipe.score_transforms,
                                 progress=progress)
    stream = ShardStream(shards, batch_size=recipe.batch_size, max_shift=recipe.max_shift, seed=recipe.seed,
                         in_memory=in_memory, teacher=teacher, teacher_weight=recipe.teacher_weight)
    keras.utils.set_random_seed(recipe.seed)
    if state is None:
        state = {"recipe": config_to_dict(recipe), "epochs_done": 0, "history": [], "seconds": 0.0,
                 "checkpoint": None, "code_commit": code_commit(), "finder_tags": finders,
                 "initial_finder": describe_start(recipe.initial_finder),
                 "initial_branches": [describe_start(b, field="initial_branches")
                                      for b in recipe.initial_branches]}
        model = build_finder((size, size, 1), widths=recipe.widths, seed=recipe.seed,
                             architecture=recipe.architecture)
        if recipe.initial_finder or recipe.initial_branches:
            _warm_start(model, recipe)
        _compile(model, recipe, len(stream))
    else:
        model = _load_checkpoint(run_dir / state["checkpoint"])
    done = state["epochs_done"]
    stream.epoch = done
    if done < recipe.epochs:
        # Each epoch records the machine that ran it: a run resumed elsewhere (begun on a GPU,
        # finished on a laptop) says so in its log and card.
        trained_on = describe_machine(machine())
        callback = _epoch_callback(run_dir, state, val_x, val_y, stream.n_images, trained_on)
        batches, steps = _dataset(stream, size)
        limit = [] if stop_after is None else [_stop_after(stop_after, call_start)]
        try:
            model.fit(batches, epochs=recipe.epochs, initial_epoch=done, steps_per_epoch=steps,
                      callbacks=[callback, *callbacks, *limit], shuffle=False, verbose=verbose)
        finally:
            if hasattr(batches, "close"):  # the generator path: stop its thread, free its batches
                batches.close()
    if state["epochs_done"] < recipe.epochs:
        return FinderRun(model=None, model_path=None, card_path=None, history=state["history"],
                         seconds=state["seconds"], resumed_from=done, finished=False)
    final = build_finder((size, size, 1), widths=recipe.widths, seed=recipe.seed,
                         name=recipe.name.replace("-", "_"), architecture=recipe.architecture)
    final.set_weights(model.get_weights())
    operating_point = None
    if recipe.max_kind_flag_rate is not None:
        point_shard, point_x, point_y, set_on = val_shard, val_x, val_y, "validation"
        if calibration_shard:
            point_shard, set_on = calibration_shard[0], "calibration"
            point_x, point_y = _held_out(point_shard)
        kinds = np.asarray(shard_metadata(point_shard)["kind"]).astype(str)
        operating_point = set_operating_point(final, point_x, point_y, kinds, recipe.max_kind_flag_rate,
                                              confidence=recipe.flag_rate_confidence, set_on=set_on)
    model_path = save_model(final, run_dir / f"{recipe.name}.keras")
    # Mined negatives are copies of training images: seen again, not distinct.
    distinct = stream.n_images - recipe.mined_shards * recipe.shard_parents
    card = model_card(recipe, train_configs[0], state, n_images=distinct, images_per_epoch=stream.n_images,
                      operating_point=operating_point)
    card_path = run_dir / f"{recipe.name}.json"
    write_json(card_path, card)
    return FinderRun(model=load_model(model_path), model_path=model_path, card_path=card_path,
                     history=state["history"], seconds=state["seconds"], resumed_from=done)
