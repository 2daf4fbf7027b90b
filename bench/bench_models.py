"""Benchmark every lenslib model on this machine, and the frozen fast path against end-to-end
frozen training.

For each model (random weights, 100x100 cutouts, batch 32): parameters, training images/s with
every layer training (the ``finetune``/``scratch`` cost), inference images/s, and the peak
memory of a process that builds, trains and runs it (host RSS; GPU peak too when there is one).
Each model runs in its own process so that peaks do not mix.

Then, in one process on a simulated dataset: the same frozen model trained end to end and by the
fast path (features computed once, then only the head trains), with the same epochs; the ratio
of the two times is printed, with the warm-cache case (a second cross-validation fold) too.

    python bench/bench_models.py            # 3 timed steps per model; the quick profile's 2823 images
    python bench/bench_models.py --quick    # 1 timed step; 600 images (about 8 minutes on 2 cores)
    python bench/bench_models.py --models lensflow xception --skip-ratio
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 32
SIZE = 100


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _gpu_peak_mb() -> float | None:
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def measure_one(name: str, steps: int) -> dict:
    """Build ``name``, time ``steps`` training and inference batches after one warm-up each."""
    import numpy as np

    from lenslib.models import BACKBONES, build_model, make_optimizer

    regime = "finetune" if name in BACKBONES else "scratch"
    model = build_model(name, regime=regime, weights=None, input_shape=(SIZE, SIZE, 1))
    model.compile(optimizer=make_optimizer("adam"), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype(np.float32)
    y = rng.integers(0, 2, BATCH)
    model.train_on_batch(x, y)  # trace and warm up
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    train_rate = steps * BATCH / (time.perf_counter() - start)
    model.predict_on_batch(x)
    start = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(x)
    infer_rate = steps * BATCH / (time.perf_counter() - start)
    return {"model": name, "params_M": model.count_params() / 1e6, "train_img_s": train_rate,
            "infer_img_s": infer_rate, "peak_rss_MB": _peak_rss_mb(), "gpu_peak_MB": _gpu_peak_mb()}


def measure_ratio(model_name: str, n_images: int | None, epochs: int) -> dict:
    """End-to-end frozen training against the fast path, same model, data, epochs and seed, on
    the quick profile's dataset (or one of ``n_images`` simulated with the same settings)."""
    import tensorflow as tf

    from lenslib.config import get_profile
    from lenslib.dataset import get_dataset
    from lenslib.models import build_model
    from lenslib.train import fit

    prof = get_profile("quick")
    sim = prof.simulation
    if n_images is not None:
        n_lenses = n_images // 2
        sim = dataclasses.replace(sim, n_lenses=n_lenses, n_nonlenses=n_images - n_lenses)
    with tempfile.TemporaryDirectory() as tmp:
        data = get_dataset(sim, tmp, workers=os.cpu_count() or 1, progress=False)
        config = dataclasses.replace(prof.training, epochs=epochs, patience=epochs, upsample=1)

        def model():
            tf.keras.utils.set_random_seed(0)  # the same random backbone for both
            return build_model(model_name, regime="frozen", weights=None, input_shape=(SIZE, SIZE, 1))

        e2e = fit(model(), data, config=config, fast_path=False)
        cold = fit(model(), data, config=config, fast_path=True, cache_dir=tmp)
        warm = fit(model(), data, config=config, fast_path=True, cache_dir=tmp)
        same = max(abs(a - b) for a, b in zip(e2e.history["val_loss"], cold.history["val_loss"]))
    return {"model": model_name, "images": len(data), "epochs": epochs,
            "end_to_end_s": e2e.seconds, "fast_cold_s": cold.seconds, "fast_warm_s": warm.seconds,
            "ratio_cold": e2e.seconds / cold.seconds, "ratio_warm": e2e.seconds / warm.seconds,
            "max_val_loss_difference": same, "device": e2e.device}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    from lenslib.models import MODEL_NAMES

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("LENSLIB_BENCH_QUICK")),
                        help="1 timed step per model, 600 images for the ratio (also $LENSLIB_BENCH_QUICK)")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--ratio-model", default="xception", choices=MODEL_NAMES[2:])
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the fast-path comparison")
    parser.add_argument("--ratio-images", type=int, default=None,
                        help="images of the fast-path comparison (default: the quick profile's 2823; "
                             "600 with --quick)")
    parser.add_argument("--skip-ratio", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--ratio", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps = 1 if args.quick else 3
    n_images = args.ratio_images if args.ratio_images is not None else (600 if args.quick else None)

    if args.one:
        print(json.dumps(measure_one(args.one, steps)))
        return 0
    if args.ratio:
        print(json.dumps(measure_ratio(args.ratio_model, n_images, args.epochs)))
        return 0

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print(f"lenslib model benchmark: {'GPU ' + gpus[0].name if gpus else 'CPU'}, {os.cpu_count()} cores, "
          f"TensorFlow {tf.__version__}, batch {BATCH}, {SIZE}x{SIZE} cutouts, {steps} timed step(s)")
    print(f"{'model':<18}{'params':>9}{'train img/s':>13}{'infer img/s':>13}{'peak RSS':>11}{'GPU peak':>10}")
    for name in args.models:
        r = _child(["--one", name] + (["--quick"] if args.quick else []))
        gpu = "" if r["gpu_peak_MB"] is None else f"{r['gpu_peak_MB']:.0f} MB"
        print(f"{name:<18}{r['params_M']:>8.1f}M{r['train_img_s']:>13.1f}{r['infer_img_s']:>13.1f}"
              f"{r['peak_rss_MB']:>8.0f} MB{gpu:>10}", flush=True)
    if not args.skip_ratio:
        extra = [] if n_images is None else ["--ratio-images", str(n_images)]
        r = _child(["--ratio", "--ratio-model", args.ratio_model, "--epochs", str(args.epochs), *extra])
        print(f"\nfrozen {r['model']}, {r['images']} simulated images, {r['epochs']} epochs, {r['device']}:")
        print(f"  end-to-end frozen training      {r['end_to_end_s']:8.1f} s")
        print(f"  fast path, features computed    {r['fast_cold_s']:8.1f} s   ratio {r['ratio_cold']:.1f}x")
        print(f"  fast path, features cached      {r['fast_warm_s']:8.1f} s   ratio {r['ratio_warm']:.1f}x")
        print(f"  largest validation-loss difference between the two: {r['max_val_loss_difference']:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
