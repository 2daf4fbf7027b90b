"""What LensFlow learns on the default sky, against a statistics-only baseline (issue 11).

Runs :func:`lenslib.diagnostics.learnability` on the default :class:`~lenslib.config.SimulationConfig`:
simulate ``--n-images`` cutouts (half lenses), hold out 20% of the parents, train LensFlow from
scratch for ``--epochs``, and print

- the hold-out's ROC AUC against each kind of non-lens, and by arc SNR, arc visibility and
  Einstein radius, with the survey metrics (TPR0, TPR10, TPR at FPR 1e-3 and 1e-4, purity);
- the baseline, measured in the same run: gradient-boosted trees on nine aggregated image
  statistics (:func:`lenslib.diagnostics.shortcut_test`), and the ratio of the network's AUC to
  it, overall and against same-population ellipticals (where only the lensed light can help);
- the population shortcut (:func:`lenslib.diagnostics.population_shortcut`, ``--shortcut-pairs``
  fresh lenses and twins): the same statistics on the lenses as observed and with their lensed
  light taken out (at chance there: no population shortcut);
- the same network on a fresh default sky and on three shifted skies (``--shifted-images``
  each): another PSF, half the depth, other deflector and source populations;
- wall times of simulation, training and evaluation.

    python bench/bench_learnability.py                      # the issue's recipe (tens of minutes on 2 cores)
    python bench/bench_learnability.py --n-images 600 --epochs 2 --shifted-images 300   # a few minutes
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from lenslib.config import SimulationConfig, config_hash
from lenslib.diagnostics import (
    SAME_POPULATION_KIND,
    evaluate_shifted,
    learnability,
    population_shortcut,
    summary_table,
)


def show(title: str, table) -> None:
    print(f"\n{title}")
    for col in table.itercols():
        if col.dtype.kind == "f":
            col.info.format = ".3f"
    for line in table.pformat(max_lines=-1, max_width=-1):
        print("  " + line)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def run(args, data_dir: str) -> None:
    config = SimulationConfig(seed=args.seed)
    print(f"cores available: {os.cpu_count()}; data directory: {data_dir}")
    shift = args.augment_shift
    augmented = "" if shift is None else f", views drawn each epoch (shifts <= {shift} px)"
    print(f"sky: default SimulationConfig (seed {config.seed}), {args.n_images} images, "
          f"LensFlow from scratch, {args.epochs} epochs{augmented}")
    result = learnability(config, n_images=args.n_images, epochs=args.epochs, data_dir=data_dir,
                          seed=args.split_seed, workers=args.workers, augment_shift=args.augment_shift)
    sec, report, fit = result.seconds, result.report, result.fit
    n = result.config.n_images
    print(f"dataset {config_hash(result.config)}: {'loaded from cache' if result.cached else 'simulated'} "
          f"in {sec['simulate']:.1f} s ({n / sec['simulate']:.0f} images/s)")
    epochs_run = len(fit.history.get("loss", []))
    print(f"training: {sec['train']:.1f} s for {epochs_run} epochs on {len(fit.train_indices)} images "
          f"(+{len(fit.val_indices)} for early stopping; best epoch {fit.best_epoch + 1}) on {fit.device}; "
          f"{len(fit.train_indices) * epochs_run / sec['train']:.0f} images/s")
    print(f"hold-out: {len(result.test_rows)} images (grouped by parent), scored in {sec['evaluate']:.1f} s; "
          f"shortcut test on all {n} images: {sec['shortcut']:.1f} s")

    show("LensFlow on the hold-out: all lenses against each non-lens kind", report.by_kind)
    show("... lenses by arc SNR, against all non-lenses", report.by_arc_snr)
    if report.by_visibility is not None:
        show("... lenses by arc visibility, against all non-lenses", report.by_visibility)
    show("... lenses by Einstein radius (arcsec), against all non-lenses", report.by_theta_e)
    print("\nsurvey metrics on the hold-out: "
          + ", ".join(f"{k} {v:.4g}" for k, v in report.survey.items()))

    shortcut = result.shortcut
    show("baseline: gradient-boosted trees on 9 image statistics, 3 grouped folds (all images)", shortcut)
    net = {"lens_vs_elliptical": report.auc_against(SAME_POPULATION_KIND),
           "lens_vs_all": report.survey["roc_auc"]}
    for test, base in zip(shortcut["test"], shortcut["auc"]):
        print(f"  {test:<20s} LensFlow AUC {net[test]:.3f} / statistics-only AUC {base:.3f} = "
              f"{ratio(net[test], base)}; above chance: {ratio(net[test] - 0.5, base - 0.5)}")

    start = time.perf_counter()
    population = population_shortcut(config, args.shortcut_pairs, seed=args.split_seed)
    show(f"population shortcut: the same statistics on {args.shortcut_pairs} fresh lenses and as many twins, "
         f"as observed and with the lensed light taken out ({time.perf_counter() - start:.1f} s)", population)

    start = time.perf_counter()
    reports = evaluate_shifted(result.model, config, n_images=args.shifted_images, data_dir=data_dir,
                               workers=args.workers)
    wall = time.perf_counter() - start
    table = summary_table(reports)
    table["auc_ratio"] = table["auc"] / table["auc"][0]
    show(f"the same network on fresh skies of {args.shifted_images} images ('default': same distribution, "
         f"the reference; {wall:.1f} s to simulate and score all {len(reports)})", table)
    show("the hold-out next to the fresh default sky", summary_table({"holdout": report,
                                                                      "default": reports["default"]}))
    total = sum(sec.values()) + wall
    print(f"\nwall time: {total:.1f} s (simulate {sec['simulate']:.1f}, train {sec['train']:.1f}, "
          f"evaluate {sec['evaluate']:.1f}, shortcut {sec['shortcut']:.1f}, shifted skies {wall:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=6000, help="images of the training sky")
    parser.add_argument("--epochs", type=int, default=8, help="LensFlow epochs (early stopping, patience 3)")
    parser.add_argument("--shifted-images", type=int, default=3000, help="images of each shifted sky")
    parser.add_argument("--shortcut-pairs", type=int, default=1000,
                        help="lenses (and as many twins) of the population-shortcut test")
    parser.add_argument("--data-dir", default=None,
                        help="keep (and reuse) the datasets here; default: a temporary directory")
    parser.add_argument("--workers", type=int, default=None, help="simulation processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=SimulationConfig().seed, help="seed of the training sky")
    parser.add_argument("--split-seed", type=int, default=1, help="hold-out split and training seed")
    parser.add_argument("--augment-shift", type=int, default=None,
                        help="train on flips, quarter turns and shifts of up to this many pixels, "
                             "drawn afresh each epoch (TrainingConfig.augment_shift; default: the "
                             "images as stored)")
    args = parser.parse_args()
    if args.data_dir is not None:
        run(args, args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="lenslib-bench-") as tmp:
            run(args, tmp)


if __name__ == "__main__":
    main()
