"""Merge several inspectors' grade exports into one table of mean grades.

Each export (the grading page's CSV or ECSV) is one inspector.  Grades are put on the usual
numeric scale of visual lens searches, :data:`GRADE_VALUES`: A (clearly a lens) = 3,
B (probably a lens) = 2, C (possibly a lens) = 1, X (not a lens) = 0; a skipped candidate counts
for nothing (it is neither a vote for nor against).  Per candidate the merged table holds the
mean grade, its spread (the population standard deviation over the inspectors who graded it: 0
when they agree or when only one did) and how many inspectors graded it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..errors import InputError
from ..files import read_table

#: The numeric value of each grade (skip: no value).
GRADE_VALUES = {"A": 3, "B": 2, "C": 1, "X": 0}
SKIP = "skip"


class MixedPagesWarning(UserWarning):
    """The exports come from pages of different candidates (their page ids differ)."""


def _normalise_grade(value, path: Path, line: int) -> str:
    text = "" if np.ma.is_masked(value) else str(value).strip()
    grade = SKIP if text.lower() == SKIP else text.upper()
    if grade not in GRADE_VALUES and grade != SKIP:
        raise InputError(f"{path}, row {line}: field 'grade' is {text!r}; a grade is one of "
                         f"{', '.join(GRADE_VALUES)} or {SKIP}")
    return grade


def read_grades(path: str | os.PathLike) -> Table:
    """One inspector's export: a table with at least ``id`` and ``grade`` columns (the page also
    writes ``score``, ``inspector``, ``page_id`` and ``graded_at``).  Ids become text, grades
    are checked (A, B, C, X or skip) and an id graded twice is refused, each with an
    :class:`~lenslib.errors.InputError` that names the file, the row and the field."""
    path = Path(path)
    table = read_table(path, what="grade export", suffixes=(".csv", ".ecsv"))
    missing = [c for c in ("id", "grade") if c not in table.colnames]
    if missing:
        raise InputError(f"{path} has no field {', '.join(repr(m) for m in missing)} (fields: "
                         f"{', '.join(table.colnames) or 'none'}): is it a lenslib inspect export?")
    ids, grades, seen = [], [], {}
    for line, (cid, value) in enumerate(zip(table["id"], table["grade"]), start=1):
        if np.ma.is_masked(cid) or str(cid).strip() == "":
            raise InputError(f"{path}, row {line}: field 'id' is empty")
        key = str(cid).strip()
        if key in seen:
            raise InputError(f"{path}, row {line}: id {key} is graded twice (first in row {seen[key]})")
        seen[key] = line
        ids.append(key)
        grades.append(_normalise_grade(value, path, line))
    out = Table({"id": np.array(ids, dtype=str), "grade": np.array(grades, dtype=str)})
    for extra in ("score", "inspector", "page_id"):
        if extra in table.colnames:
            out[extra] = table[extra]
    out.meta["path"] = str(path)
    return out


def _inspector_name(table: Table, path: Path) -> str:
    if "inspector" in table.colnames:
        names = {str(v).strip() for v in table["inspector"] if not np.ma.is_masked(v) and str(v).strip()}
        if len(names) == 1:
            return names.pop()
    return path.stem


def _ordered_ids(tables: list[Table]) -> list[str]:
    ids = dict.fromkeys(i for t in tables for i in t["id"])
    try:
        return sorted(ids, key=int)
    except ValueError:
        return sorted(ids)


def _id_column(ids: list[str]):
    try:
        return np.array([int(i) for i in ids], dtype=np.int64)
    except ValueError:
        return np.array(ids, dtype=str)


def _scores(tables: list[Table], ids: list[str]) -> np.ndarray | None:
    """Each candidate's score, from the first export that has it."""
    if not any("score" in t.colnames for t in tables):
        return None
    found: dict[str, float] = {}
    for t in tables:
        if "score" in t.colnames:
            for cid, s in zip(t["id"], t["score"]):
                if cid not in found and not np.ma.is_masked(s):
                    found[cid] = float(s)
    return np.array([found.get(i, np.nan) for i in ids])


def merge_grades(paths) -> Table:
    """Merge grade exports (one per inspector) into one table, one row per candidate graded by
    anyone: ``id``, ``mean_grade`` and ``std_grade`` on the scale of :data:`GRADE_VALUES` (NaN
    where everyone skipped), ``n_inspectors`` (grades other than skip), ``n_skip``, the counts
    ``n_A`` ... ``n_X``, ``score`` (when the exports have it) and one ``grade_<inspector>``
    column per export.  Sorted by mean grade, best first."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("--merge needs at least one grade export")
    tables = [read_grades(p) for p in paths]
    pages = sorted({str(v) for t in tables if "page_id" in t.colnames for v in t["page_id"]})
    if len(pages) > 1:
        warnings.warn(f"the exports come from {len(pages)} different pages ({', '.join(pages)}): ids of "
                      "different pages may name different candidates", MixedPagesWarning, stacklevel=2)
    ids = _ordered_ids(tables)
    grades = np.full((len(tables), len(ids)), "", dtype="<U4")
    where = {cid: k for k, cid in enumerate(ids)}
    for i, t in enumerate(tables):
        grades[i, [where[c] for c in t["id"]]] = t["grade"]
    values = np.vectorize(lambda g: GRADE_VALUES.get(g, np.nan), otypes=[float])(grades)
    counted = np.isfinite(values)
    n = counted.sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all skipped: NaN, said so in the docstring
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    merged = Table({"id": _id_column(ids), "mean_grade": mean, "std_grade": std, "n_inspectors": n,
                    "n_skip": (grades == SKIP).sum(axis=0)})
    for g in GRADE_VALUES:
        merged[f"n_{g}"] = (grades == g).sum(axis=0)
    scores = _scores(tables, ids)
    if scores is not None:
        merged["score"] = scores
    names = _unique([_inspector_name(t, p) for t, p in zip(tables, paths)])
    for name, row in zip(names, grades):
        merged[f"grade_{name}"] = row
    merged.meta.update({"scale": "A=3 B=2 C=1 X=0; skip left out; std over inspectors (ddof=0)",
                        "files": [str(p) for p in paths], "pages": pages})
    order = np.lexsort((np.arange(len(ids)), -np.nan_to_num(mean, nan=-1.0)))
    return merged[order]


def _unique(names: list[str]) -> list[str]:
    """Column-safe names, numbered where two inspectors share one."""
    safe = ["".join(ch if ch.isalnum() or ch == "_" else "_" for ch in n) or "inspector" for n in names]
    out = []
    for i, n in enumerate(safe):
        out.append(n if safe.count(n) == 1 else f"{n}_{safe[:i + 1].count(n)}")
    return out
