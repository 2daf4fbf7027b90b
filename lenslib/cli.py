"""The ``lenslib`` command: ``scan``, ``inspect``, ``predict``, ``simulate``, ``train-finder`` and ``cv``.

Every subcommand is a thin layer over one library call; bad input (a
:class:`lenslib.errors.InputError`, a dataset error, unavailable weights, or an ``OSError`` of a
file) ends with a one-line message on stderr and exit status 2, an interrupted run with status
130.  Any other exception is a bug and keeps its traceback.  Outputs are checked before any work:
an output may not be an input, and an existing one is replaced only if lenslib wrote it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

from . import __version__, argtypes
from .argtypes import MAX_BATCH_SIZE, MAX_WORKERS
from .models.io import TRANSFORM_COUNTS

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
def _profile(name: str):
    """The profile ``name``; a bad ``$LENSLIB_PROFILE`` (argparse checks only what is typed) is bad input."""
    from .config import get_profile
    from .errors import InputError

    try:
        return get_profile(name)
    except ValueError as err:
        raise InputError(f"{err} (from --profile or $LENSLIB_PROFILE)") from err


_MODEL_HELP = ("the lens finder: a .keras file or a shipped finder's name, such as lenslib-finder-v12 "
               "(default: the finder shipped with lenslib as its default)")


def _model_path(model: Path | None) -> Path:
    """``--model`` (a file, or a shipped finder's name), or the shipped finder's file when it is
    not given."""
    from .finder.shipped import shipped_path
    from .models.io import resolve_model_path

    return resolve_model_path(str(model)) if model is not None else shipped_path()


# --------------------------------------------------------------------------------------------
# scan
# --------------------------------------------------------------------------------------------
def _add_scan(sub) -> None:
    p = sub.add_parser(
        "scan", help="find lens candidates in a survey image (FITS)",
        description="Tile a FITS image into overlapping 100x100 cutouts, score them with a trained "
                    "lens finder, merge overlapping detections and write a candidate catalog with "
                    "pixel and sky coordinates.  An interrupted scan resumes when run again.",
        epilog="example: lenslib scan mosaic.fits --model results/quick/best_model.keras "
               "--out candidates.fits --gallery candidates.png")
    p.add_argument("image", type=Path, help="the FITS image in e-/s (any HDU with 2-D data; see --hdu, "
                                             "or name it as FILE[EXT])")
    p.add_argument("--model", type=Path, default=None, help=_MODEL_HELP)
    p.add_argument("--out", type=Path, required=True,
                   help="the catalog to write: .fits, .ecsv or .csv (format by extension; CSV keeps "
                        "no metadata: the model, tiling and image are recorded in .fits and .ecsv); "
                        "never an input, and an existing file only if lenslib wrote it")
    p.add_argument("--hdu", type=argtypes.hdu, default=None,
                   help="the HDU holding the image, by index, name or name,version (SCI,2) (default: "
                        "the first with 2-D data)")
    p.add_argument("--mask", type=Path, default=None,
                   help="a FITS bad-pixel mask of the image's shape: nonzero pixels have no data; "
                        "FILE[EXT] names its extension (default: one named MASK, BPM or BADPIX, else "
                        "the first 2-D image that is not the scanned one)")
    p.add_argument("--weight", type=Path, default=None,
                   help="a FITS weight or exposure map of the image's shape: pixels of weight 0 have "
                        "no data; FILE[EXT] names its extension (default: one named WHT, WEIGHT or "
                        "WGT, so an HST drizzled image's own file works, else the first 2-D image "
                        "that is not the scanned one)")
    p.add_argument("--zero-run", type=argtypes.count, default=32, metavar="N",
                   help="exact zeros in a run of at least N pixels along a row or column are no data "
                        "(how mosaics fill edges and gaps); 0: zeros are data (default 32)")
    p.add_argument("--max-missing", type=argtypes.share(0.5), default=None, metavar="FRACTION",
                   help="a tile with at most this share of its pixels without data has them filled "
                        "from their neighbours and is scored; one with more is skipped (0-0.5; "
                        "default 0.02, lenslib.scan.MAX_MISSING; 0: skip every tile that touches a "
                        "pixel without data)")
    p.add_argument("--stride", type=argtypes.positive_int, default=50,
                   help="pixels between tiles, 1-100 (default 50)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="score at or above which a tile is a detection (default 0.5)")
    p.add_argument("--min-separation", type=float, default=None,
                   help="detections closer than this many pixels merge (default 100, overlapping cutouts)")
    p.add_argument("--batch-size", type=argtypes.batch_size, default=256,
                   help=f"cutouts scored at a time (at most {MAX_BATCH_SIZE})")
    p.add_argument("--transforms", type=int, choices=TRANSFORM_COUNTS, default=1,
                   help="score each tile as the mean over this many flips and quarter turns "
                        "(test-time augmentation; costs up to as many times the scoring, less for a "
                        "two-branch finder, whose p4m branch runs once; default 1)")
    p.add_argument("--refine", type=float, default=None, metavar="SCORE",
                   help="score every tile that scores at least SCORE again, as the mean over all eight "
                        "flips and quarter turns, and keep that score: better at the survey end for "
                        "up to eight times the cost of those tiles only (0.1 is a good start; default: off)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="directory for the scores of finished tile rows, kept after the run "
                        "(default: OUT.scan-checkpoint, removed once the catalog is written)")
    p.add_argument("--no-checkpoint", action="store_true", help="do not save progress")
    p.add_argument("--gallery", type=Path, default=None, help="a PNG of the best candidates' cutouts")
    p.add_argument("--n-gallery", type=argtypes.positive_int, default=24, help="candidates in the gallery")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="score on Dask: 'local' for a local cluster, or a scheduler address such as "
                        "tcp://host:8786 (workers must see the model file at the same path)")
    p.add_argument("--workers", type=argtypes.workers, default=None,
                   help=f"workers of a local Dask cluster (default: one per core; at most {MAX_WORKERS}); "
                        "without --scheduler, implies --scheduler local")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_scan)


def _run_scan(args) -> int:
    from .errors import InputError
    from .scan import scan_fits

    scheduler = args.scheduler
    if args.workers is not None:
        if scheduler is None:
            scheduler = "local"
        elif scheduler != "local":
            raise InputError(f"--workers sets the size of a local cluster; the cluster at {scheduler} "
                             "has its own workers")
    checkpoint, temporary = None, False
    if not args.no_checkpoint:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint, temporary = args.out.with_name(args.out.name + ".scan-checkpoint"), True
    table = scan_fits(args.image, _model_path(args.model), args.out, hdu=args.hdu, mask=args.mask,
                      weight=args.weight,
                      gallery=args.gallery, n_gallery=args.n_gallery, stride=args.stride,
                      threshold=args.threshold, min_separation=args.min_separation,
                      batch_size=args.batch_size, transforms=args.transforms, refine=args.refine,
                      zero_run=args.zero_run, checkpoint=checkpoint,
                      scheduler=scheduler, n_workers=args.workers,
                      progress=False if args.no_progress else None,
                      **({} if args.max_missing is None else {"max_missing": args.max_missing}))
    if temporary and (checkpoint / "scan.json").is_file():
        shutil.rmtree(checkpoint)
    meta = table.meta
    refined = f", {meta['n_refine']} refined" if "n_refine" in meta else ""
    print(f"{len(table)} candidate(s) written to {args.out} ({meta['n_scored']} tiles scored, "
          f"{meta['n_resume']} resumed, {meta['n_skip']} skipped{refined}; {100 * meta['no_data']:.3g}% of "
          f"the image had no data, {100 * meta['unsearch']:.3g}% lay in no scored tile)")
    return 0


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------
def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict", help="score cutouts (FITS or .npy) with a trained lens finder",
        description="Score 100x100 cutouts in e-/s (a .npy array shaped (N, 100, 100) or (100, 100), "
                    "or a FITS image or cube) with the normalisation used in training; writes one "
                    "lens probability per cutout.")
    p.add_argument("cutouts", type=Path, help="a .npy file or a FITS file of cutouts")
    p.add_argument("--model", type=Path, default=None, help=_MODEL_HELP)
    p.add_argument("--out", type=Path, default=None,
                   help="a .csv, .ecsv or .fits table of scores (default: CSV on stdout); never an "
                        "input, and an existing file only if lenslib wrote it")
    p.add_argument("--hdu", type=argtypes.hdu, default=None,
                   help="FITS: the HDU holding the cutouts (default: the first with 2-D or 3-D image data)")
    p.add_argument("--batch-size", type=argtypes.batch_size, default=128,
                   help=f"cutouts scored at a time (at most {MAX_BATCH_SIZE})")
    p.add_argument("--transforms", type=int, choices=TRANSFORM_COUNTS, default=1,
                   help="score each cutout as the mean over this many flips and quarter turns "
                        "(test-time augmentation; default 1)")
    p.set_defaults(run=_run_predict)


def read_cutouts(path: Path, hdu=None):
    """Cutouts from a ``.npy`` file or a FITS image or cube: :func:`lenslib.fitsio.read_cutouts`."""
    from .fitsio import read_cutouts

    return read_cutouts(path, hdu)


def _run_predict(args) -> int:
    import numpy as np
    from astropy.table import Table

    from .files import check_output, check_table_path, write_table
    from .models import predict
    from .models.io import model_label
    from .scan.checkpoint import model_digest

    out = check_table_path(args.out)
    model = _model_path(args.model)
    check_output(out, [args.cutouts, model], what="--out", csv_columns=("index", "score"),
                 csv_only=("index", "score"))
    cutouts = read_cutouts(args.cutouts, args.hdu)
    scores = predict(model, cutouts, batch_size=args.batch_size, transforms=args.transforms)
    table = Table({"index": np.arange(len(scores)), "score": scores})
    table.meta.update({"model": model_label(None, model), "modelsum": model_digest(None, model),
                       "transfrm": args.transforms})
    if out is None:
        table.write(sys.stdout, format="ascii.csv")
    else:
        write_table(table, out)
        print(f"{len(table)} score(s) written to {out}")
    return 0


# --------------------------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------------------------
def _add_simulate(sub) -> None:
    from .config import PROFILE_NAMES

    p = sub.add_parser(
        "simulate", help="simulate a profile's training set (HDF5)",
        description="Simulate the lenses and non-lenses of a profile's dataset, or find it in the "
                    "cache if it was made before; prints the file's path.")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=os.environ.get("LENSLIB_PROFILE", "quick"),
                   help="smoke (seconds), quick or full (the thesis's 28,239 images); "
                        "default $LENSLIB_PROFILE or quick")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where datasets are kept (default $LENSLIB_DATA_DIR, else ~/.cache/lenslib)")
    p.add_argument("--workers", type=argtypes.workers, default=None,
                   help=f"processes (default: one per core; at most {MAX_WORKERS})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_simulate)


def _run_simulate(args) -> int:
    from .dataset import build_dataset

    path = build_dataset(_profile(args.profile).simulation, args.data_dir, workers=args.workers,
                         progress=False if args.no_progress else None)
    print(path)
    return 0


# --------------------------------------------------------------------------------------------
# train-finder
# --------------------------------------------------------------------------------------------
def _add_train_finder(sub) -> None:
    from .finder import cli

    p = sub.add_parser(
        "train-finder", help="train the lenslib finder on shards of the simulated sky (resumable)",
        description="Simulate the profile's finder recipe in shards (cached), train the compact "
                    "residual finder on them with on-the-fly augmentation, checkpoint every epoch, and "
                    "write the finder with its model card.  A killed run resumes when run again.",
        epilog="example: lenslib train-finder --profile quick")
    cli.configure_parser(p)
    p.set_defaults(run=cli.run)


# --------------------------------------------------------------------------------------------
# cv
# --------------------------------------------------------------------------------------------
def _add_cv(sub) -> None:
    from .baselines import BASELINE_NAMES
    from .config import PROFILE_NAMES
    from .models import MODEL_NAMES
    from .splits import SPLIT_MODES

    p = sub.add_parser(
        "cv", help="cross-validate networks and baselines on a profile's dataset (Table 5-1)",
        description="Cross-validate networks (transfer models frozen on pretrained weights where "
                    "they are available, LensFlow and DeepLens from scratch) and the chapter-3 "
                    "baselines on a profile's dataset; every fold is saved as it ends, so a run "
                    "started again resumes.  Writes one table of fold-mean metrics.",
        epilog="example: lenslib cv --profile quick --models lensflow vgg16 gmm")
    p.add_argument("--models", nargs="+", required=True, choices=MODEL_NAMES + BASELINE_NAMES,
                   metavar="NAME", help=f"networks ({', '.join(MODEL_NAMES)}) and baselines "
                                        f"({', '.join(BASELINE_NAMES)})")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=os.environ.get("LENSLIB_PROFILE", "quick"),
                   help="dataset, folds and training settings; default $LENSLIB_PROFILE or quick")
    p.add_argument("--modes", nargs="+", choices=SPLIT_MODES, default=["grouped"],
                   help="grouped: a parent and its augmented copies stay in one fold (honest); "
                        "thesis: plain stratified folds over augmented images, as the thesis did")
    p.add_argument("--folds", type=argtypes.positive_int, default=None, help="default: the profile's")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where datasets are kept (default $LENSLIB_DATA_DIR, else ~/.cache/lenslib)")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="results root (default $LENSLIB_RESULTS_DIR, else ./results); fold scores go "
                        "to RESULTS/PROFILE/cv")
    p.add_argument("--out", type=Path, default=None,
                   help="the metrics table (.ecsv, .csv or .fits); default RESULTS/PROFILE/cv_table.ecsv")
    p.add_argument("--keep-fold-models", action="store_true",
                   help="save each fold's network under RESULTS/PROFILE/models (grouped mode)")
    p.add_argument("--allow-download", action="store_true",
                   help="let Keras download ImageNet weights (otherwise cached weights, hed-vgg16 for "
                        "VGG16, or random frozen backbones, said so in the table)")
    p.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    p.set_defaults(run=_run_cv)


def _run_cv(args) -> int:
    from .cv import default_row, results_table, run_rows, weights_note
    from .dataset import default_data_dir, get_dataset
    from .files import check_output, check_table_path, results_dir, write_table

    settings = _profile(args.profile)
    check_output(check_table_path(args.out), what="--out", csv_columns=("model", "split"))
    rows = [default_row(name, allow_download=args.allow_download) for name in dict.fromkeys(args.models)]
    if any(row.weights == "imagenet" for row in rows):  # fail now, not after the dataset is made
        from .models import BACKBONES, resolve_backbone_weights

        for row in rows:
            if row.weights == "imagenet":
                resolve_backbone_weights(BACKBONES[row.name], "imagenet")
    out = results_dir(args.profile, args.results_dir)
    data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
    dataset = get_dataset(settings.simulation, data_dir)

    def progress(message: str) -> None:
        print(message, file=sys.stderr)

    results = run_rows(rows, dataset, training=settings.training, n_splits=args.folds or settings.cv_folds,
                       out_dir=out / "cv", modes=tuple(args.modes), seed=args.seed,
                       model_dir=out / "models" if args.keep_fold_models else None,
                       cache_dir=Path(data_dir) / "features", progress=progress)
    table = results_table(results)
    table["weights"] = [weights_note(r) for r in rows for _ in args.modes]
    path = write_table(table, args.out or out / "cv_table.ecsv")
    show = table["model", "split", "weights", "roc_auc", "roc_auc_std", "f1", "tpr0", "tpr10", "seconds"]
    for col in show.colnames[3:]:
        show[col].format = ".0f" if col == "seconds" else ".3f"
    show.pprint_all()
    print(f"table written to {path}")
    return 0


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------
def _add_inspect(sub) -> None:
    from .inspect.cli import DESCRIPTION, EPILOG, HELP, configure_parser

    configure_parser(sub.add_parser("inspect", help=HELP, description=DESCRIPTION, epilog=EPILOG))


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lenslib", description="Find strong gravitational lenses with deep learning.",
        epilog="Run 'lenslib COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"lenslib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_scan(sub)
    _add_predict(sub)
    _add_simulate(sub)
    _add_train_finder(sub)
    _add_cv(sub)
    _add_inspect(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"lenslib: warning: {message}", file=sys.stderr)


def _bad_input() -> tuple:
    """The exceptions that mean bad input, not a bug: lenslib's own input errors (dataset errors
    included), an ``OSError`` of a file, and unavailable weights (only if lenslib.models was
    imported: then it is the module that raised them)."""
    from .errors import InputError

    kinds = [InputError, OSError]
    models = sys.modules.get("lenslib.models")
    if models is not None:
        kinds.append(models.WeightsUnavailableError)
    return tuple(kinds)


def main(argv: list[str] | None = None) -> int:
    """Run the ``lenslib`` command; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except Exception as err:
            if not isinstance(err, _bad_input()):
                raise
            message = " ".join(str(err).split())  # one line, whatever a dependency's message held
            print(f"lenslib {args.command}: error: {message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            resumable = args.command in ("scan", "train-finder")
            hint = "; run the same command again to resume" if resumable else ""
            print(f"lenslib {args.command}: interrupted{hint}", file=sys.stderr)
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
