"""Notebooks: the example notebook executed with nbconvert, its widgets driven in Debian's chromium.

``examples/lens_demo.ipynb`` runs offline on the demo model. Its lens cells display the viewer's
lens grid (the same ES modules, inlined); its plotting cells display images; its other results
display tables. ``LOGITSCOPE_SCREENSHOTS=docs/img`` also writes the docs' notebook screenshots.

Needs nbconvert, nbformat and ipykernel (the ``dev`` extra) and /usr/bin/chromium; skipped without.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from logitscope.render.widget import show

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "lens_demo.ipynb"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(os.environ["LOGITSCOPE_SCREENSHOTS"]) if os.environ.get("LOGITSCOPE_SCREENSHOTS") else None
PROMPT, TARGET, TRACK = "Blessed be the LORD God, the God of", " Israel", [" God"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbconvert")
    pytest.importorskip("ipykernel")
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    out = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env_path) if p)
    try:
        ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(nb, {"metadata": {"path": str(out)}})
    finally:
        os.environ["PYTHONPATH"] = env_path
    html, _ = HTMLExporter().from_notebook_node(nb)
    page = out / "lens_demo.html"
    page.write_text(html, encoding="utf-8")
    return nb, page


def outputs(cell) -> list[dict]:
    return [
        o.get("data", {}) for o in cell.get("outputs", []) if o["output_type"] in ("execute_result", "display_data")
    ]


def tagged(nb, tag):
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def test_every_plot_table_and_widget_displays(executed):
    nb, _ = executed
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors
    plots = tagged(nb, "plot")
    assert len(plots) >= 7  # res.plot, plot_trajectory, plot(path), diff, attribution x2, eval curves
    for cell in plots:
        shown = outputs(cell)
        assert shown, cell.source
        last = shown[-1]
        assert "image/png" in last or "text/html" in last, (cell.source, list(last))
        assert not last.get("text/plain", "").startswith("<Figure") or "image/png" in last
    for cell in tagged(nb, "widget"):
        assert 'data-logitscope-widget="1"' in outputs(cell)[-1]["text/html"], cell.source
    for cell in tagged(nb, "table"):
        html = outputs(cell)[-1]["text/html"]
        assert "<table" in html and "tensor(" not in html and "array(" not in html, cell.source


def new_page(browser, errors):
    page = browser.new_page(viewport={"width": 1400, "height": 950})
    page.route("http*://**", lambda route: route.abort())  # the page's own CDN links (nbconvert's template)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(30_000)
    return page


def widget_top(page, w, side="a"):
    return page.eval_on_selector_all(
        f".ls-w >> nth={w} >> [data-part=topk-list] .topk-row",
        "els => els.map(e => [e.dataset.token, +e.dataset.prob])",
    )


def test_widget_in_chromium_matches_scope_lens(executed):
    pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    import logitscope

    _, html = executed
    res = logitscope.load("demo", device="cpu").lens(PROMPT, target=TARGET, track=TRACK, top_k=10)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = new_page(browser, errors)
        page.goto(html.as_uri())
        page.wait_for_function("document.querySelectorAll('.ls-w [data-part=grid-a] svg').length >= 5")
        assert page.evaluate("typeof window.__ls === 'undefined' && typeof window.mountWidget === 'undefined'")
        ids = page.eval_on_selector_all(".ls-w.ls-root", "els => els.map(e => e.id)")
        assert len(ids) == len(set(ids)) >= 5
        w0 = page.locator(".ls-w.ls-root").nth(0)
        w1 = page.locator(".ls-w.ls-root").nth(1)

        # the grid is the lens: every cell's top-1 is scope.lens's
        top1 = w0.locator("[data-part=grid-a] g.cell").evaluate_all(
            "els => els.map(e => [+e.dataset.row, +e.dataset.pos, +e.dataset.top1])"
        )
        grid = np.zeros((res.n_streams, res.n_positions), np.int64)
        for r, q, t in top1:
            grid[r, q] = t
        np.testing.assert_array_equal(grid, res.top_ids[:, :, 0])

        # click a cell: the panel's top-k is scope.lens's (probabilities stored to 16 bits in log space)
        r, q = 4, 3
        w0.locator(f'[data-part=grid-a] g.cell[data-row="{r}"][data-pos="{q}"]').click()
        w0.locator(f'[data-part=topk-list][data-layer="{r}"][data-pos="{q}"]').wait_for()
        rows = w0.locator("[data-part=topk-list] .topk-row").evaluate_all(
            "els => els.map(e => [e.dataset.token, +e.dataset.prob])"
        )
        assert [t for t, _ in rows] == res.top_tokens[r][q]
        np.testing.assert_allclose([x for _, x in rows], res.top_probs[r, q], rtol=4e-4)
        deltas = w0.locator("[data-part=topk-list] .delta").evaluate_all("els => els.map(e => e.textContent)")
        assert len(deltas) == 10 and all(d for d in deltas)
        # the rank change of the top-1 against the layer below, where both are in the top-k, is exact
        below = list(res.top_ids[r - 1, q])
        first = int(res.top_ids[r, q, 0])
        if first in below:
            d = below.index(first)
            assert deltas[0] == ("=" if d == 0 else f"\u25b2{d}")

        # the tracked token is pinned; pin another from the panel: a second pinned trajectory appears
        chart = w0.locator("[data-part=traj-chart]")
        assert chart.get_attribute("data-pinned") == "1"
        w0.locator("[data-part=topk-list] .topk-row .pin-btn:not(.on)").first.click()
        page.wait_for_function("document.querySelector('.ls-w [data-part=traj-chart]').dataset.pinned === '2'")
        assert w0.locator("[data-part=pins] .chip").count() == 2
        assert w0.locator("[data-part=traj-chart] .trace").count() == int(chart.get_attribute("data-series")) >= 2
        # typed pins: a token of the result is found, any other is refused with a message
        w0.locator("[data-part=pin-input]").fill("\u2423Israel")
        w0.locator("[data-part=pin-input]").press("Enter")
        page.wait_for_function("document.querySelector('.ls-w [data-part=traj-chart]').dataset.pinned === '3'")
        w0.locator("[data-part=pin-input]").fill("zzzz-not-a-token")
        w0.locator("[data-part=pin-input]").press("Enter")
        assert "not among" in w0.locator(".toast").inner_text()

        # widgets are independent: the metric switch and the selection of one leave the other alone
        fills = "els => els.map(e => e.querySelector('rect').getAttribute('fill'))"
        before0 = w0.locator("[data-part=grid-a] g.cell").evaluate_all(fills)
        before1 = w1.locator("[data-part=grid-a] g.cell").evaluate_all(fills)
        title1 = w1.locator("[data-part=cell-title]").inner_text()
        w0.locator('[data-part=metric] button[data-metric="kl"]').click()
        assert w0.locator("[data-part=grid-a] g.cell").evaluate_all(fills) != before0
        assert w1.locator("[data-part=grid-a] g.cell").evaluate_all(fills) == before1
        assert w1.locator("[data-part=cell-title]").inner_text() == title1
        assert w1.locator("[data-part=pins] .chip").count() == 1
        if SHOTS:
            SHOTS.mkdir(parents=True, exist_ok=True)
            w0.screenshot(path=str(SHOTS / "notebook_lens.png"))

        # sub-layer rows are rows of the grid
        names = page.locator(".ls-w.ls-root").nth(2).locator("[data-part=grid-a] g.cell[data-pos='0']")
        assert names.evaluate_all("els => els.map(e => e.dataset.name)")[:3] == ["embed", "1.attn", "1"]

        # the diff: two linked grids; a click on B shows B's top-k, marks A's paired cell, draws the KL
        diff = page.locator(".ls-w.ls-root").nth(4)
        assert diff.locator("[data-part=card-b]").is_visible()
        diff.locator('[data-part=grid-b] g.cell[data-row="4"][data-pos="0"]').click()
        diff.locator("[data-part=grid-a] rect.paired").wait_for()
        assert diff.locator("[data-part=kl-chart] .trace").count() == 1
        assert diff.locator("[data-part=kl-chart]").get_attribute("data-layers") == "9"
        assert "B" in diff.locator("[data-part=cell-title]").inner_text()
        if SHOTS:
            diff.screenshot(path=str(SHOTS / "notebook_diff.png"))
        browser.close()
    assert not errors, errors


def _synthetic(S: int, P: int, k: int, V: int = 50_000):
    from logitscope import LensResult

    rng = np.random.default_rng(0)
    probs = np.sort(rng.dirichlet(np.ones(200), size=(S, P))[:, :, :k], axis=-1)[:, :, ::-1].astype(np.float32)
    ids = np.minimum(rng.zipf(1.3, size=(S, P, k)), V - 1)  # a lens repeats tokens across cells
    return LensResult(
        tokens=[f"t{i}" for i in range(P)],
        token_ids=rng.integers(0, V, P),
        layer_names=["embed"] + [str(i) for i in range(1, S)],
        layers=np.arange(S),
        entropy=rng.uniform(0, 10, (S, P)).astype(np.float32),
        kl_to_final=rng.uniform(0, 10, (S, P)).astype(np.float32),
        top_ids=ids,
        top_probs=probs,
        target_ids=np.full(P, -1),
        target_prob=np.full((S, P), np.nan, np.float32),
        target_logprob=np.full((S, P), np.nan, np.float32),
        target_rank=np.full((S, P), -1),
        tracked_ids=np.array([5, 7]),
        tracked_probs=rng.uniform(0, 1, (2, S, P)).astype(np.float32),
        tracked_ranks=rng.integers(0, V, (2, S, P)),
        vocab={int(i): f"tok{i}" for i in np.unique(np.concatenate([ids.ravel(), [5, 7]]))},
        meta={"model": "synthetic", "n_blocks": S - 1, "kind": "causal", "lens": "logit"},
    )


def test_widget_payload_is_bounded():
    big = show(_synthetic(41, 500, 10))  # 40 layers x 500 positions, top-10
    assert big.payload["a"]["arrays"]["top_ids"]["shape"] == [41, 500, 5]  # k shrinks with the grid
    assert "top-5 of the result's 10" in big.payload["note"]
    assert big.nbytes < 1_000_000, big.nbytes
    small = show(_synthetic(9, 10, 10))
    assert small.payload["a"]["arrays"]["top_ids"]["shape"] == [9, 10, 10]
    huge = show(_synthetic(9, 3000, 10))
    assert len(huge.payload["a"]["tokens"]) == 1000 and "last 1000 of 3000" in huge.payload["note"]


def test_two_widgets_have_their_own_roots_and_no_globals():
    a, b = show(_synthetic(3, 4, 3)).html, show(_synthetic(3, 4, 3)).html
    ida, idb = (h.split('id="', 1)[1].split('"', 1)[0] for h in (a, b))
    assert ida != idb and ida.startswith("ls-")
    script = a.split("<script>", 1)[1]
    assert script.startswith("(() => {") and "</script" not in script.rsplit("</script>", 1)[0]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", a) and "import(" not in a  # nothing fetched
    json.loads(json.dumps(show(_synthetic(3, 4, 3)).payload))  # plain JSON, no NaN
