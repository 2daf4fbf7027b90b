"""The lenslib finder: a compact residual network trained at scale on the simulated sky and
shipped inside the package (``lenslib.load_model("lenslib-finder-v2")``).

- :mod:`~lenslib.finder.architecture`: the network (:func:`build_finder`);
- :mod:`~lenslib.finder.shards`: the training set, simulated in shards and streamed;
- :mod:`~lenslib.finder.training`: :func:`train_finder`, with checkpoints and resume;
- :mod:`~lenslib.finder.card`: model cards;
- :mod:`~lenslib.finder.shipped`: the finders installed with the package.
"""

from __future__ import annotations

import importlib

# Imported lazily: loading a shipped finder (lenslib predict, lenslib scan) or building the CLI's
# parser must not import the simulator (lenstronomy), which training needs.
_LAZY = {
    "build_finder": ".architecture",
    "model_card": ".card", "read_card": ".card",
    "DEFAULT_FINDER": ".shipped", "SHIPPED_FINDERS": ".shipped", "shipped_card": ".shipped",
    "shipped_path": ".shipped",
    "FinderRun": ".training", "train_finder": ".training",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'lenslib.finder' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = sorted(_LAZY)
