"""The logit-lens heatmap as a static figure (PNG, SVG, PDF) with matplotlib.

Rows are streams (embeddings at the bottom, final layer at the top), columns are positions; each
cell shows the top-1 token of the lens and is coloured by a metric (see :mod:`.metrics`). The
target token of each position runs along the top axis; a bold cell means the lens's top-1 token
is the target. Long inputs on shallow models wrap into stacked panels sharing one colour scale.

Sizes are worked out in inches from the font size, so a cell always fits its label.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .metrics import MISSING, get_metric, metric_values, norm_for, text_color
from .text import label
from .view import auto_stride, select_positions, select_rows, top1_matches_target

PT = 1 / 72  # inches per point
CHAR = 0.62  # width of an average character, in font sizes
MAX_PIXELS = 16000  # longest side of a raster image; beyond it the dpi is lowered (use SVG or positions=)
MAX_ASPECT = 6.0  # wider panels than this (width / height) wrap into several


@dataclass
class _Geometry:
    """Geometry of one panel, in inches and points."""

    per_panel: int  # positions per panel
    fs: float  # cell font size (pt)
    chars: int  # cell labels cut to this many characters
    cell_w: float
    cell_h: float
    rotation: int  # of the token tick labels: 0, 45 or 90

    @property
    def tick_fs(self) -> float:
        return self.fs + 1


def _layout(n_cols: int, n_rows: int, longest_cell: int, longest_tick: int, annotate: bool, fontsize, max_chars):
    fs = fontsize or (7.0 if n_cols <= 24 else 6.0 if n_cols <= 48 else 5.0)
    chars = max_chars or (8 if n_cols <= 40 else 6)
    text_w = (CHAR * fs * min(longest_cell, chars) + 6) * PT if annotate else 0.0
    tick_w = (CHAR * (fs + 1) * longest_tick + 4) * PT
    cell_w = max(0.28, text_w)
    if n_cols <= 16 and tick_w <= 1.4 * cell_w:  # few positions: widen a little to keep labels flat
        cell_w, rotation = max(cell_w, tick_w), 0
    else:
        rotation = 0 if tick_w <= cell_w else 45 if n_cols <= 24 else 90
    return _Geometry(n_cols, fs, chars, cell_w, max(0.16, 2.2 * fs * PT), rotation)


def heatmap(
    result,
    path: str | os.PathLike | None = None,
    *,
    metric: str = "entropy",
    positions=None,
    stride: int | None = None,
    wrap: int | None = None,
    annotate: bool = True,
    max_chars: int | None = None,
    fontsize: float | None = None,
    cmap: str | None = None,
    title: str | None = None,
    dpi: int = 200,
):
    """Draw (and optionally save) the heatmap of a result.

    Args:
        result: a :class:`~logitscope.lens.result.LensResult`.
        path: where to save; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).
        metric: ``entropy``, ``prob`` (top-1 probability), ``target`` (target probability),
            ``rank`` (target rank, log colour) or ``kl`` (KL to the final layer).
        positions: which positions to show (slice, list of ints); default all.
        stride: show every ``stride``-th layer (the final layer always); default: all layers up
            to 64 rows, then the smallest stride that fits.
        wrap: positions per panel; longer inputs are drawn as stacked panels. Default: wrap only
            when one panel would be more than 6 times wider than tall (many positions, few layers).
        annotate: write the top-1 token in each cell.
        max_chars: cut cell labels to this many characters (default 8, or 6 past 40 positions).
        fontsize: cell text size in points (default 7, shrinking to 5 for many positions).
        cmap: matplotlib colormap instead of the metric's default.
        title: figure title (default none).
        dpi: resolution of raster output.

    Returns:
        The ``matplotlib.figure.Figure`` (not attached to pyplot, so no global state leaks).
    """
    from .figure import InlineFigure as Figure

    m = get_metric(metric)
    cols = select_positions(result.n_positions, positions)
    stride = stride or auto_stride(result.n_streams)
    rows = select_rows(result.n_streams, stride)
    values = metric_values(result, m)[np.ix_(rows, cols)]  # (S', P')
    top1 = result.top_ids[:, :, 0] if result.top_k else np.full(result.entropy.shape, -1)
    longest_cell = max([3] + [len(label(result.token(t))) for t in np.unique(top1[np.ix_(rows, cols)])])
    tokens = [label(result.tokens[p]) for p in cols] + [
        label(result.token(t)) for t in result.target_ids[cols] if t >= 0
    ]
    longest_tick = max(len(t) for t in tokens)

    def fit(n: int) -> _Geometry:
        return _layout(n, len(rows), longest_cell, min(longest_tick, 12), annotate, fontsize, max_chars)

    lay = fit(len(cols))
    if wrap is None and len(cols) > 24 and lay.cell_w * len(cols) > MAX_ASPECT * lay.cell_h * len(rows):
        panels = math.ceil(math.sqrt(lay.cell_w * len(cols) / (3.0 * lay.cell_h * len(rows))))
        wrap = math.ceil(len(cols) / panels)
    if wrap:
        lay = fit(min(int(wrap), len(cols)))
    chunks = [cols[i : i + lay.per_panel] for i in range(0, len(cols), lay.per_panel)]

    tick_len = min(longest_tick, lay.chars + 4)
    tick_h = {0: 0.15, 45: 0.62, 90: 0.95}[lay.rotation] * CHAR * lay.tick_fs * tick_len * PT + 0.12
    has_targets = bool((result.target_ids[cols] >= 0).any())
    ax_h = lay.cell_h * len(rows)
    panel_h = tick_h + ax_h + (tick_h if has_targets else 0.1)
    head = (0.35 if title else 0.05) + (0.25 if has_targets else 0.0)  # title, "target token"
    left = (max(len(n) for n in result.layer_names) * CHAR * lay.tick_fs + 30) * PT
    ax_w = lay.cell_w * lay.per_panel
    fig_w = left + ax_w + 1.3
    fig_h = head + panel_h * len(chunks) + 0.15 * (len(chunks) - 1) + 0.3  # 0.3: "input token"
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="white")
    cmap_obj = matplotlib_cmap(cmap or m.cmap)
    norm = norm_for(values, m)
    bold = top1_matches_target(result)
    image = None
    for n, chunk in enumerate(chunks):
        bottom = fig_h - head - (n + 1) * panel_h - 0.15 * n + tick_h
        ax = fig.add_axes((left / fig_w, bottom / fig_h, lay.cell_w * len(chunk) / fig_w, ax_h / fig_h))
        image, top = _panel(
            ax,
            result,
            rows,
            chunk,
            values[:, [cols.index(p) for p in chunk]],
            cmap_obj,
            norm,
            top1,
            bold,
            lay,
            annotate,
        )
        ax.set_ylabel(
            "layer" + (f" (every {stride})" if len(rows) < result.n_streams else ""), fontsize=lay.tick_fs + 1
        )
        if n == len(chunks) - 1:
            ax.set_xlabel("input token", fontsize=lay.tick_fs + 1)
        if n == 0:
            bar_at = {"x": left + ax_w + 0.15, "bottom": bottom, "height": ax_h, "size": (fig_w, fig_h)}
            if top is not None:
                top.set_xlabel("target token", fontsize=lay.tick_fs + 1)
    _colorbar(fig, image, m, values, lay, **bar_at)
    if title:
        fig.suptitle(title, x=left / fig_w, ha="left", fontsize=lay.tick_fs + 3)
    if path is not None:
        raster = os.fspath(path).lower().endswith((".png", ".gif", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"))
        save_dpi = min(dpi, MAX_PIXELS / max(fig_w, fig_h)) if raster else dpi  # huge inputs: cap the bitmap
        from .figure import save

        save(fig, path, dpi=save_dpi, bbox_inches="tight", pad_inches=0.08, facecolor="white")
    return fig


def _panel(ax, result, rows, cols, values, cmap, norm, top1, bold, lay: _Geometry, annotate: bool):
    """Draw positions ``cols`` of the grid into ``ax``; ``values`` is (len(rows), len(cols)).

    Returns:
        The image (for the colour bar) and the top axis of target tokens (``None`` without targets).
    """
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", origin="lower")
    image.set_interpolation("nearest")
    if annotate:
        rgba = cmap(norm(np.ma.masked_invalid(values)).filled(0.0))
        for i, r in enumerate(rows):
            for j, p in enumerate(cols):
                color = text_color(rgba[i, j]) if np.isfinite(values[i, j]) else "#000000"
                text = label(result.token(top1[r, p]), lay.chars) if top1[r, p] >= 0 else ""
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=lay.fs, color=color,
                    fontweight="bold" if bold[r, p] else "normal",
                )  # fmt: skip
    chars = lay.chars + 4
    flat = {"rotation": 0} if lay.rotation == 0 else {"rotation": lay.rotation, "rotation_mode": "anchor"}
    below = dict(flat, ha="right" if lay.rotation == 45 else "center")
    if lay.rotation == 90:
        below = {"rotation": 90, "ha": "right", "va": "center", "rotation_mode": "anchor"}
    ax.set_xticks(range(len(cols)), [label(result.tokens[p], chars) for p in cols], fontsize=lay.tick_fs, **below)
    ax.set_yticks(range(len(rows)), [result.layer_names[r] for r in rows], fontsize=lay.tick_fs)
    targets = [label(result.token(result.target_ids[p]), chars) if result.target_ids[p] >= 0 else "" for p in cols]
    top = None
    if (result.target_ids >= 0).any():
        above = dict(flat, ha="left" if lay.rotation == 45 else "center")
        if lay.rotation == 90:
            above = {"rotation": 90, "ha": "left", "va": "center", "rotation_mode": "anchor"}
        top = ax.secondary_xaxis("top")
        top.set_xticks(range(len(cols)), targets, fontsize=lay.tick_fs, **above)
        top.tick_params(length=0, pad=3)
        top.spines["top"].set_visible(False)
    ax.set_xticks(np.arange(-0.5, len(cols)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="both", length=0, pad=3)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return image, top


def _colorbar(fig, image, metric, values, lay: _Geometry, *, x: float, bottom: float, height: float, size):
    """A colour bar beside the first panel (inches → figure fractions), and a grey "n/a" swatch."""
    from matplotlib.ticker import LogLocator, ScalarFormatter

    fig_w, fig_h = size
    bar_h = min(height, max(1.5, 0.8 * height))
    y = bottom + (height - bar_h) / 2
    bar = fig.colorbar(image, cax=fig.add_axes((x / fig_w, y / fig_h, 0.12 / fig_w, bar_h / fig_h)))
    bar.set_label(metric.label, fontsize=lay.tick_fs + 1)
    bar.ax.tick_params(labelsize=lay.tick_fs)
    bar.outline.set_visible(False)
    if metric.log:
        bar.ax.yaxis.set_major_locator(LogLocator(base=10))
        bar.ax.yaxis.set_major_formatter(ScalarFormatter())
    if np.isnan(values).any():
        swatch = fig.add_axes((x / fig_w, (y - 0.3) / fig_h, 0.12 / fig_w, 0.12 / fig_h))
        swatch.set_facecolor(MISSING)
        swatch.set_xticks([])
        swatch.set_yticks([])
        for spine in swatch.spines.values():
            spine.set_visible(False)
        swatch.text(1.6, 0.5, "n/a", transform=swatch.transAxes, va="center", fontsize=lay.tick_fs)


def matplotlib_cmap(name: str):
    """The named matplotlib colormap with NaN drawn in :data:`~.metrics.MISSING` grey."""
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=MISSING)
