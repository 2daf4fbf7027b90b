"""Run configurations: the camera, the simulated sky, training recipes and the three profiles.

Every configuration is a frozen dataclass validated on construction, so a bad value fails
at once with a ``ValueError`` that names the field and the allowed range, not deep inside a
simulation.  Profiles (``smoke``, ``quick``, ``full``) change sizes, never logic.

A dataset is identified by :func:`config_hash` of its :class:`SimulationConfig`; the hash also
covers :data:`SIMULATOR_VERSION`, which is bumped whenever the simulator's output changes, so a
cached file made by older code is never reused.
"""

from __future__ import annotations

from .profiles import PROFILE_NAMES, Profile, get_profile
from .recipes import ADAPTER_NAMES, HARD_NEGATIVE_KINDS, OPTIMIZER_NAMES, FinderRecipe, TrainingConfig
from .sky import (
    LENS_KINDS,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    NONLENS_KINDS,
    PSF_MODELS,
    SIMULATOR_VERSION,
    AugmentationConfig,
    InstrumentConfig,
    SimulationConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
)

__all__ = [
    "ADAPTER_NAMES", "HARD_NEGATIVE_KINDS", "LENS_KINDS", "MAX_IMAGE_SIZE", "MIN_IMAGE_SIZE",
    "NONLENS_KINDS", "OPTIMIZER_NAMES", "PROFILE_NAMES", "PSF_MODELS", "SIMULATOR_VERSION",
    "AugmentationConfig", "FinderRecipe", "InstrumentConfig", "Profile", "SimulationConfig",
    "TrainingConfig", "config_from_dict", "config_hash", "config_to_dict", "get_profile",
]
