"""``logitscope serve`` in a real browser: Debian's chromium driven headless by Playwright.

One live server (the CLI itself, in a subprocess, on a free port) serves two tiny GPT-2s that share
a tokenizer (3 and 5 blocks). The page is checked against ``scope.lens`` of the same weights, loaded
here. Skipped when /usr/bin/chromium is missing (``scripts/dev.sh`` installs it with apt-get).

``LOGITSCOPE_SCREENSHOTS=docs/img pytest tests/serve/test_serve_browser.py -k docs`` re-makes the
screenshots of docs/serve.md from the bundled demo model.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tiny

from logitscope.render.text import visible

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
PROMPT = "The quick brown fox jumps over the lazy dog"
PROMPT_B = "The cat sat on the mat; the dog sat on the log"
SHOTS = Path(os.environ.get("LOGITSCOPE_SCREENSHOTS", "")) if os.environ.get("LOGITSCOPE_SCREENSHOTS") else None


class Server:
    """``logitscope serve MODELS --port 0`` in a subprocess; ``url`` once it is listening."""

    def __init__(self, *models: str) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "logitscope", "serve", *models, "--port", "0", "--device", "cpu"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = None
        while self.url is None:
            line = self.lines.get(timeout=120)
            match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if match:
                self.url = match.group(1)
            elif self.proc.poll() is not None:
                raise RuntimeError("logitscope serve exited: " + "".join(self.log))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)

    def stop(self) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_models")
    tiny.saved_gpt2(root / "tiny-a")
    tiny.saved_gpt2(root / "tiny-b", n_layer=5, seed=1)
    return root


@pytest.fixture(scope="module")
def server(model_dirs):
    srv = Server(str(model_dirs / "tiny-a"), str(model_dirs / "tiny-b"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def scope(model_dirs):
    import logitscope

    return logitscope.load(str(model_dirs / "tiny-a"), device="cpu")


def new_page(browser, errors: list[str], *, strict: bool = False):
    """A page; ``strict`` keeps the server's Content-Security-Policy in force (Playwright's
    ``wait_for_function`` evaluates strings, which that policy forbids, so other pages bypass it)."""
    page = browser.new_page(viewport={"width": 1500, "height": 950}, bypass_csp=not strict)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(30_000)
    return page


def wait_grid(page, side: str, cols: int) -> None:
    page.wait_for_function(
        f"document.querySelector('#grid-{side} svg')?.dataset.cols === '{cols}'"
        f" && !document.querySelector('#grid-{side}').classList.contains('stale')"
    )


def cell_fills(page, side: str = "a") -> dict[tuple[int, int], str]:
    cells = page.eval_on_selector_all(
        f"#grid-{side} g.cell",
        "els => els.map(e => [+e.dataset.row, +e.dataset.pos, e.querySelector('rect').getAttribute('fill')])",
    )
    return {(r, p): fill for r, p, fill in cells}


def test_grid_panel_metric_pin_compare_and_reload(server, browser, scope, tmp_path):
    errors: list[str] = []
    page = new_page(browser, errors)
    page.goto(server.url)
    page.wait_for_selector("#grid-a svg g.cell")

    # type a prompt: the grid has layers x positions cells, each showing the lens's top-1
    res = scope.lens(PROMPT, top_k=10)
    S, P = res.n_streams, res.n_positions
    page.fill("#text", PROMPT)
    wait_grid(page, "a", P)
    assert page.locator("#grid-a g.cell").count() == S * P
    top1 = page.eval_on_selector_all(
        "#grid-a g.cell", "els => els.map(e => [+e.dataset.row, +e.dataset.pos, +e.dataset.top1])"
    )
    grid = np.zeros((S, P), dtype=np.int64)
    for r, p, t in top1:
        grid[r, p] = t
    np.testing.assert_array_equal(grid, res.top_ids[:, :, 0])

    # click a cell: the panel's tokens and probabilities are scope.lens's for that cell
    r, p = 1, 3
    page.click(f'#grid-a g.cell[data-row="{r}"][data-pos="{p}"]')
    page.wait_for_selector(f'#topk-list[data-layer="{r}"][data-pos="{p}"]')
    rows = page.eval_on_selector_all("#topk-list .topk-row", "els => els.map(e => [e.dataset.token, +e.dataset.prob])")
    assert [t for t, _ in rows] == res.top_tokens[r][p]
    np.testing.assert_allclose([q for _, q in rows], res.top_probs[r, p], rtol=1e-6)
    page.wait_for_function("[...document.querySelectorAll('#topk-list .delta')].every(d => d.textContent !== '\u2026')")
    assert page.locator("#topk-list .delta.up, #topk-list .delta.down, #topk-list .delta.same").count() == 10
    assert f"cell=a%3A{r}%3A{p}" in page.url
    page.keyboard.press("ArrowUp")  # the arrow keys move the selection
    page.wait_for_selector(f'#topk-list[data-layer="{r + 1}"][data-pos="{p}"]')
    page.keyboard.press("ArrowDown")
    page.wait_for_selector(f'#topk-list[data-layer="{r}"][data-pos="{p}"]')

    # switch metric: KL to final colours the output row uniformly (KL = 0 there)
    before = cell_fills(page)
    page.click('#metric button[data-metric="kl"]')
    assert "active" in page.get_attribute('#metric button[data-metric="kl"]', "class")
    assert "KL" in page.inner_text("#legend-a")
    after = cell_fills(page)
    assert after != before
    assert len({after[(S - 1, q)] for q in range(P)}) == 1

    # pin a token (from the panel, by id, and typed): trajectories appear, the lens tracks them
    page.click("#topk-list .topk-row:nth-child(2) .pin-btn")
    page.wait_for_function("document.querySelector('#traj-chart')?.dataset.pinned === '1'")
    typed = next(w for w in (" the", " fox", " dog", "The") if len(scope.tokenizer(w)["input_ids"]) == 1)
    page.fill("#pin-input", typed)
    page.press("#pin-input", "Enter")
    page.wait_for_function("document.querySelector('#traj-chart')?.dataset.pinned === '2'")
    assert page.locator("#pins .chip").count() == 2
    n_series = int(page.get_attribute("#traj-chart", "data-series"))
    assert page.locator("#traj-chart .scatterlayer .trace").count() == n_series >= 2
    page.click('#traj-mode button[data-v="rank"]')
    page.wait_for_selector("#traj-chart .ytick")

    # compare mode: a second prompt on the 5-block model; per-layer KL aligned by fraction of depth
    page.check("#compare")
    page.select_option("#model-b", "tiny-b")
    page.fill("#text-b", PROMPT_B)
    n_b = len(scope.tokenizer(PROMPT_B)["input_ids"])
    wait_grid(page, "b", n_b)
    page.wait_for_function("document.querySelector('#kl-chart')?.dataset.layers === '4'")
    assert page.locator("#grid-b g.cell").count() == 6 * n_b
    assert page.locator("#kl-chart .scatterlayer .trace").count() == 2
    assert page.is_hidden("#error-kl")
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

    # reload from the copied URL: the same view comes back
    url = page.url
    state = {
        "text": page.input_value("#text"),
        "text_b": page.input_value("#text-b"),
        "cell": (page.get_attribute("#topk-list", "data-layer"), page.get_attribute("#topk-list", "data-pos")),
        "fills": cell_fills(page),
        "fills_b": cell_fills(page, "b"),
    }
    page2 = new_page(browser, errors)
    page2.goto(url)
    wait_grid(page2, "a", P)
    wait_grid(page2, "b", n_b)
    page2.wait_for_function("document.querySelector('#traj-chart')?.dataset.pinned === '2'")
    assert page2.input_value("#text") == state["text"] == PROMPT
    assert page2.input_value("#text-b") == state["text_b"] == PROMPT_B
    assert page2.is_checked("#compare") and page2.input_value("#model-b") == "tiny-b"
    assert "active" in page2.get_attribute('#metric button[data-metric="kl"]', "class")
    assert "active" in page2.get_attribute('#traj-mode button[data-v="rank"]', "class")
    assert page2.locator("#pins .chip").count() == 2
    assert (page2.get_attribute("#topk-list", "data-layer"), page2.get_attribute("#topk-list", "data-pos")) == state[
        "cell"
    ]
    assert cell_fills(page2) == state["fills"] and cell_fills(page2, "b") == state["fills_b"]
    page2.screenshot(path=str(tmp_path / "reloaded.png"), full_page=True)
    assert not errors, errors


def test_refusals_show_a_message_not_a_traceback(server, browser):
    errors: list[str] = []
    page = new_page(browser, errors)
    page.goto(server.url + "#q=hello")
    page.wait_for_selector("#grid-a svg g.cell")
    page.fill("#text", "x" * 4001)
    page.wait_for_selector("#error-a:not([hidden])")
    message = page.inner_text("#error-a")
    assert "4000" in message and "Traceback" not in message
    page.fill("#text", "hello again")
    page.wait_for_selector("#error-a", state="hidden")
    page.fill("#pin-input", " quick brown fox")
    page.press("#pin-input", "Enter")
    page.wait_for_selector("#toast:not([hidden])")
    assert "one token" in page.inner_text("#toast")
    page.wait_for_function("document.querySelectorAll('#pins .chip').length === 0")
    page.wait_for_selector("#grid-a svg g.cell")
    assert page.is_hidden("#error-a")

    # sub-layers: a "l.attn" row below each block row (2L + 1 rows); the panel compares with the row below
    assert page.is_disabled('#lens-kind button[data-lens="tuned"]')  # no tuned lens for this model
    page.check("#sublayers")
    page.wait_for_function("document.querySelector('#grid-a svg')?.dataset.rows === '7'")
    names = page.eval_on_selector_all("#grid-a g.cell[data-pos='0']", "els => els.map(e => e.dataset.name)")
    assert names == ["embed", "1.attn", "1", "2.attn", "2", "3.attn", "3"]
    assert "sub=1" in page.url
    page.click('#grid-a g.cell[data-name="2"][data-pos="1"]')
    page.wait_for_function("document.querySelector('#rank-note').textContent === 'rank change vs layer 2.attn'")
    page.wait_for_function("[...document.querySelectorAll('#topk-list .delta')].every(d => d.textContent !== '\u2026')")
    assert "cell=a%3A2%3A1" in page.url
    assert page.locator("#topk-list .delta.up, #topk-list .delta.down, #topk-list .delta.same").count() > 0


def test_logits_and_embeddings_tabs(server, browser, scope):
    errors: list[str] = []
    page = new_page(browser, errors, strict=True)  # the page and plotly work under the strict CSP
    page.goto(server.url + "#t=logits&q=" + PROMPT.replace(" ", "+") + "&g=3")
    page.wait_for_selector("#logits-table tr[data-row]")
    out = scope.logits(PROMPT, generate=3)
    assert page.locator("#logits-table tr[data-row]").count() == len(out.generated_ids)
    assert out.generated_text in page.inner_text("#generated")
    page.click(".tabs button[data-tab=embed]")
    page.fill("#embed-query", " fox")
    page.click("#embed-run")
    page.wait_for_selector(".nn-card")
    ids = scope.tokenizer(" fox", add_special_tokens=False)["input_ids"]  # each token is one query
    near = scope.nearest(ids, k=12)
    assert page.locator(".nn-card").count() == len(ids)
    shown = page.eval_on_selector_all(".nn-card .nn-list li .tok", "els => els.map(e => e.textContent)")
    assert shown == [visible(t) for n in near for t in n.tokens]
    assert not errors, errors


def test_exports_download_what_the_cli_writes(server, browser, scope):
    from logitscope.lens.export import to_json

    page = new_page(browser, [])
    page.goto(server.url + "#q=The+quick+fox&k=4")
    wait_grid(page, "a", scope.lens("The quick fox").n_positions)
    with page.expect_download() as info:
        page.click('[data-export="json"]')
    assert info.value.suggested_filename == "logitscope-tiny-a.json"
    data = json.loads(Path(info.value.path()).read_text())
    assert data == json.loads(to_json(scope.lens("The quick fox", top_k=4)))
    with page.expect_download() as info:
        page.click('[data-export="png"]')
    png = Path(info.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


@pytest.mark.skipif(SHOTS is None, reason="set LOGITSCOPE_SCREENSHOTS=<dir> to re-make the docs screenshots")
def test_docs_screenshots(browser):
    srv = Server("demo")
    try:
        page = new_page(browser, [])
        base = srv.url
        lens_url = base + "#q=Blessed+be+the+LORD+God%2C+the+God+of&tg=+Israel&pin=%5B%22+Israel%22%5D&cell=a%3A5%3A8"
        page.goto(lens_url)
        page.wait_for_selector("#traj-chart .trace")
        page.wait_for_timeout(800)
        SHOTS.mkdir(parents=True, exist_ok=True)
        assert page.locator("#grid-a g.cell").count() == 9 * 10  # demo: embed + 8 blocks, 10 positions
        page.screenshot(path=str(SHOTS / "serve_lens.png"), full_page=True)
        page.goto("about:blank")
        page.goto(base + "#q=And+God+said+unto+Moses%2C&qb=And+the+LORD+spake+unto+Moses%2C&cmp=1&c=prob")
        page.wait_for_function("document.querySelector('#kl-chart')?.dataset.layers === '9'")
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "serve_compare.png"), full_page=True)
        page.goto("about:blank")
        page.goto(base + "#q=Blessed+be+the+LORD+God%2C+the+God+of&tg=+Israel&sub=1&cell=a%3A5.attn%3A8")
        page.wait_for_selector("#traj-chart .trace")
        page.wait_for_timeout(800)
        assert page.eval_on_selector("#grid-a svg", "e => e.dataset.rows") == "17"  # embed + 8 × (attn, block)
        page.screenshot(path=str(SHOTS / "serve_sublayers.png"), full_page=True)
    finally:
        srv.stop()
    from PIL import Image

    for name in ("serve_lens.png", "serve_compare.png", "serve_sublayers.png"):
        with Image.open(SHOTS / name) as img:  # a full page, not a blank or cropped capture
            assert img.width >= 1200 and img.height >= 800 and len(img.getcolors(1 << 16) or range(1 << 16)) > 50


def test_compare_pairs_the_same_token_on_both_sides(server, browser):
    """A prompt with a target against the same prompt without: positions pair by token index,
    identical inputs give KL 0 at every layer, and both grids mark the cells compared."""
    errors: list[str] = []
    page = new_page(browser, errors)
    q = PROMPT.replace(" ", "+")
    page.goto(server.url + f"#q={q}&tg=+the+end&cmp=1&qb={q}&mb=tiny-a&cell=a%3A2%3A4")
    page.wait_for_function("document.querySelector('#kl-chart')?.dataset.positions === '4:4'")
    title = page.inner_text("#kl-title")
    assert "A at position 4" in title and "B at position 4" in title
    assert float(page.get_attribute("#kl-chart", "data-kl-max")) < 1e-6  # the same prefix: the same distributions
    page.wait_for_selector('#grid-b rect.paired[data-pos="4"][data-row="2"]')
    assert page.locator('#grid-a rect.selected[data-pos="4"]').count() == 1
    # a click on B: B's cell is the selection, A's same position is marked
    page.click('#grid-b g.cell[data-row="1"][data-pos="2"]')
    page.wait_for_function("document.querySelector('#kl-chart')?.dataset.positions === '2:2'")
    page.wait_for_selector('#grid-a rect.paired[data-pos="2"][data-row="1"]')
    assert page.locator('#grid-b rect.selected[data-pos="2"]').count() == 1
    assert not errors, errors


def bert_folder(path: Path) -> Path:
    """A tiny BERT (masked LM) with a word-level tokenizer, saved as a folder the CLI loads."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted({w[0] for w in pre_tokenizers.Whitespace().pre_tokenize_str(tiny.TEXT.lower())})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )  # fmt: skip
    tiny.build("bert").save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_viewer_controls_a_new_user_hits(browser, tmp_path):
    """The insert-mask button of masked LMs, titles and errors after a failure or an empty prompt,
    numbers from a link clamped, tuned lens and sub-layer rows exclusive, an empty Embeddings query."""
    srv = Server("demo", str(bert_folder(tmp_path / "tiny-bert")))
    try:
        errors: list[str] = []
        page = new_page(browser, errors)
        bad: list = []  # every refused request, for the message
        page.on("response", lambda r: bad.append((r.url, r.status, r.request.post_data)) if r.status >= 400 else None)
        # a link asking for k=-5 and for sub-layers with the tuned lens: k clamps to 1, the tuned lens wins
        page.goto(srv.url + "#q=And+God+said&k=-5&sub=1&lens=tuned")
        page.wait_for_selector("#grid-a svg g.cell")
        assert page.input_value("#topk") == "1" and "k=1" in page.url
        assert page.locator("#topk-list .topk-row").count() == 1
        assert page.is_hidden("#error-a")
        assert not page.is_checked("#sublayers") and page.is_disabled("#sublayers")
        assert "tuned" in page.inner_text("#title-a") or "active" in page.get_attribute(
            '#lens-kind button[data-lens="tuned"]', "class"
        )
        page.click('#lens-kind button[data-lens="logit"]')  # the logit lens: sub-layers selectable again
        assert page.is_enabled("#sublayers")
        page.check("#sublayers")
        page.wait_for_function("document.querySelector('#grid-a svg')?.dataset.rows === '17'")
        page.click('#lens-kind button[data-lens="tuned"]')
        assert not page.is_checked("#sublayers")
        page.wait_for_function("document.querySelector('#grid-a svg')?.dataset.rows === '9'")
        assert page.is_hidden("#error-a")

        # an error: no grid, the title names only the model; clearing the prompt clears the error
        page.fill("#text", "God " * 600)  # over the model's context (512): 413, in the viewer's words
        page.wait_for_selector("#error-a:not([hidden])")
        message = page.inner_text("#error-a")
        assert "context" in message and "truncate" not in message and "=" not in message
        assert "rows" not in page.inner_text("#title-a") and "no result" in page.inner_text("#title-a")
        assert page.locator("#grid-a svg").count() == 0
        page.fill("#text", "")
        page.wait_for_selector("#error-a", state="hidden")
        assert "Type a prompt" in page.inner_text("#panel-empty")

        # a masked LM: the insert-mask button is visible (the target field is not) and inserts the mask
        page.select_option("#model", "tiny-bert")
        page.wait_for_selector("#insert-mask:visible")
        assert page.is_hidden("#target-field")
        page.fill("#text", "the quick brown fox")
        page.click("#text")
        page.keyboard.press("End")
        page.click("#insert-mask")
        assert page.input_value("#text").endswith("[MASK]")
        page.wait_for_function(
            "[...document.querySelectorAll('#grid-a .xlabel')].some(e => e.textContent === '[MASK]')"
        )

        # the Embeddings tab with an empty query: a hint, no neighbours of anything
        page.click(".tabs button[data-tab=embed]")
        assert page.input_value("#embed-query") == ""
        page.click("#embed-run")
        assert page.is_visible("#embed-empty") and page.locator(".nn-card").count() == 0
        page.fill("#embed-query", "fox")
        page.click("#embed-run")
        page.wait_for_selector(".nn-card")
        assert page.is_hidden("#embed-empty")
        page.fill("#embed-query", "")
        page.click("#embed-run")
        page.wait_for_function("document.querySelectorAll('.nn-card').length === 0")
        assert not [e for e in errors if "status of 413" not in e], (errors, bad)  # the 413 asked for above
    finally:
        srv.stop()


def test_ctrl_c_stops_the_server_cleanly(server):  # last test using the module's server
    assert server.stop() == 0
    assert any("stopped" in line for line in server.log)
    assert not any("Traceback" in line for line in server.log), "".join(server.log)
