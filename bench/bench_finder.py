"""The lenslib finder's benchmark (issue 12): speed against LensFlow, and what it finds.

1. Speed, measured in this run on the same batches: training and inference images/s of the
   finder and of LensFlow (the baseline), the median of three rounds taken in turn, and their
   ratio; then both again under Keras's
   ``mixed_bfloat16`` policy (``bfloat16`` in the card), and the ratio to float32.  lenslib
   trains and scores in float32 (see bench/README.md for why); the bfloat16 figures say what a
   CPU with native bfloat16 would gain.
2. The benchmark sky (:mod:`lenslib.finder.benchmark`): ``--n-images`` distinct cutouts of the
   default sky with a seed no training shard uses: ROC AUC, TPR0, TPR10, TPR at FPR 1e-3 and 1e-4,
   purity at a prevalence of 1e-3; AUC against each non-lens kind and the share of each kind
   flagged at 0.5; AUC by arc SNR and by Einstein radius.
3. The shifted skies (``--shifted-images`` each): Moffat PSF, half depth, other populations,
   neighbour-carrying twins; the AUC drop from the benchmark sky.
4. The issue's bar, each target beside the measured value.
5. Items 2-4 again with test-time augmentation: each score the mean over the 8 flips and quarter
   turns of the cutout (``lenslib.predict(..., transforms=8)``), in the card as
   ``benchmark.transforms_8``.
6. The benchmark sky's survey figures as a refined scan scores it (``lenslib scan --refine``):
   the eight-view mean for every cutout whose one-view score reaches ``--refine``, the one-view
   score for the rest; in the card as ``benchmark.refined``.

    python bench/bench_finder.py                                   # the shipped finder, 20,000 cutouts
    python bench/bench_finder.py --model run/lenslib-finder-v10.keras --card run/lenslib-finder-v10.json
    python bench/bench_finder.py --n-images 2000 --shifted-images 400 --skip-speed   # a few minutes

``--card`` writes the figures into a model card (``"benchmark"``), as ``make finder`` does.
Simulated skies are cached in ``$LENSLIB_DATA_DIR`` (default ``~/.cache/lenslib``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from lenslib.finder import DEFAULT_FINDER
from lenslib.finder.benchmark import benchmark, check_targets


def show(title: str, table) -> None:
    print(f"\n{title}")
    for col in table.itercols():
        if col.dtype.kind == "f":
            col.info.format = ".4f"
    for line in table.pformat(max_lines=-1, max_width=-1):
        print("  " + line)


def show_survey(survey: dict) -> None:
    for key, value in survey.items():
        print(f"  {key:18s} {value:.4f}" if isinstance(value, float) else f"  {key:18s} {value}")


def images_per_second(model, *, train: bool, batch_size: int = 128, steps: int = 20) -> float:
    """Median throughput over ``steps`` batches of random cutouts (after 3 warm-up batches)."""
    x = np.random.default_rng(0).normal(size=(batch_size, 100, 100, 1)).astype("float32")
    y = np.arange(batch_size) % 2
    step = (lambda: model.train_on_batch(x, y)) if train else (lambda: model.predict_on_batch(x))
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return batch_size / float(np.median(times))


def speed(layout: dict, rounds: int = 3) -> dict:
    """Training and inference rates of the finder (its network rebuilt from ``layout``, what
    :func:`lenslib.finder.architecture.finder_layout` read from the benchmarked model) and of
    LensFlow, in float32 and under ``mixed_bfloat16``: the median of ``rounds`` measurements taken
    in turn (the two networks alternate, so that a minute when the machine is slower costs both),
    each round's kept."""
    import functools

    import keras

    from lenslib.finder import build_finder
    from lenslib.models import build_lensflow

    out = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            models = {}
            for name, build in (("finder", functools.partial(build_finder, **layout)),
                                ("lensflow", build_lensflow)):
                model = build()
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
                models[name if policy == "float32" else f"{name}_bfloat16"] = model
            measured = {key: {"train": [], "infer": []} for key in models}
            for _ in range(rounds):
                for key, model in models.items():
                    for what in ("train", "infer"):
                        measured[key][what].append(images_per_second(model, train=what == "train"))
            for key, model in models.items():
                out[key] = {"parameters": model.count_params()}
                for what, values in measured[key].items():
                    out[key][what] = float(np.median(values))
                    out[key][f"{what}_rounds"] = [round(v, 1) for v in values]
        finally:
            keras.mixed_precision.set_global_policy("float32")
    out["finder"].update(layout)
    print(f"\ncores available: {os.cpu_count()}; batches of 128 random 100x100 cutouts; "
          f"median of {rounds} rounds [min-max]; the finder's network: {layout['architecture']}, "
          f"widths {'/'.join(map(str, layout['widths']))}")

    def rate(key, what):
        values = out[key][f"{what}_rounds"]
        return f"{out[key][what]:5.0f} [{min(values):.0f}-{max(values):.0f}] images/s"

    for what in ("train", "infer"):
        f, b = out["finder"][what], out["lensflow"][what]
        print(f"  {what:5s}: finder {rate('finder', what)}, LensFlow (baseline) {rate('lensflow', what)}: "
              f"{f / b:.2f}x")
    print(f"  parameters: finder {out['finder']['parameters']:,}, LensFlow {out['lensflow']['parameters']:,}")
    print("  under mixed_bfloat16 (ratio to float32, same run):")
    for what in ("train", "infer"):
        f, b = out["finder_bfloat16"][what], out["lensflow_bfloat16"][what]
        print(f"  {what:5s}: finder {rate('finder_bfloat16', what)} ({f / out['finder'][what]:.2f}x), "
              f"LensFlow {rate('lensflow_bfloat16', what)} ({b / out['lensflow'][what]:.2f}x)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="a .keras file or a shipped finder's name (default: the newest shipped)")
    parser.add_argument("--n-images", type=int, default=20_000)
    parser.add_argument("--shifted-images", type=int, default=4_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--card", default=None, help="a model card to write the figures into")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--refine", type=float, default=0.1,
                        help="cutouts scoring at least this get the eight-view mean in the refined figures")
    args = parser.parse_args()

    args.model = args.model or DEFAULT_FINDER
    if args.skip_speed:
        figures = {}
    else:
        from lenslib.finder.architecture import finder_layout
        from lenslib.models import load_model

        figures = {"speed_images_per_s": speed(finder_layout(load_model(args.model)))}
    start = time.perf_counter()
    result = benchmark(args.model, n_images=args.n_images, shifted_images=args.shifted_images,
                       data_dir=os.environ.get("LENSLIB_DATA_DIR"), workers=args.workers)
    print(f"\nbenchmark sky: {args.n_images} cutouts; shifted skies: {args.shifted_images} each; "
          f"simulated (or loaded) in {result.seconds['simulate']:.0f} s, "
          f"scored in {result.seconds['score']:.0f} s "
          f"({time.perf_counter() - start:.0f} s in all)")
    show_survey(result.report.survey)
    show("AUC of all lenses against each kind of non-lens", result.report.by_kind)
    show("share of each kind flagged at a score of 0.5", result.flagged)
    show("share flagged at 0.5 by the central massive galaxy's magnitude", result.flagged_by_deflector_mag)
    show("AUC by arc SNR (each bin's lenses against all non-lenses)", result.report.by_arc_snr)
    show("AUC by Einstein radius", result.report.by_theta_e)
    show("shifted skies (drop from the benchmark sky)", result.skies)
    record = result.record()
    show("the issue's bar", check_targets(record))

    start = time.perf_counter()
    tta = benchmark(args.model, n_images=args.n_images, shifted_images=args.shifted_images,
                    data_dir=os.environ.get("LENSLIB_DATA_DIR"), workers=args.workers, transforms=8)
    print(f"\nthe same, each score the mean over 8 flips and quarter turns "
          f"({time.perf_counter() - start:.0f} s)")
    show_survey(tta.report.survey)
    show("share of each kind flagged at a score of 0.5, 8 transforms", tta.flagged)
    show("shifted skies, 8 transforms", tta.skies)
    show("the issue's bar, 8 transforms", check_targets(tta.record()))
    figures["transforms_8"] = tta.record()

    from lenslib.diagnostics import diagnose

    again = result.report.scores >= args.refine
    refined = diagnose(result.report.labels, np.where(again, tta.report.scores, result.report.scores),
                       result.metadata)
    share = {"nonlenses": float(again[result.report.labels == 0].mean()),
             "lenses": float(again[result.report.labels == 1].mean())}
    print(f"\nrefined: the 8-view mean for the cutouts scoring at least {args.refine} in one view "
          f"({share['nonlenses']:.2%} of the non-lenses, {share['lenses']:.2%} of the lenses), "
          "one view for the rest")
    show_survey(refined.survey)
    figures["refined"] = {"refine": args.refine, "survey": refined.survey, "share_refined": share}
    if args.card:
        from lenslib.finder.card import read_card, write_json

        card = read_card(args.card)
        targets = {r["target"]: {"bar": r["bar"], "measured": r["measured"], "met": bool(r["met"])}
                   for r in check_targets(record)}
        card["benchmark"] = {**record, **figures, "targets": targets}
        write_json(Path(args.card), card)
        print(f"\nfigures written into {args.card}")
    else:
        print(json.dumps(record["survey"], indent=1))


if __name__ == "__main__":
    main()
