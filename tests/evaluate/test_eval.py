"""Corpus evaluation: windows, exactness against the model itself, inputs, budgets, outputs, CLI.

Golden values come from the model: ``output_hidden_states`` (whose last entry is already normed, so
only the head is applied to it) and the truncated model (its later blocks removed, tests/lens/test_lens_exact.py).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import tiny
import torch
from torch import nn

from logitscope import Scope
from logitscope.data.windows import token_byte_lengths, windows
from logitscope.errors import ContextLengthError, InputError
from logitscope.evaluate import METRICS, EvalResult
from logitscope.evaluate.result import run_files

DOCS = [
    tiny.TEXT,
    "Héllo wörld — naïve café, 東京. " * 3,
    "In the beginning was the Word. " * 4,
    "The cat sat on the mat.",
]
SEQ = 16


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    model, tok = tiny.saved_gpt2(path)
    return Scope(model, tok), path


def stream_of(tok, docs) -> list[int]:
    """The token stream the docs make: each document, then EOS (written here, independently)."""
    out = []
    for d in docs:
        out += tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return out


def direct_sums(model, stream: list[int], seq: int) -> np.ndarray:
    """(5, S) totals of CE, KL, entropy, agreement, accuracy from output_hidden_states, window by window."""
    totals = 0
    for s in range(0, len(stream) - 1, seq):
        w = torch.tensor(stream[s : s + seq + 1])
        x, y = w[:-1], w[1:]
        with torch.no_grad():
            hs = model(x[None], output_hidden_states=True, use_cache=False).hidden_states
            L = len(hs) - 1
            # hidden_states[L] is already normed by HF: apply only the head to it.
            logits = torch.stack(
                [model.lm_head(model.transformer.ln_f(h[0]) if i < L else h[0]) for i, h in enumerate(hs)]
            )
        logp = logits.double().log_softmax(-1)  # (S, T, V)
        p = logp.exp()
        ce = -logp.gather(-1, y.expand(len(hs), -1)[..., None])[..., 0]
        ent = -(p * logp).sum(-1)
        kl = (p[-1] * (logp[-1] - logp)).sum(-1)
        top = logp.argmax(-1)
        sums = [ce, kl, ent, (top == top[-1]).double(), (top == y).double()]
        totals = totals + torch.stack([t.sum(-1) for t in sums]).numpy()
    return totals


def test_windows_overlap_by_one_and_budget_is_exact():
    stream = np.arange(23)
    ws = list(windows([stream[:7], stream[7:]], seq_len=5))
    assert [w.tolist() for w in ws[:2]] == [[0, 1, 2, 3, 4, 5], [5, 6, 7, 8, 9, 10]]
    assert np.concatenate([w[1:] for w in ws]).tolist() == list(range(1, 23))  # every token scored once
    assert ws[-1].tolist() == [20, 21, 22]
    for budget in (1, 4, 5, 6, 10, 13, 22, 100):
        got = sum(len(w) - 1 for w in windows([stream], 5, max_tokens=budget))
        assert got == min(budget, 22)
    assert list(windows([np.arange(1)], 5)) == []


def test_per_layer_metrics_equal_the_model(gpt2):
    scope, _ = gpt2
    tok = scope.tokenizer
    stream = stream_of(tok, DOCS)
    res = scope.evaluate(DOCS, seq_len=SEQ, batch_size=3)
    assert res.n_tokens == len(stream) - 1 and res.n_windows == math.ceil((len(stream) - 1) / SEQ)
    ref = direct_sums(scope.model, stream, SEQ) / res.n_tokens
    got = np.stack([res.ce, res.kl_to_final, res.entropy, res.top1_agreement, res.top1_accuracy])
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5)
    # bits per byte: the scored tokens are all but the first; EOS and special tokens are 0 bytes.
    first = tok.decode(stream[:1])
    n_bytes = sum(len(d.encode()) for d in DOCS) - len(first.encode())
    assert res.n_bytes == n_bytes
    np.testing.assert_allclose(res.bits_per_byte, res.ce * res.n_tokens / (math.log(2) * n_bytes), rtol=1e-12)


def test_token_byte_lengths_count_partial_characters(gpt2):
    tok = gpt2[0].tokenizer
    table = token_byte_lengths(tok, len(tok))
    for text in ("naïve 東京 café", "plain ascii"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert table[ids].sum() == len(text.encode())
    assert table[tok.eos_token_id] == 0


@pytest.mark.parametrize("arch", ["gemma2", "opt"])
def test_token_stream_input_against_truncated_models(arch):
    """Token-id input (no tokenizer), other architectures: per-layer CE equals truncated models."""
    model = tiny.build(arch)
    scope = Scope(model)
    stream = torch.randint(0, tiny.V, (41,), generator=torch.Generator().manual_seed(0))
    res = scope.evaluate(stream, seq_len=20, batch_size=2, max_tokens=37)
    assert res.n_tokens == 37 and res.window_tokens.tolist() == [20, 17]
    assert np.isnan(res.bits_per_byte).all()
    path = "model.layers" if arch == "gemma2" else "model.decoder.layers"
    parent, name = path.rsplit(".", 1)
    for n_keep in range(tiny.L + 1):
        clone = copy.deepcopy(model)
        blocks = clone.get_submodule(parent)
        setattr(blocks, name, nn.ModuleList(list(getattr(blocks, name))[:n_keep]))
        ce = 0.0
        for s, n in ((0, 20), (20, 17)):
            x, y = stream[s : s + n], stream[s + 1 : s + n + 1]
            with torch.no_grad():
                logp = clone(x[None], use_cache=False).logits[0].double().log_softmax(-1)
            ce -= logp.gather(-1, y[:, None]).sum().item()
        assert res.ce[n_keep] == pytest.approx(ce / 37, rel=1e-5, abs=1e-5)


def test_text_jsonl_and_directory_inputs(gpt2, tmp_path):
    scope, _ = gpt2
    tok = scope.tokenizer
    (tmp_path / "one.txt").write_text(DOCS[0])
    with open(tmp_path / "docs.jsonl", "w") as fh:
        for d in DOCS[1:]:
            fh.write(json.dumps({"text": d, "id": 1}) + "\n\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    as_list = scope.evaluate(DOCS[1:], seq_len=SEQ, batch_size=4)
    from_jsonl = scope.evaluate(tmp_path / "docs.jsonl", seq_len=SEQ, batch_size=4)
    np.testing.assert_array_equal(from_jsonl.window_sums, as_list.window_sums)
    by_name = scope.evaluate(str(tmp_path / "docs.jsonl"), seq_len=SEQ, batch_size=4)  # an existing path
    np.testing.assert_array_equal(by_name.window_sums, as_list.window_sums)
    from_txt = scope.evaluate(tmp_path / "one.txt", seq_len=SEQ)
    assert from_txt.n_tokens == len(stream_of(tok, DOCS[:1])) - 1
    from_dir = scope.evaluate(tmp_path, seq_len=SEQ, batch_size=4)  # sorted: docs.jsonl, then one.txt
    assert from_dir.n_tokens == len(stream_of(tok, DOCS[1:] + DOCS[:1])) - 1
    ref = scope.evaluate(DOCS[1:] + DOCS[:1], seq_len=SEQ, batch_size=4)
    np.testing.assert_array_equal(from_dir.window_sums, ref.window_sums)
    (tmp_path / "bad.jsonl").write_text('{"txt": "no text field"}\n')
    with pytest.raises(InputError, match="bad.jsonl:1"):
        scope.evaluate(tmp_path / "bad.jsonl", seq_len=SEQ)


def test_max_tokens_stops_exactly(gpt2):
    scope, _ = gpt2
    full = scope.evaluate(DOCS, seq_len=SEQ, batch_size=2)
    for budget in (1, SEQ, 3 * SEQ + 5):
        res = scope.evaluate(DOCS, seq_len=SEQ, batch_size=2, max_tokens=budget)
        assert res.n_tokens == budget == res.window_tokens.sum()
        assert res.window_tokens[-1] == (budget - 1) % SEQ + 1
        n_full = budget // SEQ
        np.testing.assert_allclose(res.window_sums[:n_full], full.window_sums[:n_full], rtol=1e-6, atol=1e-5)
    assert scope.evaluate(DOCS, seq_len=SEQ, max_tokens=10**6).n_tokens == full.n_tokens


def test_confidence_intervals_and_outputs(gpt2, tmp_path):
    scope, _ = gpt2
    boot = scope.evaluate(DOCS * 3, seq_len=SEQ, n_boot=300)
    se = scope.evaluate(DOCS * 3, seq_len=SEQ, ci="stderr")
    for res in (boot, se):
        for m in METRICS:
            lo, hi = res.ci[m][:, 0], res.ci[m][:, 1]
            point = getattr(res, m)
            assert np.all(lo <= point + 1e-9) and np.all(point <= hi + 1e-9), m
        assert (res.ci["ce"][:, 1] > res.ci["ce"][:, 0]).all()
    # the two methods estimate the same spread
    np.testing.assert_allclose(np.diff(boot.ci["ce"]), np.diff(se.ci["ce"]), rtol=0.5)
    out = boot.save(tmp_path / "out")
    assert out == tmp_path / "out"
    paths = run_files(out)
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["n_tokens"] == boot.n_tokens and len(metrics["layers"]) == scope.n_layers + 1
    assert metrics["layers"][-1]["ce"] == pytest.approx(boot.ce[-1]) and metrics["ci"] == "bootstrap"
    import pandas as pd

    frame = pd.read_parquet(paths["per_window"])
    assert len(frame) == boot.n_windows * (scope.n_layers + 1)
    final = frame[frame.layer == scope.n_layers]
    assert final.ce_sum.sum() / final.n_tokens.sum() == pytest.approx(boot.ce[-1])
    assert paths["png"].stat().st_size > 10_000
    html = paths["html"].read_text()
    assert "cross-entropy" in html and "https://cdn.plot.ly" not in html[:5000]
    with pytest.raises(ValueError):
        EvalResult(**{**boot.__dict__, "ce": boot.ce[:-1]})


def test_bad_inputs(gpt2):
    scope, _ = gpt2
    with pytest.raises(ContextLengthError):
        scope.evaluate(DOCS, seq_len=10_000)
    with pytest.raises(InputError, match="fewer than two tokens"):
        scope.evaluate(torch.tensor([3]), seq_len=SEQ)
    with pytest.raises(InputError, match="tokenizer"):
        Scope(scope.model).evaluate(DOCS, seq_len=SEQ)
    with pytest.raises(InputError, match="vocabulary"):
        scope.evaluate(torch.tensor([1, 2, 10_000]), seq_len=SEQ)
    with pytest.raises(InputError, match="causal"):
        Scope(tiny.build("bert")).evaluate(torch.tensor([1, 2, 3]), seq_len=SEQ)
    model = copy.deepcopy(scope.model)
    model.config.eos_token_id = None
    with pytest.raises(InputError, match="eos_token_id"):  # tokenised documents are joined with EOS
        Scope(model, self_check=False).evaluate([[1, 2, 3], [4, 5]], seq_len=SEQ)


def test_cli_writes_outputs(gpt2, tmp_path):
    import typer
    from typer.testing import CliRunner

    from logitscope.cli import eval as eval_cli

    scope, model_dir = gpt2
    app = typer.Typer()
    eval_cli.register(app)
    app.command("noop")(lambda: None)  # two commands: typer keeps "eval" as a subcommand
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    out = tmp_path / "out"
    args = ["eval", str(model_dir), "--data", str(tmp_path / "docs.jsonl"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--seq-len", str(SEQ), "--max-tokens", "50", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "bits/byte" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    ref = scope.evaluate(DOCS, seq_len=SEQ, max_tokens=50)
    assert metrics["n_tokens"] == 50
    np.testing.assert_allclose([r["ce"] for r in metrics["layers"]], ref.ce, rtol=1e-6)
    assert {p.name for p in out.iterdir()} == {"metrics.json", "per_window.parquet", "curves.png", "curves.html"}
    bad = CliRunner().invoke(app, [*args, "--batch-size", "many"])
    assert bad.exit_code == 2 and "batch-size" in bad.output


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(seq_len=0), "seq_len"),
        (dict(seq_len=-3), "seq_len"),
        (dict(seq_len=0, batch_size="auto"), "seq_len"),  # was a ZeroDivisionError in auto_batch_size
        (dict(max_tokens=0), "max_tokens"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=-2), "batch_size"),
        (dict(n_boot=0), "n_boot"),
        (dict(confidence=1.5), "confidence"),
        (dict(confidence=0.0), "confidence"),
        (dict(confidence=1), "confidence"),
        (dict(ci="jackknife"), "ci"),
    ],
)
def test_bad_settings_are_input_errors(gpt2, kwargs, match):
    scope, _ = gpt2
    with pytest.raises(InputError, match=match):
        scope.evaluate(DOCS, **{"seq_len": SEQ, "batch_size": 2, **kwargs})


def test_cli_rejects_bad_settings_in_one_line(gpt2, tmp_path):
    import typer
    from typer.testing import CliRunner

    from logitscope.cli import eval as eval_cli

    _, model_dir = gpt2
    app = typer.Typer()
    eval_cli.register(app)
    app.command("noop")(lambda: None)
    (tmp_path / "docs.txt").write_text("\n".join(DOCS))
    args = ["eval", str(model_dir), "--data", str(tmp_path / "docs.txt"), "--out", str(tmp_path / "out")]
    bad = [
        ("--seq-len", "0"), ("--n-boot", "0"), ("--confidence", "1.5"), ("--confidence", "1"),
        ("--confidence", "0"), ("--batch-size", "0"), ("--max-tokens", "0"),
    ]  # fmt: skip
    for flag, value in bad:
        result = CliRunner().invoke(app, [*args, flag, value])
        assert result.exit_code == 2, (flag, value, result.output)
        assert flag in result.output and "Traceback" not in result.output, (flag, value, result.output)
    assert not (tmp_path / "out").exists()
