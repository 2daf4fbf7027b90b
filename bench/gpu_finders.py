"""Train several finders side by side on one GPU machine, from one set of simulated shards.

What made `lenslib-finder-v11` and the capacity probe beside it (bench/README.md, "Three finders
on one H100"), `lenslib-finder-v16`'s round, and the p4m finders v18 and v19 (``--set
architecture=p4m``, bench/README.md): simulate a recipe's shards once on every core,
mine the hard negatives once, then run `lenslib train-finder` for each variant in its own process,
all on the one GPU (a finder this small leaves the GPU mostly idle: each process's batch stream on
its own core is the limit). A variant is the common recipe changes plus its own; each run
directory resumes where it stopped, so running the script again (same arguments) continues every
variant.  Needs only what `lenslib train-finder` needs; on a machine with JAX but no TensorFlow,
run it with ``KERAS_BACKEND=jax``.

    KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false python bench/gpu_finders.py \\
        --data-dir /tmp/shards --runs /tmp/runs --budget 560 --out $OUT

With no ``--set`` or ``--variant`` it runs the 2026-11-27 round that made v11 (``COMMON`` and
``VARIANTS`` below); ``--set FIELD=VALUE`` changes every variant's recipe after ``COMMON``, and
``--variant KEY:FIELD=VALUE;FIELD=VALUE`` (repeatable) replaces ``VARIANTS``.  ``--budget``:
seconds the whole script may take from its start (simulation included); the training runs stop
after the last epoch that ends in time (``--stop-after``), leaving 45 s for the operating points
and cards.  ``--out``: where each variant's finished finder, card and log are copied (or, if it
did not finish, its last checkpoint, state and log), one folder per variant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMMON = ["seed=2027", "shard_parents=1000", "train_parents=35000", "hard_negative_shards=9",
          "extra_negative_shards=18", "wide_lens_shards=18", "mined_shards=0", "mined_by=",
          "validation_parents=4000", "calibration_parents=20000", "epochs=20"]
VARIANTS = {
    "A": ["name=lenslib-finder-v11", "initial_finder=lenslib-finder-v10", "learning_rate=3e-4"],
    "B": ["name=probe-wide", "initial_finder=", "learning_rate=2e-3", "widths=(32, 64, 128, 256)"],
    "C": ["name=probe-small", "initial_finder=", "learning_rate=2e-3"],
}
# The residual network, as those runs trained (the recipe's defaults have moved on since).
VARIANTS = {key: ["architecture=residual", "initial_branches=()", *changes]
            for key, changes in VARIANTS.items()}


def _variant(text: str) -> tuple[str, list[str]]:
    key, sep, changes = text.partition(":")
    if not sep or not key.isalnum():
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected KEY:FIELD=VALUE;FIELD=VALUE")
    return key, [c for c in changes.split(";") if c]


def _gather(run_dir: Path, name: str, out: Path) -> list[str]:
    """Copy a variant's finished finder, card and log to ``out`` (else its last checkpoint and
    state); the names copied."""
    import json

    finished = [run_dir / f"{name}.keras", run_dir / f"{name}.json"]
    if all(p.exists() for p in finished):
        wanted = finished
    else:
        state = run_dir / "state.json"
        checkpoint = json.loads(state.read_text()).get("checkpoint") if state.exists() else None
        wanted = [state] + ([run_dir / checkpoint] if checkpoint else [])
    wanted.append(run_dir / "log.csv")
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in wanted:
        if path.exists():
            shutil.copy2(path, out / path.name)
            copied.append(path.name)
    return copied


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="where the shards are simulated")
    p.add_argument("--runs", type=Path, required=True, help="one run directory per variant under it")
    p.add_argument("--budget", type=float, default=560.0, help="seconds the whole script may take")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="simulation processes")
    p.add_argument("--set", dest="changes", action="append", default=[], metavar="FIELD=VALUE",
                   help="a change to every variant's recipe, after the recorded common one")
    p.add_argument("--variant", dest="variants", action="append", type=_variant, default=[],
                   metavar="KEY:FIELD=VALUE;...", help="a variant (replaces the recorded ones)")
    p.add_argument("--out", type=Path, default=None, help="copy each variant's results here")
    args = p.parse_args()
    start = time.perf_counter()

    def stamp(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    from lenslib.config import get_profile
    from lenslib.finder.cli import recipe_with
    from lenslib.finder.references import check_finder_references
    from lenslib.finder.shards import held_out_config, recipe_mined_shards, shard_configs, simulate_shards

    common = COMMON + args.changes
    variants = dict(args.variants) or VARIANTS
    if len(variants) < len(args.variants):
        p.error("each --variant needs its own KEY")
    full = get_profile("full").finder
    recipes = {key: recipe_with(full, common + changes) for key, changes in variants.items()}
    recipe = recipe_with(full, common)
    configs = shard_configs(recipe)
    for key, variant in recipes.items():
        check_finder_references(variant)  # a bad finder name fails now, not after the simulation
        if shard_configs(variant) != configs:
            p.error(f"--variant {key} changes the training shards (seed, counts or mixes): put such "
                    "changes in --set, so that every variant trains on the shards simulated once")
    stamp(f"simulating {len(configs)} training shards on {args.workers} processes")
    shards = simulate_shards(configs, args.data_dir, workers=args.workers, progress=False)
    stamp("training shards done; the held-out sets")
    held_out = [held_out_config(recipe, "validation"), held_out_config(recipe, "calibration")]
    simulate_shards(held_out, args.data_dir, workers=args.workers, progress=False)
    for key, variant in recipes.items():  # once here, found cached by every run that mines alike
        if variant.mined_shards:
            stamp(f"mining {variant.mined_shards} shards of hard negatives with {variant.mined_by} ({key})")
            recipe_mined_shards(variant, shards, args.data_dir, progress=False)
    stop = int(args.budget - (time.perf_counter() - start) - 45)
    stamp(f"simulation done; each run stops after {stop} s")

    args.runs.mkdir(parents=True, exist_ok=True)
    runs = {}
    for key, changes in variants.items():
        command = [sys.executable, "-m", "lenslib.cli", "train-finder", "--profile", "full",
                   "--data-dir", str(args.data_dir), "--run-dir", str(args.runs / key), "--in-memory",
                   "--quiet", "--stop-after", str(stop)]
        for change in common + changes:
            command += ["--set", change]
        log = open(args.runs / f"{key}.log", "w")
        runs[key] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log
        stamp(f"started {key}: {' '.join(changes)}")
    failed = 0
    for key, (process, log) in runs.items():
        code = process.wait()
        failed += code != 0
        log.close()
        lines = (args.runs / f"{key}.log").read_text().strip().splitlines()
        stamp(f"{key} (exit {code}): " + "\n".join(lines[-8:] if code else lines[-1:]))
        csv = args.runs / key / "log.csv"
        if csv.exists():
            print(csv.read_text(), flush=True)
        if args.out is not None:
            stamp(f"{key}: copied " + ", ".join(_gather(args.runs / key, recipes[key].name, args.out / key)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
