"""Finders shipped inside the package, loaded offline by name.

``lenslib.load_model("lenslib-finder-v22")`` loads the weights installed with the wheel
(``lenslib/finder/weights/<name>.keras``, beside its model card ``<name>.json``); nothing is
downloaded.  ``lenslib scan`` and ``lenslib predict`` use :data:`DEFAULT_FINDER` when no
``--model`` is given.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import InputError

#: The finders this version of lenslib ships, newest last.
SHIPPED_FINDERS = ("lenslib-finder-v1", "lenslib-finder-v2", "lenslib-finder-v3", "lenslib-finder-v4",
                   "lenslib-finder-v5", "lenslib-finder-v6", "lenslib-finder-v7", "lenslib-finder-v9",
                   "lenslib-finder-v10", "lenslib-finder-v11", "lenslib-finder-v12",
                   "lenslib-finder-v14", "lenslib-finder-v18", "lenslib-finder-v19", "lenslib-finder-v21",
                   "lenslib-finder-v22")
DEFAULT_FINDER = SHIPPED_FINDERS[-1]


def _weights_dir() -> Path:
    return Path(str(resources.files("lenslib.finder") / "weights"))


def shipped_path(name: str = DEFAULT_FINDER) -> Path:
    """The ``.keras`` file of the shipped finder ``name``."""
    if name not in SHIPPED_FINDERS:
        raise InputError(f"no finder called {name!r} is shipped with lenslib "
                         f"(shipped: {', '.join(SHIPPED_FINDERS)})")
    path = _weights_dir() / f"{name}.keras"
    if not path.is_file():
        raise InputError(f"the shipped finder {name} is missing from this installation ({path}); "
                         "reinstall lenslib, or train one with `lenslib train-finder` and pass --model")
    return path


def shipped_card(name: str = DEFAULT_FINDER) -> dict:
    """The model card of the shipped finder ``name``."""
    from .card import read_card

    shipped_path(name)
    return read_card(_weights_dir() / f"{name}.json")


def is_shipped_name(value) -> bool:
    """True when ``value`` names a shipped finder (a name, not a path to a file)."""
    return isinstance(value, str) and value in SHIPPED_FINDERS


def means_shipped(value) -> bool:
    """True when ``value`` is read as a shipped finder: it names one, and no file of that name is
    in the working directory (a file given by its path wins)."""
    return is_shipped_name(value) and not Path(value).is_file()


def ship_finder(model_path, weights_dir=None) -> tuple[Path, Path]:
    """Copy a finder that ``lenslib train-finder`` wrote (``NAME.keras`` and its card ``NAME.json``
    beside it) into the package's weights (default ``lenslib/finder/weights``), its card's
    references to finder files replaced by the shipped finders of the same content
    (:func:`lenslib.finder.references.as_shipped`).  Add NAME to :data:`SHIPPED_FINDERS` to make
    it loadable by name.  Returns the two files written."""
    import shutil

    from ..files import atomic_output
    from .card import read_card, write_json
    from .references import as_shipped

    model_path = Path(model_path)
    card = read_card(model_path.with_suffix(".json"))
    if card["name"] != model_path.stem:
        raise InputError(f"{model_path}: its card names the finder {card['name']!r}; a shipped finder's file "
                         "is named after it")
    card = as_shipped(card)
    weights_dir = Path(weights_dir) if weights_dir is not None else _weights_dir()
    target = weights_dir / model_path.name
    with atomic_output(target) as tmp:
        shutil.copyfile(model_path, tmp)
    write_json(target.with_suffix(".json"), card)
    return target, target.with_suffix(".json")
