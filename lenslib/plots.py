"""Figures for the notebooks and the book: galleries, distributions and more.

Every cutout is displayed after :func:`lenslib.preprocess.normalize`, the same stretch the
networks see, so what a reader looks at is what the model gets.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .preprocess import normalize

DISPLAY_RANGE = (-1.0, 5.0)  # normalised units: noise near 0, bright cores compressed


def show_cutout(ax, image, title: str | None = None, *, color: str | None = None) -> None:
    """Draw one cutout (e-/s) on ``ax`` with the library's normalisation; frame it in ``color``."""
    ax.imshow(normalize(image)[0], cmap="gray", origin="lower", vmin=DISPLAY_RANGE[0],
              vmax=DISPLAY_RANGE[1], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)
    if color:
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2.5)


def plot_gallery(images, titles=None, *, ncols: int = 6, colors=None, panel_size: float = 1.6,
                 suptitle: str | None = None):
    """A grid of cutouts with optional per-panel titles and frame colours; returns the Figure."""
    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError("plot_gallery: no images to show")
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i < n:
            show_cutout(ax, images[i], titles[i] if titles is not None else None,
                        color=colors[i] if colors is not None else None)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def pick_by_kind(metadata, kinds, per_kind: int, rng: np.random.Generator, *, parents_only=True):
    """Row indices of up to ``per_kind`` random examples of each kind, kinds in the given order."""
    rows = []
    for kind in kinds:
        mask = np.asarray(metadata["kind"]) == kind
        if parents_only:
            mask &= ~np.asarray(metadata["is_augmented"])
        idx = np.flatnonzero(mask)
        if idx.size:
            rows.extend(rng.choice(idx, size=min(per_kind, idx.size), replace=False).tolist())
    return rows


def plot_distributions(metadata, columns, *, labels=None, bins: int = 30, log: tuple = ()):
    """Histograms of metadata columns (one panel each), NaNs dropped; returns the Figure."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 2.8), squeeze=False)
    for ax, name in zip(axes[0], columns):
        values = np.asarray(metadata[name], dtype=float)
        values = values[np.isfinite(values)]
        if name in log:
            values = values[values > 0]
            ax.set_xscale("log")
            edges = np.logspace(np.log10(values.min()), np.log10(values.max()), bins) if values.size else bins
        else:
            edges = bins
        ax.hist(values, bins=edges, color="0.35")
        unit = metadata[name].unit
        ax.set_xlabel(f"{(labels or {}).get(name, name)}" + (f" [{unit}]" if unit else ""))
        ax.set_ylabel("images")
    fig.tight_layout()
    return fig
