"""``logitscope lens`` end to end on a tiny GPT-2 saved to disk with its own tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_export import validate
from typer.testing import CliRunner

import logitscope
from logitscope import export
from logitscope.cli import app
from logitscope.cli.lens import parse_layers, read_inputs

TEXT = "The quick brown fox"


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, ["lens", *map(str, args)])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def scope(tiny_lm_dir):
    return logitscope.load(tiny_lm_dir, device="cpu")


def test_json_to_stdout_matches_the_api(tiny_lm_dir, scope):
    out = run(tiny_lm_dir, TEXT, "--top-k", 3, "--track", " the", "--track", " God")
    doc = json.loads(out.stdout)  # not a terminal: JSON by default
    validate(doc)
    ref = scope.lens(TEXT, top_k=3, track=[" the", " God"])
    assert doc["tokens"] == ref.tokens and doc["tracked_tokens"] == [" the", " God"]
    assert np.allclose(doc["entropy"], ref.entropy, atol=1e-6)
    assert doc["top_ids"] == ref.top_ids.tolist()


def test_layers_target_and_metric_options(tiny_lm_dir, scope):
    doc = json.loads(run(tiny_lm_dir, TEXT, "--layers", "0,-1", "--target", " jumps", "-f", "json").stdout)
    assert doc["layer_names"] == ["embed", str(scope.n_layers)]
    ref = scope.lens(TEXT, target=" jumps", layers=[0, -1])
    assert doc["target_ids"] == ref.target_ids.tolist() and max(doc["target_ids"]) >= 0
    assert parse_layers("embed, 2,-1") == ["embed", 2, -1] and parse_layers(None) is None
    bad = run(tiny_lm_dir, TEXT, "--metric", "perplexity", ok=False)
    assert bad.exit_code == 2 and "unknown metric" in bad.stderr and "Traceback" not in bad.output


def test_table_is_paged_and_fits_the_terminal(tiny_lm_dir, scope):
    text = "The quick brown fox jumps over the lazy dog. In the beginning was the Word."
    out = run(tiny_lm_dir, text, "--format", "table", "--metric", "rank", "--track", " the").stdout
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)  # the runner's console is 80 wide
    assert "positions 0\u2013" in out and "target rank" in out and "tracked tokens at position" in out
    for name in ["embed", str(scope.n_layers), "target"]:
        assert any(line.lstrip("\u2502 ").startswith(name) for line in lines), name
    assert "\u2423the" in out and "\u2423dog" in out  # leading spaces shown visibly


def test_csv_and_parquet_outputs(tiny_lm_dir, scope, tmp_path):
    run(tiny_lm_dir, TEXT, "--out", tmp_path / "r.parquet")
    ref = scope.lens(TEXT).to_pandas()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), ref)
    csv = run(tiny_lm_dir, TEXT, "-f", "csv").stdout
    (tmp_path / "r.csv").write_text(csv, encoding="utf-8")
    back = export.read_frame(tmp_path / "r.csv")
    assert np.array_equal(back["entropy"].to_numpy(), ref["entropy"].to_numpy())
    assert back["token"].tolist() == ref["token"].tolist()
    bad = run(tiny_lm_dir, TEXT, "-f", "parquet", ok=False)
    assert bad.exit_code == 2 and "--out" in bad.stderr


def test_input_file_of_lines_and_jsonl(tiny_lm_dir, scope, tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("The quick brown fox\n\nIn the beginning\nThe cat sat\n", encoding="utf-8")
    run(tiny_lm_dir, "--input-file", lines, "--out", tmp_path / "r.jsonl", "--batch-size", 2)
    docs = [json.loads(s) for s in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [d["input"] for d in docs] == [0, 1, 2]
    assert ["".join(d["tokens"]) for d in docs] == ["The quick brown fox", "In the beginning", "The cat sat"]
    for doc in docs:
        validate(doc)
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"text": "The cat", "target": " sat"}\n{"text": "In the"}\n', encoding="utf-8")
    assert read_inputs(jsonl) == [("The cat", " sat"), ("In the", None)]
    run(tiny_lm_dir, "--input-file", jsonl, "--out", tmp_path / "r.csv")
    df = export.read_frame(tmp_path / "r.csv")
    assert df["input"].unique().tolist() == [0, 1]
    ref = scope.lens(["The cat", "In the"], target=[" sat", None])
    assert np.array_equal(df[df["input"] == 0]["target_id"].to_numpy()[: ref[0].n_positions], ref[0].target_ids)


def test_plots_from_the_cli(tiny_lm_dir, tmp_path):
    run(tiny_lm_dir, TEXT, "-o", tmp_path / "r.json", "--plot", tmp_path / "h.png", "--metric", "kl")
    img = np.asarray(Image.open(tmp_path / "h.png").convert("RGB"))
    assert img.shape[1] > 300 and img.std() > 20
    run(tiny_lm_dir, TEXT, "-o", tmp_path / "r.json", "--plot", tmp_path / "h.html", "--track", " the")
    assert "Plotly.newPlot" in (tmp_path / "h.html").read_text(encoding="utf-8")
    run(tiny_lm_dir, TEXT, "-o", tmp_path / "r.json", "--track", " the", "--trajectory", tmp_path / "t.svg")
    assert (tmp_path / "t.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_bad_invocations_fail_cleanly(tiny_lm_dir, tmp_path):
    for args in [(tiny_lm_dir,), (tiny_lm_dir, TEXT, "--input-file", tmp_path / "x.txt"), (tmp_path / "nope", TEXT)]:
        result = run(*args, ok=False)
        assert result.exit_code == 2 and result.stderr.startswith("error: "), args
        assert "Traceback" not in result.output


def test_run_all_batches_in_order_with_per_item_targets():
    from logitscope.cli.lens import run_all

    class FakeScope:
        calls = []

        def lens(self, texts, *, target=None, batch_size, **kwargs):
            self.calls.append((list(texts), target))
            return [f"{t}|{target[i] if target else None}" for i, t in enumerate(texts)]

    scope = FakeScope()
    items = [("a", None), ("b", "x"), ("c", None), ("d", None), ("e", None)]
    out = run_all(scope, items, " dflt", batch_size=2)
    assert out == ["a| dflt", "b|x", "c| dflt", "d| dflt", "e| dflt"]
    assert [len(c[0]) for c in scope.calls] == [2, 2, 1]
    assert run_all(FakeScope(), [("a", None)], None, batch_size=4) == ["a|None"]


def one_line_error(result, *needles: str) -> None:
    """Exit code 2, a single ``error:`` line on stderr naming ``needles``, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_jsonl_target_must_be_a_string_or_null(tiny_lm_dir, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "The cat", "target": null}\n{"text": "In the", "target": 42}\n', encoding="utf-8")
    one_line_error(run(tiny_lm_dir, "--input-file", path, "-f", "json", ok=False), f"{path}:2", "target")
    path.write_text('{"text": "The cat", "target": [" sat"]}\n', encoding="utf-8")
    one_line_error(run(tiny_lm_dir, "--input-file", path, "-f", "json", ok=False), f"{path}:1")
    path.write_text('{"text": "The cat", "target": null}\n', encoding="utf-8")
    assert read_inputs(path) == [("The cat", None)]


def test_bad_layer_specs_fail_in_one_line(tiny_lm_dir):
    for spec in ["--1", "abc", "", ",", "0,,1", "4x"]:
        one_line_error(run(tiny_lm_dir, TEXT, f"--layers={spec}", "-f", "json", ok=False))
    assert parse_layers(" 0, -1 ,embed") == [0, -1, "embed"] and parse_layers("+2") == [2]


def test_batch_size_must_be_positive(tiny_lm_dir):
    for n in ("0", "-1"):
        result = run(tiny_lm_dir, TEXT, "--batch-size", n, ok=False)
        assert result.exit_code == 2 and "--batch-size" in result.output and "Traceback" not in result.output


def test_plot_suffix_is_checked_before_anything_is_written(tiny_lm_dir, tmp_path):
    for flag in ("--plot", "--trajectory"):
        out = tmp_path / f"r{flag}.json"
        result = run(tiny_lm_dir, TEXT, "--track", " the", "-o", out, flag, tmp_path / "x.xyz", ok=False)
        one_line_error(result, flag, ".png")
        assert not out.exists()


def test_position_out_of_range_is_an_error_everywhere(tiny_lm_dir, scope, tmp_path):
    P = scope.lens(TEXT).n_positions
    table = ("-f", "table", "--track", " the")
    assert "tracked tokens at position 0 " in run(tiny_lm_dir, TEXT, *table, "--position", -P).stdout
    assert f"tracked tokens at position {P - 1} " in run(tiny_lm_dir, TEXT, *table, "--position", P - 1).stdout
    for pos in (P, P + 5, -P - 1):
        one_line_error(run(tiny_lm_dir, TEXT, *table, "--position", pos, ok=False), f"position {pos}")
        out = tmp_path / "r.json"
        traj = ("--track", " the", "-o", out, "--trajectory", tmp_path / "t.svg", "--position", pos)
        one_line_error(run(tiny_lm_dir, TEXT, *traj, ok=False), f"position {pos}")
        assert not out.exists() and not (tmp_path / "t.svg").exists()
    # unused without --track/--trajectory: an error, not silently ignored
    one_line_error(run(tiny_lm_dir, TEXT, "-f", "json", "--position", 0, ok=False), "--position")


def test_demo_tokenizer_context_matches_the_model():
    from pathlib import Path

    demo = Path(logitscope.__file__).parent / "demo_model"
    tok_cfg = json.loads((demo / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg = json.loads((demo / "config.json").read_text(encoding="utf-8"))
    assert tok_cfg["model_max_length"] == cfg["max_position_embeddings"] == 512
