"""Which companions fool a finder: the companion drawer's three neighbour styles, one at a time.

The ``companion`` non-lens kind paints one to three unlensed neighbours around a massive galaxy,
each a compact knot, a point source or a short arclet curved by chance around it
(``lenslib.simulate.nonlenses._draw_companion``).  This script simulates ``--n`` companions with
every neighbour forced to one style (the same seeds for each style; the random stream is kept,
so only the style changes), scores them with a finder and prints the share flagged at 0.5,
around hosts brighter and fainter than AB 19.5.

    python bench/probe_companions.py                           # the shipped finder, 300 each (about 1 min)
    python bench/probe_companions.py --model lenslib-finder-v3 --n 1000
"""

from __future__ import annotations

import argparse

import numpy as np

import lenslib
from lenslib.config import SimulationConfig
from lenslib.finder import DEFAULT_FINDER
from lenslib.simulate import nonlenses
from lenslib.simulate.scene import simulate_scene

STYLES = ["knot", "star", "arclet"]


class _ForcedStyle:
    """A generator that answers the drawer's style draw with ``style`` (after drawing it, so the
    rest of the stream is unchanged) and passes every other call through."""

    def __init__(self, rng: np.random.Generator, style: str):
        self._rng, self._style = rng, style

    def __getattr__(self, name):
        return getattr(self._rng, name)

    def choice(self, a, *args, **kwargs):
        drawn = self._rng.choice(a, *args, **kwargs)
        return self._style if list(a) == STYLES else drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_FINDER, help="a .keras file or a shipped finder's name")
    parser.add_argument("--n", type=int, default=300, help="companions per style")
    args = parser.parse_args()
    model, config = lenslib.load_model(args.model), SimulationConfig()
    draw = nonlenses.NONLENS_DRAWERS["companion"]
    print(f"{args.model}: share of companions flagged at 0.5, {args.n} per style")
    try:
        for style in [*STYLES, None]:
            nonlenses.NONLENS_DRAWERS["companion"] = draw if style is None else (
                lambda rng, obs, record, s=style: draw(_ForcedStyle(rng, s), obs, record))
            scenes = [simulate_scene("companion", np.random.default_rng([99, i]), config)
                      for i in range(args.n)]
            scores = lenslib.predict(model, np.array([s.image for s in scenes]))
            host = np.array([s.record["deflector_mag"] for s in scenes])
            bright = host < 19.5
            print(f"  {style or 'as drawn (mixed)':17s} {np.mean(scores > 0.5):6.1%}   host brighter than "
                  f"19.5: {np.mean(scores[bright] > 0.5):6.1%} ({bright.sum()}), fainter: "
                  f"{np.mean(scores[~bright] > 0.5):6.1%}")
    finally:
        nonlenses.NONLENS_DRAWERS["companion"] = draw


if __name__ == "__main__":
    main()
