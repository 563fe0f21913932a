"""The viewer's PNG export in compare mode, in a real browser (Debian chromium, headless).

The PNG is painted straight onto a canvas from the same layout the page's SVG grids are written
from (grid.js gridScene, paint.js). These tests decode the download and check it against the page:
its size, both grids present, every sampled cell the colour of the same cell on the page, the
selected and the paired cells outlined, and the colour legend drawn. The export's speed is measured
by bench/bench_png_export.py, not here.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from test_serve_browser import CHROMIUM, Server, new_page

PIL = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
PAD, TITLE_H, LEGEND_H = 16, 22, 22  # exporting.js's layout (CSS pixels)
COMPARE = "#m=demo&q=Blessed+be+the+LORD+God%2C+the+God+of&tg=+Israel&cmp=1&qb=And+the+LORD+spake+unto+Moses%2C"


@pytest.fixture(scope="module")
def demo_server():
    srv = Server("demo")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    from test_serve_browser import CHROMIUM_ARGS

    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def hex_rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def grid_geometry(page, side: str) -> dict:
    """The page's SVG grid: its size and every cell's rectangle and fill."""
    return page.eval_on_selector(
        f"#grid-{side} svg",
        """svg => ({
          width: +svg.getAttribute('width'), height: +svg.getAttribute('height'),
          cells: [...svg.querySelectorAll('g.cell rect.bg')].map(r => ({
            x: +r.getAttribute('x'), y: +r.getAttribute('y'), w: +r.getAttribute('width'),
            h: +r.getAttribute('height'), fill: r.getAttribute('fill'),
            row: +r.parentNode.dataset.row, pos: +r.parentNode.dataset.pos })),
          outline: [...svg.querySelectorAll('rect.selected, rect.paired')].map(r => ({
            cls: r.getAttribute('class'), x: +r.getAttribute('x'), y: +r.getAttribute('y') })),
        })""",
    )


def export_png(page):
    with page.expect_download() as info:
        page.click('[data-export="png"]')
    assert info.value.suggested_filename.endswith(".png")
    data = Path(info.value.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = PIL.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def test_compare_png_shows_both_grids_as_on_the_page(demo_server, browser):
    errors: list[str] = []
    page = new_page(browser, errors)
    page.goto(demo_server.url + COMPARE + "&cell=a%3A4%3A4")
    page.wait_for_function("document.querySelector('#kl-chart')?.dataset.positions === '4:4'")
    page.wait_for_selector('#grid-b rect.paired[data-pos="4"]')
    a, b = grid_geometry(page, "a"), grid_geometry(page, "b")
    assert len(a["cells"]) == 9 * 10 and len(b["cells"]) == 9 * 7  # demo: embed + 8 blocks
    img = export_png(page)

    # size: both grids stacked (title above each), the legend below, at 2x
    width = max(a["width"], b["width"], 420) + 2 * PAD
    height = PAD + (TITLE_H + a["height"] + PAD) + (TITLE_H + b["height"] + PAD) + LEGEND_H + PAD
    assert img.size == (2 * width, 2 * height)
    assert len(img.getcolors(1 << 20)) > 200  # not blank: many colours

    tops = {"a": PAD + TITLE_H, "b": PAD + TITLE_H + a["height"] + PAD + TITLE_H}
    for side, grid in (("a", a), ("b", b)):
        top = tops[side]
        half = img.crop((0, 2 * top, img.width, 2 * (top + grid["height"])))
        assert len(half.getcolors(1 << 20)) > 100, side  # this grid has content
        fills = {c["fill"] for c in grid["cells"]}
        assert len(fills) > 5
        for c in grid["cells"]:  # each cell's background, away from its text, is the page's colour
            for dx, dy in ((3, 3), (c["w"] - 3, c["h"] - 3)):
                px = img.getpixel((round(2 * (PAD + c["x"] + dx)), round(2 * (top + c["y"] + dy))))
                assert max(abs(u - v) for u, v in zip(px, hex_rgb(c["fill"]))) <= 2, (side, c, px)
        # the selected (A) / paired (B) outline: its dark stroke at the cell's left edge, mid-height
        (outline,) = grid["outline"]
        assert outline["cls"] == ("selected" if side == "a" else "paired")
        px = img.getpixel((round(2 * (PAD + outline["x"])), round(2 * (top + outline["y"] + 14))))
        assert sum(px) < 3 * 80, (side, px)

    # the legend: a colour bar from the first to the last colour of the metric's scale
    spec = page.evaluate("fetch('/api/models').then(r => r.json())")["metrics"]["entropy"]
    legend_y = 2 * (tops["b"] + b["height"] + PAD + LEGEND_H // 2)
    row = [img.getpixel((x, legend_y)) for x in range(img.width)]
    first, last = hex_rgb(spec["colorscale"][0][1]), hex_rgb(spec["colorscale"][-1][1])
    near = lambda px, rgb: max(abs(u - v) for u, v in zip(px, rgb)) <= 12  # noqa: E731
    assert any(near(px, first) for px in row) and any(near(px, last) for px in row)
    assert not errors, errors


def test_png_of_a_long_prompt_with_sublayers_scales_to_the_pixel_budget(demo_server, browser):
    """2x of two 252-token grids with sub-layers would be ~75M pixels: the export scales down to
    its 16M-pixel budget (exporting.js) and still shows every cell in the page's colours."""
    text = "+".join(["And+God+said,+Let+there+be+light:+and+there+was+light."] * 18)
    page = new_page(browser, [])
    page.goto(demo_server.url + f"#m=demo&q={text}&qb={text}&cmp=1&sub=1")
    page.wait_for_function("document.querySelector('#kl-chart')?.dataset.layers === '9'", timeout=120_000)
    a = grid_geometry(page, "a")
    assert len(a["cells"]) == 17 * 252 and a["width"] > 12_000
    img = export_png(page)
    ratio = img.width / (a["width"] + 2 * PAD)
    assert 0.5 < ratio < 2 and img.width * img.height <= 16e6 * 1.001
    for c in a["cells"][::97]:  # cells across the grid are still the page's colours
        px = img.getpixel((round(ratio * (PAD + c["x"] + 4)), round(ratio * (PAD + TITLE_H + c["y"] + 4))))
        assert max(abs(u - v) for u, v in zip(px, hex_rgb(c["fill"]))) <= 2, (c, px)
