"""The types of the ``lenslib`` command's arguments, shared by every subcommand's parser.

A leaf module (argparse and os only), so that the subcommands living in their own rooms
(``lenslib.inspect.cli``, ``lenslib.finder.cli``) use the same checks without importing
``lenslib.cli``, which imports them.
"""

from __future__ import annotations

import argparse
import os

#: --batch-size at most this (lenslib.scan.MAX_BATCH_SIZE): 8192 cutouts take ~1 GB while normalised.
MAX_BATCH_SIZE = 8192
#: --workers at most this: the work is CPU-bound, so processes beyond the cores only add memory
#: (~190 MB per simulation worker, ~1 GB per scanning worker with TensorFlow); 4x leaves room to
#: oversubscribe, but not to exhaust the machine by a typo.
MAX_WORKERS = 4 * (os.cpu_count() or 1)


def hdu(value: str):
    """``--hdu``: an index (``1``), an extension name (``SCI``) or a name and version (``SCI,2``)."""
    from .fitsio import hdu_spec

    return hdu_spec(value)


def share(high: float = 1.0):
    """A type for a fraction in ``[0, high]``."""
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not 0 <= number <= high:
            raise argparse.ArgumentTypeError(f"must be a number from 0 to {high:g} (got {value!r})")
        return number

    return parse


def positive_int(value: str, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {value!r})")
    if high is not None and number > high:
        raise argparse.ArgumentTypeError(f"must be at most {high} (got {value!r})")
    return number


def batch_size(value: str) -> int:
    return positive_int(value, MAX_BATCH_SIZE)


def workers(value: str) -> int:
    return positive_int(value, MAX_WORKERS)


def seconds(value: str) -> float:
    """A positive, finite number of seconds (``--stop-after``)."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (0 < number < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds (got {value!r})")
    return number


def count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (got {value!r})")
    return number
