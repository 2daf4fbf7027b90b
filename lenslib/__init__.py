"""lenslib: find strong gravitational lenses with deep learning.

A reproducible replication of *Discovering strong gravitational lensing with deep learning*:
a realistic simulated I-band sky (lenstronomy), the thesis's CNNs (Keras), honest
cross-validation, graded candidates and survey scanning.

The modules are imported lazily, so ``import lenslib`` is cheap and does not start TensorFlow.
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _dir, _public = lazy_loader.attach(__name__, submod_attrs={
    "config": ["get_profile", "SimulationConfig"],
    "preprocess": ["normalize"],
    "simulate": ["simulate_scene"],
    "dataset": ["get_dataset", "load_dataset"],
    "models": ["load_model", "predict"],
    "scan": ["find_lenses"],
})
__all__ = ["__version__", *_public]


def __dir__():
    return __all__
