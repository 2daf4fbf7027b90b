"""``lenslib train-finder``: train the finder at a profile's size, resumably."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..argtypes import workers
from ..config import PROFILE_NAMES


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILE_NAMES, default="full",
                   help="the recipe's size: full (the shipped finder's 100,000 images), quick or smoke "
                        "(default full)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="checkpoints, log.csv, the finder and its model card (default "
                        "RESULTS/finder/NAME); run the same command again to resume")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the simulated shards are kept (default $LENSLIB_DATA_DIR/finder, else "
                        "~/.cache/lenslib/finder)")
    p.add_argument("--workers", type=workers, default=None,
                   help="simulation processes (default: one per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="simulate the shards on Dask: 'local' or a scheduler address (tcp://host:8786); "
                        "--data-dir must then be a folder every worker sees")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..config import get_profile
    from ..dataset import default_data_dir
    from ..files import results_dir
    from .training import train_finder

    recipe = get_profile(args.profile).finder
    run_dir = args.run_dir or results_dir("finder") / recipe.name
    data_dir = args.data_dir or default_data_dir() / "finder"
    result = train_finder(recipe, run_dir, data_dir=data_dir, workers=args.workers, scheduler=args.scheduler,
                          verbose=0 if args.quiet else 1)
    last = result.history[-1]
    print(f"{recipe.name}: {last['epoch']} epoch(s), validation ROC AUC {last['val_auc']:.4f}, "
          f"{result.seconds:.0f} s of training; the finder is {result.model_path} and its card "
          f"{result.card_path}")
    return 0
