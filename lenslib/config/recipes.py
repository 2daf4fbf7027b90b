"""How networks are trained: :class:`TrainingConfig` (the thesis's networks, Table 5-1) and
:class:`FinderRecipe` (the shipped lenslib finder)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import check_interval, check_mix, check_range, fail
from .sky import NONLENS_KINDS

#: Optimizers of the thesis's chapter 4.2, by the names :func:`lenslib.models.make_optimizer` takes.
OPTIMIZER_NAMES = ("sgd", "rmsprop", "adam", "nadam")

#: How a transfer model's input adapter brings a cutout to its backbone (see :mod:`lenslib.models`):
#: a fixed bilinear resize, or learned transposed convolutions (the thesis's "deconvolutional layers").
ADAPTER_NAMES = ("resize", "deconv")

#: The lenslib finder's networks (:func:`lenslib.finder.build_finder`): the compact residual
#: network, the same layout in p4m group convolutions (:mod:`lenslib.finder.equivariant`), or
#: both side by side, their logits summed (its branches in the order their features are joined).
TWO_BRANCHES = "p4m+residual"
FINDER_BRANCHES = ("p4m", "residual")
FINDER_ARCHITECTURES = ("residual", "p4m", TWO_BRANCHES)


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
    #: Networks trained on images (not a frozen head on cached features) see every training cutout
    #: flipped, turned by a multiple of 90 degrees and shifted by up to this many pixels, drawn
    #: afresh each epoch (:func:`lenslib.augment.augment_batch`); None: the cutouts as stored.
    augment_shift: int | None = None

    def __post_init__(self):
        o = "TrainingConfig"
        check_range(o, "epochs", self.epochs, 1, 10_000, integer=True)
        check_range(o, "batch_size", self.batch_size, 1, 65_536, integer=True)
        check_range(o, "learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
        if self.optimizer not in OPTIMIZER_NAMES:
            fail(o, "optimizer", f"one of {OPTIMIZER_NAMES}", self.optimizer)
        check_range(o, "patience", self.patience, 0, 10_000, integer=True)
        check_range(o, "validation_fraction", self.validation_fraction, 0.0, 0.5, low_open=True)
        if self.adapter not in ADAPTER_NAMES:
            fail(o, "adapter", f"one of {ADAPTER_NAMES}", self.adapter)
        check_range(o, "upsample", self.upsample, 1, 8, integer=True)
        check_range(o, "dropout", self.dropout, 0.0, 0.95)
        check_range(o, "head_units", self.head_units, 1, 65_536, integer=True)
        if not isinstance(self.balance_classes, bool):
            fail(o, "balance_classes", "True or False", self.balance_classes)
        check_range(o, "seed", self.seed, 0, 2**31 - 1, integer=True)
        if self.end_to_end_epochs is not None:
            check_range(o, "end_to_end_epochs", self.end_to_end_epochs, 1, 10_000, integer=True)
        if self.augment_shift is not None:
            check_range(o, "augment_shift", self.augment_shift, 0, 32, integer=True)


#: The non-lens mix of the finder's hard-negative shards: the lenses' twins and the look-alikes the
#: first finder flagged most (companions above all), none of the kinds it already rejects.
HARD_NEGATIVE_KINDS = (("elliptical", 0.30), ("companion", 0.35), ("ring_galaxy", 0.10),
                       ("spiral", 0.08), ("merger", 0.07), ("tidal_features", 0.10))


def _finder_name(value) -> bool:
    """A shipped finder's name (letters, digits, '-', '_', '.'), a ``.keras`` file (a finder
    trained here, its model card beside it, as ``lenslib train-finder`` writes them), or ''."""
    return isinstance(value, str) and (value == "" or value.endswith(".keras") or value.replace(
        "-", "").replace("_", "").replace(".", "").isalnum())


@dataclass(frozen=True)
class FinderRecipe:
    """How the lenslib finder is trained (:func:`lenslib.finder.train_finder`).

    ``train_parents`` distinct simulated images (no stored augmentation: every epoch flips,
    rotates by multiples of 90 degrees and shifts them by up to ``max_shift`` pixels on the fly),
    simulated in shards of ``shard_parents`` images, half lenses and half non-lenses, each shard
    a lenslib dataset of the default sky with ``twin_neighbour_fraction`` of its same-population
    non-lenses carrying an unlensed neighbour, then ``hard_negative_shards`` more shards whose
    non-lenses follow ``hard_negative_kinds`` (more of the look-alikes a finder confuses with
    lenses), then ``extra_negative_shards`` whose non-lenses follow ``extra_negative_kinds`` (by
    default companions alone, the look-alike every finder so far flags most), then
    ``wide_lens_shards`` of the sky's own mix whose lenses all have Einstein radii in
    ``wide_theta_e_range`` (the sky's population makes few lenses wider than 2", yet those are
    the rings a person sees first); lenses stay half of every shard.  ``validation_parents``
    images of another seed are
    scored after every epoch.  Adam with a cosine-decayed ``learning_rate`` over all epochs,
    starting from random weights, or from the finder ``initial_finder`` (a warm start: the new
    finder continues its training).  ``initial_finder``, ``teacher`` and ``mined_by`` each name a
    shipped finder or a ``.keras`` file that ``lenslib train-finder`` wrote (a warm start needs
    its model card beside it; see :mod:`lenslib.finder.references`).  With a ``teacher``, each
    target blends
    the label with the teacher's score averaged over ``score_transforms`` flips and quarter
    turns, ``teacher_weight`` of it the teacher's (knowledge distillation: the student learns the
    teacher's test-time-averaged scores at the cost of one pass).  ``mined_shards``: that many
    more shards of ``shard_parents`` training non-lenses each, those the finder ``mined_by``
    scores highest (its mean over ``score_transforms`` flips and turns), so that they
    are seen once more every epoch (hard-negative mining).  ``max_kind_flag_rate``: after training,
    shift the output's logit so that a score of 0.5 flags at most this share of each non-lens kind
    of ``calibration_parents`` held-out images of another seed (0: of the validation set), with
    ``flag_rate_confidence`` the one-sided confidence that the share holds on new images of the
    sky (None: the share as counted there); the finder's default operating point, chosen on
    held-out images, not left to the training mix; rankings are unchanged.  None leaves the
    scores as trained.  ``architecture``: the network (:func:`lenslib.finder.build_finder`), the
    compact residual network (``"residual"``, v1-v14) or its layout in p4m group convolutions
    (``"p4m"``, v18 on: the same score for a cutout's eight flips and quarter turns), with
    ``widths`` feature maps per stage (multiples of 8 for p4m), or both side by side
    (``"p4m+residual"``, v22 on: their logits summed), which ``initial_branches``, a p4m finder
    and a residual finder (shipped names or ``.keras`` files), can start from instead of
    ``initial_finder`` (:func:`lenslib.finder.architecture.join_finders`).
    """

    name: str = "lenslib-finder-v22"
    train_parents: int = 18_000
    shard_parents: int = 1_000
    validation_parents: int = 4_000
    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 1e-4
    max_shift: int = 4  # pixels
    twin_neighbour_fraction: float = 0.25
    widths: tuple = (16, 32, 64, 128)  # stem, then one residual block per stage
    architecture: str = "p4m+residual"  # "p4m" (v18-v21, invariant to flips and turns), "residual" (v1-v14)
    seed: int = 2051
    hard_negative_shards: int = 5
    hard_negative_kinds: tuple = HARD_NEGATIVE_KINDS
    extra_negative_shards: int = 8
    extra_negative_kinds: tuple = (("companion", 1.0),)
    initial_finder: str = ""  # "" trains from random weights (or from initial_branches)
    initial_branches: tuple = ("lenslib-finder-v21", "lenslib-finder-v14")  # (p4m, residual), joined
    teacher: str = ""  # a finder whose scores are soft targets ("" for the labels alone)
    teacher_weight: float = 0.0  # the teacher's share of each target (0 with no teacher)
    mined_shards: int = 5  # shards of the hardest training non-lenses (by mined_by), seen again
    mined_by: str = "lenslib-finder-v19"  # the finder whose scores pick the mined negatives
    score_transforms: int = 8  # the teacher's and miner's scores: means over this many flips and turns
    wide_lens_shards: int = 9  # shards of the sky's mix whose lenses are as wide as wide_theta_e_range
    wide_theta_e_range: tuple = (1.5, 2.5)  # arcsec
    max_kind_flag_rate: float | None = 0.05  # the operating point 0.5 is set to (None: as trained)
    calibration_parents: int = 20_000  # images the operating point is set on (0: the validation set)
    flag_rate_confidence: float | None = 0.95  # confidence that the rate holds on new images

    def __post_init__(self):
        o = "FinderRecipe"
        if not (isinstance(self.name, str) and self.name and self.name.replace("-", "").replace(
                "_", "").replace(".", "").isalnum()):
            fail(o, "name", "a non-empty name of letters, digits, '-', '_' or '.'", self.name)
        check_range(o, "shard_parents", self.shard_parents, 2, 1_000_000, integer=True)
        check_range(o, "train_parents", self.train_parents, self.shard_parents, 100_000_000, integer=True)
        if self.train_parents % self.shard_parents:  # equal shards: every epoch has the same batches
            fail(o, "train_parents", f"a multiple of shard_parents ({self.shard_parents})",
                 self.train_parents)
        check_range(o, "validation_parents", self.validation_parents, 2, 1_000_000, integer=True)
        check_range(o, "epochs", self.epochs, 1, 10_000, integer=True)
        check_range(o, "batch_size", self.batch_size, 1, 65_536, integer=True)
        check_range(o, "learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
        check_range(o, "max_shift", self.max_shift, 0, 32, integer=True)
        check_range(o, "twin_neighbour_fraction", self.twin_neighbour_fraction, 0.0, 1.0)
        if not (isinstance(self.widths, tuple) and len(self.widths) >= 2 and all(
                isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in self.widths)):
            fail(o, "widths", "a tuple of at least 2 integers in [1, 4096]", self.widths)
        if self.architecture not in FINDER_ARCHITECTURES:
            fail(o, "architecture", f"one of {FINDER_ARCHITECTURES}", self.architecture)
        if self.architecture in ("p4m", TWO_BRANCHES) and any(w % 8 for w in self.widths):
            fail(o, "widths", "multiples of 8 for the p4m architecture (8 orientations of each "
                 "feature map)", self.widths)
        check_range(o, "seed", self.seed, 0, 2**31 - 1, integer=True)
        check_range(o, "hard_negative_shards", self.hard_negative_shards, 0, 100_000, integer=True)
        check_mix(o, "hard_negative_kinds", self.hard_negative_kinds, NONLENS_KINDS)
        check_range(o, "extra_negative_shards", self.extra_negative_shards, 0, 100_000, integer=True)
        check_mix(o, "extra_negative_kinds", self.extra_negative_kinds, NONLENS_KINDS)
        if not _finder_name(self.initial_finder):
            fail(o, "initial_finder", "a shipped finder's name or .keras file, or '' for random weights",
                 self.initial_finder)
        if self.initial_branches != ():
            if not (isinstance(self.initial_branches, tuple) and len(self.initial_branches) == 2
                    and all(b and _finder_name(b) for b in self.initial_branches)):
                fail(o, "initial_branches", "() or a pair (p4m finder, residual finder), each a shipped "
                     "finder's name or .keras file", self.initial_branches)
            if self.architecture != TWO_BRANCHES:
                fail(o, "initial_branches", "() unless architecture is 'p4m+residual' (the default recipe "
                     "starts lenslib-finder-v22 from two finders: give initial_branches=() for another "
                     "architecture)", self.initial_branches)
            if self.initial_finder:
                fail(o, "initial_finder", "'' when initial_branches start the finder (give "
                     "initial_branches=() to start from initial_finder)", self.initial_finder)
        if not _finder_name(self.teacher):
            fail(o, "teacher", "a shipped finder's name or .keras file, or '' for no teacher", self.teacher)
        if self.teacher:
            check_range(o, "teacher_weight", self.teacher_weight, 0.0, 1.0, low_open=True)
        elif self.teacher_weight != 0:
            fail(o, "teacher_weight", "0 when there is no teacher", self.teacher_weight)
        check_range(o, "mined_shards", self.mined_shards, 0, 100_000, integer=True)
        if not _finder_name(self.mined_by) or bool(self.mined_by) != bool(self.mined_shards):
            fail(o, "mined_by", "a shipped finder's name or .keras file when mined_shards > 0, else ''",
                 self.mined_by)
        if self.score_transforms not in (1, 2, 4, 8) or isinstance(self.score_transforms, bool):
            fail(o, "score_transforms", "one of 1, 2, 4 or 8", self.score_transforms)
        check_range(o, "wide_lens_shards", self.wide_lens_shards, 0, 100_000, integer=True)
        check_interval(o, "wide_theta_e_range", self.wide_theta_e_range, 0.05, 10.0)  # as the sky's
        if self.max_kind_flag_rate is not None:
            check_range(o, "max_kind_flag_rate", self.max_kind_flag_rate, 0.0, 1.0, low_open=True)
        check_range(o, "calibration_parents", self.calibration_parents, 0, 1_000_000, integer=True)
        if self.calibration_parents == 1:
            fail(o, "calibration_parents", "0 (the validation set) or at least 2", self.calibration_parents)
        if self.flag_rate_confidence is not None:
            check_range(o, "flag_rate_confidence", self.flag_rate_confidence, 0.0, 1.0,
                        low_open=True, high_open=True)

    @property
    def n_default_shards(self) -> int:
        """Training shards of the sky's own mix (the hard-negative shards follow them)."""
        return math.ceil(self.train_parents / self.shard_parents)

    @property
    def n_shards(self) -> int:
        return (self.n_default_shards + self.hard_negative_shards + self.extra_negative_shards
                + self.wide_lens_shards)

    def is_wide_lens_shard(self, index: int) -> bool:
        """Whether training shard ``index`` is a wide-lens shard (they come last)."""
        return index >= self.n_shards - self.wide_lens_shards

    def nonlens_mix(self, index: int) -> tuple | None:
        """The non-lens mix of training shard ``index``: None for the sky's own (the default
        and wide-lens shards), else the hard-negative or the extra-negative kinds."""
        if index < self.n_default_shards or self.is_wide_lens_shard(index):
            return None
        if index < self.n_default_shards + self.hard_negative_shards:
            return self.hard_negative_kinds
        return self.extra_negative_kinds
