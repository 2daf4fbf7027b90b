"""Write a grading page: one self-contained HTML file plus PNG stamps, opened from disk.

The page (:mod:`lenslib.inspect.template`) holds every candidate's score, position and stamp
file names as JSON; its script loads only the stamps of the candidate on screen, its neighbours
and the thumbnails scrolled into view, so a page of thousands of candidates opens at once.  It
refers to nothing outside its folder: no server, no network.
"""

from __future__ import annotations

import hashlib
import html
import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..errors import InputError, InputTypeError
from ..files import MARKER, atomic_output, written_by_lenslib
from . import stamps
from .template import render_page

PAGE_NAME = "index.html"
STAMP_DIR = "stamps"
#: Columns shown beside each candidate by default, when the table has them (never the truth).
DEFAULT_INFO = ("x", "y", "n_tiles", "cutout_x0", "cutout_y0")


def _ids(table: Table) -> list[str]:
    """Every candidate's id as text: the ``id`` column, else ``index``, else the row number."""
    for name in ("id", "index"):
        if name in table.colnames:
            ids = [str(v) for v in table[name]]
            break
    else:
        ids = [str(i) for i in range(len(table))]
    if len(set(ids)) != len(ids):
        raise InputError("candidate ids must be unique: the table's id column repeats a value")
    return ids


def _id_type(ids: list[str]) -> str:
    try:
        [int(v) for v in ids]
    except ValueError:
        return "string"
    return "int64"


def _scores(table: Table) -> np.ndarray:
    if "score" not in table.colnames:
        raise InputError(f"the candidate table has no 'score' column (columns: {', '.join(table.colnames)})")
    try:
        return np.asarray(table["score"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"the candidate table's 'score' column is not numeric ({err})") from err


def _check_images(name: str, images, n: int) -> np.ndarray:
    """``images`` as a float array ``(n, H, W)`` of real numbers."""
    try:
        array = np.asarray(images)
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"{name} must be an array of images ({err})") from err
    if array.dtype.kind not in "biuf":
        raise InputTypeError(f"{name} must hold real numbers (got dtype {array.dtype})")
    if array.ndim != 3 or len(array) != n or min(array.shape[1:], default=0) < 2:
        raise InputError(f"{name} must be shaped (N, H, W) with one image per candidate, N = {n} "
                         f"(got shape {array.shape})")
    return array


def _sky(table: Table) -> list[str] | None:
    """``RA Dec`` of every candidate in degrees and sexagesimal, or None without coordinates."""
    from astropy.coordinates import SkyCoord

    if "ra" in table.colnames and "dec" in table.colnames:
        ra, dec = (np.asarray(getattr(table[c], "value", table[c]), dtype=float) for c in ("ra", "dec"))
        sky = SkyCoord(ra, dec, unit="deg")
    elif "skycoord" in table.colnames and isinstance(table["skycoord"], SkyCoord):
        sky = table["skycoord"].icrs
    else:
        return None
    sexagesimal = sky.to_string("hmsdms", sep=":", precision=2)
    return [f"{r:.5f} {d:+.5f} ({s})" for r, d, s in zip(sky.ra.deg, sky.dec.deg, sexagesimal)]


def _text(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}"
    return str(value)


def _truth(table: Table, truth, n: int) -> tuple[str | None, list[str] | None]:
    """``(name, values as text)`` of the truth: a column name of ``table`` or an array."""
    if truth is None:
        return None, None
    if isinstance(truth, str):
        if truth not in table.colnames:
            raise InputError(f"truth column {truth!r} is not in the table "
                             f"(columns: {', '.join(table.colnames)})")
        return truth, [_text(v) for v in table[truth]]
    values = np.asarray(truth).ravel()
    if len(values) != n:
        raise InputError(f"truth must hold one value per candidate ({n}), got {len(values)}")
    return "truth", [_text(v) for v in values]


def page_id_of(ids: list[str], scores: np.ndarray, title: str) -> str:
    """A short id of the page's content: two pages of other candidates never share grades in
    the browser, and a page rebuilt from the same candidates finds its grades again."""
    h = hashlib.blake2b(digest_size=8)
    h.update(title.encode())
    for i, s in zip(ids, scores):
        h.update(f"\0{i}\0{s!r}".encode())
    return h.hexdigest()


def _check_out_dir(out_dir: Path, n: int, kinds: tuple[str, ...], inputs) -> None:
    """Before any work: the page and its stamps may be written (every existing one is a file
    lenslib wrote), and no input lies where they go."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file: the page is a folder (give a folder name)")
    page, stamp_dir = out_dir / PAGE_NAME, (out_dir / STAMP_DIR).resolve()
    for source in inputs:
        if source is None or not isinstance(source, (str, os.PathLike)):
            continue
        resolved = Path(source).resolve()
        if resolved == page.resolve() or stamp_dir in resolved.parents:
            raise InputError(f"the input {source} lies where the page {out_dir} writes its files; "
                             "choose another --out folder")
    if (page.exists() or page.is_symlink()) and not written_by_lenslib(page):
        raise InputError(f"{page} exists and is not a page lenslib wrote: lenslib never overwrites "
                         "other files; choose another --out folder")
    if stamp_dir.is_dir():
        wanted = {stamp_name(k, kind) for k in range(n) for kind in kinds}
        for entry in os.scandir(stamp_dir):
            if entry.name in wanted and not written_by_lenslib(entry.path):
                raise InputError(f"{entry.path} exists and is not a stamp lenslib wrote; choose "
                                 "another --out folder")


def stamp_name(row: int, kind: str) -> str:
    """The file name of a candidate's stamp (by its row, whatever its id)."""
    return f"{row:05d}-{kind}.png"


def write_stamps(cutouts: np.ndarray, out_dir: Path, saliency: np.ndarray | None = None) -> None:
    """Every candidate's stamps under ``out_dir/stamps``."""
    folder = out_dir / STAMP_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for row, image in enumerate(cutouts):
        for kind in stamps.STRETCHES:
            stamps.write_png(stamps.render(image, kind), folder / stamp_name(row, kind))
        if saliency is not None:
            overlay = stamps.overlay_saliency(image, saliency[row])
            stamps.write_png(overlay, folder / stamp_name(row, "saliency"))


def page_data(table: Table, *, truth=None, title: str, page_id: str | None = None,
              info_columns=None, kinds=stamps.STRETCHES) -> dict:
    """What the page's script reads: the page id, the stamps' kinds and each candidate's id,
    score, stamp row, shown details and (hidden until the confusion table) truth."""
    n = len(table)
    ids, scores = _ids(table), _scores(table)
    truth_name, truth_values = _truth(table, truth, n)
    info_columns = [c for c in (DEFAULT_INFO if info_columns is None else info_columns)
                    if c in table.colnames and c != truth_name]
    sky = _sky(table)
    candidates = []
    for row in range(n):
        info = [["RA Dec", sky[row]]] if sky is not None else []
        info += [[c, _text(table[c][row])] for c in info_columns]
        item = {"id": ids[row], "score": None if not np.isfinite(scores[row]) else float(scores[row]),
                "row": f"{row:05d}", "info": info}
        if truth_values is not None:
            item["truth"] = truth_values[row]
        candidates.append(item)
    from .. import __version__

    return {"page_id": page_id or page_id_of(ids, scores, title), "title": title,
            "marker": f"{MARKER} {__version__}",
            "id_type": _id_type(ids), "stamp_dir": STAMP_DIR, "kinds": list(kinds),
            "truth_name": truth_name, "candidates": candidates}


def write_page(table, cutouts, out_dir, *, truth=None, saliency=None, title: str | None = None,
               page_id: str | None = None, info_columns=None, inputs=()) -> Path:
    """Write a grading page of ``table``'s candidates into the folder ``out_dir``.

    Parameters
    ----------
    table : astropy.table.Table
        One row per candidate, with a ``score`` column; an ``id`` (else ``index``) column names
        the candidates (else the row number); ``ra``/``dec`` (deg) or ``skycoord`` are shown.
    cutouts : array (N, H, W)
        Each candidate's cutout in e-/s (NaN pixels are shown at the median).
    truth : str or array, optional
        The truth (a column name of ``table`` or one value per candidate, such as the label of
        the graded candidate set): never shown beside a candidate, but the page tabulates the
        inspector's grades against it.
    saliency : array (N, H, W), optional
        Attribution maps (:func:`lenslib.saliency.integrated_gradients`), drawn as a fourth stamp.
    title, page_id : str, optional
        The page's title and the key of its grades in the browser (default: a hash of the
        candidates' ids and scores and the title).
    info_columns : list of str, optional
        Columns shown beside each candidate (default those of :data:`DEFAULT_INFO` present).
    inputs : paths
        Files that must not be overwritten (the catalog, the image...).

    Returns the path of the page (``out_dir/index.html``).  Files are written atomically, the
    page last; an existing page or stamp is replaced only if lenslib wrote it.
    """
    table = table if isinstance(table, Table) else Table(table)
    if len(table) == 0:
        raise InputError("there are no candidates to grade (the table is empty)")
    cutouts = _check_images("cutouts", cutouts, len(table))
    kinds = stamps.STRETCHES
    if saliency is not None:
        saliency = _check_images("saliency", saliency, len(table))
        if saliency.shape != cutouts.shape:
            raise InputError(f"saliency maps {saliency.shape} and cutouts {cutouts.shape} differ in shape")
        kinds = kinds + ("saliency",)
    out_dir = Path(out_dir)
    title = title or "lenslib: grade the candidates"
    data = page_data(table, truth=truth, title=title, page_id=page_id, info_columns=info_columns,
                     kinds=kinds)
    _check_out_dir(out_dir, len(table), kinds, inputs)
    write_stamps(cutouts, out_dir, saliency)
    path = out_dir / PAGE_NAME
    with atomic_output(path) as tmp:
        tmp.write_text(render_page(data, html.escape(title)), encoding="utf-8")
    return path
