"""Finders shipped inside the package, loaded offline by name.

``lenslib.load_model("lenslib-finder-v14")`` loads the weights installed with the wheel
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
                   "lenslib-finder-v14")
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
