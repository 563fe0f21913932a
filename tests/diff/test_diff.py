"""Lens diff against the models themselves: KL of truncated model A against truncated model B.

The reference distributions come from each model with its later blocks removed (the lens
oracle of tests/lens/test_lens_exact.py), computed in float64 here; logitscope's streaming diff must match them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny
import torch
from test_lens_exact import SRC, oracle_logprobs
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.diff.run import aligned_rows
from logitscope.errors import InputError


def _kl(lp_a: torch.Tensor, lp_b: torch.Tensor) -> torch.Tensor:
    return (lp_a.exp() * (lp_a - lp_b)).sum(-1)


def _llama(n_layers: int, seed: int):
    cfg = tiny.config_for("llama")
    cfg.num_hidden_layers = n_layers
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma2"])
def test_two_models_match_their_truncations(name):
    model_a, model_b = tiny.build(name, seed=0), tiny.build(name, seed=1, noise=0.3)
    res = logitscope.compare(logitscope.Scope(model_a), logitscope.Scope(model_b), SRC, top_k=3)
    assert res.layer_names == res.b_layer_names == ["embed", "1", "2", "3"]
    for row in range(4):
        lp_a, lp_b = oracle_logprobs(model_a, name, row), oracle_logprobs(model_b, name, row)
        np.testing.assert_allclose(res.kl[row], _kl(lp_a, lp_b).numpy(), atol=1e-4, err_msg=f"row {row}")
        top_a, top_b = lp_a.argmax(-1), lp_b.argmax(-1)
        np.testing.assert_array_equal(res.a_top_ids[row, :, 0], top_a.numpy())
        np.testing.assert_array_equal(res.b_top_ids[row, :, 0], top_b.numpy())
        np.testing.assert_array_equal(res.top1_agree[row], (top_a == top_b).numpy())
        np.testing.assert_allclose(res.b_top_probs[row], lp_b.exp().topk(3, -1).values.numpy(), atol=1e-5)
        at = torch.arange(len(SRC))
        delta = lp_b[at, top_a] - lp_a[at, top_a]
        np.testing.assert_allclose(res.delta[row], delta.numpy(), atol=1e-4)
    assert res.kl.min() > 0  # the models really differ


def test_a_model_against_itself_is_zero():
    scope = logitscope.Scope(tiny.build("llama"))
    res = scope.compare(scope, SRC)
    np.testing.assert_allclose(res.kl, 0.0, atol=1e-5)
    np.testing.assert_allclose(res.delta, 0.0, atol=1e-5)
    assert res.top1_agree.all()


def test_depths_are_aligned_by_fraction():
    assert aligned_rows(3, 2) == [0, 1, 1, 2]
    assert aligned_rows(2, 4) == [0, 2, 4]
    assert aligned_rows(4, 4) == [0, 1, 2, 3, 4]
    a, b = _llama(3, 0), _llama(2, 1)
    res = logitscope.compare(logitscope.Scope(a), logitscope.Scope(b), SRC)
    assert res.b_layer_names == ["embed", "1", "1", "2"] and res.meta["aligned"] == "by fraction of depth"
    for row, b_row in enumerate([0, 1, 1, 2]):
        kl = _kl(oracle_logprobs(a, "llama", row), oracle_logprobs(b, "llama", b_row))
        np.testing.assert_allclose(res.kl[row], kl.numpy(), atol=1e-4)


def test_small_chunks_change_nothing():
    a, b = tiny.build("gpt2", seed=0), tiny.build("gpt2", seed=1, noise=0.3)
    big = logitscope.compare(logitscope.Scope(a), logitscope.Scope(b), SRC)
    small = logitscope.compare(logitscope.Scope(a, chunk_size=3), logitscope.Scope(b), SRC)
    np.testing.assert_allclose(small.kl, big.kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(small.a_top_ids, big.a_top_ids)
    np.testing.assert_array_equal(small.b_top_ids, big.b_top_ids)


def test_two_prompts_compare_last_positions():
    model = tiny.build("llama")
    scope = logitscope.Scope(model)
    other = [5, 17, 40, 2]
    res = scope.compare(inputs=SRC, against=other)
    assert res.n_positions == 1 and res.meta["mode"] == "prompts"
    assert res.token_ids.tolist() == [SRC[-1]]
    for row in range(4):
        lp_a = oracle_logprobs(model, "llama", row)[-1]
        cut = __import__("test_lens_exact").truncated(model, "model.layers", row)
        with torch.no_grad():
            lp_b = cut(input_ids=torch.tensor([other])).logits[0, -1].double().log_softmax(-1)
        np.testing.assert_allclose(res.kl[row, 0], float(_kl(lp_a, lp_b)), atol=1e-4)


def test_refusals():
    a = logitscope.Scope(tiny.build("llama"))
    cfg = tiny.config_for("llama")
    cfg.vocab_size = 100
    with pytest.raises(InputError, match="vocabularies differ"):
        a.compare(logitscope.Scope(AutoModelForCausalLM.from_config(cfg)), SRC)
    with pytest.raises(InputError, match="either a second model .* not both"):
        a.compare(a, SRC, against="x")
    with pytest.raises(InputError, match="needs something to compare with"):
        a.compare(None, SRC)
    tok_a, tok_b = tiny.tokenizer(), tiny.tokenizer()
    swapped = {v: k for k, v in tok_b.get_vocab().items()}
    assert len(swapped) == len(tok_a)
    model = tiny.build("gpt2")
    sa = logitscope.Scope(model, tok_a)
    sb = logitscope.Scope(model, tok_b)
    sb.tokenizer = type("Tok", (), {"get_vocab": lambda self: {"x" + k: v for k, v in tok_b.get_vocab().items()}})()
    with pytest.raises(InputError, match="tokenizers differ"):
        sa.compare(sb, SRC)


def test_outputs(tmp_path):
    a, b = logitscope.Scope(tiny.build("gpt2")), logitscope.Scope(tiny.build("gpt2", seed=3, noise=0.3))
    res = a.compare(b, SRC, top_k=2)
    frame = res.to_pandas()
    assert len(frame) == 4 * len(SRC) and {"kl", "delta", "a_top2_token", "b_top1_prob"} <= set(frame.columns)
    data = json.loads(json.dumps(res.to_dict()))
    np.testing.assert_allclose(data["kl"], res.kl, atol=1e-6)
    for name, metric in (("d.png", "delta"), ("d.svg", "kl"), ("d.html", "delta")):
        res.plot(tmp_path / name, metric=metric)
        assert (tmp_path / name).stat().st_size > 1000
    for suffix in ("json", "csv", "parquet"):
        assert res.save(tmp_path / f"d.{suffix}").exists()
    with pytest.raises(InputError):
        res.save(tmp_path / "d.txt")


def test_cli(tiny_lm_dir, tmp_path):
    other = tmp_path / "other"
    tiny.saved_gpt2(other, n_layer=2, seed=1)
    runner = CliRunner()
    text = "The quick brown fox"
    out = runner.invoke(
        app, ["diff", str(tiny_lm_dir), str(other), text, "-f", "json", "--plot", str(tmp_path / "p.png")]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["b_layer_names"] == ["embed", "1", "1", "2"] and (tmp_path / "p.png").exists()
    table = runner.invoke(app, ["diff", str(tiny_lm_dir), text, "--against", "The lazy dog"])
    assert table.exit_code == 0, table.output
    assert "mean KL" in table.stdout
    bad = runner.invoke(app, ["diff", str(tiny_lm_dir), text])
    assert bad.exit_code == 2 and "MODEL_A MODEL_B TEXT" in bad.output
    csv = tmp_path / "d.csv"
    ok = runner.invoke(app, ["diff", str(tiny_lm_dir), str(other), text, "-o", str(csv)])
    assert ok.exit_code == 0 and csv.read_text().startswith("layer,")


def test_corpus_kl_matches_per_window_truncations():
    from logitscope.diff.corpus import compare_corpus

    model_a, model_b = tiny.build("gpt2", seed=0), tiny.build("gpt2", seed=1, noise=0.3)
    ids = np.random.default_rng(0).integers(0, tiny.V, 60)
    res = compare_corpus(logitscope.Scope(model_a), logitscope.Scope(model_b), ids, seq_len=8, max_tokens=40, n_boot=50)
    assert res.n_tokens == 40 and res.n_windows == 5
    from test_lens_exact import truncated

    for row in range(4):
        cut_a, cut_b = truncated(model_a, "transformer.h", row), truncated(model_b, "transformer.h", row)
        kl, agree = 0.0, 0.0
        for w in range(5):
            x = torch.from_numpy(ids[None, 8 * w : 8 * w + 8])
            with torch.no_grad():
                lp_a = cut_a(input_ids=x).logits[0].double().log_softmax(-1)
                lp_b = cut_b(input_ids=x).logits[0].double().log_softmax(-1)
            kl += float(_kl(lp_a, lp_b).sum())
            agree += float((lp_a.argmax(-1) == lp_b.argmax(-1)).sum())
        assert res.kl[row] == pytest.approx(kl / 40, abs=1e-5)
        assert res.top1_agreement[row] == pytest.approx(agree / 40)
        assert res.kl_ci[row, 0] <= res.kl[row] <= res.kl_ci[row, 1]


def test_eval_compare_cli(tiny_lm_dir, tmp_path):
    other = tmp_path / "other"
    tiny.saved_gpt2(other, n_layer=2, seed=1)
    text = tmp_path / "c.txt"
    text.write_text(tiny.TEXT)
    out = tmp_path / "run"
    args = [
        "eval",
        str(tiny_lm_dir),
        "--data",
        str(text),
        "--out",
        str(out),
        "--seq-len",
        "16",
        "--compare",
        str(other),
    ]
    res = CliRunner().invoke(app, args + ["--n-boot", "50", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "compare.json").read_text())
    assert [r["b_name"] for r in data["layers"]] == ["embed", "1", "1", "2"]
    assert data["n_tokens"] == json.loads((out / "metrics.json").read_text())["n_tokens"]
    assert (out / "compare.png").exists() and "KL(A" in res.stdout


def test_eval_compare_refuses_before_the_run(tiny_lm_dir, tmp_path):
    other = tmp_path / "small_vocab"
    tiny.build("gpt2").save_pretrained(other)  # vocab 96, no tokenizer
    text = tmp_path / "c.txt"
    text.write_text(tiny.TEXT)
    out = tmp_path / "run"
    args = ["eval", str(tiny_lm_dir), "--data", str(text), "--out", str(out), "--compare", str(other)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "vocabularies differ" in res.output
    assert not (out / "metrics.json").exists()  # refused before A's evaluation ran
