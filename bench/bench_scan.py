"""Survey-scan throughput and memory.

Prints, for a mock mosaic written to FITS and scanned memory-mapped (the shipped finder by
default, stride 50):

- the normalisation's rate, :func:`lenslib.normalize` against :func:`lenslib.preprocess.normalize_reference`
  (the same numbers, computed plainly: the baseline, measured in this run), after checking that
  the two agree bit for bit on the mosaic's cutouts;
- the model's bare inference rate: the network alone (``predict_on_batch``, batch by batch) on
  the mosaic's own cutouts, already cut out and normalised, in this process (the baseline,
  measured in this run), and the rate of ``lenslib.predict`` on the same cutouts (the training
  normalisation + the network), so that what the scan adds (tiling, reading, merging) shows
  apart from what normalising costs;
- scan throughput in one process and on a 2-worker Dask LocalCluster (cluster started and the
  model loaded on its workers before the clock starts), as cutouts/s and as a ratio to the bare
  rate (issue 12's target: 0.9 or better with the shipped finder);
  the three are measured in turn ``--rounds`` times and each scan is compared with the bare rate
  measured just before it, since the load of a shared machine changes from minute to minute;
- with ``--survey SIZE`` only: the cost of the pass over the whole image that every scan makes
  before scoring (read band by band, find the pixels with no data, and, with a checkpoint, a
  blake2b hash of every pixel: the checkpoint's fingerprint), on a SIZE x SIZE float32 FITS file
  read memory-mapped, against the time ``lenslib.predict`` (LensFlow) takes to score that image's
  tiles at the rate measured in the same run;
- with ``--refine SCORE`` only: a plain scan against a refined one (``lenslib scan --refine``:
  tiles scoring at least SCORE scored again over all eight flips and quarter turns) on four
  4000x4000 mock mosaics with 40 lenses and 80 look-alikes each: lenses found, look-alikes and
  other false positives at a threshold of 0.5, tiles refined, and the refined scan's time as a
  ratio to the plain one's (the baseline, measured in this run on the same mosaics);
- peak memory of a scan, each in a fresh process, at two mosaic sizes: the peak of anonymous
  resident memory (sampled every 20 ms; the memory-mapped image's pages are file cache that the
  kernel reclaims at will, so they are not counted) and, for reference, the peak resident set
  (VmHWM), which includes the mapped file pages touched.

    python bench/bench_scan.py                  # 3000x3000 throughput, memory at 2000 and 4000
    python bench/bench_scan.py --model lensflow # the same with an untrained LensFlow
    python bench/bench_scan.py --size 4000 --memory-sizes 2000 6000
    python bench/bench_scan.py --survey 4000
    python bench/bench_scan.py --refine 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

STRIDE = 50
BATCH = 256


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class AnonPeak:
    """Peak of RssAnon (private resident memory), sampled in a background thread."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("RssAnon") or 0)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("RssAnon") or 0)


def make_inputs(size: int, directory: Path, seed: int = 0) -> Path:
    from lenslib.mosaic import make_mosaic

    path = directory / f"mosaic-{size}.fits"
    if not path.exists():
        n = max(2, size // 400)
        make_mosaic((size, size), n_lenses=n, n_lookalikes=n, seed=seed).to_fits(path)
    return path


def tile_cutouts(fits_path: Path, n: int = 2048) -> np.ndarray:
    """The first ``n`` tiles of the mosaic's scan (e-/s)."""
    from lenslib.scan import read_image, tile_grid

    hdul, data, _, _ = read_image(fits_path)
    grid = tile_grid(data.shape, stride=STRIDE)
    corners = [(y, x) for y in grid.y0 for x in grid.x0][:n]
    cutouts = np.stack([np.asarray(data[y:y + 100, x:x + 100], dtype=np.float32) for y, x in corners])
    hdul.close()
    return cutouts


def bare_rate(model, x: np.ndarray) -> float:
    """Cutouts/s of the network alone (``predict_on_batch``, batch by batch, as
    ``lenslib.predict`` calls it) on cutouts already cut out and normalised."""
    model.predict_on_batch(x[:BATCH])  # warm up
    start = time.perf_counter()
    for i in range(0, len(x), BATCH):
        np.asarray(model.predict_on_batch(x[i:i + BATCH]))
    return len(x) / (time.perf_counter() - start)


def normalize_rate(function, cutouts: np.ndarray) -> float:
    """Cutouts/s of a normalisation, batch by batch as ``lenslib.predict`` calls it."""
    start = time.perf_counter()
    for i in range(0, len(cutouts), BATCH):
        function(cutouts[i:i + BATCH])
    return len(cutouts) / (time.perf_counter() - start)


def predict_rate(model, cutouts: np.ndarray) -> float:
    """Cutouts/s of ``lenslib.predict`` (normalisation + network) on cutouts already cut out."""
    from lenslib.models import predict

    start = time.perf_counter()
    predict(model, cutouts, batch_size=BATCH)
    return len(cutouts) / (time.perf_counter() - start)


def scan_rate(model, fits_path: Path, **kwargs) -> tuple[float, int]:
    """Cutouts/s of a whole scan (read, tile, normalise, score, merge) of a FITS file."""
    from lenslib.scan import scan_fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        table = scan_fits(fits_path, model, stride=STRIDE, batch_size=BATCH, progress=False, **kwargs)
        wall = time.perf_counter() - start
    return table.meta["n_scored"] / wall, table.meta["n_scored"]


def _preload(load, path) -> None:
    load(path)


def measure_rounds(model, model_path: Path, fits_path: Path, rounds: int) -> dict[str, list[float]]:
    """Bare, one-process and Dask rates, measured in turn ``rounds`` times: on a shared machine the
    load changes from minute to minute, so each scan is compared with the bare rate measured
    just before it."""
    from dask.distributed import Client

    from lenslib.preprocess import normalize, normalize_reference
    from lenslib.scan.scoring import local_cluster
    from lenslib.scan.scoring import worker_model as _worker_model

    cutouts = tile_cutouts(fits_path)
    x = normalize(cutouts)[..., None]
    if not np.array_equal(x[..., 0], normalize_reference(cutouts)):
        raise AssertionError("normalize and normalize_reference disagree on the mosaic's cutouts")
    rates: dict[str, list[float]] = {"bare": [], "predict": [], "single": [], "bare_d": [], "dask": [],
                                     "tiles": [], "norm": [], "norm_ref": []}
    with local_cluster(2) as cluster, Client(cluster) as client:
        client.run(_preload, _worker_model, str(model_path))  # every worker loads it before timing
        for _ in range(rounds):
            rates["norm_ref"].append(normalize_rate(normalize_reference, cutouts))
            rates["norm"].append(normalize_rate(normalize, cutouts))
            rates["bare"].append(bare_rate(model, x))
            rates["predict"].append(predict_rate(model, cutouts))
            rate, n = scan_rate(model, fits_path)
            rates["single"].append(rate)
            rates["tiles"].append(n)
            rates["bare_d"].append(bare_rate(model, x))
            rates["dask"].append(scan_rate(str(model_path), fits_path, scheduler=client)[0])
    return rates


def memory_child(fits_path: str, model_path: str) -> None:
    """Run in a fresh process: scan and print peak memory as JSON."""
    from lenslib.models import load_model

    model = load_model(model_path)
    with AnonPeak() as anon:
        rate, n = scan_rate(model, Path(fits_path))
    print(json.dumps({"anon_peak_mib": anon.peak / 1024, "hwm_mib": (_status_kib("VmHWM") or 0) / 1024,
                      "tiles": n, "rate": rate}))


def memory_of(size: int, fits_path: Path, model_path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--memory-child", str(fits_path), str(model_path)],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["size"] = size
    return result


def _spread(values, fmt: str = ".0f") -> str:
    values = np.asarray(values, dtype=float)
    return f"{np.median(values):{fmt}} [{values.min():{fmt}}-{values.max():{fmt}}]"


def survey_cost(size: int, directory: Path, rounds: int = 3) -> None:
    """Time the pre-scoring pass (no-data count and fingerprint hash) on a memory-mapped FITS
    image against the time scoring its tiles takes."""
    from astropy.io import fits

    from lenslib.models import build_model, predict
    from lenslib.scan import read_image, tile_grid
    from lenslib.scan.tiles import ImageSource as _Source
    from lenslib.scan.tiles import survey as _survey

    path = directory / f"noise-{size}.fits"
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    image[:, : size // 20] = 0.0  # a zero-filled edge, so that the zero-run search has work to do
    fits.PrimaryHDU(image).writeto(path)
    del image
    hdul, data, _, _ = read_image(path)
    src = _Source(data)
    times = {"count": [], "count+hash": []}
    for _ in range(rounds):
        for key, digest in (("count", False), ("count+hash", True)):
            start = time.perf_counter()
            _survey(src, digest=digest)
            times[key].append(time.perf_counter() - start)
    n_tiles = tile_grid(data.shape, stride=STRIDE).n_tiles
    hdul.close()
    model = build_model("lensflow")
    cutouts = np.random.default_rng(1).normal(0.0, 1.0, (3 * BATCH, 100, 100)).astype(np.float32)
    predict(model, cutouts[:BATCH], batch_size=BATCH)  # warm up
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        predict(model, cutouts, batch_size=BATCH)
        rates.append(len(cutouts) / (time.perf_counter() - start))
    scoring = n_tiles / float(np.median(rates))
    mib = path.stat().st_size / 2**20
    print(f"{size}x{size} float32 FITS ({mib:.0f} MiB, memory-mapped), {n_tiles} tiles at stride {STRIDE}; "
          f"lenslib.predict (LensFlow) {_spread(rates)} cutouts/s, so scoring takes {scoring:.1f} s")
    for key, values in times.items():
        med = float(np.median(values))
        print(f"pre-scoring pass, {key:<10}: {_spread(values, '.2f')} s = "
              f"{100 * med / scoring:.1f}% of scoring")


def refine_comparison(model, refine: float, *, n_mosaics: int = 4, size: int = 4000, threshold: float = 0.5):
    """A plain scan against a refined one on ``n_mosaics`` mock mosaics with known answers."""
    from lenslib.mosaic import evaluate_scan, make_mosaic
    from lenslib.scan import score_tiles

    totals = {name: dict.fromkeys(("seconds", "found", "lookalikes", "false", "refined", "tiles"), 0.0)
              for name in ("plain", "refined")}
    n_lenses = 0
    for seed in range(100, 100 + n_mosaics):
        mosaic = make_mosaic((size, size), n_lenses=40, n_lookalikes=80, seed=seed)
        n_lenses += 40
        for name, extra in (("plain", {}), ("refined", {"refine": refine})):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tiles = score_tiles(mosaic.data, model, stride=STRIDE, batch_size=BATCH, progress=False,
                                    **extra)
            seconds = time.perf_counter() - start
            row = evaluate_scan(tiles, mosaic.truth, thresholds=[threshold])[0]
            for key, value in (("seconds", seconds), ("found", row["n_recovered"]),
                               ("lookalikes", row["n_lookalikes"]), ("false", row["n_false"]),
                               ("refined", tiles.n_refined), ("tiles", tiles.grid.n_tiles)):
                totals[name][key] += float(value)
    print(f"{n_mosaics} mock mosaics {size}x{size}, {n_lenses} lenses and {2 * n_lenses} look-alikes in all, "
          f"threshold {threshold}, model {model.name}")
    for name, t in totals.items():
        print(f"  {name:8s} lenses found {t['found']:.0f} / {n_lenses}, false positives {t['false']:.0f} "
              f"({t['lookalikes']:.0f} on look-alikes), tiles refined {t['refined']:.0f} / {t['tiles']:.0f}, "
              f"{t['seconds']:.1f} s")
    ratio = totals["refined"]["seconds"] / totals["plain"]["seconds"]
    print(f"  the refined scan took {ratio:.2f}x the plain one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=3000, help="mosaic side for throughput (pixels)")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=(2000, 4000),
                        help="two mosaic sides for the memory comparison")
    parser.add_argument("--model", default=None,
                        help="a .keras lens finder, a shipped finder's name, or 'lensflow' (an untrained "
                             "LensFlow; speed does not depend on the weights); default: the shipped finder")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each rate")
    parser.add_argument("--survey", type=int, default=None, metavar="SIZE",
                        help="only time the pre-scoring pass (no-data count, fingerprint hash) on a "
                             "SIZE x SIZE image against scoring")
    parser.add_argument("--refine", type=float, default=None, metavar="SCORE",
                        help="only compare a plain scan with one refined at SCORE on mock mosaics")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if args.survey:
        with tempfile.TemporaryDirectory() as tmp:
            survey_cost(args.survey, Path(tmp), args.rounds)
        return

    from lenslib.finder import DEFAULT_FINDER, SHIPPED_FINDERS, shipped_path
    from lenslib.models import build_model, load_model, save_model

    if args.refine is not None:
        refine_comparison(load_model(args.model or DEFAULT_FINDER), args.refine)
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        name = args.model or DEFAULT_FINDER
        if name == "lensflow":
            model_path = save_model(build_model("lensflow"), tmp / "lensflow.keras")
        else:
            model_path = shipped_path(name) if name in SHIPPED_FINDERS else Path(name)
        model = load_model(model_path)
        t0 = time.perf_counter()
        fits_path = make_inputs(args.size, tmp)
        print(f"mock mosaic {args.size}x{args.size}: {time.perf_counter() - t0:.1f} s to simulate")

        r = measure_rounds(model, Path(model_path), fits_path, args.rounds)
        single = np.array(r["single"]) / np.array(r["bare"])
        dask = np.array(r["dask"]) / np.array(r["bare_d"])
        print(f"model: {model.name}, {r['tiles'][0]} tiles (stride {STRIDE}, batch {BATCH}), "
              f"{os.cpu_count()} cores, {args.rounds} rounds (median, [min-max])")
        norm = np.array(r["norm"]) / np.array(r["norm_ref"])
        print(f"normalisation, as first written (baseline):        {_spread(r['norm_ref'])} cutouts/s")
        print(f"normalisation, lenslib.normalize (bit for bit the same): {_spread(r['norm'])} cutouts/s = "
              f"{_spread(norm, '.2f')} x the baseline")
        bare = _spread(r["bare"] + r["bare_d"])
        print(f"bare inference (network on normalised cutouts):     {bare} cutouts/s")
        pred = np.array(r["predict"]) / np.array(r["bare"])
        print(f"lenslib.predict (normalisation + network):          {_spread(r['predict'])} cutouts/s = "
              f"{_spread(pred, '.2f')} x bare")
        print(f"scan, one process:                  {_spread(r['single'])} cutouts/s = "
              f"{_spread(single, '.2f')} x bare = "
              f"{_spread(np.array(r['single']) / np.array(r['predict']), '.2f')} x lenslib.predict")
        print(f"scan, Dask LocalCluster, 2 workers: {_spread(r['dask'])} cutouts/s = "
              f"{_spread(dask, '.2f')} x bare")

        for size in args.memory_sizes:
            path = make_inputs(size, tmp)
            mem = memory_of(size, path, Path(model_path))
            mib = path.stat().st_size / 2**20
            print(f"memory, {size}x{size} mosaic ({mib:.0f} MiB FITS, {mem['tiles']} tiles): "
                  f"peak anonymous {mem['anon_peak_mib']:.0f} MiB, peak RSS incl. mapped file "
                  f"{mem['hwm_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
