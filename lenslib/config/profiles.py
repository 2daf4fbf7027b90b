"""The three profiles, ``smoke`` (CI), ``quick`` (the default book on 2 CPU cores) and ``full``
(the thesis's scale): one size for every step of the pipeline, never another logic."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .checks import check_range, fail
from .recipes import FinderRecipe, TrainingConfig
from .sky import SimulationConfig

PROFILE_NAMES = ("smoke", "quick", "full")


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
    #: Lenses (and as many same-population non-lenses) of :func:`lenslib.diagnostics.population_shortcut`.
    shortcut_pairs: int = 1000
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
            fail("Profile", "name", f"one of {PROFILE_NAMES}", self.name)
        check_range("Profile", "cv_folds", self.cv_folds, 2, 50, integer=True)
        check_range("Profile", "learnability_images", self.learnability_images, 40, 10_000_000, integer=True)
        check_range("Profile", "learnability_epochs", self.learnability_epochs, 1, 10_000, integer=True)
        check_range("Profile", "shifted_images", self.shifted_images, 20, 10_000_000, integer=True)
        check_range("Profile", "shortcut_pairs", self.shortcut_pairs, 3, 10_000_000, integer=True)
        if not isinstance(self.training, TrainingConfig):
            fail("Profile", "training", "a TrainingConfig", self.training)
        check_range("Profile", "finder_test_images", self.finder_test_images, 20, 10_000_000, integer=True)
        skip = self.table_5_1_skip
        if not (isinstance(skip, tuple) and all(isinstance(n, str) for n in skip)):
            fail("Profile", "table_5_1_skip", "a tuple of network names", self.table_5_1_skip)
        check_range("Profile", "regime_fraction", self.regime_fraction, 0.0, 1.0, low_open=True)
        check_range("Profile", "mosaic_size", self.mosaic_size, 200, 100_000, integer=True)
        check_range("Profile", "mosaic_lenses", self.mosaic_lenses, 1, 100_000, integer=True)
        if not isinstance(self.finder, FinderRecipe):
            fail("Profile", "finder", "a FinderRecipe", self.finder)


def _profiles() -> dict[str, Profile]:
    return {
        # CI: seconds per notebook.
        "smoke": Profile("smoke", SimulationConfig(n_lenses=60, n_nonlenses=54), cv_folds=2,
                         training=TrainingConfig(epochs=2, batch_size=16, patience=1, upsample=1,
                                                 validation_fraction=0.25, end_to_end_epochs=1),
                         learnability_images=200, learnability_epochs=1, shifted_images=60, shortcut_pairs=30,
                         finder=FinderRecipe(train_parents=160, shard_parents=80, validation_parents=60,
                                             epochs=2, batch_size=32, learning_rate=2e-3,
                                             hard_negative_shards=1, extra_negative_shards=1,
                                             wide_lens_shards=1, mined_shards=1,
                                             mined_by="lenslib-finder-v7", initial_finder="",
                                             initial_branches=(), calibration_parents=80),
                         finder_test_images=200,
                         mosaic_size=800, mosaic_lenses=3),
        # The default book build on 2 CPU cores: frozen backbones at 100x100 (the fast path), on
        # 5% of the thesis's dataset (the book must build in under 25 minutes).
        "quick": Profile("quick", SimulationConfig(n_lenses=750, n_nonlenses=662), cv_folds=3,
                         training=TrainingConfig(epochs=30, batch_size=32, patience=4, upsample=1,
                                                 end_to_end_epochs=4),
                         learnability_images=1800, learnability_epochs=6, shifted_images=600,
                         shortcut_pairs=400,
                         finder=FinderRecipe(train_parents=20_000, shard_parents=5_000,
                                             validation_parents=2_000, epochs=4, learning_rate=2e-3,
                                             hard_negative_shards=1, extra_negative_shards=0,
                                             wide_lens_shards=1, mined_shards=0, mined_by="",
                                             initial_finder="", initial_branches=(),
                                             calibration_parents=0),
                         finder_test_images=1_500,
                         # CMU DeepLens end to end took as long as every other row together on 2
                         # cores and stayed near chance after the few epochs a CPU build gives it.
                         table_5_1_skip=("deeplens",), mosaic_size=2000),
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
