"""Trajectories: how the probability (or rank) of chosen tokens evolves across layers at one position.

The tokens are those recorded with ``track=`` (plus the position's target, if it has one): one line
per token, like Ecco's ``rankings_watch`` or the Workbench line chart.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from ..io.formats import is_html
from .text import label
from .view import select_positions


def trajectory_data(result, position: int = -1, *, value: str = "prob", target: bool = True) -> dict[str, np.ndarray]:
    """The lines of a trajectory plot.

    Args:
        result: a :class:`~logitscope.lens.result.LensResult`.
        position: which position (negative counts from the end).
        value: ``"prob"`` or ``"rank"`` (1 = top-1).
        target: add the position's target token as a line (when it has one).

    Returns:
        ``{label: (S,) values}`` in legend order; the target's label starts with ``"target "``.
    """
    if value not in ("prob", "rank"):
        raise InputError(f"value must be 'prob' or 'rank', got {value!r}")
    (p,) = select_positions(result.n_positions, [position])
    lines: dict[str, np.ndarray] = {}
    for k, tid in enumerate(result.tracked_ids):
        values = result.tracked_probs[k, :, p] if value == "prob" else result.tracked_ranks[k, :, p] + 1
        lines[label(result.token(tid))] = np.asarray(values, dtype=np.float64)
    tid = int(result.target_ids[p])
    if target and tid >= 0:
        values = result.target_prob[:, p] if value == "prob" else result.target_rank[:, p] + 1
        lines[f"target {label(result.token(tid))}"] = np.asarray(values, dtype=np.float64)
    if not lines:
        raise InputError(
            f"nothing to draw at position {position}: pass track=[...] tokens to lens() "
            "(CLI: --track), or choose a position that has a target"
        )
    return lines


def trajectory(
    result,
    position: int = -1,
    path: str | os.PathLike | None = None,
    *,
    value: str = "prob",
    log: bool | None = None,
    target: bool = True,
    title: str | None = None,
    dpi: int = 200,
):
    """Line chart of tracked tokens across layers at one position.

    Args:
        result: a :class:`~logitscope.lens.result.LensResult` computed with ``track=``.
        position: which position (default: the last).
        path: file to write (``.png``, ``.svg``, ``.pdf`` or ``.html``); ``None``: only return.
        value: ``"prob"`` (linear axis) or ``"rank"`` (log axis, rank 1 at the top).
        log: log-scale the y axis (default: only for ranks).
        target: also draw the position's target token (dashed).
        title: figure title (default: the position and its token).
        dpi: resolution of raster output.

    Returns:
        A matplotlib ``Figure`` (a plotly one for ``.html``).
    """
    lines = trajectory_data(result, position, value=value, target=target)
    (p,) = select_positions(result.n_positions, [position])
    log = value == "rank" if log is None else log
    title = title if title is not None else f"position {p}: {label(result.tokens[p])}"
    ylabel = "probability" if value == "prob" else "rank (1 = top-1)"
    x = np.arange(result.n_streams)
    if is_html(path):
        return _plotly(result, lines, x, path, value=value, log=log, title=title, ylabel=ylabel)

    from .figure import InlineFigure as Figure

    fig = Figure(figsize=(max(4.5, 2.5 + 0.18 * len(x)), 3.2), dpi=dpi, layout="constrained", facecolor="white")
    ax = fig.add_subplot()
    for name, values in lines.items():
        is_target = name.startswith("target ")
        ax.plot(
            x, values, label=name, marker="o", markersize=3, linewidth=1.6,
            linestyle="--" if is_target else "-", color="black" if is_target else None,
        )  # fmt: skip
    if log:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if value == "rank":
        ax.invert_yaxis()
    elif not log:
        ax.set_ylim(-0.02, 1.02)
    step = max(1, len(x) // 16)
    ax.set_xticks(x[::step], [result.layer_names[i] for i in range(0, len(x), step)])
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="best")
    if path is not None:
        from .figure import save

        save(fig, path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return fig


def _plotly(result, lines, x, path, *, value, log, title, ylabel):
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in lines.items():
        dash = "dash" if name.startswith("target ") else "solid"
        fig.add_trace(go.Scatter(x=x.tolist(), y=values.tolist(), name=name, mode="lines+markers", line={"dash": dash}))
    yaxis = {"title": ylabel, "type": "log" if log else "linear"}
    if value == "rank":
        yaxis["autorange"] = "reversed"
    fig.update_layout(
        title=title,
        xaxis={"title": "layer", "tickmode": "array", "tickvals": x.tolist(), "ticktext": list(result.layer_names)},
        yaxis=yaxis,
        template="simple_white",
    )
    fig.write_html(os.fspath(path), include_plotlyjs=True, full_html=True)
    return fig
