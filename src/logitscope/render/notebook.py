"""A compact coloured grid of a result as plain HTML (no JavaScript), for Jupyter's ``_repr_html_``.

Rows are layers (final at the top), columns positions, each cell the top-1 token coloured by a
metric; hovering a cell shows its top-k through the ``title`` attribute.
"""

from __future__ import annotations

import html

import numpy as np

from .metrics import cell_colors, color_limits, get_metric, metric_values
from .text import label, visible
from .view import select_positions, select_rows, top1_matches_target

_CELL = "padding:1px 4px;border:1px solid #fff;white-space:pre;text-align:center"


def _tooltip(result, r: int, p: int) -> str:
    top = " ".join(f"{visible(result.token(t))} {q:.2f}" for t, q in zip(result.top_ids[r, p], result.top_probs[r, p]))
    text = f"layer {result.layer_names[r]}, position {p}\ntop-{result.top_k}: {top}\nentropy {result.entropy[r, p]:.2f}"
    if result.target_ids[p] >= 0:
        text += f"\ntarget p={result.target_prob[r, p]:.3g} rank {int(result.target_rank[r, p]) + 1}"
    return html.escape(text)


def grid_html(
    result, *, metric: str = "entropy", max_positions: int = 40, max_rows: int = 48, max_chars: int = 8
) -> str:
    """HTML table of the result, coloured by ``metric``.

    Args:
        result: a :class:`~logitscope.lens.result.LensResult`.
        metric: ``entropy``, ``prob``, ``target``, ``rank`` or ``kl``.
        max_positions: show at most this many positions (the last ones); a note says what is hidden.
        max_rows: show at most this many layers (every n-th, always the final one).
        max_chars: cut cell labels to this many characters.

    Returns:
        A self-contained HTML fragment with inline styles only.
    """
    m = get_metric(metric)
    P, S = result.n_positions, result.n_streams
    cols = select_positions(P, slice(max(0, P - max_positions), None))
    rows = select_rows(S, max(1, -(-(S - 1) // max(max_rows - 1, 1))))[::-1]  # final layer first
    values = metric_values(result, m)
    bg, fg = cell_colors(values[np.ix_(rows, cols)], m)
    bold = top1_matches_target(result)
    esc = lambda s: html.escape(label(s, max_chars))  # noqa: E731
    head = f'<th style="{_CELL};color:#888;font-weight:normal">{{}}</th>'
    out = [
        '<div style="overflow-x:auto"><table style="border-collapse:collapse;font-family:monospace;font-size:11px">',
    ]
    if any(result.target_ids[p] >= 0 for p in cols):
        targets = [esc(result.token(result.target_ids[p])) if result.target_ids[p] >= 0 else "" for p in cols]
        out.append("<tr>" + head.format("target") + "".join(head.format(t) for t in targets) + "</tr>")
    for i, r in enumerate(rows):
        cells = []
        for j, p in enumerate(cols):
            weight = ";font-weight:bold" if bold[r, p] else ""
            cells.append(
                f'<td style="{_CELL};background:{bg[i, j]};color:{fg[i, j]}{weight}" title="{_tooltip(result, r, p)}">'
                f"{esc(result.token(result.top_ids[r, p, 0]))}</td>"
            )
        out.append(
            f'<tr><th style="{_CELL};text-align:right">{html.escape(result.layer_names[r])}</th>{"".join(cells)}</tr>'
        )
    out.append("<tr>" + head.format("input") + "".join(head.format(esc(result.tokens[p])) for p in cols) + "</tr>")
    out.append("</table></div>")
    lo, hi = color_limits(values, m)
    notes = [
        f"<b>{html.escape(repr(result))}</b>",
        f"colour: {html.escape(m.label)} {_fmt(lo)} {_gradient(m)} {_fmt(hi)}",
    ]
    notes.append("bold: top-1 = target; hover a cell for its top-k")
    if len(cols) < P or len(rows) < S:
        notes.append(f"showing {len(rows)}/{S} layers, last {len(cols)}/{P} positions; res.plot() draws all")
    return '<div style="font-size:12px">' + "<br>".join(notes) + "</div>" + "".join(out)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _gradient(metric) -> str:
    import matplotlib
    from matplotlib.colors import to_hex

    cm = matplotlib.colormaps[metric.cmap]
    stops = ",".join(to_hex(cm(t)) for t in np.linspace(0, 1, 8))
    return f'<span style="display:inline-block;width:90px;height:10px;vertical-align:middle;background:linear-gradient(to right,{stops})"></span>'
