"""The exceptions lenslib raises for bad input, so that a caller can tell them from bugs.

:class:`InputError` is a ``ValueError`` and :class:`InputTypeError` both a ``ValueError`` and a
``TypeError``, so code that catches the documented ``ValueError``/``TypeError`` keeps working.
The ``lenslib`` command turns exactly these (and :class:`~lenslib.dataset.DatasetError`,
:class:`~lenslib.models.WeightsUnavailableError` and ``OSError``) into a one-line message and
exit status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """An argument, array or file that lenslib cannot use; the message names it and says why."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong kind (a string where an array is needed, complex pixels...)."""


class DatasetError(InputError):
    """A dataset file is missing, truncated, foreign, damaged or inconsistent (a ``ValueError``;
    also importable from :mod:`lenslib.dataset`)."""


__all__ = ["DatasetError", "InputError", "InputTypeError"]
