"""The logit-lens heatmap as an interactive, self-contained HTML file (plotly).

Hovering a cell shows its top-k tokens with probabilities, the entropy, KL to the final layer and
the target's probability and rank. plotly.js is embedded, so the file works offline.
"""

from __future__ import annotations

import html
import os

import numpy as np

from .metrics import MISSING, color_limits, get_metric, metric_values
from .metrics import colorscale as plotly_scale
from .text import label, visible
from .view import select_positions, select_rows, top1_matches_target


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def hover_texts(result, rows: list[int], cols: list[int]) -> np.ndarray:
    """(len(rows), len(cols)) object array of HTML hover texts: top-k, entropy, KL, target."""
    out = np.empty((len(rows), len(cols)), dtype=object)
    for i, r in enumerate(rows):
        for j, p in enumerate(cols):
            lines = [
                f"<b>layer {_esc(result.layer_names[r])} \u00b7 position {p}: {_esc(visible(result.tokens[p]))}</b>"
            ]
            for n, (tid, prob) in enumerate(zip(result.top_ids[r, p], result.top_probs[r, p])):
                lines.append(f"{n + 1}. {_esc(visible(result.token(tid)))} &nbsp;{prob:.3f}")
            lines.append(f"entropy {result.entropy[r, p]:.3f} nats \u00b7 KL to final {result.kl_to_final[r, p]:.3f}")
            tid = result.target_ids[p]
            if tid >= 0:
                lines.append(
                    f"target {_esc(visible(result.token(tid)))}: p={result.target_prob[r, p]:.3g}, "
                    f"rank {int(result.target_rank[r, p]) + 1}"
                )
            for k, t in enumerate(result.tracked_ids):
                lines.append(
                    f"tracked {_esc(visible(result.token(t)))}: p={result.tracked_probs[k, r, p]:.3g}, "
                    f"rank {int(result.tracked_ranks[k, r, p]) + 1}"
                )
            out[i, j] = "<br>".join(lines)
    return out


def heatmap_html(
    result,
    path: str | os.PathLike | None = None,
    *,
    metric: str = "entropy",
    positions=None,
    stride: int | None = None,
    max_chars: int = 10,
    cmap: str | None = None,
    title: str | None = None,
    include_plotlyjs: bool | str = True,
):
    """Interactive heatmap; written as a self-contained HTML file when ``path`` is given.

    Args:
        result: a :class:`~logitscope.lens.result.LensResult`.
        path: ``.html`` file to write (``None``: only return the figure).
        metric: as in :func:`logitscope.render.plot`; ``rank`` is coloured on a log10 scale.
        positions, stride: which positions and every how many layers to show.
        max_chars: cut cell labels to this many characters (the hover shows them whole).
        cmap: a plotly colorscale name instead of the metric's default.
        title: figure title (default: the model name).
        include_plotlyjs: ``True`` embeds plotly.js (works offline); ``"cdn"`` links it instead.

    Returns:
        The ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    m = get_metric(metric)
    cols = select_positions(result.n_positions, positions)
    rows = select_rows(result.n_streams, stride)
    values = metric_values(result, m)[np.ix_(rows, cols)]  # (S', P')
    lo, hi = color_limits(values, m)
    colorbar = {"title": {"text": _esc(m.label), "side": "right"}}
    if m.log:  # plotly has no log colour scale: colour log10(rank) and label the ticks with ranks
        values, lo, hi = np.log10(values), np.log10(lo), np.log10(hi)
        ticks = np.arange(np.floor(lo), np.ceil(hi) + 1)
        colorbar.update(tickvals=ticks.tolist(), ticktext=[f"{10**t:,.0f}" for t in ticks])
    top1 = result.top_ids[:, :, 0][np.ix_(rows, cols)]
    bold = top1_matches_target(result)[np.ix_(rows, cols)]
    text = [
        [
            (f"<b>{_esc(label(result.token(t), max_chars))}</b>" if b else _esc(label(result.token(t), max_chars)))
            for t, b in zip(tr, br)
        ]
        for tr, br in zip(top1, bold)
    ]
    heat = go.Heatmap(
        z=np.where(np.isfinite(values), values, None).tolist(),
        x=list(range(len(cols))),
        y=list(range(len(rows))),
        text=text,
        texttemplate="%{text}",
        textfont={"size": 11},
        customdata=hover_texts(result, rows, cols).tolist(),
        hovertemplate="%{customdata}<extra></extra>",
        colorscale=cmap or plotly_scale(m.cmap),
        zmin=lo,
        zmax=hi,
        xgap=1,
        ygap=1,
        colorbar=colorbar,
    )
    fig = go.Figure(heat)
    x_labels = [_esc(label(result.tokens[p], max_chars)) for p in cols]
    targets = [
        _esc(label(result.token(result.target_ids[p]), max_chars)) if result.target_ids[p] >= 0 else "" for p in cols
    ]
    fig.update_layout(
        title={"text": _esc(title if title is not None else str(result.meta.get("model", "logit lens")))},
        xaxis={"tickmode": "array", "tickvals": list(range(len(cols))), "ticktext": x_labels, "title": "input token"},
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(rows))),
            "ticktext": [_esc(result.layer_names[r]) for r in rows],
            "title": "layer",
        },
        plot_bgcolor=MISSING,
        width=max(600, 160 + 72 * len(cols)),
        height=max(360, 180 + 26 * len(rows)),
        hoverlabel={"font": {"family": "monospace"}},
        template="simple_white",
    )
    if any(targets):
        fig.add_trace(
            go.Scatter(x=list(range(len(cols))), y=[None] * len(cols), xaxis="x2", showlegend=False, hoverinfo="skip")
        )
        fig.update_layout(
            xaxis2={
                "overlaying": "x", "side": "top", "matches": "x", "tickmode": "array",
                "tickvals": list(range(len(cols))), "ticktext": targets, "title": "target token",
            }
        )  # fmt: skip
    if path is not None:
        fig.write_html(os.fspath(path), include_plotlyjs=include_plotlyjs, full_html=True)
    return fig
