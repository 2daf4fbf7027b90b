"""The finders a recipe names: where it starts (``initial_finder``, or the two finders of
``initial_branches`` joined), who picks its mined negatives (``mined_by``) and who teaches it
(``teacher``).

Each is a shipped finder's name or a ``.keras`` file that ``lenslib train-finder`` wrote (for a
start, with its model card beside it).  :func:`check_finder_references` checks them all before
anything is simulated and pins each to its content (:func:`finder_tag`), so that a run resumed
after the file was trained again is refused rather than silently changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import FinderRecipe
from ..config.recipes import FINDER_BRANCHES
from ..errors import InputError
from .shipped import SHIPPED_FINDERS, is_shipped_name, means_shipped, shipped_card

#: The recipe fields that name a finder; only a warm start needs the card beside a file.
FINDER_FIELDS = ("initial_finder", "mined_by", "teacher")
#: The recipe field that names the two finders a two-branch finder starts from.
BRANCHES_FIELD = "initial_branches"


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


def initial_finder_card(name: str, *, field: str = "initial_finder") -> dict:
    """The model card of a finder a recipe starts from: shipped, or beside its ``.keras`` file."""
    if means_shipped(name):
        return shipped_card(name)
    path = _checked_file(field, name)
    from .card import read_card

    try:
        return read_card(path.with_suffix(".json"))
    except (OSError, ValueError) as err:
        raise InputError(f"FinderRecipe.{field}: {err}") from err


def check_finder_references(recipe: FinderRecipe) -> dict[str, str]:
    """Check every finder ``recipe`` names (a clear error naming the field, before any work) and
    return ``{field: finder_tag}`` for those it names (the two branches' tags joined by '+')."""
    if recipe.initial_finder:
        initial_finder_card(recipe.initial_finder)
    for branch, architecture in zip(recipe.initial_branches, FINDER_BRANCHES):
        card = initial_finder_card(branch, field=BRANCHES_FIELD)
        recorded = card["recipe"].get("architecture", "residual"), tuple(card["recipe"]["widths"])
        if recorded != (architecture, tuple(recipe.widths)):
            raise InputError(f"FinderRecipe.{BRANCHES_FIELD}: {branch} is a {recorded[0]} finder of widths "
                             f"{recorded[1]}; the branches must be a p4m finder, then a residual finder, "
                             f"both of the recipe's widths {tuple(recipe.widths)}")
    tags = {field: finder_tag(getattr(recipe, field), field=field) for field in FINDER_FIELDS
            if getattr(recipe, field)}
    if recipe.initial_branches:
        tags[BRANCHES_FIELD] = "+".join(finder_tag(b, field=BRANCHES_FIELD) for b in recipe.initial_branches)
    return tags


def check_unchanged(pinned: dict[str, str], now: dict[str, str], run_dir) -> None:
    """Refuse to resume a run whose named finders' files changed since it began."""
    for field, tag in pinned.items():
        if now.get(field) != tag:
            raise InputError(f"FinderRecipe.{field}: the finder file changed since the run in {run_dir} "
                             f"began (then {tag}, now {now.get(field)}); restore it, or start a new run "
                             "directory")


def describe_start(name: str, *, field: str = "initial_finder") -> dict | None:
    """What a warm-started finder began from, for its card: the finder's name and training and,
    for a file rather than a shipped finder, the file (absolute) and its sha256."""
    if not name:
        return None
    card = initial_finder_card(name, field=field)
    start = {key: card.get(key) for key in ("name", "architecture", "code_commit", "distinct_images",
                                            "images_seen", "epochs", "wall_time_s", "final_validation_auc")}
    if not means_shipped(name):
        start["file"] = str(Path(name).resolve())
        start["sha256"] = _digest(Path(name))
    return start


def recorded_starts(card: dict) -> list[dict]:
    """What a card's finder started from, as the card records it: its ``initial_finder``, or the
    two finders of its ``initial_branches``; empty for random weights."""
    return [start for start in [card.get("initial_finder"), *(card.get(BRANCHES_FIELD) or [])] if start]


def lineage(card: dict):
    """``card``, then the card of every shipped finder it descends from (:func:`recorded_starts`, followed
    back to random weights); a start recorded only as a file (not shipped) ends that line."""
    pending = [card]
    while pending:
        ancestor = pending.pop()
        yield ancestor
        pending += [shipped_card(start["name"]) for start in recorded_starts(ancestor)
                    if "file" not in start and is_shipped_name(start.get("name"))]


def lineage_images(card: dict) -> dict[int, int]:
    """The distinct simulated images behind a finder's weights, by recipe seed: its own run's and
    those of its :func:`lineage`.  Runs of one recipe seed share their shards, so each seed
    counts once (its largest run)."""
    by_seed = {}
    for ancestor in lineage(card):
        seed = ancestor["recipe"]["seed"]
        by_seed[seed] = max(by_seed.get(seed, 0), ancestor["distinct_images"])
    return by_seed


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
        name = _shipped_name(field, value, recorded, shipped)
        card["recipe"][field] = name
        if field == "initial_finder":
            card["initial_finder"] = _as_shipped_start(start, name)
    branches = list(card["recipe"].get(BRANCHES_FIELD) or [])
    starts = card[BRANCHES_FIELD] = list(card.get(BRANCHES_FIELD) or [{}] * len(branches))
    if len(starts) != len(branches):
        raise InputError(f"FinderRecipe.{BRANCHES_FIELD}: the card records {len(starts)} branch starts for "
                         f"{len(branches)} branches")
    for i, (value, start) in enumerate(zip(branches, starts)):
        if not is_shipped_name(value):
            branches[i] = _shipped_name(BRANCHES_FIELD, value, start.get("sha256"), shipped)
            starts[i] = _as_shipped_start(start, branches[i])
    if branches:
        card["recipe"][BRANCHES_FIELD] = branches
    return card


def _shipped_name(field: str, value: str, recorded: str | None, shipped: dict[str, str]) -> str:
    """The shipped finder whose content is the file ``value`` (by the sha256 ``recorded`` when
    its run began, else the file's own)."""
    if recorded is None and not Path(value).is_file():
        raise InputError(f"FinderRecipe.{field}: {value} is gone and the card records no sha256 for it; "
                         "cannot tell which shipped finder it was")
    digest = recorded or _digest(Path(value))
    if digest not in shipped:
        raise InputError(f"FinderRecipe.{field}: {value} (sha256 {digest[:12]}...) is no shipped finder; "
                         "ship it first, or this card's lineage cannot be re-made from the package")
    return shipped[digest]


def _as_shipped_start(start: dict, name: str) -> dict:
    """A card's record of a start from a file, renamed to the shipped finder it is."""
    return {**{k: v for k, v in start.items() if k != "file"}, "name": name,
            "trained_from_file": start.get("file")}
