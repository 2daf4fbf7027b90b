"""Simulation throughput and the cost of assembling a dataset.

Prints:
- a baseline: lenstronomy's SimAPI making simple SIE+Sersic 100x100 images (no supersampling,
  Gaussian PSF, no field), on one core, measured in this run;
- our realistic images (the full lens / non-lens mix with fields, clumps and augmentation),
  written to HDF5 on one and on two cores, as images/s and as a ratio to the baseline;
- with ``--full``: wall time and peak memory of assembling the full 28,239-image dataset.

    python bench/bench_simulate.py            # about a minute
    python bench/bench_simulate.py --full     # adds the full dataset (a few minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from lenslib.config import get_profile
from lenslib.dataset import assemble


def baseline_simapi(n: int = 300) -> float:
    """Images/s of lenstronomy's SimAPI for a plain SIE + Sersic lens, one core."""
    from lenstronomy.SimulationAPI.sim_api import SimAPI

    kwargs_band = {"read_noise": 4.2, "pixel_scale": 0.05, "ccd_gain": 1.0, "exposure_time": 2000.0,
                   "sky_brightness": 22.2, "magnitude_zero_point": 25.94, "num_exposures": 4,
                   "seeing": 0.095, "psf_type": "GAUSSIAN"}
    model = {"lens_model_list": ["SIE"], "lens_light_model_list": ["SERSIC_ELLIPSE"],
             "source_light_model_list": ["SERSIC_ELLIPSE"]}
    sim = SimAPI(num_pix=100, kwargs_single_band=kwargs_band, kwargs_model=model)
    image_model = sim.image_model_class({"supersampling_factor": 1})
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(n):
        kl = [{"theta_E": rng.uniform(0.5, 2.0), "e1": 0.05, "e2": 0.0, "center_x": 0, "center_y": 0}]
        kll = [{"magnitude": 19.0, "R_sersic": 0.6, "n_sersic": 4, "e1": 0.05, "e2": 0, "center_x": 0,
                "center_y": 0}]
        ks = [{"magnitude": 23.0, "R_sersic": 0.2, "n_sersic": 1, "e1": 0.1, "e2": 0,
               "center_x": rng.uniform(-0.2, 0.2), "center_y": 0.0}]
        kll, ks, _ = sim.magnitude2amplitude(kll, ks, None)
        image = image_model.image(kl, ks, kll, None)
        image + sim.noise_for_model(image)
    return n / (time.perf_counter() - start)


def assembly_rate(config, workers: int, directory: Path) -> tuple[float, float]:
    start = time.perf_counter()
    assemble(config, directory / f"bench-{workers}.h5", workers=workers, progress=False)
    wall = time.perf_counter() - start
    return config.n_images / wall, wall


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child, in MB."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also assemble the full dataset")
    parser.add_argument("--images", type=int, default=1200, help="images for the throughput runs")
    args = parser.parse_args()

    full = get_profile("full").simulation
    # The full mix, scaled down: same kinds, same augmentation, fewer images.
    frac = args.images / full.n_images
    sample = dataclasses.replace(full, n_lenses=max(3, round(full.n_lenses * frac)),
                                 n_nonlenses=max(3, round(full.n_nonlenses * frac)))
    print(f"cores available: {os.cpu_count()}")
    base = baseline_simapi()
    print(f"baseline  lenstronomy SimAPI, simple SIE+Sersic, 1 core : {base:8.1f} images/s")
    with tempfile.TemporaryDirectory() as tmp:
        one, _ = assembly_rate(sample, 1, Path(tmp))
        two, _ = assembly_rate(sample, 2, Path(tmp))
    parents = 1 + sample.augment_copies
    print(f"lenslib   full mix + augmentation -> HDF5, 1 core       : {one:8.1f} images/s "
          f"({one / parents:.1f} simulated parents/s; {one / base:.2f}x the baseline)")
    print(f"lenslib   full mix + augmentation -> HDF5, 2 cores      : {two:8.1f} images/s "
          f"({two / one:.2f}x one core)")
    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            rate, wall = assembly_rate(full, os.cpu_count() or 1, Path(tmp))
            size = (Path(tmp) / f"bench-{os.cpu_count() or 1}.h5").stat().st_size / 1e9
        me, kids = peak_rss_mb()
        print(f"full dataset ({full.n_images} images, {os.cpu_count()} cores): {wall:6.1f} s wall, "
              f"{rate:.1f} images/s, file {size:.2f} GB")
        print(f"peak memory: writer process {me:.0f} MB, largest worker {kids:.0f} MB")


if __name__ == "__main__":
    main()
