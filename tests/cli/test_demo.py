"""The bundled demo model, loaded through the normal path: it predicts held-out KJV text and the
lens shows the answer emerging in the late layers. Every number is computed from the model here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.loading import DEMO_DIR


@pytest.fixture(scope="module")
def scope():
    return logitscope.load("demo")


@pytest.fixture(scope="module")
def prompts():
    return json.loads((DEMO_DIR / "prompts.json").read_text())


def top1_accuracy(res, row: int = -1) -> float:
    has = res.target_ids >= 0
    return float((res.top_ids[row, :, 0][has] == res.target_ids[has]).mean())


def test_demo_is_a_standard_llama_that_loads_small():
    """Small enough to ship and load offline (load time is a benchmark, not a unit test)."""
    scope = logitscope.load("demo")
    assert scope.model.config.model_type == "llama" and scope.kind == "causal"
    assert scope.n_layers == 8
    assert (DEMO_DIR / "model.safetensors").stat().st_size < 32 * 2**20


def test_heldout_accuracy(scope):
    text = (DEMO_DIR / "heldout.txt").read_text()
    res = scope.lens(text[:2000])
    final = top1_accuracy(res)
    assert final > 0.25  # chance is 1/4096; the training log reports ~0.37 over the whole split
    assert final > top1_accuracy(res, 1) + 0.03  # later layers predict better than early ones
    assert top1_accuracy(res, 0) < 0.1  # embeddings alone predict almost nothing


def test_formulaic_heldout_verses_are_mostly_right(scope, prompts):
    results = scope.lens([p["prompt"] + p["target"] for p in prompts])
    accs = [top1_accuracy(r) for r in results]
    assert np.mean(accs) > 0.5, accs
    assert max(accs) > 0.6, accs


def test_answer_emerges_in_late_layers(scope, prompts):
    n_late = 0
    for p in prompts:
        res = scope.lens(p["prompt"], track=[p["target"]])
        ranks = res.tracked_ranks[0, :, -1]  # (streams,) at the last position
        assert ranks[-1] == 0, f"{p['target']!r} is not the model's top-1 after {p['prompt']!r}"
        assert (ranks[:3] > 0).all(), f"{p['target']!r} already top-1 in the embeddings or first layers"
        first = int(np.argmax(ranks == 0))  # first stream where it is top-1
        n_late += first >= scope.n_layers // 2
        probs = res.tracked_probs[0, :, -1]
        assert probs[-1] > probs[0] * 5  # its probability grows through the stack
    assert n_late == len(prompts)


def test_demo_command_writes_figures(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    for i in range(len(json.loads((DEMO_DIR / "prompts.json").read_text()))):
        assert {f"lens_{i}.png", f"lens_{i}.html", f"lens_{i}.csv", f"trajectory_{i}.png"} <= set(files)
    assert "is top-1 from layer" in result.output
    assert (tmp_path / "out" / "lens_0.png").stat().st_size > 10_000


def test_demo_name_works_in_lens_command():
    result = CliRunner().invoke(app, ["lens", "demo", "And God said", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tokens"][0] == "And" and len(data["layer_names"]) == 9
