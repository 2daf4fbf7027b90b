"""``lenslib inspect``: write a grading page of candidates, or merge inspectors' grades.

``lenslib.cli`` wires it as a subcommand::

    from .inspect.cli import DESCRIPTION, EPILOG, HELP, configure_parser
    configure_parser(sub.add_parser("inspect", help=HELP, description=DESCRIPTION, epilog=EPILOG))

Bad input raises :class:`lenslib.errors.InputError` (or ``OSError``), which ``lenslib.cli.main``
turns into a one-line message and exit status 2.  Outputs are checked before any work: an output
is never an input, and an existing one is replaced only if lenslib wrote it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..argtypes import hdu, positive_int

HELP = "grade candidates by eye on a static page, or merge inspectors' grades"
DESCRIPTION = (
    "Write a grading page (one HTML file and PNG stamps, opened from disk: no server, no network) "
    "of a candidate catalog: each candidate under an arcsinh, a linear and a lens-light-subtracted "
    "stretch, graded A/B/C/X with the keyboard; grades are kept in the browser and exported as CSV "
    "or ECSV.  With --merge, combine several inspectors' exports into one table of mean grades "
    "(A=3, B=2, C=1, X=0, skip left out).")
EPILOG = ("examples: lenslib inspect candidates.ecsv --image mosaic.fits --out grades/ ; "
          "lenslib inspect --merge alice.csv bob.csv --out merged.ecsv")


#: The first columns of a merged table: how a CSV that lenslib wrote is recognised (to replace it).
MERGED_CSV_COLUMNS = ("id", "mean_grade", "std_grade")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``inspect``'s arguments to ``parser`` and set its ``run``."""
    parser.add_argument("catalog", type=Path, nargs="?", default=None,
                        help="the candidate catalog (.fits, .ecsv or .csv; lenslib scan's --out)")
    parser.add_argument("--image", type=Path, default=None,
                        help="the FITS image the catalog was found in (cutouts at cutout_x0/cutout_y0)")
    parser.add_argument("--cutouts", type=Path, default=None,
                        help="instead of --image: a .npy or FITS file of one cutout per catalog row")
    parser.add_argument("--hdu", type=hdu, default=None, help="the HDU of --image or --cutouts")
    parser.add_argument("--out", type=Path, required=True,
                        help="the page's folder (index.html and stamps/); with --merge, the merged "
                             "table (.ecsv, .csv or .fits)")
    parser.add_argument("--saliency", action="store_true",
                        help="add the finder's integrated-gradients saliency stamp (needs --model)")
    parser.add_argument("--model", type=Path, default=None, help="the finder's .keras file (for --saliency)")
    parser.add_argument("--truth", default=None, metavar="COLUMN",
                        help="a catalog column of known truth: the page tabulates the grades against it")
    parser.add_argument("--top", type=positive_int, default=None, metavar="N",
                        help="only the N best-scoring candidates")
    parser.add_argument("--title", default=None, help="the page's title")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="EXPORT",
                        help="merge these grade exports (.csv or .ecsv, one per inspector) into --out")
    parser.set_defaults(run=run)


def _run_merge(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..files import check_output, check_table_path, write_table
    from .merge import merge_grades

    page_options = [f"--{n}" for n in ("image", "cutouts", "model", "truth", "top", "title", "hdu")
                    if getattr(args, n) is not None] + (["--saliency"] if args.saliency else [])
    if args.catalog is not None or page_options:
        extra = ", ".join(([str(args.catalog)] if args.catalog is not None else []) + page_options)
        raise InputError(f"--merge takes grade exports and --out only (got also {extra})")
    out = check_table_path(args.out)
    check_output(out, args.merge, what="--out", csv_columns=MERGED_CSV_COLUMNS)
    table = merge_grades(args.merge)
    write_table(table, out)
    print(f"{len(table)} candidate(s) graded by {len(args.merge)} inspector(s) merged into {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``lenslib inspect``; returns the exit status."""
    from ..errors import InputError
    from .sources import inspect_catalog

    if args.merge is not None:
        return _run_merge(args)
    if args.catalog is None:
        raise InputError("give a candidate catalog (with --image or --cutouts), or --merge EXPORTS")
    if args.out.suffix.lower() in (".html", ".htm", ".csv", ".ecsv", ".fits", ".fit"):
        raise InputError(f"--out {args.out} names a file, but a page is a folder (index.html and stamps/): "
                         "give a folder name (or use --merge to write a table)")
    page = inspect_catalog(args.catalog, args.out, image=args.image, cutouts=args.cutouts, hdu=args.hdu,
                           model=args.model, saliency=args.saliency, truth=args.truth, top=args.top,
                           title=args.title)
    print(f"grading page written to {page} (open it in a browser; grades are kept there, export them "
          "with the button or the key e)")
    return 0
