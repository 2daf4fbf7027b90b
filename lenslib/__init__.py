"""lenslib: find strong gravitational lenses with deep learning.

A reproducible replication of *Discovering strong gravitational lensing with deep learning*:
a realistic simulated I-band sky (lenstronomy), the thesis's CNNs (Keras), honest
cross-validation, graded candidates and survey scanning.

The modules are imported lazily, so ``import lenslib`` is cheap and does not start TensorFlow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "get_profile": ("lenslib.config", "get_profile"),
    "SimulationConfig": ("lenslib.config", "SimulationConfig"),
    "normalize": ("lenslib.preprocess", "normalize"),
    "simulate_scene": ("lenslib.simulate", "simulate_scene"),
    "get_dataset": ("lenslib.dataset", "get_dataset"),
    "load_dataset": ("lenslib.dataset", "load_dataset"),
    "load_model": ("lenslib.models", "load_model"),
    "predict": ("lenslib.models", "predict"),
    "find_lenses": ("lenslib.scan", "find_lenses"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'lenslib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["__version__", *_LAZY]
