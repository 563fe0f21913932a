"""The logit-lens heatmap as a static figure (PNG, SVG, PDF) with matplotlib.

Rows are streams (embeddings at the bottom, final layer at the top), columns are positions; each
cell shows the top-1 token of the lens and is coloured by a metric (see :mod:`.metrics`). The
target token of each position runs along the top axis; a bold cell means the lens's top-1 token
is the target.
"""

from __future__ import annotations

import os

import numpy as np

from .metrics import MISSING, get_metric, metric_values, norm_for, text_color
from .text import label
from .view import auto_stride, select_positions, select_rows, top1_matches_target

PT = 1 / 72  # inches per point
MAX_PIXELS = 16000  # longest side of a raster image; beyond it the dpi is lowered (use SVG or positions=)


def _font_size(n_cols: int) -> float:
    return 7.0 if n_cols <= 24 else 6.0 if n_cols <= 48 else 5.0


def heatmap(
    result,
    path: str | os.PathLike | None = None,
    *,
    metric: str = "entropy",
    positions=None,
    stride: int | None = None,
    annotate: bool = True,
    max_chars: int | None = None,
    fontsize: float | None = None,
    cmap: str | None = None,
    title: str | None = None,
    dpi: int = 200,
):
    """Draw (and optionally save) the heatmap of a result.

    Args:
        result: a :class:`~logitscope.result.LensResult`.
        path: where to save; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).
        metric: ``entropy``, ``prob`` (top-1 probability), ``target`` (target probability),
            ``rank`` (target rank, log colour) or ``kl`` (KL to the final layer).
        positions: which positions to show (slice, list of ints); default all.
        stride: show every ``stride``-th layer (the final layer always); default: all layers up
            to 64 rows, then the smallest stride that fits.
        annotate: write the top-1 token in each cell.
        max_chars: cut cell labels to this many characters (default 8, or 6 past 40 positions).
        fontsize: cell text size in points (default 7, shrinking to 5 for many positions).
        cmap: matplotlib colormap instead of the metric's default.
        title: figure title (default none).
        dpi: resolution of raster output.

    Returns:
        The ``matplotlib.figure.Figure`` (not attached to pyplot, so no global state leaks).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, ScalarFormatter

    m = get_metric(metric)
    cols = select_positions(result.n_positions, positions)
    rows = select_rows(result.n_streams, stride or auto_stride(result.n_streams))
    grid = np.ix_(rows, cols)
    values = metric_values(result, m)[grid]  # (S', P')
    n_rows, n_cols = values.shape
    fs = fontsize or _font_size(n_cols)
    chars = max_chars or (8 if n_cols <= 40 else 6)
    top1 = result.top_ids[:, :, 0][grid] if result.top_k else np.full(values.shape, -1)
    bold = top1_matches_target(result)[grid]
    cell_text = [[label(result.token(t), chars) if t >= 0 else "" for t in row] for row in top1]
    x_labels = [label(result.tokens[p], chars + 4) for p in cols]
    targets = [result.target_ids[p] for p in cols]
    top_labels = [label(result.token(t), chars + 4) if t >= 0 else "" for t in targets]

    # Cell size from the longest label, so text fits whatever the number of positions.
    longest = max([3] + [len(t) for r in cell_text for t in r]) if annotate else 3
    cell_w = max(0.28, (0.62 * fs * longest + 6) * PT)
    cell_h = max(0.16, 2.2 * fs * PT)
    tick_fs = fs + 1
    rotate = n_cols > 6 and max(len(t) for t in x_labels + top_labels) * 0.6 * tick_fs * PT > cell_w
    x_margin = (max(len(t) for t in x_labels) * 0.62 * tick_fs + 18) * PT if rotate else 0.45
    top_margin = (max(len(t) for t in top_labels) * 0.62 * tick_fs + 18) * PT if rotate and any(top_labels) else 0.45
    y_margin = (max(len(n) for n in result.layer_names) * 0.62 * tick_fs + 30) * PT
    ax_w, ax_h = cell_w * n_cols, cell_h * n_rows
    fig_w, fig_h = y_margin + ax_w + 1.3, x_margin + ax_h + top_margin + (0.3 if title else 0.05)

    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor="white")
    ax = fig.add_axes((y_margin / fig_w, x_margin / fig_h, ax_w / fig_w, ax_h / fig_h))
    cmap_obj = _colormap(cmap or m.cmap)
    norm = norm_for(values, m)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap_obj, norm=norm, aspect="auto", origin="lower")
    image.set_interpolation("nearest")

    if annotate:
        rgba = cmap_obj(norm(np.ma.masked_invalid(values)).filled(0.0))
        for i in range(n_rows):
            for j in range(n_cols):
                color = text_color(rgba[i, j]) if np.isfinite(values[i, j]) else "#000000"
                ax.text(
                    j, i, cell_text[i][j], ha="center", va="center", fontsize=fs, color=color,
                    fontweight="bold" if bold[i, j] else "normal",
                )  # fmt: skip

    ax.set_xticks(range(n_cols), x_labels, rotation=90 if rotate else 0, fontsize=tick_fs)
    ax.set_yticks(range(n_rows), [result.layer_names[r] for r in rows], fontsize=tick_fs)
    ax.set_ylabel(
        "layer" + (f" (every {stride or auto_stride(result.n_streams)})" if len(rows) < result.n_streams else "")
    )
    ax.set_xlabel("input token", fontsize=tick_fs + 1)
    ax.yaxis.label.set_fontsize(tick_fs + 1)
    if any(top_labels):
        top = ax.secondary_xaxis("top")
        top.set_xticks(range(n_cols), top_labels, rotation=90 if rotate else 0, fontsize=tick_fs)
        top.set_xlabel("target token", fontsize=tick_fs + 1)
        top.tick_params(length=0, pad=2)
        top.spines["top"].set_visible(False)
    ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="both", length=0, pad=2)
    for spine in ax.spines.values():
        spine.set_visible(False)

    bar_h = min(ax_h, max(1.5, 0.8 * ax_h))
    cax = fig.add_axes(
        ((y_margin + ax_w + 0.15) / fig_w, (x_margin + (ax_h - bar_h) / 2) / fig_h, 0.12 / fig_w, bar_h / fig_h)
    )
    bar = fig.colorbar(image, cax=cax)
    bar.set_label(m.label, fontsize=tick_fs + 1)
    bar.ax.tick_params(labelsize=tick_fs)
    bar.outline.set_visible(False)
    if m.log:
        bar.ax.yaxis.set_major_locator(LogLocator(base=10))
        bar.ax.yaxis.set_major_formatter(ScalarFormatter())
    if np.isnan(values).any():
        bar.ax.set_xlabel("grey: n/a", fontsize=tick_fs - 1, labelpad=4)
    if title:
        fig.suptitle(title, x=y_margin / fig_w, ha="left", fontsize=tick_fs + 3)

    if path is not None:
        raster = os.fspath(path).lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"))
        save_dpi = min(dpi, MAX_PIXELS / max(fig_w, fig_h)) if raster else dpi  # huge inputs: cap the bitmap
        fig.savefig(os.fspath(path), dpi=save_dpi, bbox_inches="tight", pad_inches=0.08, facecolor="white")
    return fig


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=MISSING)
