"""The finders a recipe names: where it starts (``initial_finder``), who picks its mined negatives
(``mined_by``) and who teaches it (``teacher``).

Each is a shipped finder's name or a ``.keras`` file that ``lenslib train-finder`` wrote (for
``initial_finder``, with its model card beside it).  :func:`check_finder_references` checks all
three before anything is simulated and pins each to its content (:func:`finder_tag`), so that a
run resumed after the file was trained again is refused rather than silently changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import FinderRecipe
from ..errors import InputError
from .shipped import SHIPPED_FINDERS, is_shipped_name, means_shipped, shipped_card

#: The recipe fields that name a finder; only a warm start needs the card beside a file.
FINDER_FIELDS = ("initial_finder", "mined_by", "teacher")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checked_file(field: str, value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        if not value.endswith(".keras"):
            raise InputError(f"FinderRecipe.{field}: no finder called {value!r} is shipped with lenslib "
                             f"(shipped: {', '.join(SHIPPED_FINDERS)}), and it is not a .keras file")
        raise InputError(f"FinderRecipe.{field}: finder file not found: {path.resolve()}")
    return path


def finder_tag(finder: str, *, field: str = "finder") -> str:
    """A shipped finder's name as it is; a ``.keras`` file's stem and the start of its sha256:
    what names a finder's cached scores and mined shards (a file trained again is scored again)."""
    if means_shipped(finder):
        return finder
    path = _checked_file(field, finder)
    return f"{path.stem}-{_digest(path)[:12]}"


def initial_finder_card(name: str) -> dict:
    """The model card of the finder a recipe starts from: shipped, or beside its ``.keras`` file."""
    if means_shipped(name):
        return shipped_card(name)
    path = _checked_file("initial_finder", name)
    from .card import read_card

    try:
        return read_card(path.with_suffix(".json"))
    except (OSError, ValueError) as err:
        raise InputError(f"FinderRecipe.initial_finder: {err}") from err


def check_finder_references(recipe: FinderRecipe) -> dict[str, str]:
    """Check every finder ``recipe`` names (a clear error naming the field, before any work) and
    return ``{field: finder_tag}`` for those it names."""
    if recipe.initial_finder:
        initial_finder_card(recipe.initial_finder)
    return {field: finder_tag(getattr(recipe, field), field=field) for field in FINDER_FIELDS
            if getattr(recipe, field)}


def check_unchanged(pinned: dict[str, str], now: dict[str, str], run_dir) -> None:
    """Refuse to resume a run whose named finders' files changed since it began."""
    for field, tag in pinned.items():
        if now.get(field) != tag:
            raise InputError(f"FinderRecipe.{field}: the finder file changed since the run in {run_dir} "
                             f"began (then {tag}, now {now.get(field)}); restore it, or start a new run "
                             "directory")


def describe_start(name: str) -> dict | None:
    """What a warm-started finder began from, for its card: the finder's name and training and,
    for a file rather than a shipped finder, the file (absolute) and its sha256."""
    if not name:
        return None
    card = initial_finder_card(name)
    start = {key: card.get(key) for key in ("name", "code_commit", "distinct_images", "images_seen", "epochs",
                                            "wall_time_s", "final_validation_auc")}
    if not means_shipped(name):
        start["file"] = str(Path(name).resolve())
        start["sha256"] = _digest(Path(name))
    return start


def shipped_digests() -> dict[str, str]:
    """The sha256 of each shipped finder's weights file, to its name (those installed: a finder
    listed in ``SHIPPED_FINDERS`` before its file is copied in is skipped)."""
    from .shipped import _weights_dir

    files = {name: _weights_dir() / f"{name}.keras" for name in SHIPPED_FINDERS}
    return {_digest(path): name for name, path in files.items() if path.is_file()}


def as_shipped(card: dict, *, shipped: dict[str, str] | None = None) -> dict:
    """``card`` with every finder its recipe names by file replaced by the shipped finder of the
    same content (a reference is pinned by content, so the file and the shipped copy are the same
    finder): what a finder's card says once it is shipped, so that its lineage can be followed and
    re-made from the package alone.  The file's sha256 is the one the card recorded when the run
    began (a warm start's), else the file's own.  ``shipped``: sha256 to name (default
    :func:`shipped_digests`).  Raises InputError naming the field when a file is no shipped
    finder: a finder that descends from an unshipped file cannot be re-made from the package."""
    import copy

    shipped = shipped_digests() if shipped is None else shipped
    card = copy.deepcopy(card)
    start = card.get("initial_finder") or {}
    for field in FINDER_FIELDS:
        value = card["recipe"].get(field) or ""
        if not value or is_shipped_name(value):
            continue
        recorded = start.get("sha256") if field == "initial_finder" else None
        if recorded is None and not Path(value).is_file():
            raise InputError(f"FinderRecipe.{field}: {value} is gone and the card records no sha256 for it; "
                             "cannot tell which shipped finder it was")
        digest = recorded or _digest(Path(value))
        if digest not in shipped:
            raise InputError(f"FinderRecipe.{field}: {value} (sha256 {digest[:12]}...) is no shipped finder; "
                             "ship it first, or this card's lineage cannot be re-made from the package")
        card["recipe"][field] = shipped[digest]
        if field == "initial_finder":
            card["initial_finder"] = {**{k: v for k, v in start.items() if k != "file"},
                                      "name": shipped[digest], "trained_from_file": start.get("file")}
    return card
