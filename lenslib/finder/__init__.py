"""The lenslib finder: a compact residual network trained at scale on the simulated sky and
shipped inside the package (``lenslib.load_model("lenslib-finder-v2")``).

- :mod:`~lenslib.finder.architecture`: the network (:func:`build_finder`);
- :mod:`~lenslib.finder.shards`: the training set, simulated in shards and streamed;
- :mod:`~lenslib.finder.training`: :func:`train_finder`, with checkpoints and resume;
- :mod:`~lenslib.finder.card`: model cards;
- :mod:`~lenslib.finder.shipped`: the finders installed with the package.
"""

from __future__ import annotations

from .architecture import build_finder
from .card import model_card, read_card
from .shipped import DEFAULT_FINDER, SHIPPED_FINDERS, shipped_card, shipped_path
from .training import FinderRun, train_finder

__all__ = ["DEFAULT_FINDER", "SHIPPED_FINDERS", "FinderRun", "build_finder", "model_card", "read_card",
           "shipped_card", "shipped_path", "train_finder"]
