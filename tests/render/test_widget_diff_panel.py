"""The notebook widget of a diff, in Debian's chromium: a clicked cell's panel shows the diff's own
numbers (KL(A ‖ B) and Δ log p of that cell, as ``DiffResult`` holds them), not an empty
"entropy –" (a diff has no entropy) nor "KL to final"."""

from __future__ import annotations

import os
import re

import pytest

import logitscope
from logitscope.render.widget import show

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")


def test_diff_widget_panel_shows_kl_and_delta(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    scope = logitscope.load("demo", device="cpu")
    res = scope.compare(inputs="And God said unto Moses,", against="And the LORD said unto Moses,")
    page_file = tmp_path / "diff.html"
    page_file.write_text(f"<!doctype html><meta charset=utf-8><body>{show(res).html}</body>", encoding="utf-8")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            r, q = 5, 0  # a diff of two prompts: one position (the last of each)
            page.locator(f'[data-part=grid-a] g.cell[data-row="{r}"][data-pos="{q}"]').click()
            page.locator("[data-part=cell-stats]").wait_for()
            page.wait_for_function(
                f"document.querySelector('[data-part=cell-title]').textContent.includes('position {q}')"
            )
            stats = page.inner_text("[data-part=cell-stats]")
        finally:
            browser.close()
    assert "entropy" not in stats and "KL to final" not in stats and "\u2013" not in stats, stats
    kl = float(re.search(r"KL\(A\u2016B\)\s+(-?[\d.]+)", stats).group(1))
    delta = float(re.search(r"\u0394 log p\s+(-?[\d.]+)", stats).group(1))
    # the payload stores these grids to 16 bits of their range; the panel prints 3 decimals
    tol_kl = 1e-3 + (res.kl.max() - res.kl.min()) / 65534
    tol_delta = 1e-3 + (res.delta.max() - res.delta.min()) / 65534
    assert abs(kl - res.kl[r, q]) <= tol_kl, (kl, res.kl[r, q])
    assert abs(delta - res.delta[r, q]) <= tol_delta, (delta, res.delta[r, q])
    assert "top-1 p" in stats
    assert not errors, errors
