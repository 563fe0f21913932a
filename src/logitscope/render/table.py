"""The result as rich tables for the terminal: rows = layers (final first), columns = positions.

Long inputs are split into pages of positions that fit the console width, so no line ever wraps
into a garbled table.
"""

from __future__ import annotations

import numpy as np

from .metrics import cell_colors, color_limits, get_metric, metric_values
from .text import label
from .view import top1_matches_target


def position_pages(widths: list[int], available: int) -> list[list[int]]:
    """Split columns of the given widths into consecutive pages that fit ``available`` characters.

    Each column costs its width plus 3 (padding and border); a page holds at least one column.
    The pages are as even as the page count allows (9 columns on 2 pages: 5 + 4, never 8 + 1).
    """
    n = len(_greedy(widths, available))
    lo, hi = max((w + 3 for w in widths), default=0), max(available, 0)
    while lo < hi:  # the narrowest page budget that still needs only n pages
        mid = (lo + hi) // 2
        if len(_greedy(widths, mid)) <= n:
            hi = mid
        else:
            lo = mid + 1
    return _greedy(widths, max(lo, 1)) if n > 1 else _greedy(widths, available)


def _greedy(widths: list[int], available: int) -> list[list[int]]:
    pages: list[list[int]] = [[]]
    used = 0
    for j, w in enumerate(widths):
        if pages[-1] and used + w + 3 > available:
            pages.append([])
            used = 0
        pages[-1].append(j)
        used += w + 3
    return pages


def lens_tables(result, *, metric: str = "entropy", width: int = 100, max_chars: int = 10) -> list:
    """rich ``Table`` objects showing the result, one per page of positions.

    Args:
        result: a :class:`~logitscope.lens.result.LensResult`.
        metric: the statistic that colours the cells (see :mod:`.metrics`).
        width: console width in characters.
        max_chars: cut token labels to this many characters.

    Returns:
        A list of ``rich.table.Table``; the header shows position and input token, the first row
        the target token, then one row per layer from the final one down.
    """
    from rich.table import Table
    from rich.text import Text

    m = get_metric(metric)
    values = metric_values(result, m)
    bg, fg = cell_colors(values, m)
    defined = np.isfinite(values)
    bold = top1_matches_target(result)
    P = result.n_positions
    top = [[label(result.token(t), max_chars) for t in row] for row in result.top_ids[:, :, 0]]
    heads = [label(t, max_chars) for t in result.tokens]
    targets = [label(result.token(t), max_chars) if t >= 0 else "" for t in result.target_ids]
    widths = [max([len(heads[p]), len(targets[p]), len(str(p))] + [len(r[p]) for r in top]) for p in range(P)]
    layer_col = max(len(n) for n in [*result.layer_names, "target", "layer"])
    pages = position_pages(widths, max(width - layer_col - 5, 10))  # the layer column: its width, pads, borders
    tables = []
    for cols in pages:
        caption = None
        if len(pages) > 1:
            where = f"{cols[0]}\u2013{cols[-1]}" if len(cols) > 1 else f"{cols[0]}"
            caption = f"position{'s' if len(cols) > 1 else ''} {where} of {P}"
        table = Table(
            title=caption, show_lines=False, collapse_padding=False, title_style="dim",
            min_width=len(caption) if caption else None,  # the caption never wraps
        )  # fmt: skip
        table.add_column("layer", justify="right", no_wrap=True, style="bold", min_width=layer_col)
        for p in cols:
            table.add_column(
                Text(f"{p}\n{heads[p]}"), justify="center", no_wrap=True, overflow="ellipsis", min_width=widths[p]
            )
        if any(targets[p] for p in cols):
            table.add_row(
                Text("target", style="dim italic"),
                *[Text(targets[p], style="dim italic") for p in cols],
                end_section=True,
            )
        for r in range(result.n_streams - 1, -1, -1):
            cells = [  # n/a (NaN) cells keep the terminal's own background: no colour of the scale means n/a
                Text(
                    top[r][p],
                    style=f"{'bold ' if bold[r, p] else ''}{fg[r, p]} on {bg[r, p]}" if defined[r, p] else "dim italic",
                    justify="center",
                )
                for p in cols
            ]
            table.add_row(result.layer_names[r], *cells)
        tables.append(table)
    return tables


def legend(result, metric: str = "entropy", *, width: int | None = None):
    """rich ``Text``: the colour scale of ``metric`` with its range, and what bold and dim cells mean.

    One line, or (when ``width`` is given and the line would not fit) one line per part, so a part
    is never cut in the middle.
    """
    import matplotlib
    from matplotlib.colors import to_hex
    from rich.text import Text

    m = get_metric(metric)
    lo, hi = color_limits(metric_values(result, m), m)
    cmap = matplotlib.colormaps[m.cmap]
    scale = Text(f"colour: {m.label}  {lo:.3g} ")
    for t in np.linspace(0, 1, 12):
        scale.append("\u2588", style=to_hex(cmap(t)))
    scale.append(f" {hi:.3g}{' (log)' if m.log else ''}")
    na = Text("dim italic, uncoloured", style="dim italic")
    na.append(": n/a", style="")
    return join_fitting([scale, Text("bold: top-1 = target"), na], width)


def join_fitting(parts: list, width: int | None, sep: str = " \u00b7 "):
    """rich ``Text`` parts joined by ``sep`` on one line, or packed into lines of at most ``width``
    characters, breaking only between parts (a legend that never wraps mid-item)."""
    from rich.text import Text

    out, line = Text(), 0
    for i, part in enumerate(parts):
        if i:
            if width is not None and line + len(sep) + len(part) > width:
                out.append("\n")
                line = 0
            else:
                out.append(sep)
                line += len(sep)
        out.append_text(part)
        line += len(part)
    return out
