"""The one entry point: :func:`simulate_scene` sends a kind to the room that draws it."""

from __future__ import annotations

import numpy as np

from ..config import LENS_KINDS, NONLENS_KINDS, SimulationConfig
from .lenses import simulate_lens
from .nonlenses import simulate_nonlens
from .observation import Scene


def simulate_scene(kind: str, rng: np.random.Generator, config: SimulationConfig) -> Scene:
    """Simulate one cutout of ``kind`` (a lens kind or a non-lens kind) with ``rng``.

    Returns a :class:`Scene` whose ``image`` is float32 ``(image_size, image_size)`` in e-/s.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (got {type(rng).__name__})")
    if kind in LENS_KINDS:
        return simulate_lens(kind, rng, config)
    if kind in NONLENS_KINDS:
        return simulate_nonlens(kind, rng, config)
    raise ValueError(f"kind must be one of {LENS_KINDS + NONLENS_KINDS} (got {kind!r})")
