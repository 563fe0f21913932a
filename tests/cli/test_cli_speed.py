"""``--help`` and argument/output errors import neither torch nor transformers (the
timings are in bench/bench_cli_start.py); the demo's HTML pages share one offline plotly.min.js."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from logitscope.cli import app

HEAVY = ("torch", "transformers", "matplotlib", "pandas", "plotly")

LIGHT = [
    ["--help"],
    ["lens", "--help"],
    ["train-lens", "--help"],
    ["lens", "demo", "x", "--metric", "bogus"],
    ["lens", "demo", "x", "--layers", "4x"],
    ["lens", "demo", "x", "-o", "/proc/x.json"],
    ["lens", "demo", "x", "--target="],
    ["lens", "demo", "x", "--track="],
    ["lens", "demo", "--input-file", "/dev/null"],
    ["demo", "--out", "/proc/nope"],
    ["eval", "demo", "--data", "/nonexistent"],
    ["train-lens", "demo", "--data", "/nonexistent", "--out", "/tmp/x"],
    ["info", "/nonexistent"],
    ["diff", "demo"],
]

PROBE = """
import sys
sys.argv = ["logitscope", *{args!r}]
try:
    import logitscope.cli
    logitscope.cli.main()
except SystemExit as e:
    code = e.code
print("HEAVY", sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r})))
"""


@pytest.mark.parametrize("args", LIGHT, ids=" ".join)
def test_no_heavy_imports(args):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True, text=True, timeout=120
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("HEAVY")][-1]
    assert line == "HEAVY []", (line, out.stderr[-500:])
    if "--help" not in args:
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr


def test_demo_html_shares_one_plotly(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--prompt", "In the beginning God", "--prompt", "And"])
    assert res.exit_code == 0, (res.output, res.exception)
    pages = sorted(out.glob("*.html"))
    assert [p.name for p in pages] == ["lens_0.html", "lens_1.html"]
    js = out / "plotly.min.js"
    assert js.is_file() and js.stat().st_size > 1_000_000  # the whole library, once
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert page.stat().st_size < 300_000 and 'src="plotly.min.js"' in html
        assert "https://" not in html.split("<body>", 1)[0]  # offline: nothing fetched from a CDN
    assert "plotly.min.js" in res.stdout
