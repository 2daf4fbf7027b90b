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


def plot_lens_geometry(ax=None):
    """The thin-lens geometry (cf. Figure 2-1 A): observer, lens and source planes, the true
    source position beta, the image position theta and the deflection angle alpha."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    d_l, d_s, beta_y, theta_y = 5.0, 9.0, 0.5, 1.15
    ax.plot([0, d_s + 0.5], [0, 0], color="0.6", lw=0.8, ls=":")
    for x, label in ((d_l, "lens plane"), (d_s, "source plane")):
        ax.plot([x, x], [-2.2, 2.2], color="0.4", lw=1)
        ax.text(x, -2.5, label, ha="center", va="top")
    ax.plot(0, 0, "ko")
    ax.text(-0.1, -0.35, "observer", ha="center", va="top")
    ax.plot(d_l, 0, "o", color="tab:orange", ms=14)
    ax.text(d_l + 0.15, 0.2, "lens", color="tab:orange")
    ax.plot(d_s, beta_y, "*", color="tab:blue", ms=14)
    ax.text(d_s + 0.15, beta_y, "source", color="tab:blue", va="center")
    # The light path: source -> lens plane at theta -> observer; extended back to the apparent image.
    ax.plot([d_s, d_l, 0], [beta_y, theta_y, 0], color="tab:red")
    apparent = theta_y * d_s / d_l
    ax.plot([d_l, d_s], [theta_y, apparent], color="tab:red", ls="--", lw=0.8)
    ax.plot(d_s, apparent, "*", color="tab:red", ms=10, alpha=0.6)
    ax.text(d_s + 0.15, apparent, "image", color="tab:red", va="center")
    ax.annotate("", xy=(1.6, 0.0), xytext=(1.6, theta_y * 1.6 / d_l),
                arrowprops={"arrowstyle": "<->", "color": "0.2"})
    ax.text(1.7, 0.2, r"$\theta$")
    ax.text(d_l + 0.5, theta_y + 0.2, r"$\alpha$: deflection", color="tab:red")
    ax.text(d_s - 0.35, beta_y / 2, r"$\beta$")
    ax.text(0.3, 1.9, r"lens equation: $\beta = \theta - \alpha(\theta)$", fontsize=11)
    ax.set_xlim(-0.8, d_s + 1.8)
    ax.set_ylim(-3.0, 2.6)
    ax.axis("off")
    return ax


def plot_critical_curves(critical, caustics, *, sources=(), labels=(), axes=None):
    """Critical curves (image plane) beside caustics (source plane), with source positions."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    for x, y in critical:
        axes[0].plot(x, y, color="tab:red", lw=1)
    for x, y in caustics:
        axes[1].plot(x, y, color="tab:blue", lw=1)
    for (sx, sy), label in zip(sources, labels):
        axes[1].plot(sx, sy, "*", ms=9)
        axes[1].annotate(label, (sx, sy), textcoords="offset points", xytext=(5, 4), fontsize=8)
    for ax, title in zip(axes, ("image plane: critical curves", "source plane: caustics")):
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x [arcsec]")
    axes[0].set_ylabel("y [arcsec]")
    return axes


def plot_saliency(images, maps, titles=None, *, ncols: int = 6, panel_size: float = 1.7):
    """Cutouts with their attribution maps overlaid (positive attributions, where the model
    found evidence for "lens", in colour); returns the Figure."""
    images = np.asarray(images)
    maps = np.asarray(maps)
    if images.shape != maps.shape:
        raise ValueError(f"images {images.shape} and maps {maps.shape} differ in shape")
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        show_cutout(ax, images[i], titles[i] if titles is not None else None)
        positive = np.clip(maps[i], 0, None)
        if positive.max() > 0:
            ax.imshow(np.ma.masked_less(positive / positive.max(), 0.15), cmap="autumn", alpha=0.55,
                      origin="lower", vmin=0, vmax=1)
    fig.tight_layout()
    return fig


def plot_auc_by_bins(tables: dict, column: str, *, xlabel: str, ax=None):
    """ROC AUC of lenses per bin of ``column`` against all non-lenses, one line per table
    (:func:`lenslib.diagnostics.auc_by_bins` output, e.g. by arc SNR, one per sky); returns the Figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.2))
    for name, table in tables.items():
        lo, hi = np.asarray(table[f"{column}_min"], float), np.asarray(table[f"{column}_max"], float)
        hi = np.where(np.isfinite(hi), hi, 2 * lo)  # an open last bin is drawn at twice its lower edge
        centres = np.sqrt(np.clip(lo, 1e-3, None) * hi) if column != "theta_e" else 0.5 * (lo + hi)
        ax.plot(centres, table["auc"], "o-", label=f"{name}")
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    if column != "theta_e":
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ROC AUC vs all non-lenses")
    ax.set_ylim(0.4, 1.01)
    ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return ax.figure


def _cell_edges(centres: np.ndarray, size: int) -> np.ndarray:
    """Edges of the cells around tile centres: midway between neighbours, half a step (or half
    a tile, for a single one) beyond the first and last."""
    if len(centres) == 1:
        return np.array([centres[0] - size / 2, centres[0] + size / 2])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def plot_score_map(tiles, data=None, *, ax=None, threshold: float | None = None,
                   cmap: str = "magma", max_display: int = 1500):
    """Draw the tile scores of a scan (a :class:`lenslib.scan.TileScores`) over the image (or
    alone): each tile's score in a cell around its centre, skipped tiles blank, and with
    ``threshold`` its contour.  Returns the Axes; a colour bar shows the score.  A large image
    is shown decimated to about ``max_display`` pixels."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    grid = tiles.grid
    ny, nx = grid.shape
    half = (grid.size - 1) / 2
    xc, yc = grid.x0 + half, grid.y0 + half
    if data is not None:
        step = max(1, -(-max(ny, nx) // max_display))
        view = np.asarray(data[::step, ::step], dtype=np.float32)
        finite = np.isfinite(view)
        shown = np.full(view.shape, np.nan, dtype=np.float32)
        if finite.any():
            filled = np.where(finite, view, np.median(view[finite]))
            shown = np.where(finite, normalize(filled)[0], np.nan)
        ax.imshow(shown, cmap="gray", origin="lower", vmin=DISPLAY_RANGE[0], vmax=DISPLAY_RANGE[1],
                  extent=(-0.5, nx - 0.5, -0.5, ny - 0.5), interpolation="nearest")
    mesh = ax.pcolormesh(_cell_edges(xc, grid.size), _cell_edges(yc, grid.size),
                         np.ma.masked_invalid(tiles.scores), cmap=cmap, vmin=0, vmax=1,
                         alpha=0.5 if data is not None else 1.0, shading="flat")
    if threshold is not None and min(tiles.scores.shape) > 1:
        ax.contour(xc, yc, np.nan_to_num(tiles.scores, nan=0.0), levels=[threshold], colors="cyan",
                   linewidths=0.8)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.figure.colorbar(mesh, ax=ax, label="lens score", shrink=0.85)
    return ax
