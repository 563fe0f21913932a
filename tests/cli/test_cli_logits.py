"""``logitscope logits|embed|info`` on tiny saved models: tables, JSON round trips, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tiny
import torch
from test_logits import word_tokenizer
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.outputs.embeddings import ModelInfo, NearestTokens
from logitscope.outputs.logits import LogitsResult, TopTokens

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEXT = "The cat sat on the mat"
ENV = {"COLUMNS": "160", "HF_HUB_OFFLINE": "1"}


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV)
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def gpt2_dir(tiny_lm_dir):
    return tiny_lm_dir  # conftest: tiny GPT-2 with a byte-level BPE tokenizer, 64 positions


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return logitscope.load(gpt2_dir)


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    from transformers import T5Config, T5ForConditionalGeneration

    path = tmp_path_factory.mktemp("t5")
    tok = tiny.tokenizer()
    cfg = T5Config(
        d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=len(tok), decoder_start_token_id=0
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert")
    tiny.build("bert").save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


def test_logits_table_shows_decoded_tokens(gpt2_dir, gpt2):
    result = run("logits", gpt2_dir, TEXT, "--top-k", "3")
    assert result.exit_code == 0, result.output
    assert "\u0120" not in result.stdout and "\u010a" not in result.stdout  # no byte-level Ġ / Ċ
    assert "\u2423sat" in result.stdout  # " sat" decoded by the tokenizer, its space made visible
    top = gpt2.logits(TEXT).top(3)
    assert top.tokens[-1] in result.stdout and "top 3" in result.stdout


def test_logits_json_round_trips_and_matches_api(gpt2_dir, gpt2):
    result = run("logits", gpt2_dir, TEXT, "--format", "json", "-k", "4")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["meta"]["kind"] == "causal"
    assert TopTokens.from_dict(data).to_dict() == data
    api = gpt2.logits(TEXT).top(4)
    assert data["top_ids"] == api.top_ids.tolist() and data["tokens"] == api.tokens
    np.testing.assert_allclose(data["top_probs"], api.top_probs, rtol=1e-5)


def test_logits_save_and_generate(gpt2_dir, gpt2, tmp_path):
    path = tmp_path / "out.safetensors"
    result = run("logits", gpt2_dir, TEXT, "--generate", "3", "--save", path, "--format", "json")
    assert result.exit_code == 0, result.output
    api = gpt2.logits(TEXT, generate=3)
    assert torch.equal(LogitsResult.load(path).logits, api.logits)
    data = json.loads(result.stdout)
    assert data["generated_text"] == api.generated_text and data["target_ids"] == api.generated_ids.tolist()
    table = run("logits", gpt2_dir, TEXT, "--generate", "3")
    assert table.exit_code == 0 and "generated:" in table.stdout
    assert run("logits", gpt2_dir, TEXT, "--save", tmp_path / "x.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), gpt2.logits(TEXT).logits.numpy())


def test_logits_seq2seq_target(t5_dir):
    result = run("logits", t5_dir, TEXT, "--target", " the cat", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    scope = logitscope.load(t5_dir)
    n_target = len(scope.tokenizer(" the cat", add_special_tokens=False)["input_ids"])
    assert len(data["tokens"]) == n_target + 1 and data["target_ids"][-1] == -1
    assert "".join(data["source_tokens"]) == TEXT
    plain = run("logits", t5_dir, TEXT)
    assert plain.exit_code == 0 and "input: The cat sat on the mat" in plain.stdout


def test_logits_masked_shows_mask_positions(bert_dir):
    result = run("logits", bert_dir, "the cat [MASK] on the mat", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["positions"] == [3] and data["tokens"] == ["[MASK]"]
    table = run("logits", bert_dir, "the cat [MASK] on the mat")
    assert table.exit_code == 0 and "[MASK]" in table.stdout and "actual" in table.stdout


def test_embed_nearest(bert_dir):
    result = run("embed", bert_dir, "cat", "--nearest", "4", "--format", "json")
    assert result.exit_code == 0, result.output
    (data,) = json.loads(result.stdout)
    assert NearestTokens.from_dict(data).to_dict() == data
    api = logitscope.load(bert_dir).nearest("cat", k=4)
    assert data["ids"] == api.ids.tolist() and data["query"] == "cat"
    table = run("embed", bert_dir, "cat", "-n", "4", "--metric", "dot")
    assert table.exit_code == 0 and "nearest to cat by dot" in table.stdout and "rank" in table.stdout
    several = run("embed", bert_dir, "the cat sat", "-n", "2", "-f", "json")
    assert [d["query"] for d in json.loads(several.stdout)] == ["the", "cat", "sat"]
    assert run("embed", bert_dir, "cat", "--metric", "euclid").exit_code == 2


def test_info_table_and_json(gpt2_dir):
    result = run("info", gpt2_dir, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert ModelInfo.from_dict(data).to_dict() == data
    assert (data["n_layers"], data["d_model"], data["vocab_size"], data["tie"]) == (3, 32, 300, "shared")
    table = run("info", gpt2_dir)
    assert table.exit_code == 0 and "transformer.ln_f" in table.stdout and "True (shared)" in table.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["logits", "{gpt2}", ""],  # empty text
        ["logits", "{gpt2}", "the cat sat on the mat " * 20],  # 120+ tokens, context 64
        ["logits", "{gpt2}", TEXT, "--format", "yaml"],
        ["logits", "{gpt2}", TEXT, "--save", "out.csv"],
        ["logits", "{bert}", "the [MASK]", "--generate", "2"],
        ["embed", "{gpt2}", ""],
        ["info", "/no/such/model"],
    ],
)
def test_bad_input_is_one_line_exit_2(args, gpt2_dir, bert_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*[a.format(gpt2=gpt2_dir, bert=bert_dir) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_unknown_model_subprocess_exit_2_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "logitscope", "logits", "no-such-org/no-such-model", TEXT],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-org/no-such-model" in lines[0]
