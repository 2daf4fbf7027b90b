"""The lenslib finder: a compact network trained at scale on the simulated sky and
shipped inside the package (``lenslib.load_model("lenslib-finder-v22")``).

- :mod:`~lenslib.finder.architecture`: the network (:func:`build_finder`), a compact residual
  network, the same layout in p4m group convolutions (:mod:`~lenslib.finder.equivariant`), or
  both side by side (:func:`join_finders` joins two trained ones);
- :mod:`~lenslib.finder.shards`: the training set, simulated in shards and streamed;
- :mod:`~lenslib.finder.training`: :func:`train_finder`, with checkpoints and resume;
- :mod:`~lenslib.finder.card`: model cards;
- :mod:`~lenslib.finder.references`: the finders a recipe starts from, mines with or distils
  from (shipped names or ``.keras`` files), checked and pinned by content;
- :mod:`~lenslib.finder.shipped`: the finders installed with the package (:func:`ship_finder`
  adds one).
"""

from __future__ import annotations

import lazy_loader

# Imported lazily: loading a shipped finder (lenslib predict, lenslib scan) or building the CLI's
# parser must not import the simulator (lenstronomy), which training needs.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "architecture": ["build_finder", "join_finders"],
    "card": ["model_card", "read_card"],
    "shipped": ["DEFAULT_FINDER", "SHIPPED_FINDERS", "shipped_card", "shipped_path"],
    "training": ["FinderRun", "train_finder"],
})
