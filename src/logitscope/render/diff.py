"""Render a :class:`~logitscope.diff.result.DiffResult`: heatmap (matplotlib or plotly) and terminal table.

Rows are A's streams (embeddings at the bottom), columns positions. ``metric="delta"`` colours a
cell by log p_B(t) - log p_A(t) for A's top-1 token t on a diverging scale (blue: B believes A's
answer less; red: more); ``metric="kl"`` by KL(A ‖ B). Each cell shows A's top-1 token, and B's
beneath it where the two disagree.
"""

from __future__ import annotations

import os

import numpy as np

from ..io.formats import is_html
from .table import position_pages
from .text import label

METRICS = {"delta": "log p_B - log p_A of A's top-1", "kl": "KL(A \u2016 B), nats"}


def _check(metric: str) -> None:
    if metric not in METRICS:
        from ..errors import InputError

        raise InputError(f"unknown diff metric {metric!r}; use one of {', '.join(METRICS)}")


def _row_labels(result) -> list[str]:
    same = result.layer_names == result.b_layer_names
    return (
        list(result.layer_names) if same else [f"{a} | {b}" for a, b in zip(result.layer_names, result.b_layer_names)]
    )


def _col_labels(result, chars: int = 8) -> list[str]:
    if result.meta.get("mode") == "prompts":
        return [f"A {label(result.tokens[0], chars)} | B {label(result.b_tokens[0], chars)}"]
    return [label(t, chars) for t in result.tokens]


def _title(result, metric: str) -> str:
    m = result.meta
    if m.get("mode") == "prompts":
        return f"{m.get('model_a')}: last position of two prompts, {METRICS[metric]}"
    return f"A = {m.get('model_a')}, B = {m.get('model_b')}: {METRICS[metric]}"


def plot_diff(result, path: str | os.PathLike | None = None, *, metric: str = "delta", dpi: int = 120):
    """Heatmap of a diff; ``.png``/``.svg``/``.pdf`` (matplotlib) or ``.html`` (plotly), written atomically.

    Returns:
        The matplotlib ``Figure`` (a plotly ``Figure`` for ``.html``).
    """
    _check(metric)
    if path is not None:
        from ..io.atomic import check_file_dest
        from ..io.formats import check_plot_path

        check_file_dest(path)  # before anything is drawn

        check_plot_path(path)
    values = result.delta if metric == "delta" else result.kl
    if is_html(path):
        return _html(result, values, metric, path)
    from matplotlib.colors import Normalize, TwoSlopeNorm

    from .figure import InlineFigure as Figure

    S, P = values.shape
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 1.0
    top = top or 1.0
    norm = TwoSlopeNorm(0.0, -top, top) if metric == "delta" else Normalize(0.0, top)
    cmap = "RdBu_r" if metric == "delta" else "magma_r"
    fig = Figure(figsize=(max(4.0, 2.0 + 0.62 * P), max(2.5, 1.2 + 0.3 * S)), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto", origin="lower")
    agree = result.top1_agree
    for r in range(S):
        for p in range(P):
            text = label(result.token(result.a_top_ids[r, p, 0]), 7)
            if not agree[r, p]:
                text += "\n" + label(result.token(result.b_top_ids[r, p, 0]), 7)
            shade = norm(values[r, p]) if np.isfinite(values[r, p]) else 0.5
            dark = abs(shade - 0.5) > 0.3 if metric == "delta" else shade > 0.6
            ax.text(p, r, text, ha="center", va="center", fontsize=5.5, color="white" if dark else "black")
    ax.set_yticks(range(S), _row_labels(result), fontsize=7)
    ax.set_xticks(range(P), _col_labels(result), rotation=90 if P > 1 else 0, fontsize=7)
    ax.set_ylabel("layer (A | B)" if _row_labels(result) != result.layer_names else "layer")
    ax.set_title(_title(result, metric), fontsize=9, loc="left")
    fig.colorbar(image, ax=ax, label=METRICS[metric], shrink=0.8)
    if path is not None:
        from ..io.atomic import atomic_file
        from .figure import save

        with atomic_file(path) as tmp:
            save(fig, tmp, dpi=dpi, bbox_inches="tight", facecolor="white")
    return fig


def _html(result, values, metric, path):
    import plotly.graph_objects as go

    S, P = values.shape
    hover = [
        [
            f"A {result.layer_names[r]}: {label(result.token(result.a_top_ids[r, p, 0]))} "
            f"{result.a_top_probs[r, p, 0]:.3f}<br>B {result.b_layer_names[r]}: "
            f"{label(result.token(result.b_top_ids[r, p, 0]))} {result.b_top_probs[r, p, 0]:.3f}<br>"
            f"KL {result.kl[r, p]:.4f}, delta {result.delta[r, p]:+.3f}"
            for p in range(P)
        ]
        for r in range(S)
    ]
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 1.0
    trace = dict(z=values.tolist(), x=_col_labels(result, 12), y=_row_labels(result), text=hover, hoverinfo="text")
    if metric == "delta":
        trace.update(zmid=0, zmin=-top, zmax=top, colorscale="RdBu", reversescale=True)
    else:
        trace.update(zmin=0, colorscale="Magma", reversescale=True)
    fig = go.Figure(go.Heatmap(**trace))
    fig.update_layout(title=_title(result, metric), template="simple_white", xaxis={"type": "category"})
    from ..io.atomic import atomic_file

    with atomic_file(path) as tmp:
        fig.write_html(os.fspath(tmp), include_plotlyjs=True, full_html=True)
    return fig


def diff_tables(result, *, width: int = 100, max_chars: int = 8) -> list:
    """rich ``Table`` objects (final row first), one per page of positions: KL, then A's / B's top-1."""
    from rich.table import Table
    from rich.text import Text

    S, P = result.kl.shape
    cols = _col_labels(result, max_chars)
    widths = [max(len(c), 2 * max_chars + 1, 7) for c in cols]
    rows = _row_labels(result)
    first = max(len(r) for r in rows) + 3
    tables = []
    for page in position_pages(widths, max(20, width - first)):
        table = Table(title=_title(result, "kl"), title_justify="left", show_lines=False)
        table.add_column("layer", justify="right")
        for p in page:
            table.add_column(Text(cols[p]), justify="center")
        for r in range(S - 1, -1, -1):
            cells = []
            for p in page:
                a = label(result.token(result.a_top_ids[r, p, 0]), max_chars)
                b = label(result.token(result.b_top_ids[r, p, 0]), max_chars)
                agree = bool(result.top1_agree[r, p])
                cell = Text(f"{result.kl[r, p]:.3f}\n", style="bold" if result.kl[r, p] > 0.5 else "")
                cell.append(a if agree else f"{a}/{b}", style="green" if agree else "red")
                cells.append(cell)
            table.add_row(rows[r], *cells)
        tables.append(table)
    return tables


def corpus_curves(result):
    """A matplotlib Figure of a :class:`~logitscope.diff.corpus.CorpusDiff`: KL and agreement by layer."""
    from .figure import InlineFigure as Figure

    x = np.arange(len(result.layers))
    fig = Figure(figsize=(8.0, 3.0), dpi=120, layout="constrained", facecolor="white")
    panels = (
        ("kl", "kl_ci", "KL(A \u2016 B), nats", False),
        ("top1_agreement", "agreement_ci", "top-1 agreement", True),
    )
    for i, (key, ci, title, share) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        values, bounds = getattr(result, key), getattr(result, ci)
        ax.plot(x, values, marker="o", markersize=3, linewidth=1.6, color="#3b75af")
        if np.isfinite(bounds).all():
            ax.fill_between(x, bounds[:, 0], bounds[:, 1], alpha=0.25, color="#3b75af", linewidth=0)
        if share:
            ax.set_ylim(-0.02, 1.02)
        step = max(1, len(x) // 12)
        ax.set_xticks(x[::step], [result.layer_names[j] for j in range(0, len(x), step)])
        ax.set_xlabel("layer of A")
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    m = result.meta
    fig.suptitle(f"A = {m.get('model_a')}, B = {m.get('model_b')}: {result.n_tokens:,} tokens", fontsize=10)
    return fig
