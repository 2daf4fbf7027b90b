"""The camera and the simulated sky: what one dataset is, and the hash that names it.

A dataset is identified by :func:`config_hash` of its :class:`SimulationConfig`; the hash also
covers :data:`SIMULATOR_VERSION`, which is bumped whenever the simulator's output changes, so a
cached file made by older code is never reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .checks import check_interval, check_mix, check_range, fail

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

#: PSF shapes of :mod:`lenslib.instrument`: HST's broad-band obscured Airy pattern with spider
#: spikes and charge diffusion, or a Moffat profile (a ground-based or degraded space PSF).
PSF_MODELS = ("airy", "moffat")


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
            fail(o, "psf_model", f"one of {PSF_MODELS}", self.psf_model)
        check_range(o, "moffat_fwhm", self.moffat_fwhm, 0.0, 5.0, low_open=True)
        check_range(o, "moffat_beta", self.moffat_beta, 1.0, 20.0, low_open=True)
        check_range(o, "pixel_scale", self.pixel_scale, 0.0, 1.0, low_open=True)
        check_range(o, "wavelength_um", self.wavelength_um, 0.1, 5.0)
        check_range(o, "mirror_diameter_m", self.mirror_diameter_m, 0.1, 50.0)
        check_range(o, "obscuration", self.obscuration, 0.0, 0.9)
        check_range(o, "charge_diffusion_fwhm", self.charge_diffusion_fwhm, 0.0, 1.0)
        check_range(o, "psf_size", self.psf_size, 5, 201, integer=True)
        if self.psf_size % 2 == 0:
            fail(o, "psf_size", "an odd integer in [5, 201]", self.psf_size)
        check_range(o, "zero_point_ab", self.zero_point_ab, 15.0, 35.0)
        check_range(o, "read_noise", self.read_noise, 0.0, 100.0)
        check_range(o, "n_exposures", self.n_exposures, 1, 1000, integer=True)
        check_interval(o, "exposure_time_range", self.exposure_time_range, 1.0, 1e6)
        check_interval(o, "sky_brightness_range", self.sky_brightness_range, 15.0, 30.0)


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
        check_range(o, "rotation_deg", self.rotation_deg, 0.0, 180.0)
        check_interval(o, "zoom_range", self.zoom_range, 0.5, 2.0)
        check_range(o, "shear_deg", self.shear_deg, 0.0, 45.0)
        for name in ("horizontal_flip", "vertical_flip"):
            if not isinstance(getattr(self, name), bool):
                fail(o, name, "True or False", getattr(self, name))


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
        check_range(o, "image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, integer=True)
        check_range(o, "n_lenses", self.n_lenses, 1, 10_000_000, integer=True)
        check_range(o, "n_nonlenses", self.n_nonlenses, 1, 10_000_000, integer=True)
        check_range(o, "augment_copies", self.augment_copies, 0, 100, integer=True)
        check_range(o, "seed", self.seed, 0, 2**63 - 1, integer=True)
        check_range(o, "supersampling", self.supersampling, 1, 8, integer=True)
        check_interval(o, "theta_e_range", self.theta_e_range, 0.05, 10.0)
        check_range(o, "min_arc_snr", self.min_arc_snr, 0.0, 1000.0)
        check_range(o, "min_arc_visibility", self.min_arc_visibility, 0.0, 1000.0)
        check_range(o, "min_magnification", self.min_magnification, 1.0, 100.0)
        check_range(o, "twin_neighbour_fraction", self.twin_neighbour_fraction, 0.0, 1.0)
        check_range(o, "deflector_sigma_v_median", self.deflector_sigma_v_median, 100.0, 500.0)
        check_range(o, "deflector_z_mean", self.deflector_z_mean, 0.1, 1.0)
        check_range(o, "source_z_mean", self.source_z_mean, 0.5, 4.0)
        check_interval(o, "source_mag_range", self.source_mag_range, 15.0, 32.0)
        check_interval(o, "source_r_eff_range", self.source_r_eff_range, 0.005, 3.0)
        check_mix(o, "lens_kinds", self.lens_kinds, LENS_KINDS)
        check_mix(o, "nonlens_kinds", self.nonlens_kinds, NONLENS_KINDS)
        check_range(o, "field_density_at_24", self.field_density_at_24, 0.0, 1e7)
        check_range(o, "field_count_slope", self.field_count_slope, 0.0, 1.0)
        check_interval(o, "field_mag_range", self.field_mag_range, 10.0, 35.0)
        check_range(o, "star_density_per_arcmin2", self.star_density_per_arcmin2, 0.0, 1000.0)
        check_range(o, "artifact_probability", self.artifact_probability, 0.0, 1.0)
        if not isinstance(self.instrument, InstrumentConfig):
            fail(o, "instrument", "an InstrumentConfig", self.instrument)
        if not isinstance(self.augmentation, AugmentationConfig):
            fail(o, "augmentation", "an AugmentationConfig", self.augmentation)
        field_of_view = self.image_size * self.instrument.pixel_scale
        if self.theta_e_range[1] > field_of_view / 2:
            fail(o, "theta_e_range", f"at most half the field of view ({field_of_view / 2:g} arcsec)",
                  self.theta_e_range)

    @property
    def n_images(self) -> int:
        return self.n_lenses + self.n_nonlenses


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
