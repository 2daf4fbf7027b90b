"""Run configurations: the camera, the simulated sky and the three profiles.

Every configuration is a frozen dataclass validated on construction, so a bad value fails
at once with a ``ValueError`` that names the field and the allowed range, not deep inside a
simulation.  Profiles (``smoke``, ``quick``, ``full``) change sizes, never logic.

A dataset is identified by :func:`config_hash` of its :class:`SimulationConfig`; the hash also
covers :data:`SIMULATOR_VERSION`, which is bumped whenever the simulator's output changes, so a
cached file made by older code is never reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field

#: Bump when the simulator, augmentation or file layout changes what a config produces.
SIMULATOR_VERSION = "2"

#: Smallest cutout the models of :mod:`lenslib.models` accept: LensFlow's three 5x5
#: convolutions and 2x2 poolings need at least 36 pixels; we ask for a margin above that.
MIN_IMAGE_SIZE = 40
MAX_IMAGE_SIZE = 512

LENS_KINDS = ("galaxy_galaxy", "lensed_quasar")
NONLENS_KINDS = (
    "elliptical",
    "spiral",
    "ring_galaxy",
    "edge_on_disk",
    "merger",
    "companion",
    "tidal_features",
    "star",
    "double_star",
    "empty_field",
)

PROFILE_NAMES = ("smoke", "quick", "full")

#: Optimizers of the thesis's chapter 4.2, by the names :func:`lenslib.models.make_optimizer` takes.
OPTIMIZER_NAMES = ("sgd", "rmsprop", "adam", "nadam")

#: How a transfer model's input adapter brings a cutout to its backbone (see :mod:`lenslib.models`):
#: a fixed bilinear resize, or learned transposed convolutions (the thesis's "deconvolutional layers").
ADAPTER_NAMES = ("resize", "deconv")

#: PSF shapes of :mod:`lenslib.instrument`: HST's broad-band obscured Airy pattern with spider
#: spikes and charge diffusion, or a Moffat profile (a ground-based or degraded space PSF).
PSF_MODELS = ("airy", "moffat")


def _fail(owner: str, name: str, allowed: str, value) -> None:
    raise ValueError(f"{owner}.{name} must be {allowed} (got {value!r})")


def _check_range(owner, name, value, low, high, *, integer=False, low_open=False):
    ok_type = isinstance(value, int) and not isinstance(value, bool) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )
    kind = "an integer" if integer else "a finite number"
    lo = "(" if low_open else "["
    allowed = f"{kind} in {lo}{low}, {high}]"
    if not ok_type:
        _fail(owner, name, allowed, value)
    if (value <= low if low_open else value < low) or value > high:
        _fail(owner, name, allowed, value)


def _check_interval(owner, name, value, low, high):
    allowed = f"a pair (min, max) with {low} <= min <= max <= {high}"
    if not (isinstance(value, tuple) and len(value) == 2):
        _fail(owner, name, allowed, value)
    a, b = value
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)):
        _fail(owner, name, allowed, value)
    if not (low <= a <= b <= high):
        _fail(owner, name, allowed, value)


def _check_mix(owner, name, value, known):
    allowed = f"a tuple of (kind, weight) pairs with kinds from {known} and finite weights >= 0 summing > 0"
    if not isinstance(value, tuple) or not value:
        _fail(owner, name, allowed, value)
    seen = set()
    for item in value:
        if not (isinstance(item, tuple) and len(item) == 2 and item[0] in known):
            _fail(owner, name, allowed, value)
        weight = item[1]
        if (item[0] in seen or isinstance(weight, bool) or not isinstance(weight, (int, float))
                or not math.isfinite(weight) or weight < 0):
            _fail(owner, name, allowed, value)
        seen.add(item[0])
    if sum(w for _, w in value) <= 0:
        _fail(owner, name, allowed, value)


@dataclass(frozen=True)
class InstrumentConfig:
    """An HST ACS/WFC F814W-like camera at one-orbit depth.

    Sources for the defaults (ACS Instrument Handbook, Cycle 33, and the ``acszpt`` tables):
    0.05 arcsec drizzled pixels; F814W pivot wavelength 8045 Angstrom; HST primary mirror 2.4 m
    with a 0.33 linear central obscuration; WFC charge diffusion broadens the optical PSF to a
    FWHM of about 0.09-0.1 arcsec in F814W; AB zero point 25.94 mag for 1 e-/s; read noise about
    4.2 e- per exposure; an orbit split in 4 exposures of 300-600 s; the zodiacal sky in F814W
    is about 22-22.5 mag/arcsec^2 at moderate ecliptic latitudes.  lenstronomy's own HST preset
    is WFC3/IR F160W, which is why the camera is spelled out here.
    """

    pixel_scale: float = 0.05  # arcsec / pixel
    wavelength_um: float = 0.8045
    mirror_diameter_m: float = 2.4
    obscuration: float = 0.33
    charge_diffusion_fwhm: float = 0.07  # arcsec; with the Airy core gives FWHM ~0.094"
    psf_size: int = 41  # pixels, odd
    zero_point_ab: float = 25.94  # mag giving 1 e-/s
    read_noise: float = 4.2  # e- per exposure
    n_exposures: int = 4
    exposure_time_range: tuple = (1200.0, 2400.0)  # s, drawn per cutout
    sky_brightness_range: tuple = (21.9, 22.6)  # mag / arcsec^2, drawn per cutout
    psf_model: str = "airy"  # one of PSF_MODELS
    moffat_fwhm: float = 0.15  # arcsec, used when psf_model == "moffat"
    moffat_beta: float = 3.0  # Moffat wing index, used when psf_model == "moffat"

    def __post_init__(self):
        o = "InstrumentConfig"
        if self.psf_model not in PSF_MODELS:
            _fail(o, "psf_model", f"one of {PSF_MODELS}", self.psf_model)
        _check_range(o, "moffat_fwhm", self.moffat_fwhm, 0.0, 5.0, low_open=True)
        _check_range(o, "moffat_beta", self.moffat_beta, 1.0, 20.0, low_open=True)
        _check_range(o, "pixel_scale", self.pixel_scale, 0.0, 1.0, low_open=True)
        _check_range(o, "wavelength_um", self.wavelength_um, 0.1, 5.0)
        _check_range(o, "mirror_diameter_m", self.mirror_diameter_m, 0.1, 50.0)
        _check_range(o, "obscuration", self.obscuration, 0.0, 0.9)
        _check_range(o, "charge_diffusion_fwhm", self.charge_diffusion_fwhm, 0.0, 1.0)
        _check_range(o, "psf_size", self.psf_size, 5, 201, integer=True)
        if self.psf_size % 2 == 0:
            _fail(o, "psf_size", "an odd integer in [5, 201]", self.psf_size)
        _check_range(o, "zero_point_ab", self.zero_point_ab, 15.0, 35.0)
        _check_range(o, "read_noise", self.read_noise, 0.0, 100.0)
        _check_range(o, "n_exposures", self.n_exposures, 1, 1000, integer=True)
        _check_interval(o, "exposure_time_range", self.exposure_time_range, 1.0, 1e6)
        _check_interval(o, "sky_brightness_range", self.sky_brightness_range, 15.0, 30.0)


@dataclass(frozen=True)
class AugmentationConfig:
    """The thesis's five random transforms (chapter 5.1), applied to observed cutouts."""

    rotation_deg: float = 45.0  # uniform in [-r, r]
    zoom_range: tuple = (0.9, 1.0)
    shear_deg: float = 15.0  # uniform in [-s, s]
    horizontal_flip: bool = True
    vertical_flip: bool = True

    def __post_init__(self):
        o = "AugmentationConfig"
        _check_range(o, "rotation_deg", self.rotation_deg, 0.0, 180.0)
        _check_interval(o, "zoom_range", self.zoom_range, 0.5, 2.0)
        _check_range(o, "shear_deg", self.shear_deg, 0.0, 45.0)
        for name in ("horizontal_flip", "vertical_flip"):
            if not isinstance(getattr(self, name), bool):
                _fail(o, name, "True or False", getattr(self, name))


@dataclass(frozen=True)
class SimulationConfig:
    """What one dataset is: counts after augmentation, populations, camera, seed.

    ``n_lenses`` and ``n_nonlenses`` count images *after* augmentation, as the thesis's
    15,000 / 13,239 do; each simulated parent image gets ``augment_copies`` augmented
    children that share its ``parent_id``.
    """

    image_size: int = 100
    n_lenses: int = 15000
    n_nonlenses: int = 13239
    augment_copies: int = 2
    seed: int = 2018
    supersampling: int = 2
    theta_e_range: tuple = (0.5, 2.5)  # arcsec
    min_arc_snr: float = 15.0  # lensed light (and a look-alike's feature): Collett (2015) SNR
    min_arc_visibility: float = 30.0  # and SNR over the pixels where it dominates (see simulate)
    min_magnification: float = 2.0
    deflector_sigma_v_median: float = 230.0  # km/s, log-normal, 0.08 dex
    deflector_z_mean: float = 0.5  # normal, sigma 0.2, clipped to [0.1, 1.0]
    source_z_mean: float = 2.0  # normal, sigma 0.6, clipped to [z_lens + 0.3, 4.0]
    source_mag_range: tuple = (21.0, 26.5)  # unlensed I-band AB, dN/dm ~ 10^(0.3 m)
    source_r_eff_range: tuple = (0.05, 0.35)  # arcsec, uniform
    #: Share of same-population non-lenses given an unlensed neighbour with the flux and surface
    #: brightness their lensed light would have had (see lenslib.simulate.lenses).
    twin_neighbour_fraction: float = 0.0
    lens_kinds: tuple = (("galaxy_galaxy", 0.75), ("lensed_quasar", 0.25))
    #: Half the non-lenses are the lenses' own deflectors without a lensed source ("elliptical":
    #: the same population, drawn by the same code), so only the lensed light tells them apart.
    nonlens_kinds: tuple = (
        ("elliptical", 0.50),
        ("spiral", 0.06),
        ("ring_galaxy", 0.07),
        ("edge_on_disk", 0.03),
        ("merger", 0.05),
        ("companion", 0.12),
        ("tidal_features", 0.07),
        ("star", 0.03),
        ("double_star", 0.03),
        ("empty_field", 0.04),
    )
    field_density_at_24: float = 6.0e4  # galaxies brighter than I=24 per deg^2
    field_count_slope: float = 0.33  # d log10 N / d mag
    field_mag_range: tuple = (18.0, 27.5)
    star_density_per_arcmin2: float = 0.5
    artifact_probability: float = 0.1  # cosmic-ray residuals and hot pixels
    instrument: InstrumentConfig = field(default_factory=InstrumentConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)

    def __post_init__(self):
        o = "SimulationConfig"
        _check_range(o, "image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, integer=True)
        _check_range(o, "n_lenses", self.n_lenses, 1, 10_000_000, integer=True)
        _check_range(o, "n_nonlenses", self.n_nonlenses, 1, 10_000_000, integer=True)
        _check_range(o, "augment_copies", self.augment_copies, 0, 100, integer=True)
        _check_range(o, "seed", self.seed, 0, 2**63 - 1, integer=True)
        _check_range(o, "supersampling", self.supersampling, 1, 8, integer=True)
        _check_interval(o, "theta_e_range", self.theta_e_range, 0.05, 10.0)
        _check_range(o, "min_arc_snr", self.min_arc_snr, 0.0, 1000.0)
        _check_range(o, "min_arc_visibility", self.min_arc_visibility, 0.0, 1000.0)
        _check_range(o, "min_magnification", self.min_magnification, 1.0, 100.0)
        _check_range(o, "twin_neighbour_fraction", self.twin_neighbour_fraction, 0.0, 1.0)
        _check_range(o, "deflector_sigma_v_median", self.deflector_sigma_v_median, 100.0, 500.0)
        _check_range(o, "deflector_z_mean", self.deflector_z_mean, 0.1, 1.0)
        _check_range(o, "source_z_mean", self.source_z_mean, 0.5, 4.0)
        _check_interval(o, "source_mag_range", self.source_mag_range, 15.0, 32.0)
        _check_interval(o, "source_r_eff_range", self.source_r_eff_range, 0.005, 3.0)
        _check_mix(o, "lens_kinds", self.lens_kinds, LENS_KINDS)
        _check_mix(o, "nonlens_kinds", self.nonlens_kinds, NONLENS_KINDS)
        _check_range(o, "field_density_at_24", self.field_density_at_24, 0.0, 1e7)
        _check_range(o, "field_count_slope", self.field_count_slope, 0.0, 1.0)
        _check_interval(o, "field_mag_range", self.field_mag_range, 10.0, 35.0)
        _check_range(o, "star_density_per_arcmin2", self.star_density_per_arcmin2, 0.0, 1000.0)
        _check_range(o, "artifact_probability", self.artifact_probability, 0.0, 1.0)
        if not isinstance(self.instrument, InstrumentConfig):
            _fail(o, "instrument", "an InstrumentConfig", self.instrument)
        if not isinstance(self.augmentation, AugmentationConfig):
            _fail(o, "augmentation", "an AugmentationConfig", self.augmentation)
        field_of_view = self.image_size * self.instrument.pixel_scale
        if self.theta_e_range[1] > field_of_view / 2:
            _fail(o, "theta_e_range", f"at most half the field of view ({field_of_view / 2:g} arcsec)",
                  self.theta_e_range)

    @property
    def n_images(self) -> int:
        return self.n_lenses + self.n_nonlenses


@dataclass(frozen=True)
class TrainingConfig:
    """How a model is trained (:func:`lenslib.train.fit`) and how transfer models see a cutout.

    ``upsample`` is the input adapter's integer scale: a 100x100 cutout reaches the backbone as
    ``100 * upsample`` pixels a side (3 gives 300, close to the 299-331 pixels Xception,
    Inception and NASNet were trained on; 1 keeps 100, which every backbone but Xception (71) and
    Inception (75) accepts directly and which is what 2 CPU cores can afford).
    ``validation_fraction`` of the training rows, whole parent groups at a time, is held out
    for early stopping on the validation loss with ``patience`` epochs.
    """

    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    patience: int = 5
    validation_fraction: float = 0.15
    adapter: str = "resize"
    upsample: int = 3
    dropout: float = 0.5
    head_units: int = 256
    balance_classes: bool = True
    seed: int = 2018
    #: Cap on epochs for networks trained end to end (LensFlow, DeepLens, the finetune and scratch
    #: regimes), which cost 10-100x more per epoch than a head on cached features; None: ``epochs``.
    end_to_end_epochs: int | None = None

    def __post_init__(self):
        o = "TrainingConfig"
        _check_range(o, "epochs", self.epochs, 1, 10_000, integer=True)
        _check_range(o, "batch_size", self.batch_size, 1, 65_536, integer=True)
        _check_range(o, "learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
        if self.optimizer not in OPTIMIZER_NAMES:
            _fail(o, "optimizer", f"one of {OPTIMIZER_NAMES}", self.optimizer)
        _check_range(o, "patience", self.patience, 0, 10_000, integer=True)
        _check_range(o, "validation_fraction", self.validation_fraction, 0.0, 0.5, low_open=True)
        if self.adapter not in ADAPTER_NAMES:
            _fail(o, "adapter", f"one of {ADAPTER_NAMES}", self.adapter)
        _check_range(o, "upsample", self.upsample, 1, 8, integer=True)
        _check_range(o, "dropout", self.dropout, 0.0, 0.95)
        _check_range(o, "head_units", self.head_units, 1, 65_536, integer=True)
        if not isinstance(self.balance_classes, bool):
            _fail(o, "balance_classes", "True or False", self.balance_classes)
        _check_range(o, "seed", self.seed, 0, 2**31 - 1, integer=True)
        if self.end_to_end_epochs is not None:
            _check_range(o, "end_to_end_epochs", self.end_to_end_epochs, 1, 10_000, integer=True)


#: The non-lens mix of the finder's hard-negative shards: the lenses' twins and the look-alikes the
#: first finder flagged most (companions above all), none of the kinds it already rejects.
HARD_NEGATIVE_KINDS = (("elliptical", 0.30), ("companion", 0.35), ("ring_galaxy", 0.10),
                       ("spiral", 0.08), ("merger", 0.07), ("tidal_features", 0.10))


@dataclass(frozen=True)
class FinderRecipe:
    """How the lenslib finder is trained (:func:`lenslib.finder.train_finder`).

    ``train_parents`` distinct simulated images (no stored augmentation: every epoch flips,
    rotates by multiples of 90 degrees and shifts them by up to ``max_shift`` pixels on the fly),
    simulated in shards of ``shard_parents`` images, half lenses and half non-lenses, each shard
    a lenslib dataset of the default sky with ``twin_neighbour_fraction`` of its same-population
    non-lenses carrying an unlensed neighbour, then ``hard_negative_shards`` more shards whose
    non-lenses follow ``hard_negative_kinds`` (more of the look-alikes a finder confuses with
    lenses; lenses stay half of every shard).  ``validation_parents`` images of another seed are
    scored after every epoch.  Adam with a cosine-decayed ``learning_rate`` over all epochs,
    starting from random weights, or from the shipped finder ``initial_finder`` (a warm start: the
    new finder continues its training).
    """

    name: str = "lenslib-finder-v2"
    train_parents: int = 100_000
    shard_parents: int = 5_000
    validation_parents: int = 4_000
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 5e-4
    max_shift: int = 4  # pixels
    twin_neighbour_fraction: float = 0.25
    widths: tuple = (16, 32, 64, 128)  # stem, then one residual block per stage
    seed: int = 2026
    hard_negative_shards: int = 6
    hard_negative_kinds: tuple = HARD_NEGATIVE_KINDS
    initial_finder: str = "lenslib-finder-v1"  # "" trains from random weights

    def __post_init__(self):
        o = "FinderRecipe"
        if not (isinstance(self.name, str) and self.name and self.name.replace("-", "").replace(
                "_", "").replace(".", "").isalnum()):
            _fail(o, "name", "a non-empty name of letters, digits, '-', '_' or '.'", self.name)
        _check_range(o, "shard_parents", self.shard_parents, 2, 1_000_000, integer=True)
        _check_range(o, "train_parents", self.train_parents, self.shard_parents, 100_000_000, integer=True)
        _check_range(o, "validation_parents", self.validation_parents, 2, 1_000_000, integer=True)
        _check_range(o, "epochs", self.epochs, 1, 10_000, integer=True)
        _check_range(o, "batch_size", self.batch_size, 1, 65_536, integer=True)
        _check_range(o, "learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
        _check_range(o, "max_shift", self.max_shift, 0, 32, integer=True)
        _check_range(o, "twin_neighbour_fraction", self.twin_neighbour_fraction, 0.0, 1.0)
        if not (isinstance(self.widths, tuple) and len(self.widths) >= 2 and all(
                isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in self.widths)):
            _fail(o, "widths", "a tuple of at least 2 integers in [1, 4096]", self.widths)
        _check_range(o, "seed", self.seed, 0, 2**31 - 1, integer=True)
        _check_range(o, "hard_negative_shards", self.hard_negative_shards, 0, 100_000, integer=True)
        _check_mix(o, "hard_negative_kinds", self.hard_negative_kinds, NONLENS_KINDS)
        if not (isinstance(self.initial_finder, str) and self.initial_finder.replace("-", "").replace(
                "_", "").replace(".", "").isalnum() or self.initial_finder == ""):
            _fail(o, "initial_finder", "a shipped finder's name, or '' for random weights",
                  self.initial_finder)

    @property
    def n_default_shards(self) -> int:
        """Training shards of the sky's own mix (the hard-negative shards follow them)."""
        return math.ceil(self.train_parents / self.shard_parents)

    @property
    def n_shards(self) -> int:
        return self.n_default_shards + self.hard_negative_shards


@dataclass(frozen=True)
class Profile:
    """A named size for every step of the pipeline; logic is the same in all of them."""

    name: str
    simulation: SimulationConfig
    cv_folds: int = 7
    training: TrainingConfig = field(default_factory=TrainingConfig)
    #: The learnability check of :func:`lenslib.diagnostics.learnability` (notebook 01): images
    #: LensFlow trains on, its epochs, and the images of each shifted test sky.
    learnability_images: int = 6000
    learnability_epochs: int = 8
    shifted_images: int = 3000
    #: How ``lenslib train-finder`` trains the finder at this profile's size, and the size of the
    #: benchmark sky the finder chapter scores it on (:mod:`lenslib.finder.benchmark`).
    finder: FinderRecipe = field(default_factory=FinderRecipe)
    finder_test_images: int = 20_000
    #: Table 5-1 (notebook 02): networks left out at this size, and the share of the parents the
    #: frozen / fine-tuned / from-scratch comparison runs on.
    table_5_1_skip: tuple = ()
    regime_fraction: float = 1.0
    #: The survey-scan chapter (notebook 04): the mock mosaic's side in pixels and its injected lenses
    #: (as many look-alikes).
    mosaic_size: int = 4000
    mosaic_lenses: int = 20

    def __post_init__(self):
        if self.name not in PROFILE_NAMES:
            _fail("Profile", "name", f"one of {PROFILE_NAMES}", self.name)
        _check_range("Profile", "cv_folds", self.cv_folds, 2, 50, integer=True)
        _check_range("Profile", "learnability_images", self.learnability_images, 40, 10_000_000, integer=True)
        _check_range("Profile", "learnability_epochs", self.learnability_epochs, 1, 10_000, integer=True)
        _check_range("Profile", "shifted_images", self.shifted_images, 20, 10_000_000, integer=True)
        if not isinstance(self.training, TrainingConfig):
            _fail("Profile", "training", "a TrainingConfig", self.training)
        _check_range("Profile", "finder_test_images", self.finder_test_images, 20, 10_000_000, integer=True)
        skip = self.table_5_1_skip
        if not (isinstance(skip, tuple) and all(isinstance(n, str) for n in skip)):
            _fail("Profile", "table_5_1_skip", "a tuple of network names", self.table_5_1_skip)
        _check_range("Profile", "regime_fraction", self.regime_fraction, 0.0, 1.0, low_open=True)
        _check_range("Profile", "mosaic_size", self.mosaic_size, 200, 100_000, integer=True)
        _check_range("Profile", "mosaic_lenses", self.mosaic_lenses, 1, 100_000, integer=True)
        if not isinstance(self.finder, FinderRecipe):
            _fail("Profile", "finder", "a FinderRecipe", self.finder)


def _profiles() -> dict[str, Profile]:
    return {
        # CI: seconds per notebook.
        "smoke": Profile("smoke", SimulationConfig(n_lenses=60, n_nonlenses=54), cv_folds=2,
                         training=TrainingConfig(epochs=2, batch_size=16, patience=1, upsample=1,
                                                 validation_fraction=0.25, end_to_end_epochs=1),
                         learnability_images=200, learnability_epochs=1, shifted_images=60,
                         finder=FinderRecipe(train_parents=160, shard_parents=80, validation_parents=60,
                                             epochs=2, batch_size=32, learning_rate=2e-3,
                                             hard_negative_shards=1, initial_finder=""),
                         finder_test_images=200,
                         mosaic_size=800, mosaic_lenses=3),
        # The default book build on 2 CPU cores: frozen backbones at 100x100 (the fast path), on
        # 5% of the thesis's dataset (the book must build in under 25 minutes).
        "quick": Profile("quick", SimulationConfig(n_lenses=750, n_nonlenses=662), cv_folds=3,
                         training=TrainingConfig(epochs=30, batch_size=32, patience=4, upsample=1,
                                                 end_to_end_epochs=4),
                         learnability_images=1800, learnability_epochs=6, shifted_images=600,
                         finder=FinderRecipe(train_parents=20_000, shard_parents=5_000,
                                             validation_parents=2_000, epochs=4, learning_rate=2e-3,
                                             hard_negative_shards=1, initial_finder=""),
                         finder_test_images=1_500,
                         # CMU DeepLens end to end took as long as every other row together on 2
                         # cores and stayed near chance after the few epochs a CPU build gives it.
                         table_5_1_skip=("deeplens",), regime_fraction=0.08, mosaic_size=2000),
        # The thesis's scale: 15,000 lenses and 13,239 non-lenses, 7 folds, on a GPU.
        "full": Profile("full", SimulationConfig(), cv_folds=7,
                        training=TrainingConfig(epochs=50, batch_size=32, patience=5, upsample=3)),
    }


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``; by default the one in ``$LENSLIB_PROFILE``, else ``quick``."""
    if name is None:
        name = os.environ.get("LENSLIB_PROFILE", "quick")
    profiles = _profiles()
    if name not in profiles:
        raise ValueError(f"profile must be one of {PROFILE_NAMES} (got {name!r})")
    return profiles[name]


def config_to_dict(config) -> dict:
    """A plain, JSON-ready dict of a (nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(data: dict) -> SimulationConfig:
    """Rebuild a :class:`SimulationConfig` from :func:`config_to_dict` output (validated)."""
    data = dict(data)
    try:
        instrument = InstrumentConfig(**_tupled(data.pop("instrument")))
        augmentation = AugmentationConfig(**_tupled(data.pop("augmentation")))
        return SimulationConfig(instrument=instrument, augmentation=augmentation, **_tupled(data))
    except (KeyError, TypeError) as err:
        raise ValueError(f"not a SimulationConfig record: {err}") from err


def _tupled(d: dict) -> dict:
    def conv(v):
        return tuple(conv(x) for x in v) if isinstance(v, list) else v

    return {k: conv(v) for k, v in d.items()}


def config_hash(config: SimulationConfig) -> str:
    """A short stable hash of everything that determines a dataset's bytes."""
    payload = json.dumps(
        {"simulator_version": SIMULATOR_VERSION, "config": config_to_dict(config)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
