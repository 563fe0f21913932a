"""Render an :class:`~logitscope.attribute.result.AttributionResult`: bars, heatmap, terminal table.

Bars show one position: each component's contribution to the target logit (attention blue, MLP
orange, embeddings grey), plus the constant terms, summing to the logit. The heatmap shows every
position: components bottom (embeddings) to top (last MLP), a diverging colour scale centred on 0.
"""

from __future__ import annotations

import os

import numpy as np

from ..io.formats import is_html
from .text import label

COLORS = {"embed": "#8c8c8c", "attn": "#3b75af", "mlp": "#ef8636", "bias": "#c7c7c7"}


def _kind(name: str) -> str:
    return name.split(".")[-1]


def _title(result, p: int) -> str:
    tgt = label(result.target_tokens[p])
    where = f"position {p} ({label(result.tokens[p])})"
    capped = " (pre-softcap)" if result.meta.get("softcap") else ""
    return f"logit{capped} of {tgt!r} at {where}: {result.logit[p]:.3f}"


def plot_attribution(result, path: str | os.PathLike | None = None, *, position: int | None = None, dpi: int = 120):
    """Bars for one position (``position=``), else a components × positions heatmap.

    Args:
        result: an :class:`~logitscope.attribute.result.AttributionResult`.
        path: ``.png``/``.svg``/``.pdf`` (matplotlib) or ``.html`` (plotly), written atomically;
            ``None``: only return the figure.
        position: the position of the bar chart (negative counts from the end).
        dpi: resolution of raster output.

    Returns:
        The matplotlib ``Figure`` (a plotly ``Figure`` for ``.html``).

    Raises:
        OutputError: ``path`` cannot be written (checked before anything is drawn).
    """
    if path is not None:
        from ..io.atomic import check_file_dest
        from ..io.formats import check_plot_path

        check_file_dest(path)

        check_plot_path(path)
    if position is not None:
        p = result.position(position)
        names = list(result.components) + ["bias"]
        values = np.append(result.contributions[:, p], result.bias[p])
        if is_html(path):
            return _bars_html(result, p, names, values, path)
        return _bars(result, p, names, values, path, dpi)
    if is_html(path):
        return _heat_html(result, path)
    return _heat(result, path, dpi)


def _save(fig, path, dpi: int) -> None:
    if path is None:
        return
    from ..io.atomic import atomic_file
    from .figure import save

    with atomic_file(path) as tmp:
        save(fig, tmp, dpi=dpi, bbox_inches="tight", facecolor="white")


def _bars(result, p, names, values, path, dpi):
    from .figure import InlineFigure as Figure

    fig = Figure(figsize=(6.0, 1.2 + 0.2 * len(names)), dpi=dpi, layout="constrained", facecolor="white")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, values, color=[COLORS.get(_kind(n), COLORS["embed"]) for n in names], height=0.75)
    ax.set_yticks(y, names, fontsize=7)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("contribution to the target logit")
    ax.set_title(_title(result, p), fontsize=9, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3, linewidth=0.6)
    _save(fig, path, dpi)
    return fig


def _heat(result, path, dpi):
    from matplotlib.colors import TwoSlopeNorm

    from .figure import InlineFigure as Figure

    C, P = result.contributions.shape
    lim = float(np.abs(result.contributions).max()) or 1.0
    fig = Figure(figsize=(max(4.0, 1.5 + 0.42 * P), max(2.5, 1.2 + 0.17 * C)), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(
        result.contributions, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim), aspect="auto", origin="lower"
    )
    ax.set_yticks(range(C), result.components, fontsize=6)
    ax.set_xticks(range(P), [label(t, 8) for t in result.tokens], rotation=90, fontsize=7)
    top = ax.secondary_xaxis("top")
    top.set_xticks(range(P), [label(t, 8) for t in result.target_tokens], rotation=90, fontsize=7)
    top.set_xlabel("target token", fontsize=8)
    fig.colorbar(image, ax=ax, label="contribution to the target logit", shrink=0.8)
    _save(fig, path, dpi)
    return fig


def _write_html(fig, path) -> None:
    if path is None:
        return
    from ..io.atomic import atomic_file

    with atomic_file(path) as tmp:
        fig.write_html(os.fspath(tmp), include_plotlyjs=True, full_html=True)


def _bars_html(result, p, names, values, path):
    import plotly.graph_objects as go

    colors = [COLORS.get(_kind(n), COLORS["embed"]) for n in names]
    fig = go.Figure(go.Bar(x=values.tolist(), y=names, orientation="h", marker={"color": colors}))
    fig.update_layout(title=_title(result, p), xaxis={"title": "contribution"}, template="simple_white")
    _write_html(fig, path)
    return fig


def _heat_html(result, path):
    import plotly.graph_objects as go

    lim = float(np.abs(result.contributions).max()) or 1.0
    x = [f"{i}: {label(t)} \u2192 {label(g)}" for i, (t, g) in enumerate(zip(result.tokens, result.target_tokens))]
    fig = go.Figure(
        go.Heatmap(z=result.contributions.tolist(), x=x, y=list(result.components), zmid=0, zmin=-lim, zmax=lim)
    )
    fig.update_traces(colorscale="RdBu", reversescale=True)
    fig.update_layout(title="direct logit attribution", template="simple_white")
    _write_html(fig, path)
    return fig


def attribution_table(result, position: int):
    """A rich ``Table`` of one position: component, contribution, a bar, the running total."""
    from rich.table import Table
    from rich.text import Text

    p = result.position(position)
    table = Table(title=Text(_title(result, p)), title_justify="left")
    for col, justify in (("component", "left"), ("contribution", "right"), ("", "left"), ("cumulative", "right")):
        table.add_column(col, justify=justify)
    values = result.contributions[:, p]
    scale = float(np.abs(values).max()) or 1.0
    running = 0.0
    for name, v in zip(result.components, values):
        running += float(v)
        width = int(round(12 * abs(v) / scale))
        style = {"attn": "blue", "mlp": "dark_orange"}.get(_kind(name), "grey50")
        bar = Text(("-" if v < 0 else "+") * width, style=style)
        table.add_row(name, f"{v:+.4f}", bar, f"{running:.4f}")
    table.add_row("bias", f"{result.bias[p]:+.4f}", Text(""), f"{running + result.bias[p]:.4f}")
    table.add_row(Text("logit", style="bold"), Text(f"{result.logit[p]:.4f}", style="bold"), Text(""), Text(""))
    return table
