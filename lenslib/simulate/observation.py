"""The camera's view of one cutout: pixels, PSF, noise, and how visible light is.

Every scene, lens or non-lens, is painted on the same :class:`Grid` (supersampled, with a margin so
that light from outside the cutout scatters in) into the noiseless buffers of an
:class:`Observation`, one per component of :data:`COMPONENTS`.  The observation draws its own
exposure time and sky level, blurs each component with the PSF (:func:`blurred`, the one PSF
convolution), adds noise and detector artifacts, and measures how visible a component is against
its noise (:func:`arc_snr`, :func:`visibility`): the cut every lensed arc and every look-alike
feature must pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.signal import fftconvolve

from ..config import InstrumentConfig, SimulationConfig
from ..instrument import noise_variance, observe, psf_kernel

#: The noiseless parts of a scene, each convolved with the PSF: the lensed light (lenses only),
#: the deflector (or the non-lens's main galaxy or star), the look-alike feature, and the field.
COMPONENTS = ("lensed", "deflector", "feature", "field")
_PAD = 10  # native pixels rendered around the cutout so that light from outside scatters in


@dataclass
class Scene:
    """A simulated cutout: the observed image (e-/s), its noiseless parts and its record."""

    image: np.ndarray
    components: dict[str, np.ndarray]
    record: dict = field(default_factory=dict)


class Grid:
    """A supersampled grid covering the cutout plus a margin, in arcsec from its centre."""

    def __init__(self, size: int, pixel_scale: float, supersampling: int):
        self.size, self.ss, self.pixel_scale = size, supersampling, pixel_scale
        self.n_native = size + 2 * _PAD
        n = self.n_native * supersampling
        self.step = pixel_scale / supersampling
        self.coords = (np.arange(n) - (n - 1) / 2) * self.step
        self.x, self.y = np.meshgrid(self.coords, self.coords)
        self.subpixel_area = self.step**2

    def box(self, cx: float, cy: float, radius: float | None):
        """Slices of the supersampled grid within ``radius`` of (cx, cy); the whole grid if None."""
        if radius is None:
            return slice(None), slice(None)
        lo_x = np.searchsorted(self.coords, cx - radius)
        hi_x = np.searchsorted(self.coords, cx + radius)
        lo_y = np.searchsorted(self.coords, cy - radius)
        hi_y = np.searchsorted(self.coords, cy + radius)
        return slice(lo_y, hi_y), slice(lo_x, hi_x)

    def bin(self, fine: np.ndarray) -> np.ndarray:
        s = self.ss
        return fine.reshape(self.n_native, s, self.n_native, s).sum(axis=(1, 3))

    def crop(self, native: np.ndarray) -> np.ndarray:
        return native[_PAD:-_PAD, _PAD:-_PAD]

    def add_point(self, native: np.ndarray, x: float, y: float, rate: float) -> None:
        """Add a point source (e-/s) to a native-resolution buffer by bilinear splatting."""
        px = x / self.pixel_scale + (self.n_native - 1) / 2
        py = y / self.pixel_scale + (self.n_native - 1) / 2
        i0, j0 = int(np.floor(py)), int(np.floor(px))
        fy, fx = py - i0, px - j0
        for di, wy in ((0, 1 - fy), (1, fy)):
            for dj, wx in ((0, 1 - fx), (1, fx)):
                i, j = i0 + di, j0 + dj
                if 0 <= i < self.n_native and 0 <= j < self.n_native:
                    native[i, j] += rate * wy * wx


@lru_cache(maxsize=4)
def supersampled_grid(size: int, pixel_scale: float, supersampling: int) -> Grid:
    """The (cached) :class:`Grid` of a ``size`` x ``size`` cutout."""
    return Grid(size, pixel_scale, supersampling)


def blurred(grid: Grid, instrument: InstrumentConfig, native: np.ndarray) -> np.ndarray:
    """A native-resolution map (e-/s, with the margin) convolved with the PSF and cut to the cutout."""
    return np.clip(grid.crop(fftconvolve(native, psf_kernel(instrument), mode="same")), 0.0, None)


class Observation:
    """Per-cutout observing conditions and the shared render buffers.

    Drawing one takes two numbers from ``rng`` (exposure time, then sky brightness); observing
    its components (:meth:`observe`) takes the noise and the artifacts.
    """

    def __init__(self, config: SimulationConfig, rng: np.random.Generator):
        ins = config.instrument
        self.config = config
        self.grid = supersampled_grid(config.image_size, ins.pixel_scale, config.supersampling)
        self.exposure_time = float(rng.uniform(*ins.exposure_time_range))
        self.sky_brightness = float(rng.uniform(*ins.sky_brightness_range))
        self.has_artifact = False  # drawn when the image is observed
        shape_fine = self.grid.x.shape
        shape_native = (self.grid.n_native, self.grid.n_native)
        self.fine = {c: np.zeros(shape_fine) for c in COMPONENTS}
        self.points = {c: np.zeros(shape_native) for c in COMPONENTS}

    def rates(self) -> dict[str, np.ndarray]:
        """PSF-convolved noiseless components on the cutout, e-/s per pixel."""
        out = {}
        for c in COMPONENTS:
            native = self.grid.bin(self.fine[c]) + self.points[c]
            if native.any():
                out[c] = blurred(self.grid, self.config.instrument, native)
            else:
                out[c] = np.zeros((self.grid.size, self.grid.size))
        return out

    def variance(self, total: np.ndarray) -> np.ndarray:
        """Noise variance per pixel of the noiseless image ``total`` (e-/s)."""
        return noise_variance(total, exposure_time=self.exposure_time,
                              sky_brightness=self.sky_brightness, instrument=self.config.instrument)

    def observe(self, components: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """The observed image of ``components``: noise, then (sometimes) detector artifacts."""
        total = sum(components[c] for c in COMPONENTS)
        image = observe(total, rng, exposure_time=self.exposure_time, sky_brightness=self.sky_brightness,
                        instrument=self.config.instrument)
        self.has_artifact = bool(rng.uniform() < self.config.artifact_probability)
        if self.has_artifact:
            self._add_artifacts(image, rng)
        return image

    def _add_artifacts(self, image: np.ndarray, rng: np.random.Generator) -> None:
        """Residual cosmic rays (short sharp tracks) and hot pixels left after drizzling."""
        sigma = np.sqrt(self.variance(np.zeros(1)))[0]
        size = image.shape[0]
        for _ in range(rng.integers(1, 4)):
            length = int(rng.integers(1, 6))
            angle = rng.uniform(0, np.pi)
            x0, y0 = rng.uniform(0, size, size=2)
            level = rng.uniform(5, 60) * sigma
            for t in range(length):
                i = int(y0 + t * np.sin(angle))
                j = int(x0 + t * np.cos(angle))
                if 0 <= i < size and 0 <= j < size:
                    image[i, j] += level

    def record(self) -> dict:
        """The observing conditions, for the scene's record."""
        return {"exposure_time": self.exposure_time, "sky_brightness": self.sky_brightness,
                "has_artifact": self.has_artifact}


# --------------------------------------------------------------------------------------------
# How visible a component is against the noise
# --------------------------------------------------------------------------------------------
def arc_snr(signal: np.ndarray, variance: np.ndarray) -> float:
    """Collett (2015) detectability: summed signal over pixels above 1 sigma / its noise."""
    sigma = np.sqrt(variance)
    mask = signal > sigma
    if not mask.any():
        return 0.0
    return float(signal[mask].sum() / np.sqrt(variance[mask].sum()))


def visibility(signal: np.ndarray, other: np.ndarray, variance: np.ndarray, n_sigma: float = 2.0) -> float:
    """Signal-to-noise of light an observer can point to: summed over the pixels where it
    exceeds ``n_sigma`` times the noise *and* outshines every other light (the lens galaxy, the
    field), over the noise of those pixels; 0 where no pixel qualifies.

    Collett's :func:`arc_snr` sums every pixel above 1 sigma, so faint light spread under a bright
    lens galaxy can pass it while no pixel shows it; this measure cannot.
    """
    mask = (signal > n_sigma * np.sqrt(variance)) & (signal > other)
    if not mask.any():
        return 0.0
    return float(signal[mask].sum() / np.sqrt(variance[mask].sum()))
