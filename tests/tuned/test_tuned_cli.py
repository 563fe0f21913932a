"""``train-lens``, ``lens --tuned`` and ``eval --tuned`` end to end; torchrun (gloo) equals one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tiny
import torch
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.data.corpus import Corpus

SEQ = 16
TRAIN = ["--steps", "3", "--tokens-per-step", str(8 * SEQ), "--seq-len", str(SEQ), "--batch-size", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "docs.jsonl"
    docs = [tiny.TEXT, "In the beginning was the Word. " * 3, "The cat sat on the mat. " * 5] * 3
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_train_lens_cli_then_lens_and_eval_with_it(tiny_lm_dir, corpus, tmp_path):
    out = tmp_path / "lens"
    res = invoke("train-lens", tiny_lm_dir, "--data", corpus, "--out", out, *TRAIN, "--save-every", "1")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "params.pt", "training_log.json"]
    assert not (tmp_path / "lens.ckpt.pt").exists()
    lensed = invoke("lens", tiny_lm_dir, "The quick brown fox", "--tuned", out, "--format", "json")
    assert lensed.exit_code == 0, lensed.output
    doc = json.loads(lensed.stdout)
    scope = logitscope.load(tiny_lm_dir, device="cpu")
    ref = scope.lens("The quick brown fox", tuned=out)
    np.testing.assert_allclose(doc["entropy"], ref.entropy, atol=1e-6)
    assert doc["meta"]["lens"] == "tuned"
    ev = tmp_path / "eval"
    res = invoke("eval", tiny_lm_dir, "--data", corpus, "--out", ev, "--tuned", out, "--seq-len", SEQ, "--ci", "stderr")
    assert res.exit_code == 0, res.output
    metrics = json.loads((ev / "metrics.json").read_text())
    cmp = scope.evaluate(corpus, seq_len=SEQ, tuned=out, ci="stderr")
    assert metrics["lenses"] == ["logit", "tuned"] and metrics["tuned_lens"] == str(out)
    for i, layer in enumerate(metrics["layers"]):
        assert layer["ce"] == pytest.approx(cmp.logit.ce[i], abs=1e-6)
        assert layer["tuned"]["ce"] == pytest.approx(cmp.tuned.ce[i], abs=1e-6)
        assert layer["tuned"]["kl_to_final"] == pytest.approx(cmp.tuned.kl_to_final[i], abs=1e-6)
    assert {p.name for p in ev.iterdir()} >= {"metrics.json", "per_window.parquet", "curves.png", "curves.html"}


@pytest.mark.parametrize("case", ["empty", "not_corpus", "missing", "out_is_file", "resume_nothing"])
def test_train_lens_bad_input_writes_nothing(tiny_lm_dir, tmp_path, case):
    data, out = tmp_path / "empty.txt", tmp_path / "out"
    data.write_text("")
    if case == "not_corpus":
        data = tmp_path / "folder"
        data.mkdir()
        (data / "weights.bin").write_bytes(b"\x00\x01")
    elif case == "missing":
        data = tmp_path / "nope.txt"
    elif case == "out_is_file":
        data.write_text(tiny.TEXT * 5)
        out.write_text("x")
    args = ["train-lens", tiny_lm_dir, "--data", data, "--out", out, *TRAIN, "--save-every", "1"]
    res = invoke(*args, "--resume") if case == "resume_nothing" else invoke(*args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert out.is_file() if case == "out_is_file" else not out.exists()
    assert not (tmp_path / "out.ckpt.pt").exists()


def test_lens_cli_refuses_a_lens_for_another_model(tiny_lm_dir, tmp_path):
    res = invoke("lens", tiny_lm_dir, "The quick brown fox", "--tuned", "demo")
    assert res.exit_code == 2 and res.output.startswith("error: tuned lens 'demo'"), res.output


def test_torchrun_two_processes_train_the_single_process_lens(tiny_lm_dir, corpus, tmp_path):
    out = tmp_path / "lens2"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "logitscope"]
    cmd += ["train-lens", str(tiny_lm_dir), "--data", str(corpus), "--out", str(out), *TRAIN, "--backend", "gloo"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = json.loads((out / "training_log.json").read_text())
    assert log["world_size"] == 2
    scope = logitscope.load(tiny_lm_dir, device="cpu")
    single = scope.train_lens(Corpus(corpus), steps=3, tokens_per_step=8 * SEQ, seq_len=SEQ, batch_size=3)
    two = torch.load(out / "params.pt", weights_only=True)
    for key, value in single.translators.state_dict().items():
        torch.testing.assert_close(two[key], value, atol=1e-6, rtol=1e-5)
    assert np.abs(two["0.weight"].numpy()).max() > 0  # it did train
    for mine, theirs in zip(single.training_log["steps"], log["steps"]):
        np.testing.assert_allclose(theirs["kl"], mine["kl"], rtol=1e-4)  # summed across ranks in float32
