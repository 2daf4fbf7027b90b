"""Writing files so that a killed run never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed.  A process
    killed outright leaves only a ``.partial`` file, which no reader mistakes for the real one.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def results_dir(profile: str, root: str | os.PathLike | None = None) -> Path:
    """Where a profile's tables, figures and models go: ``<root>/<profile>``, created if missing.

    ``root`` defaults to ``$LENSLIB_RESULTS_DIR``, else ``results`` under the current directory.
    """
    root = Path(root if root is not None else os.environ.get("LENSLIB_RESULTS_DIR", "results"))
    path = root / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_table(table, path: str | os.PathLike, **kwargs) -> Path:
    """Write an ``astropy.table.Table`` atomically; the format follows the extension
    (``.csv``, ``.ecsv``, ``.fits``...)."""
    path = Path(path)
    fmt = kwargs.pop("format", None)
    if fmt is None:
        fmt = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits"}.get(
            path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the table format from the extension of {path} "
                         "(use .csv, .ecsv or .fits)")
    with atomic_output(path) as tmp:
        table.write(tmp, format=fmt, overwrite=True, **kwargs)
    return path
