"""What a dataset file is: its format, its per-image record, and where a config's file lives."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..config import SimulationConfig, config_hash

FILE_FORMAT = "lenslib-dataset"
FORMAT_VERSION = 1

#: Every image's record: name -> (numpy dtype, unit, description).
METADATA_COLUMNS: dict[str, tuple[str, object, str]] = {
    "index": ("int64", None, "row in the images array"),
    "parent_id": ("int64", None, "id shared by a simulated parent and its augmented children"),
    "label": ("int8", None, "1 for a strong lens, 0 otherwise"),
    "kind": ("U16", None, "what was simulated (galaxy_galaxy, lensed_quasar, spiral, ...)"),
    "child_index": ("int16", None, "0 for the simulated parent, k for its k-th augmented copy"),
    "is_augmented": ("bool", None, "True for an augmented copy"),
    "image_config": ("U8", None, "lenses: ring, quad or double; empty for non-lenses"),
    "theta_e": ("float32", u.arcsec, "Einstein radius"),
    "z_lens": ("float32", None, "redshift of the deflector (or of the look-alike's galaxy)"),
    "z_source": ("float32", None, "redshift of the lensed source"),
    "sigma_v": ("float32", u.km / u.s, "velocity dispersion of the deflector-like galaxy"),
    "deflector_mag": ("float32", u.mag, "I-band AB magnitude of the deflector-like galaxy"),
    "deflector_r_eff": ("float32", u.arcsec, "effective radius of the deflector-like galaxy"),
    "q_mass": ("float32", None, "axis ratio of the lens mass"),
    "shear": ("float32", None, "external shear strength"),
    "source_mag": ("float32", u.mag, "unlensed I-band magnitude of the source (host) galaxy"),
    "point_source_mag": ("float32", u.mag, "unlensed magnitude of a lensed quasar"),
    "source_x": ("float32", u.arcsec, "source-plane position of the source, x"),
    "source_y": ("float32", u.arcsec, "source-plane position of the source, y"),
    "magnification": ("float32", None, "total magnification of the source"),
    "n_source_images": ("int16", None, "images of the source centre (lens equation)"),
    "arc_snr": ("float32", None, "signal-to-noise of the lensed light (Collett 2015)"),
    "arc_visibility": ("float32", None, "signal-to-noise of the lensed light over the pixels where it "
                       "exceeds 2 sigma and outshines all other light"),
    "arc_coverage": ("float32", None, "fraction of azimuth around the lens covered by arcs"),
    "central_mag": ("float32", u.mag, "magnitude of a central object that is not deflector-like"),
    "feature_mag": ("float32", u.mag, "magnitude of a look-alike feature (ring, arclet, shell...)"),
    "feature_snr": ("float32", None, "signal-to-noise of the look-alike feature (Collett 2015)"),
    "feature_visibility": ("float32", None, "the look-alike feature's SNR where it exceeds 2 sigma and "
                           "outshines all other light"),
    "feature_radius": ("float32", u.arcsec, "distance or radius of the look-alike feature"),
    "n_field_objects": ("int16", None, "field galaxies and stars drawn around the cutout"),
    "exposure_time": ("float32", u.s, "exposure time of this cutout"),
    "sky_brightness": ("float32", u.mag / u.arcsec**2, "sky surface brightness"),
    "has_artifact": ("bool", None, "cosmic-ray residuals or hot pixels were added"),
    "rotation_deg": ("float64", u.deg, "augmentation: rotation"),
    "zoom": ("float64", None, "augmentation: zoom factor"),
    "shear_deg": ("float64", u.deg, "augmentation: shear angle"),
    "flip_h": ("bool", None, "augmentation: horizontal flip"),
    "flip_v": ("bool", None, "augmentation: vertical flip"),
}


@dataclass(frozen=True)
class ParentPlan:
    """One simulated parent image and how many augmented children it gets."""

    index: int
    parent_id: int
    label: int
    kind: str
    n_children: int


@dataclass
class LensDataset:
    """A loaded dataset. ``images`` is an array, or an open ``h5py.Dataset`` when streamed."""

    path: Path
    config: SimulationConfig
    config_hash: str
    images: np.ndarray
    labels: np.ndarray
    parent_ids: np.ndarray
    metadata: Table

    def __len__(self) -> int:
        return len(self.labels)


def default_data_dir() -> Path:
    """``$LENSLIB_DATA_DIR``, else ``~/.cache/lenslib``."""
    env = os.environ.get("LENSLIB_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lenslib"


def dataset_path(config: SimulationConfig, data_dir: str | os.PathLike | None = None) -> Path:
    """Where the dataset made by ``config`` lives: ``<data_dir>/lenslib-<hash>.h5``."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return root / f"lenslib-{config_hash(config)}.h5"
