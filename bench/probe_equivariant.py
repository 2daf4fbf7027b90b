"""Does building the eight flips and quarter turns into the network help?  A probe, not shipped.

The shipped finder's score moves when a cutout is turned or flipped, and averaging its eight
views gains more than any other change tried (bench/README.md).  A network can be made
*exactly* invariant to them instead: group convolutions over the dihedral group p4m (Cohen and
Welling 2016), each filter used in its eight orientations, the orientations pooled at the end.
This script takes such a network with the shipped finder's layout and computation (a stem and
three residual stages, each channel of 2/4/8/16 carried in eight orientations = 16/32/64/128
feature maps, 8x fewer weights), with every stride-2 step placed so that a turned cutout's
sampling grid maps onto itself (even sides: a 4x4 or 2x2 window after symmetric padding; odd
sides: 3x3 'same'), checks the invariance, and trains both networks from random weights on
the same shards for the same images seen, then scores them on v10's calibration sky.  The
network is now lenslib's own (``build_finder(architecture="p4m")``,
:mod:`lenslib.finder.equivariant`); the figures in bench/README.md came from this script's first
copy of it, the same layout with other initial weights.

    python bench/probe_equivariant.py --data-dir D --epochs 16     # about 30 min on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="where the shards and the sky are simulated")
    p.add_argument("--epochs", type=int, default=16, help="epochs over the 24,000 training images")
    p.add_argument("--only", choices=("finder", "p4m"), default=None, help="train one network only")
    args = p.parse_args()

    import keras

    from lenslib.config import get_profile
    from lenslib.diagnostics import diagnose
    from lenslib.finder import build_finder
    from lenslib.finder.shards import (
        ShardStream,
        held_out_config,
        load_normalized,
        shard_configs,
        shard_metadata,
        simulate_shards,
    )
    from lenslib.finder.training import _dataset  # the batches exactly as train_finder feeds them
    from lenslib.metrics import tpr_at_fpr
    from lenslib.models.io import dihedral, predict_normalized

    x = np.random.default_rng(1).normal(size=(4, 100, 100)).astype("float32")
    probe = build_finder(architecture="p4m")
    worst = max(float(np.abs(probe.predict(dihedral(x, k)[..., None], verbose=0)
                             - probe.predict(x[..., None], verbose=0)).max()) for k in range(8))
    print(f"p4m network: {probe.count_params():,} weights; largest change of a score under the eight "
          f"flips and turns {worst:.1e}", flush=True)

    full = get_profile("full").finder
    recipe = dataclasses.replace(full, seed=2040, train_parents=10_000, hard_negative_shards=3,
                                 extra_negative_shards=5, wide_lens_shards=6, mined_shards=0, mined_by="",
                                 initial_finder="", epochs=args.epochs)
    shards = simulate_shards(shard_configs(recipe), args.data_dir, workers=None, progress=False)
    cal, = simulate_shards([held_out_config(dataclasses.replace(full, seed=2026), "calibration")],
                           args.data_dir, workers=None, progress=False)
    cal_x, cal_y = load_normalized(cal)
    cal_x, metadata = np.asarray(cal_x, np.float32), shard_metadata(cal)
    for name in ("finder", "p4m") if args.only is None else (args.only,):
        stream = ShardStream(shards, batch_size=128, max_shift=4, seed=recipe.seed, in_memory=True)
        keras.utils.set_random_seed(recipe.seed)
        model = build_finder(seed=recipe.seed, architecture="residual" if name == "finder" else "p4m")
        schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=args.epochs * len(stream))
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy")
        start = time.perf_counter()
        model.fit(_dataset(stream, 100)[0], epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
        for views in (1, 8):
            s = np.concatenate([predict_normalized(model, cal_x[i:i + 512], batch_size=512, transforms=views)
                                for i in range(0, len(cal_x), 512)])
            report = diagnose(cal_y, s, metadata)
            against = [report.auc_against(k) for k in ("companion", "elliptical")]
            auc, tpr0 = report.survey["roc_auc"], report.survey["tpr0"]
            tprs = " / ".join(f"{tpr_at_fpr(cal_y, s, f):.3f}" for f in (1e-3, 1e-2))
            print(f"{name:6s} {views} view(s): ROC AUC {auc:.4f}, TPR0 {tpr0:.3f}, TPR at FPR 1e-3 / 1e-2 "
                  f"{tprs}, vs companions / twins {against[0]:.4f} / {against[1]:.4f} ({args.epochs} epochs "
                  f"of {stream.n_images:,} in {seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
