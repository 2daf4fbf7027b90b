"""The checks every lenslib config runs on construction: each failure is a ``ValueError`` that
names the config, the field, what it allows and the value it got."""

from __future__ import annotations

import math


def fail(owner: str, name: str, allowed: str, value) -> None:
    raise ValueError(f"{owner}.{name} must be {allowed} (got {value!r})")


def check_range(owner, name, value, low, high, *, integer=False, low_open=False, high_open=False):
    ok_type = isinstance(value, int) and not isinstance(value, bool) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )
    kind = "an integer" if integer else "a finite number"
    lo = "(" if low_open else "["
    allowed = f"{kind} in {lo}{low}, {high}{')' if high_open else ']'}"
    if not ok_type:
        fail(owner, name, allowed, value)
    if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
        fail(owner, name, allowed, value)


def check_interval(owner, name, value, low, high):
    allowed = f"a pair (min, max) with {low} <= min <= max <= {high}"
    if not (isinstance(value, tuple) and len(value) == 2):
        fail(owner, name, allowed, value)
    a, b = value
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)):
        fail(owner, name, allowed, value)
    if not (low <= a <= b <= high):
        fail(owner, name, allowed, value)


def check_mix(owner, name, value, known):
    allowed = f"a tuple of (kind, weight) pairs with kinds from {known} and finite weights >= 0 summing > 0"
    if not isinstance(value, tuple) or not value:
        fail(owner, name, allowed, value)
    seen = set()
    for item in value:
        if not (isinstance(item, tuple) and len(item) == 2 and item[0] in known):
            fail(owner, name, allowed, value)
        weight = item[1]
        if (item[0] in seen or isinstance(weight, bool) or not isinstance(weight, (int, float))
                or not math.isfinite(weight) or weight < 0):
            fail(owner, name, allowed, value)
        seen.add(item[0])
    if sum(w for _, w in value) <= 0:
        fail(owner, name, allowed, value)
