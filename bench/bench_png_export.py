"""Benchmark: the viewer's PNG export in compare mode, the canvas painter against SVG rasterizing.

Starts ``logitscope serve demo`` (a subprocess on 127.0.0.1), opens compare views in Debian's
chromium (headless, Playwright; never downloads a browser) and times, from the click to the
download, in one run:

* ``paint``: the page's export button (exporting.js: the grid scenes painted onto an
  OffscreenCanvas, at 2x up to 16M pixels);
* ``svg``: the export as it was before (each grid's SVG serialized, loaded as an image, drawn
  onto one 2x page canvas, ``toBlob``), run on the same grids, through the same download;

each as a fresh page's first export (chromium's ``toBlob`` waits for the page to go idle, up to
1 s) and as a second export in that page.

Views: the demo's compare example (10 and 7 positions) and a long one (210 positions each, with
sub-layer rows: 17 rows). Prints the median of ``--repeats`` runs and the ratio::

    .venv/bin/python bench/bench_png_export.py          # ~3 min on a shared 2-core CPU
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

CHROMIUM = "/usr/bin/chromium"
SHORT = "#m=demo&q=Blessed+be+the+LORD+God%2C+the+God+of&tg=+Israel&cmp=1&qb=And+the+LORD+spake+unto+Moses%2C"
LONG_TEXT = urllib.parse.quote_plus(" ".join(["And God said, Let there be light: and there was light."] * 15))
LONG = f"#m=demo&q={LONG_TEXT}&qb={LONG_TEXT}&cmp=1&sub=1"

# The export before the canvas painter (exporting.js at 3bfe654), kept here as the baseline.
SVG_EXPORT = """async () => {
  const { download } = await import('/static/js/exporting.js');
  const svgs = [...document.querySelectorAll('#grid-a svg, #grid-b svg')];
  const scale = 2, pad = 16;
  const sizes = svgs.map((s) => [Number(s.getAttribute('width')), Number(s.getAttribute('height'))]);
  const width = Math.max(...sizes.map((s) => s[0])) + 2 * pad;
  const height = sizes.reduce((h, s) => h + s[1] + pad, pad);
  const canvas = Object.assign(document.createElement('canvas'), { width: width * scale, height: height * scale });
  const ctx = canvas.getContext('2d');
  ctx.scale(scale, scale);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  let y = pad;
  for (const [i, svg] of svgs.entries()) {
    const text = new XMLSerializer().serializeToString(svg);
    const img = new Image();
    const url = URL.createObjectURL(new Blob([text], { type: 'image/svg+xml' }));
    await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
    ctx.drawImage(img, pad, y, sizes[i][0], sizes[i][1]);
    URL.revokeObjectURL(url);
    y += sizes[i][1] + pad;
  }
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  download(blob, 'svg.png');
}"""

# The baseline behind a button of its own: both exports start from a click, as a user's does.
ADD_BUTTON = (
    "() => { const b = Object.assign(document.createElement('button'), { id: 'bench-svg-export', textContent: 'svg' });"
    f" b.onclick = {SVG_EXPORT}; document.querySelector('header, body').prepend(b); }}"
)


def start_server():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "logitscope", "serve", "demo", "--port", "0", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stderr:
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # keep draining
            return proc, match.group(1)
    raise RuntimeError("the server did not start")


METHODS = {
    "paint": lambda page: page.click('[data-export="png"]'),
    "svg": lambda page: page.click("#bench-svg-export"),
}


def timed(page, action) -> tuple[float, int]:
    t0 = time.perf_counter()
    with page.expect_download(timeout=120_000) as info:
        action()
    size = os.path.getsize(info.value.path())
    return time.perf_counter() - t0, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    proc, url = start_server()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            for name, view in (("demo compare (10 + 7 positions)", SHORT), ("210 + 210 positions, sub-layers", LONG)):
                times = {(k, w): [] for k in METHODS for w in ("first", "again")}
                sizes = {}
                for _ in range(args.repeats):  # interleaved: both see the same machine load
                    for k, action in METHODS.items():
                        page = browser.new_page(viewport={"width": 1500, "height": 950}, bypass_csp=True)
                        page.goto(url + view)
                        page.wait_for_function(
                            "document.querySelector('#kl-chart')?.dataset.layers === '9'", timeout=120_000
                        )
                        page.evaluate(ADD_BUTTON)
                        page.wait_for_timeout(500)
                        for when in ("first", "again"):  # a fresh page's first export, then a second one
                            dt, sizes[k] = timed(page, lambda action=action, page=page: action(page))
                            times[k, when].append(dt)
                        page.close()
                print(f"{name}:")
                for (k, when), runs in times.items():
                    shown = " ".join(f"{t:.2f}" for t in runs)
                    print(
                        f"  {k:5s} {when:5s} median {statistics.median(runs):.3f} s  (runs {shown}; {sizes[k] / 1e6:.1f} MB)"
                    )
                for when in ("first", "again"):
                    ratio = statistics.median(times["svg", when]) / statistics.median(times["paint", when])
                    print(f"  svg / paint ({when}) = {ratio:.1f}x")
            browser.close()
    finally:
        proc.terminate()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
