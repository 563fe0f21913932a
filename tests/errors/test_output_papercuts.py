"""Small wrongs in what the eval and lens commands print and save: plurals, empty inputs, help
text, the measured rate, missing targets in CSV and in the table."""

from __future__ import annotations

import pytest
from errors_common import DOCS, cli
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app


@pytest.fixture(scope="module")
def demo():
    return logitscope.load("demo")


def test_eval_output_papercuts(demo, tiny_lm_dir, tmp_path):
    one = demo.evaluate(DOCS[1], seq_len=64, n_boot=10)
    assert one.n_windows == 1 and "1 window" in one._title() and "1 windows" not in one._title()
    short = tmp_path / "short.txt"
    short.write_text("")  # only the EOS token: nothing to score
    result = cli("eval", tiny_lm_dir, "--data", short, "--out", tmp_path / "r")
    assert "0 tokens" not in result.output and "eval" not in result.stderr.split(":", 1)[0]
    helptext = CliRunner().invoke(app, ["eval", "--help"]).stdout
    assert "0<=x<=1" not in helptext and "backend ." not in helptext
    # the summary's rate and metrics.json's tokens_per_s are the same wall-clock measure
    run = demo.evaluate(DOCS, seq_len=8, n_boot=10)
    # elapsed_s is rounded to the millisecond and tokens_per_s to 0.1: on a fast run (tens of ms) the
    # millisecond alone moves the rate by ~1%, so the bounds come from elapsed_s ± 0.5 ms
    elapsed = run.meta["elapsed_s"]
    low, high = run.n_tokens / (elapsed + 0.0005), run.n_tokens / max(elapsed - 0.0005, 1e-9)
    assert low - 0.05 <= run.meta["tokens_per_s"] <= high + 0.05, (run.meta["tokens_per_s"], low, high)


def test_lens_papercuts(tiny_lm_dir, tmp_path, make_result):
    assert "--position" in cli("lens", tiny_lm_dir, "The fox", "-f", "json", "--position", 0).stderr
    assert not (tmp_path / "d").exists()
    cli("demo", "--prompt", "", "--out", tmp_path / "d")
    assert not (tmp_path / "d").exists()
    res = make_result()  # the last position has no target
    from logitscope import export

    res.save(tmp_path / "r.csv")
    back = export.read_frame(tmp_path / "r.csv")
    ref = res.to_pandas()["target_token"]
    assert back["target_token"].isna().tolist() == ref.isna().tolist() == [t is None for t in res.target_tokens] * 5
    assert back["target_token"].dropna().tolist() == ref.dropna().tolist()  # "" stays a real (empty) token
    from logitscope.render.table import lens_tables

    table = lens_tables(res, metric="target", width=200)[0]
    last = table.columns[-1]._cells[-1]
    assert last.style == "dim italic"  # n/a looks like no colour of the scale
