"""Does building the eight flips and quarter turns into the network help?  A probe, not shipped.

The shipped finder's score moves when a cutout is turned or flipped, and averaging its eight
views gains more than any other change tried (bench/README.md).  A network can be made
*exactly* invariant to them instead: group convolutions over the dihedral group p4m (Cohen and
Welling 2016), each filter used in its eight orientations, the orientations pooled at the end.
This script builds such a network with the shipped finder's layout and computation (a stem and
three residual stages, each channel of 2/4/8/16 carried in eight orientations = 16/32/64/128
feature maps, 8x fewer weights), with every stride-2 step placed so that a turned cutout's
sampling grid maps onto itself (even sides: a 4x4 or 2x2 window after symmetric padding; odd
sides: 3x3 'same'), checks the invariance, and trains both networks from random weights on
the same shards for the same images seen, then scores them on v10's calibration sky.

    python bench/probe_equivariant.py --data-dir D --epochs 16     # about 30 min on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

G = 8  # group element e = 4 m + r acts as fliplr^m(rot90^r(.)) on the spatial axes


def _act(a, e, axes=(0, 1)):
    m, r = divmod(e, 4)
    a = np.rot90(a, r, axes=axes)
    return np.flip(a, axis=axes[1]) if m else a


def _group_tables() -> tuple[np.ndarray, np.ndarray]:
    """Composition (a after b) and inverse of p4m's elements, found by acting on a test array."""
    probe = np.random.default_rng(0).normal(size=(5, 5))
    acted = [_act(probe, e) for e in range(G)]

    def index(a):
        return next(i for i, b in enumerate(acted) if np.allclose(a, b))

    compose = np.array([[index(_act(_act(probe, b), a)) for b in range(G)] for a in range(G)])
    inverse = np.array([next(b for b in range(G) if compose[a, b] == 0) for a in range(G)])
    return compose, inverse


def build_p4m_finder(widths=(2, 4, 8, 16), *, seed: int = 0):
    """The finder's layout with p4m group convolutions; invariant to flips and quarter turns."""
    import keras
    from keras import layers, ops

    compose, inverse = _group_tables()

    class GroupConv(layers.Layer):
        """A lifting (image -> orientations) or group convolution; output channel c * G + g."""

        def __init__(self, filters, size, strides=1, padding="same", lifting=False, seed=0, **kw):
            super().__init__(**kw)
            self.filters, self.size, self.strides, self.padding = filters, size, strides, padding
            self.lifting, self.seed = lifting, seed

        def build(self, shape):
            c_in = shape[-1] if self.lifting else shape[-1] // G
            kshape = (self.size, self.size, c_in) + (() if self.lifting else (G,)) + (self.filters,)
            std = np.sqrt(2.0 / (self.size ** 2 * c_in * (1 if self.lifting else G)))
            self.w = self.add_weight(shape=kshape, name="kernel",
                                     initializer=keras.initializers.RandomNormal(stddev=std, seed=self.seed))
            # Which base weight each entry of the full kernel is: out g, in h uses T_g K[g^-1 h].
            ids = np.arange(int(np.prod(kshape))).reshape(kshape)
            full = [_act(ids if self.lifting else np.take(ids, compose[inverse[g]], axis=3), g)
                    .reshape(self.size, self.size, -1, self.filters) for g in range(G)]
            self.ids = np.stack(full, axis=-1).reshape(self.size, self.size, -1, self.filters * G)

        def call(self, x):
            kernel = ops.take(ops.reshape(self.w, (-1,)), self.ids)
            return ops.conv(x, kernel, strides=self.strides, padding=self.padding)

    class GroupNorm(layers.Layer):
        """Batch normalisation per channel, shared by its eight orientations."""

        def build(self, shape):
            self.c = shape[-1] // G
            self.bn = layers.BatchNormalization(axis=-2)
            self.bn.build((None, None, None, self.c, G))

        def call(self, x, training=None):
            s = ops.shape(x)
            return ops.reshape(self.bn(ops.reshape(x, (s[0], s[1], s[2], self.c, G)), training=training), s)

    seeds = iter(range(seed * 100, seed * 100 + 100))

    def block(x, c, name):
        if x.shape[1] % 2 == 0:  # even side: symmetric windows of 4 (main) and 2 (shortcut)
            y = layers.ZeroPadding2D(1)(x)
            y = GroupConv(c, 4, 2, "valid", seed=next(seeds), name=f"{name}_conv1")(y)
            s = GroupConv(c, 1, seed=next(seeds), name=f"{name}_project")(layers.AveragePooling2D(2)(x))
        else:  # odd side: centred 3x3 'same' and 1x1 windows
            y = GroupConv(c, 3, 2, "same", seed=next(seeds), name=f"{name}_conv1")(x)
            s = GroupConv(c, 1, 2, "valid", seed=next(seeds), name=f"{name}_project")(x)
        y = layers.ReLU()(GroupNorm(name=f"{name}_bn1")(y))
        y = GroupNorm(name=f"{name}_bn2")(GroupConv(c, 3, seed=next(seeds), name=f"{name}_conv2")(y))
        return layers.ReLU()(layers.Add()([y, GroupNorm(name=f"{name}_project_bn")(s)]))

    x = inputs = keras.Input((100, 100, 1), name="cutout")
    x = layers.ZeroPadding2D(2)(x)
    x = GroupConv(widths[0], 6, 2, "valid", lifting=True, seed=next(seeds), name="stem")(x)
    x = layers.ReLU()(GroupNorm(name="stem_bn")(x))  # 50x50
    for stage, c in enumerate(widths[1:], start=1):
        x = block(x, c, f"stage{stage}")  # 25, 13, 7
    x = layers.Reshape((widths[-1], G))(layers.GlobalAveragePooling2D()(x))
    x = layers.Concatenate()([layers.GlobalAveragePooling1D(data_format="channels_first")(x),
                              layers.GlobalMaxPooling1D(data_format="channels_first")(x)])
    return keras.Model(inputs, layers.Dense(2, activation="softmax", name="softmax")(x), name="p4m_finder")


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
    from lenslib.models.io import predict_normalized

    x = np.random.default_rng(1).normal(size=(4, 100, 100, 1)).astype("float32")
    probe = build_p4m_finder()
    worst = max(float(np.abs(probe.predict(np.ascontiguousarray(_act(x, e, (1, 2))), verbose=0)
                             - probe.predict(x, verbose=0)).max()) for e in range(G))
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
        model = build_finder(seed=recipe.seed) if name == "finder" else build_p4m_finder(seed=1)
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
