"""Writing files so that a killed run never leaves a file that looks complete, and never
overwrites a file lenslib did not write."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import InputError

#: What every table (and gallery) lenslib writes carries in its metadata: an existing output is
#: replaced only if it carries this too (see :func:`check_output`).
MARKER = "written by lenslib"
TABLE_SUFFIXES = (".fits", ".fit", ".ecsv", ".csv")
_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits"}


def _partial_name(final: Path, pid: int) -> Path:
    return final.with_name(f".{final.name}.{pid}.partial")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed.  A process
    killed outright leaves only a ``.partial`` file, which no reader mistakes for the real one
    and :func:`remove_stale_partials` removes later.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_name(final, os.getpid())
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove the ``.partial`` files that :func:`atomic_output` left beside ``path`` in processes
    that no longer run (killed outright); returns them.  Partial files of live processes (this
    one included) are kept.  Process ids are those of this machine: on a directory shared
    between machines, a partial file of another machine's live writer could be taken as stale."""
    final = Path(path)
    prefix, suffix = f".{final.name}.", ".partial"
    removed = []
    if not final.parent.is_dir():
        return removed
    for candidate in final.parent.glob(f"{prefix}*{suffix}"):
        pid = candidate.name[len(prefix):-len(suffix)]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def results_dir(profile: str, root: str | os.PathLike | None = None) -> Path:
    """Where a profile's tables, figures and models go: ``<root>/<profile>``, created if missing.

    ``root`` defaults to ``$LENSLIB_RESULTS_DIR``, else ``results`` under the current directory.
    """
    root = Path(root if root is not None else os.environ.get("LENSLIB_RESULTS_DIR", "results"))
    path = root / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_table_path(path) -> Path | None:
    """``path`` as a Path, after checking that its extension names a table format that
    :func:`write_table` writes (checked before a long run, not after it)."""
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"a table's format follows its extension: use one of {TABLE_SUFFIXES} "
                         f"(got {path})")
    return path


def written_by_lenslib(path: str | os.PathLike, csv_columns=(), csv_only=None) -> bool:
    """Whether the file at ``path`` is one lenslib wrote: its first 64 kB hold :data:`MARKER`
    (the metadata of a FITS or ECSV table, the text of a PNG), or, for a CSV file (which has no
    metadata), its header line starts with the columns ``csv_columns`` and, given ``csv_only``
    (the columns such a table can have), names no other column: a user's ``id,x,y,mag`` list is
    not a scan's catalog."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    if MARKER.encode() in head:
        return True
    if path.suffix.lower() == ".csv" and csv_columns:
        columns = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
        return (columns[:len(csv_columns)] == list(csv_columns)
                and (csv_only is None or set(columns) <= set(csv_only)))
    return False


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name the same existing file (links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path, inputs=(), *, what: str = "output", csv_columns=(), csv_only=None) -> Path | None:
    """Check, before any work, that ``path`` may be written: not a directory, not any of the
    ``inputs`` (the same file by another name, symbolic or hard link included), in a directory
    that exists or can be made, and, if it exists, a file lenslib wrote
    (:func:`written_by_lenslib`, given ``csv_columns`` and ``csv_only``): lenslib never
    overwrites any other file.  Returns the Path."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory: give a file name")
    for source in inputs:
        if source is None or isinstance(source, (bytes, bytearray)) or not isinstance(
                source, (str, os.PathLike)):
            continue
        if same_file(path, source):
            raise InputError(f"{what} {path} is the input {source} (the same file): "
                             "writing it would destroy the input; choose another name")
    if path.exists() or path.is_symlink():
        if not written_by_lenslib(path, csv_columns, csv_only):
            raise InputError(f"{what} {path} exists and is not a file lenslib wrote: lenslib never "
                             "overwrites other files; delete it or choose another name")
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what} {path}: {parent} is not writable")
    return path


def read_table(path: str | os.PathLike, *, what: str = "table", suffixes: tuple = TABLE_SUFFIXES):
    """An ``astropy.table.Table`` read from ``path`` (its format follows the extension, one of
    ``suffixes``); a missing file raises FileNotFoundError and an unreadable one an
    :class:`~lenslib.errors.InputError`, each naming the file and ``what`` it should be."""
    from astropy.table import Table

    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower()) if path.suffix.lower() in suffixes else None
    if fmt is None:
        kinds = " or ".join(filter(None, (", ".join(suffixes[:-1]), suffixes[-1])))
        raise InputError(f"{path}: a {what} is a {kinds} file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return Table.read(path, format=fmt)
    except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())
        raise InputError(f"{path} is not a readable {what} ({reason})") from err


def write_table(table, path: str | os.PathLike, **kwargs) -> Path:
    """Write an ``astropy.table.Table`` atomically; the format follows the extension
    (``.csv``, ``.ecsv``, ``.fits``...).  FITS and ECSV tables carry :data:`MARKER` in their
    metadata (key ``LENSLIB``)."""
    from . import __version__

    path = Path(path)
    fmt = kwargs.pop("format", None)
    if fmt is None:
        fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the table format from the extension of {path} "
                         "(use .csv, .ecsv or .fits)")
    table = table.copy(copy_data=False)
    table.meta["LENSLIB"] = f"{MARKER} {__version__}"
    with atomic_output(path) as tmp:
        table.write(tmp, format=fmt, overwrite=True, **kwargs)
    return path
