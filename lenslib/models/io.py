"""A trained lens finder in use: save it, load it (a ``.keras`` file or a shipped finder's
name), and score cutouts with it."""

from __future__ import annotations

import contextlib
import os
import weakref
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_output, same_file
from ..preprocess import normalize, validate_cutouts
from .common import is_integer, lazy_keras


def save_model(model, path: str | os.PathLike) -> Path:
    """Save ``model`` as a ``.keras`` file atomically (a killed run leaves no half-written file)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files must end in .keras (got {path})")
    with atomic_output(path) as tmp:
        staging = tmp.with_name(tmp.name + ".keras")  # Keras insists on the extension
        try:
            model.save(staging)
            os.replace(staging, tmp)
        finally:
            staging.unlink(missing_ok=True)
    return path


#: The file each model :func:`load_model` returned was loaded from (weakly held: an entry goes
#: with its model), so that a loaded model still finds its card and names itself in a catalog.
_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_source(model) -> Path | None:
    """The ``.keras`` file a model object was loaded from by :func:`load_model`; None for a model
    built or loaded otherwise (its weights may have changed since: this names its origin)."""
    try:
        return _SOURCES.get(model)
    except TypeError:  # not weakly referable: not a model load_model returned
        return None


def model_label(model, path=None) -> str:
    """How a catalog names the model that scored it: a shipped finder's name, else the file it
    was loaded from (``path``, or :func:`model_source`), else its Keras name."""
    from ..finder.shipped import SHIPPED_FINDERS, shipped_path

    source = Path(path) if path is not None else model_source(model)
    if source is None:
        return f"{model.name} (a Keras model not loaded from a file)"
    if source.stem in SHIPPED_FINDERS and source.suffix == ".keras":
        with contextlib.suppress(InputError):  # that finder is missing from this installation
            if same_file(source, shipped_path(source.stem)):
                return source.stem
    return str(source)


def resolve_model_path(model: str | os.PathLike) -> Path:
    """The file of a model given by path or by a shipped finder's name (a name that is not also
    a file in the working directory)."""
    from ..finder.shipped import means_shipped, shipped_path  # lenslib.finder imports this package

    if means_shipped(model):
        return shipped_path(model)
    return Path(model)


def register_finder_layers() -> None:
    """Make the layers of lenslib's own finders known to Keras, for loading a file that uses them
    (importing :mod:`lenslib.finder.equivariant` registers them)."""
    from ..finder import equivariant  # noqa: F401


def load_model(path: str | os.PathLike):
    """Load a lens finder saved by lenslib (``.keras``), in Keras's safe mode (no code is run
    from the file), or a finder shipped with lenslib by its name (``"lenslib-finder-v22"``, see
    :mod:`lenslib.finder.shipped`).  Checks that it maps ``(N, H, W, 1)`` cutouts to 2 classes."""
    import zipfile

    path = resolve_model_path(path)
    if not path.is_file():
        from ..finder.shipped import SHIPPED_FINDERS

        named = path.suffix == "" and len(path.parts) == 1  # a name rather than a path
        hint = f" (nor a shipped finder: {', '.join(SHIPPED_FINDERS)})" if named else ""
        raise FileNotFoundError(f"model file not found: {path}{hint}")
    if path.suffix != ".keras":
        raise InputError(f"{path} is not a .keras model file")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" of a file that exists
        raise InputError(f"cannot load {path}: a .keras model is a zip archive and this file is not "
                         f"({path.stat().st_size} bytes; truncated or corrupt?)")
    keras = lazy_keras()
    register_finder_layers()
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise InputError(f"cannot load {path} as a Keras model (safe mode): {err}") from err
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[-1] != 1 or out_shape[-1] != 2:
        raise InputError(f"{path} is not a lenslib lens finder: it maps {in_shape} to {out_shape}, "
                         "expected (None, H, W, 1) to (None, 2)")
    _SOURCES[model] = path.absolute()
    return model


def _shape_error(given: tuple, seen: tuple) -> str:
    """What was wrong with cutouts of shape ``given`` (read as ``seen`` = (N, H, W))."""
    if len(given) == 3 and given[-1] in (2, 3, 4) and given[0] == given[1]:
        return (f"got shape {given}: one {given[0]}x{given[1]} image with {given[-1]} channels? lenslib "
                "cutouts are single-band, shaped (N, H, W)")
    return f"got {seen[1]}x{seen[2]} cutouts: shape {given}"


#: How many of the eight flips and quarter turns of a cutout :func:`predict` may average over.
TRANSFORM_COUNTS = (1, 2, 4, 8)


def check_transforms(transforms) -> int:
    """``transforms`` if it is one of :data:`TRANSFORM_COUNTS`, else an InputError naming it."""
    if not (is_integer(transforms) and transforms in TRANSFORM_COUNTS):
        raise InputError(f"transforms must be one of {TRANSFORM_COUNTS} (got {transforms!r})")
    return int(transforms)


def dihedral(x: np.ndarray, k: int, axes: tuple[int, int] = (1, 2)) -> np.ndarray:
    """Transform ``k`` (0-7) of the eight flips and quarter turns of images ``x`` (N, H, W):
    ``k % 4`` quarter turns, then a left-right flip when ``k >= 4``; 0 is the identity.
    ``axes``: the two spatial axes (another array's, such as a convolution kernel's (0, 1))."""
    out = np.rot90(x, k % 4, axes=axes)
    return np.ascontiguousarray(np.flip(out, axis=axes[1]) if k >= 4 else out)


def predict(model, cutouts, *, batch_size: int = 128, transforms: int = 1) -> np.ndarray:
    """One lens probability per cutout.

    ``model`` is a model from :func:`~lenslib.models.build_model`/:func:`load_model` or the path
    of a ``.keras`` file; ``cutouts`` are in e-/s, shaped ``(N, H, W)`` (one ``(H, W)`` cutout is
    accepted) with the model's ``H, W``.  They go through :func:`lenslib.preprocess.normalize`,
    the normalisation used in training.  ``transforms`` (1, 2, 4 or 8): average the
    probabilities over that many flips and quarter turns of each cutout (test-time augmentation,
    :func:`dihedral`; costs up to that many times the inference (a two-branch finder's p4m
    branch runs once), and helps most at the survey end of the ROC, see ``bench/README.md``).
    Returns float32 ``(N,)``.  Raises ``ValueError``
    (:class:`lenslib.errors.InputError`) for a wrong shape, NaN or infinite pixels, or no
    cutouts, and ``TypeError`` for non-numeric or complex cutouts.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if not is_integer(batch_size):
        raise InputError(f"batch_size must be a positive integer (got {batch_size!r})")
    transforms = check_transforms(transforms)
    height, width = tuple(model.input_shape)[1:3]
    arr = validate_cutouts(cutouts)
    if arr.shape[1:] != (height, width):
        raise InputError(f"cutouts must be {height}x{width} pixels for this model "
                         f"({_shape_error(np.shape(cutouts), arr.shape)})")
    out = np.empty(len(arr), dtype=np.float32)
    # Batch by batch (predict_on_batch skips the per-call set-up of Model.predict), each batch
    # normalised on every core just before the network scores it, as the survey scan does: on
    # 2 cores this keeps pace with normalising the next batch in a thread of its own during the
    # network call (0.88x against 0.87x the bare network, bench/README.md), with one way for both.
    for start in range(0, len(arr), batch_size):
        x = normalize(arr[start:start + batch_size], threads=None)
        out[start:start + len(x)] = predict_normalized(model, x, batch_size=batch_size, transforms=transforms)
    return out


def predict_normalized(model, x: np.ndarray, *, batch_size: int = 128, transforms: int = 1) -> np.ndarray:
    """What :func:`predict` does after :func:`~lenslib.preprocess.normalize`: the lens
    probabilities of cutouts already normalised (float32 ``(N, H, W)``), ``batch_size`` at a time,
    averaged over ``transforms`` flips and quarter turns.  For callers that normalise their own
    batches (the survey scan, which gathers full batches across blocks of tiles).  A two-branch
    finder's p4m branch, the same for every view, runs once per cutout
    (:func:`_invariant_split`)."""
    split = _invariant_split(model) if transforms > 1 else None
    if split is not None:
        return _predict_views_split(split, x, batch_size=batch_size, transforms=transforms)
    total = np.zeros(len(x), dtype=np.float64)
    for k in range(transforms):
        view = dihedral(x, k) if k else x
        for start in range(0, len(x), batch_size):
            total[start:start + batch_size] += np.asarray(
                model.predict_on_batch(view[start:start + batch_size, ..., None]))[:, 1]
    return (total / transforms).astype(np.float32)


def finder_branches(model) -> tuple | None:
    """A two-branch finder's branches (:func:`lenslib.finder.architecture.build_two_branch_finder`),
    sub-models in the order their features are joined (``FINDER_BRANCHES``), also of its trunk
    alone; None for any other model."""
    from ..config.recipes import FINDER_BRANCHES

    names = {layer.name for layer in model.layers}
    if not {f"{branch}_branch" for branch in FINDER_BRANCHES} <= names:
        return None
    return tuple(model.get_layer(f"{branch}_branch") for branch in FINDER_BRANCHES)


def _invariant_split(model):
    """For a two-branch finder, whose p4m branch scores every flip and quarter turn of a cutout
    alike: ``(p4m branch, residual branch, the softmax kernel's rows for each, its bias)``, so
    that averaging over views can run the p4m branch once; None for any other model."""
    branches = finder_branches(model)
    if branches is None or "softmax" not in {layer.name for layer in model.layers}:
        return None
    fixed, varying = branches
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in model.get_layer("softmax").get_weights())
    split = int(fixed.output.shape[-1])
    return fixed, varying, kernel[:split], kernel[split:], bias


def _predict_views_split(split, x: np.ndarray, *, batch_size: int, transforms: int) -> np.ndarray:
    """:func:`predict_normalized` over ``transforms`` views for a model whose first part
    (``split`` from :func:`_invariant_split`) is the same for every view: that part once, the
    other once per view, the softmax over both in float64."""
    from scipy.special import expit

    fixed, varying, kernel_fixed, kernel_varying, bias = split
    lens = np.array([-1.0, 1.0])  # the lens logit: class 1's minus class 0's
    total = np.zeros(len(x), dtype=np.float64)
    for start in range(0, len(x), batch_size):
        part = x[start:start + batch_size]
        base = np.asarray(fixed.predict_on_batch(part[..., None]), dtype=np.float64) @ kernel_fixed + bias
        for k in range(transforms):
            view = dihedral(part, k) if k else part
            features = np.asarray(varying.predict_on_batch(view[..., None]), dtype=np.float64)
            total[start:start + len(part)] += expit((base + features @ kernel_varying) @ lens)
    return (total / transforms).astype(np.float32)


def predict_rows(model, images, rows, *, batch_size: int = 256, transforms: int = 1) -> np.ndarray:
    """:func:`predict` on ``rows`` of ``images`` (an array or an ``h5py.Dataset``, read
    ``batch_size`` rows at a time in increasing order, as h5py needs); scores in ``rows``' order."""
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    scores = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        part = order[start:start + batch_size]
        scores[part] = predict(model, np.asarray(images[rows[part]]), batch_size=batch_size,
                               transforms=transforms)
    return scores
