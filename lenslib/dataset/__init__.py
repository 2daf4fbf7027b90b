"""Assemble the training set (simulate -> augment -> one HDF5 file) and load it back.

A dataset file is named by the hash of the :class:`~lenslib.config.SimulationConfig` that made
it, so the same config loads instead of simulating and a changed config never reuses stale
data.  Assembly runs in worker processes, each parent image drawn from its own seed
(``SeedSequence([seed, parent_index])``), so the bytes do not depend on the number of workers.
The file is written under a temporary name and renamed only when complete.

Layout of the HDF5 file::

    /images      float32 (N, S, S), e-/s
    /labels      int8 (N,), 1 = lens
    /parent_ids  int64 (N,), shared by a parent and its augmented children
    /metadata    astropy Table (one row per image, with units)
    attrs        format, format_version, config (JSON), config_hash, images_blake2b, complete

Loading checks the contents too (:mod:`lenslib.integrity`): labels, image size, finite pixels
and the ``images_blake2b`` digest written with the images.
"""

from __future__ import annotations

from ..augment import AUGMENT_FIELDS
from ..errors import DatasetError
from .build import assemble, build_dataset, get_dataset, plan_parents, simulate_parent, write_dataset
from .layout import METADATA_COLUMNS, LensDataset, ParentPlan, dataset_path, default_data_dir
from .read import load_dataset, parent_subset, summarize

__all__ = [
    "AUGMENT_FIELDS", "DatasetError", "LensDataset", "METADATA_COLUMNS", "ParentPlan", "assemble",
    "build_dataset", "dataset_path", "default_data_dir", "get_dataset", "load_dataset",
    "parent_subset", "plan_parents", "simulate_parent", "summarize", "write_dataset",
]
