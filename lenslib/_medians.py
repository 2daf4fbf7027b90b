"""Exact row medians and median absolute deviations, compiled with numba.

Imported on first use by :mod:`lenslib.preprocess` (numba's import and the kernels' compilation,
cached on disk after the first run, stay out of ``import lenslib``).

Each row's middle rank is bracketed from every ``_STEP``-th value; one branch-free pass counts
the values below the bracket and copies those inside it to a buffer; only the buffer (about a
sixth of the row) goes through a quickselect.  A row whose bracket misses its middle is
partitioned whole.  The result is numpy's to the bit: the same middle values, averaged as
``np.median`` averages them.  The kernels release the GIL, so a scan normalises in one thread
while TensorFlow runs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Every ``_STEP``-th value of a row forms the subsample that brackets its middle rank.
_STEP = 16


@njit(cache=True, nogil=True)
def _select(values, left, right, k):
    """Reorder ``values[left:right + 1]`` in place so that ``values[k]`` is its ``k``-th smallest
    (``k`` counted from 0 at index 0), with everything before it no larger and everything after
    no smaller; returns that value.

    Quickselect with median-of-three pivots and branch-free Lomuto partitions (numba's
    ``np.partition`` copies and branches: three times slower here); values equal to the pivot
    are gathered so that repeated values end the search; a range still open after 64 rounds (a
    pathological order) is sorted.
    """
    rounds = 0
    while right - left > 8:
        rounds += 1
        if rounds > 64:
            values[left:right + 1] = np.sort(values[left:right + 1])
            return values[k]
        first, middle, last = values[left], values[(left + right) >> 1], values[right]
        pivot = max(min(first, middle), min(max(first, middle), last))
        store = left
        for i in range(left, right + 1):  # values[left:store] < pivot <= values[store:i + 1]
            value = values[i]
            values[i] = values[store]
            values[store] = value
            store += value < pivot
        if k < store:
            right = store - 1
            continue
        equal = store
        for i in range(store, right + 1):  # values[store:equal] == pivot
            value = values[i]
            values[i] = values[equal]
            values[equal] = value
            equal += value == pivot
        if k < equal:
            return pivot
        left = equal
    for i in range(left + 1, right + 1):  # a short range: insertion sort
        value = values[i]
        j = i - 1
        while j >= left and values[j] > value:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = value
    return values[k]


@njit(cache=True, nogil=True)
def _middle(values, count, k_lo, k_hi):
    """Mean of the ``k_lo``-th and ``k_hi``-th smallest of ``values[:count]`` (``k_hi = k_lo``
    or ``k_lo + 1``), summed then halved as numpy's mean of two values is."""
    high = _select(values, 0, count - 1, k_hi)
    if k_lo == k_hi:
        return high
    low = values[0]
    for j in range(1, k_hi):  # everything before k_hi is no larger than it: take the largest
        if values[j] > low:
            low = values[j]
    return (low + high) / 2.0


@njit(cache=True, nogil=True)
def _row_median(row, center, absolute, sample, buffer):
    """Median of ``row`` or, if ``absolute``, of ``|row - center|``, in float64."""
    m = row.shape[0]
    k_hi = m // 2
    k_lo = k_hi - 1 if m % 2 == 0 else k_hi
    n_sample = 0
    for j in range(0, m, _STEP):
        value = np.float64(row[j])
        sample[n_sample] = abs(value - center) if absolute else value
        n_sample += 1
    margin = 2.0 * np.sqrt(n_sample)  # four standard errors of the subsample's median rank
    lo_rank = max(int(k_lo * n_sample / m - margin), 0)
    lo = _select(sample, 0, n_sample - 1, lo_rank)
    hi = _select(sample, lo_rank, n_sample - 1, min(int(np.ceil(k_hi * n_sample / m + margin)), n_sample - 1))
    below = 0
    inside = 0
    for j in range(m):  # branch free: always write, advance only when the value is inside
        value = np.float64(row[j])
        if absolute:
            value = abs(value - center)
        buffer[inside] = value
        below += value < lo
        inside += (value >= lo) & (value <= hi)
    if below <= k_lo and below + inside > k_hi:
        return _middle(buffer, inside, k_lo - below, k_hi - below)
    for j in range(m):  # the bracket missed the middle: select over the whole row
        value = np.float64(row[j])
        buffer[j] = abs(value - center) if absolute else value
    return _middle(buffer, m, k_lo, k_hi)


@njit(cache=True, nogil=True)
def row_median_mad(rows, with_mad):
    """Each row's median and (if ``with_mad``) median absolute deviation from it, in float64."""
    n, m = rows.shape
    sample = np.empty(m // _STEP + 1)
    buffer = np.empty(m + 1)
    median = np.empty(n)
    mad = np.zeros(n)
    for i in range(n):
        median[i] = _row_median(rows[i], 0.0, False, sample, buffer)
        if with_mad:
            mad[i] = _row_median(rows[i], median[i], True, sample, buffer)
    return median, mad
