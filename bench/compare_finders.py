"""Score finders side by side on one held-out calibration sky that none of them trained on.

How a new finder is chosen before the benchmark is run (bench/README.md, v14 onwards): the
20,000 calibration images of another recipe seed (default 2026, `lenslib-finder-v10`'s, which no
later finder trained or was calibrated on), scored with one view and with the mean of eight flips
and quarter turns; ROC AUC, TPR0, TPR at several false-positive rates, and the AUC against the
look-alikes that limit the ranking.

    python bench/compare_finders.py v14=lenslib-finder-v14 v16=runs/A/lenslib-finder-v16.keras \\
        --data-dir /tmp/cal --scores scores.npz

Each ``NAME=MODEL`` is a shipped finder's name or a ``.keras`` file.  The sky is simulated into
``--data-dir`` once (about 4 minutes on 2 cores) and found cached after; ``--scores`` keeps every
finder's scores (one-view logits, eight-view probabilities) for other combinations.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

FPRS = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2)
KINDS = ("companion", "elliptical", "ring_galaxy")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="NAME=MODEL", help="a label, a shipped name or .keras file")
    p.add_argument("--seed", type=int, default=2026, help="the recipe seed whose calibration sky is used")
    p.add_argument("--data-dir", type=Path, required=True, help="where the sky is simulated or found")
    p.add_argument("--workers", type=int, default=None, help="simulation processes (default all cores)")
    p.add_argument("--scores", type=Path, default=None, help="write every finder's scores here (.npz)")
    args = p.parse_args()
    models = [m.split("=", 1) for m in args.models]
    if any(len(m) != 2 or not m[0] for m in models):
        p.error("each model is NAME=MODEL, for example v14=lenslib-finder-v14")

    from lenslib.config import get_profile
    from lenslib.diagnostics import diagnose
    from lenslib.finder.operating import lens_logits
    from lenslib.finder.shards import held_out_config, load_normalized, shard_metadata, simulate_shards
    from lenslib.metrics import tpr_at_fpr
    from lenslib.models import load_model
    from lenslib.models.io import predict_normalized

    recipe = dataclasses.replace(get_profile("full").finder, seed=args.seed)
    shard, = simulate_shards([held_out_config(recipe, "calibration")], args.data_dir, workers=args.workers,
                             progress=False)
    x, labels = load_normalized(shard)
    x, metadata = np.asarray(x, dtype=np.float32), shard_metadata(shard)
    print(f"{len(x)} cutouts of the calibration sky of seed {args.seed} ({shard.name})")
    print(f"{'finder':12s} {'views':5s} {'ROC AUC':>7s} {'TPR0':>5s}  TPR at FPR "
          + " / ".join(f"{f:g}" for f in FPRS) + "  |  AUC vs " + " / ".join(KINDS), flush=True)
    kept = {"labels": labels, "kinds": np.asarray(metadata["kind"]).astype(str)}
    for name, path in models:
        model = load_model(path)
        one = lens_logits(model, x[..., None])
        eight = np.concatenate([predict_normalized(model, x[i:i + 512], batch_size=512, transforms=8)
                                for i in range(0, len(x), 512)])
        kept[f"{name}_1"], kept[f"{name}_8"] = one, eight
        for views, scores in (("1", one), ("8", eight)):
            report = diagnose(labels, scores, metadata)
            print(f"{name:12s} {views:5s} {report.survey['roc_auc']:7.4f} {report.survey['tpr0']:5.3f}  "
                  + " / ".join(f"{tpr_at_fpr(labels, scores, f):.3f}" for f in FPRS)
                  + "  |  " + " / ".join(f"{report.auc_against(k):.4f}" for k in KINDS), flush=True)
    if args.scores is not None:
        np.savez(args.scores, **kept)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
