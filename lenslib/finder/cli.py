"""``lenslib train-finder``: train the finder at a profile's size, resumably."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..argtypes import seconds, workers
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
    p.add_argument("--set", dest="changes", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one field of the profile's recipe (lenslib.config.FinderRecipe), e.g. "
                        "--set epochs=20 --set initial_finder= --set name=my-finder; repeatable; "
                        "initial_finder, mined_by and teacher take a shipped name or a .keras finder "
                        "this command wrote; initial_branches a Python pair, quoted: "
                        "\"initial_branches=('lenslib-finder-v21', 'lenslib-finder-v14')\", or "
                        "initial_branches=() with --set architecture=p4m or residual; the card records the "
                        "recipe that ran")
    p.add_argument("--in-memory", action="store_true",
                   help="hold the shards in memory (2 bytes a pixel) rather than read them every epoch; "
                        "the same batches")
    p.add_argument("--stop-after", type=seconds, default=None, metavar="SECONDS",
                   help="stop after the last epoch that ends within SECONDS of the command's start (a "
                        "batch job's limit; simulating the shards counts); run the same command again to "
                        "resume")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def recipe_with(recipe, changes: list[str]):
    """``recipe`` with ``FIELD=VALUE`` changes: a text field takes VALUE as written, any other a
    Python literal (``20``, ``2e-3``, ``(16, 32, 64)``); FinderRecipe validates the result."""
    import ast
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(recipe)}
    values = {}
    for change in changes:
        name, sep, text = change.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"--set {change!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
        if isinstance(getattr(recipe, name), str):
            values[name] = text
            continue
        try:
            values[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
            raise ValueError(f"--set {change!r}: {text!r} is not a value for {name}") from err
    return dataclasses.replace(recipe, **values)


def run(args: argparse.Namespace) -> int:
    from ..config import get_profile
    from ..dataset import default_data_dir
    from ..errors import InputError
    from ..files import results_dir
    from .training import train_finder

    try:
        recipe = recipe_with(get_profile(args.profile).finder, args.changes)
    except ValueError as err:  # a bad --set, or a value FinderRecipe refuses (it names the field)
        raise InputError(str(err)) from err
    run_dir = args.run_dir or results_dir("finder") / recipe.name
    data_dir = args.data_dir or default_data_dir() / "finder"
    result = train_finder(recipe, run_dir, data_dir=data_dir, workers=args.workers, scheduler=args.scheduler,
                          verbose=0 if args.quiet else 1, in_memory=args.in_memory,
                          stop_after=args.stop_after)
    last = result.history[-1]
    if not result.finished:
        print(f"{recipe.name}: stopped after epoch {last['epoch']} of {recipe.epochs} (--stop-after), "
              f"validation ROC AUC {last['val_auc']:.4f}; run the same command again to resume "
              f"from {run_dir}")
        return 0
    print(f"{recipe.name}: {last['epoch']} epoch(s), validation ROC AUC {last['val_auc']:.4f}, "
          f"{result.seconds:.0f} s of training; the finder is {result.model_path} and its card "
          f"{result.card_path}")
    return 0
