"""Rendering a LensResult: labels, metrics, PNG/SVG/HTML heatmaps, trajectories, notebook grid, tables.

Each format is checked for content (pixels, tokens, layer names), not only for a file existing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import fake_result
from PIL import Image

from logitscope.errors import InputError
from logitscope.render import label, metric_values, plot, plot_trajectory, visible
from logitscope.render.metrics import MISSING, cell_colors, get_metric
from logitscope.render.notebook import grid_html
from logitscope.render.table import lens_tables, position_pages
from logitscope.render.trajectory import trajectory_data
from logitscope.render.view import auto_stride, select_positions, select_rows

GREY = tuple(int(MISSING[i : i + 2], 16) for i in (1, 3, 5))


def test_visible_makes_whitespace_and_controls_visible():
    assert visible(" quick") == "\u2423quick"
    assert visible("\n") == "\u23ce" and visible("\t") == "\u21e5" and visible("") == "\u2205"
    assert visible("a\x00") == "a\\x00" and visible("\r") == "\\r"
    assert visible(" a b", space=None) == " a b"
    assert label(" abcdefghij", 5) == "\u2423abc\u2026" and label("abc", 5) == "abc"


def test_metric_values_and_aliases():
    res = fake_result()
    assert np.array_equal(metric_values(res, "prob"), res.top_probs[:, :, 0].astype(float))
    rank = metric_values(res, "target_rank")
    assert np.isnan(rank[:, -1]).all() and np.array_equal(rank[:, :-1], res.target_rank[:, :-1] + 1)
    assert np.isnan(metric_values(res, "target")[:, -1]).all()
    assert np.allclose(metric_values(res, "kl")[-1], 0, atol=1e-6)
    with pytest.raises(InputError, match="unknown metric"):
        get_metric("perplexity")
    bg, fg = cell_colors(metric_values(res, "rank"), "rank")
    assert (bg[:, -1] == MISSING).all() and all(c.startswith("#") and len(c) == 7 for c in bg.ravel())


def test_views_select_rows_and_positions():
    assert select_rows(41, 4) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert select_rows(10, 4)[-1] == 9  # the final layer is always shown
    rows = select_rows(101, auto_stride(101))
    assert len(rows) <= 64 and rows[-1] == 100
    assert select_positions(10, slice(-3, None)) == [7, 8, 9] and select_positions(10, [-1, 0]) == [9, 0]
    with pytest.raises(InputError):
        select_positions(5, [7])


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("metric", ["entropy", "rank"])
def test_png_heatmap_has_cells_colours_and_grey_missing(tmp_path, metric):
    res = fake_result(S=6, P=10)
    fig = plot(res, tmp_path / "h.png", metric=metric, dpi=60)
    img = _pixels(tmp_path / "h.png")
    w, h = Image.open(tmp_path / "h.png").size
    # Size follows the layout: about (figure inches x dpi), cropped tight; wider than tall here.
    fw, fh = fig.get_size_inches() * 60
    assert 0.6 * fw < w <= fw + 20 and 0.6 * fh < h <= fh + 20 and w > h
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # not blank
    grey = (img == GREY).all(-1).sum()
    if metric == "rank":  # the last position has no target: a column of grey cells
        assert grey > 0.3 * (img.shape[0] * img.shape[1]) / 12 / 3
    else:
        assert grey < 0.001 * img.shape[0] * img.shape[1]  # (a few anti-aliased pixels)
    text = [t.get_text() for t in fig.axes[0].texts]
    top1 = [label(res.token(i), 8) for i in res.top_ids[:, :, 0].ravel()]
    assert sorted(text) == sorted(top1)  # one label per cell: the top-1 token
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == res.layer_names  # final layer on top
    assert fig.axes[0].get_ylim()[0] < fig.axes[0].get_ylim()[1]


def test_png_size_grows_with_positions_and_layers(tmp_path):
    sizes = {}
    for S, P in [(5, 10), (5, 20), (10, 10)]:
        plot(fake_result(S=S, P=P), tmp_path / f"{S}_{P}.png", dpi=40)
        sizes[S, P] = Image.open(tmp_path / f"{S}_{P}.png").size
    assert sizes[5, 20][0] > 1.5 * sizes[5, 10][0]
    assert sizes[10, 10][1] - sizes[5, 10][1] >= 5 * 0.16 * 40  # five more rows of at least 0.16 in


def test_big_heatmap_stays_readable(tmp_path):
    res = fake_result(S=41, P=60, k=1, K=0)
    fig = plot(res, tmp_path / "big.png", dpi=30)
    ax = fig.axes[0]
    assert min(t.get_fontsize() for t in ax.texts) >= 5  # readable when zoomed / printed large
    assert max(len(t.get_text()) for t in ax.texts) <= 6
    w, h = fig.get_size_inches()
    assert w < 36 and h < 14
    assert len(ax.get_yticklabels()) == 41 and len(ax.get_xticklabels()) == 60
    strided = plot(res, metric="prob", stride=4)
    assert [t.get_text() for t in strided.axes[0].get_yticklabels()] == [res.layer_names[r] for r in select_rows(41, 4)]


def test_gif_heatmap_is_the_png_image(tmp_path):
    """``.gif`` works on every supported matplotlib (before 3.11 savefig has no GIF writer)."""
    res = fake_result(S=6, P=10)
    plot(res, tmp_path / "h.png", dpi=60)
    plot(res, tmp_path / "h.gif", dpi=60)
    plot_trajectory(res, -1, tmp_path / "t.gif", dpi=50)
    assert Image.open(tmp_path / "h.gif").format == "GIF" == Image.open(tmp_path / "t.gif").format
    png, gif = _pixels(tmp_path / "h.png").astype(int), _pixels(tmp_path / "h.gif").astype(int)
    assert png.shape == gif.shape
    assert np.abs(png - gif).mean() < 4  # the same picture, up to the 256-colour palette
    assert _pixels(tmp_path / "t.gif").std() > 10


def test_svg_heatmap_is_valid_svg(tmp_path):
    plot(fake_result(), tmp_path / "h.svg", metric="kl")
    root = ET.parse(tmp_path / "h.svg").getroot()
    assert root.tag.endswith("svg") and float(root.get("width").rstrip("pt")) > 100
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 20


def test_html_heatmap_is_self_contained_with_tokens_layers_and_hover(tmp_path):
    res = fake_result(S=4, P=8)
    plot(res, tmp_path / "h.html", metric="rank")
    html = (tmp_path / "h.html").read_text(encoding="utf-8")
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js embedded, not linked
    assert '<script src="http' not in html and "cdn.plot.ly/plotly" not in html
    enc = lambda s: json.dumps(s)[1:-1]  # noqa: E731 - as the figure JSON spells it
    for tok in res.tokens:
        shown = label(tok, 10).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert enc(shown) in html, tok
    for name in res.layer_names:
        assert f'"{name}"' in html
    top2 = visible(res.token(res.top_ids[2, 3, 1]))
    assert enc(f"2. {top2}".replace("<", "&lt;").replace(">", "&gt;")) in html  # hover lists the top-k
    assert "entropy" in html and "target" in html and "rank" in html


def test_trajectory_lines_and_files(tmp_path):
    res = fake_result(S=6, P=5)
    lines = trajectory_data(res, position=2)
    assert list(lines) == [label(t) for t in res.tracked_tokens] + [f"target {label(res.target_tokens[2])}"]
    assert np.allclose(lines[label(res.tracked_tokens[0])], res.tracked_probs[0, :, 2])
    ranks = trajectory_data(res, position=2, value="rank")
    assert np.array_equal(ranks[label(res.tracked_tokens[1])], res.tracked_ranks[1, :, 2] + 1)
    assert len(trajectory_data(res, position=-1)) == 2  # the last position has no target
    fig = plot_trajectory(res, -1, tmp_path / "t.png", value="rank", dpi=50)
    assert fig.axes[0].get_yscale() == "log" and len(fig.axes[0].get_lines()) == 2
    assert _pixels(tmp_path / "t.png").std() > 10
    plot_trajectory(res, 0, tmp_path / "t.html")
    assert json.dumps(label(res.tracked_tokens[0]))[1:-1] in (tmp_path / "t.html").read_text(encoding="utf-8")
    with pytest.raises(InputError, match="track"):
        trajectory_data(fake_result(K=0), position=-1)


def test_notebook_grid_is_plain_html():
    from logitscope.render import notebook_html

    res = fake_result(S=5, P=7)
    assert 'data-logitscope-widget="1"' in res._repr_html_()  # the rich display is the interactive widget
    html = notebook_html(res)
    assert html._repr_html_() == html  # displays as HTML, not as an escaped string
    assert "<table" in html and "<script" not in html
    assert "&lt;b&gt;" in html or " <b>" not in res.tokens  # tokens are escaped
    for name in res.layer_names:
        assert f">{name}</th>" in html
    assert html.index(">4</th>") < html.index(">embed</th>")  # final layer first
    assert html.count("<td") == 5 * 7 and 'title="layer' in html
    rank = grid_html(res, metric="rank")
    assert rank.count(f"background:{MISSING}") == 5  # no target at the last position
    long = grid_html(fake_result(S=5, P=60), max_positions=40)
    assert long.count("<td") == 5 * 40 and "last 40/60 positions" in long


def test_terminal_tables_page_by_position_and_fit_the_width():
    from rich.console import Console

    assert position_pages([3, 3, 3, 3], 13) == [[0, 1], [2, 3]]
    assert position_pages([50, 2], 10) == [[0], [1]]  # a wide column still gets a page
    res = fake_result(S=4, P=14)
    console = Console(width=60, record=True, color_system=None)
    tables = lens_tables(res, width=60)
    assert len(tables) > 1
    for table in tables:
        console.print(table)
    out = console.export_text()
    assert all(len(line) <= 60 for line in out.splitlines())
    for tok in res.tokens:
        assert label(tok, 10) in out
    assert out.index("\u2502      3 \u2502") < out.index("\u2502  embed \u2502")  # padded edges


def test_import_logitscope_does_not_import_plotting():
    code = (
        "import sys, logitscope, logitscope.render, logitscope.lens.export;"
        "print(any(m in sys.modules for m in ('matplotlib', 'plotly', 'torch', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_long_input_on_a_shallow_model_wraps_into_panels():
    res = fake_result(S=4, P=60, k=1, K=0)
    fig = plot(res)
    panels = [ax for ax in fig.axes if ax.images and ax.get_xticklabels()]
    assert len(panels) >= 2
    ticks = [t.get_text() for ax in panels for t in ax.get_xticklabels()]
    assert ticks == [label(t, 12) for t in res.tokens]  # every position once, in order
    assert sum(ax.get_xlabel() == "input token" for ax in panels) == 1
    assert len(plot(res, wrap=0).axes) == 2  # wrap=0: one panel (+ colour bar)
    assert len([ax for ax in plot(res, wrap=20).axes if ax.images]) == 3
