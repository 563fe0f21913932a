"""Direct logit attribution: the terms add up to the model's own logit, and match a hand computation.

The reference logit comes from the model's forward (for softcapped models, the output of
``lm_head``, captured with a hook, before the softcap); the hand computations use test-side
knowledge of RMSNorm and LayerNorm.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny
import torch
from test_lens_exact import BLOCKS, SRC
from test_sublayers import MLP, REFUSED
from typer.testing import CliRunner

import logitscope
from logitscope.cli import app
from logitscope.errors import InputError, UnsupportedModelError

SOFTCAP = {"gemma2", "gemma3_text"}


def own_logits(model, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, vocab) float64: the model's output logits and its head's output (pre-softcap)."""
    seen = {}
    handle = model.get_output_embeddings().register_forward_hook(lambda m, a, out: seen.setdefault("z", out))
    with torch.no_grad():
        if name in tiny.SEQ2SEQ:
            start = model.config.decoder_start_token_id
            out = model(input_ids=torch.tensor([SRC]), decoder_input_ids=torch.tensor([[start]])).logits
        else:
            out = model(input_ids=torch.tensor([SRC])).logits
    handle.remove()
    return out[0].double(), seen["z"][0].double()


@pytest.mark.parametrize("name", sorted(MLP))
def test_terms_sum_to_the_models_own_logit(name):
    model = tiny.build(name)
    res = logitscope.Scope(model).attribute(SRC)
    n_blocks = len(model.get_submodule(BLOCKS[name]))
    assert res.components == ["embed"] + [f"{b}.{k}" for b in range(1, n_blocks + 1) for k in ("attn", "mlp")]
    final, head_out = own_logits(model, name)
    at = np.arange(res.n_positions)
    np.testing.assert_array_equal(res.target_ids, final.argmax(-1).numpy())  # default: the model's top-1
    np.testing.assert_allclose(res.final_logit, final[at, res.target_ids].numpy(), atol=1e-4)
    own = head_out if name in SOFTCAP else final  # softcap: the attribution is of pre-softcap logits
    if name in SOFTCAP:
        cap = model.config.final_logit_softcapping
        np.testing.assert_allclose(np.tanh(res.logit / cap) * cap, res.final_logit, atol=1e-4)
    total = res.contributions.sum(0) + res.norm_bias + res.head_bias
    np.testing.assert_allclose(total, own[at, res.target_ids].numpy(), atol=1e-4, err_msg=name)
    np.testing.assert_allclose(res.logit, own[at, res.target_ids].numpy(), atol=1e-4)
    assert np.abs(res.contributions).max() > 1e-3  # not all in the bias


def _resid_mid(model, norm_path: str, block: int) -> torch.Tensor:
    seen = {}
    norm = model.get_submodule(norm_path.format(block))
    handle = norm.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model(input_ids=torch.tensor([SRC]))
    handle.remove()
    return seen["x"][0].double()


@pytest.mark.parametrize(
    "name,mid,final_norm,centre",
    [
        ("llama", "model.layers.{}.post_attention_layernorm", "model.norm", False),
        ("gpt2", "transformer.h.{}.ln_2", "transformer.ln_f", True),
    ],
)
def test_contributions_match_a_hand_computation(name, mid, final_norm, centre):
    model = tiny.build(name)
    target = 11
    res = logitscope.Scope(model).attribute(SRC, target=target)
    assert (res.target_ids == target).all()
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([SRC]), output_hidden_states=True).hidden_states
    seen = {}
    norm = model.get_submodule(final_norm)
    handle = norm.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model(input_ids=torch.tensor([SRC]))
    handle.remove()
    x = seen["x"][0].double()  # the final stream, before the final norm
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    if centre:
        s = (x.var(-1, unbiased=False) + eps).sqrt()
    else:
        s = ((x * x).mean(-1) + eps).sqrt()
    w = model.get_output_embeddings().weight[target].detach().double()
    g = norm.weight.detach().double()

    def contrib(c):
        c = c - c.mean(-1, keepdim=True) if centre else c
        return ((g * c) @ w) / s

    embed = hidden[0][0].double()
    attn1 = _resid_mid(model, mid, 0) - embed
    mlp1 = hidden[1][0].double() - _resid_mid(model, mid, 0)
    np.testing.assert_allclose(res.contributions[0], contrib(embed).numpy(), atol=1e-5)
    np.testing.assert_allclose(res.contributions[1], contrib(attn1).numpy(), atol=1e-5)
    np.testing.assert_allclose(res.contributions[2], contrib(mlp1).numpy(), atol=1e-5)
    beta = norm.bias.detach().double() @ w if centre else 0.0
    np.testing.assert_allclose(res.norm_bias, np.full(len(SRC), float(beta)), atol=1e-5)
    np.testing.assert_allclose(res.norm_scale, s.numpy(), rtol=1e-5)


def test_targets_and_refusals():
    scope = logitscope.Scope(tiny.build("llama"))
    per = list(range(len(SRC)))
    assert scope.attribute(SRC, target=per).target_ids.tolist() == per
    with pytest.raises(InputError, match="one id per position"):
        scope.attribute(SRC, target=[1, 2])
    with pytest.raises(InputError, match="vocabulary"):
        scope.attribute(SRC, target=10_000)
    with pytest.raises(InputError, match="one input"):
        scope.attribute([SRC, SRC])
    for name in sorted(REFUSED):
        with pytest.raises(UnsupportedModelError, match="sub-layer"):
            logitscope.Scope(tiny.build(name)).attribute(SRC)


def test_a_tail_it_cannot_decompose_is_refused():
    model = tiny.build("llama")
    scope = logitscope.Scope(model)

    class Squash(torch.nn.Module):  # not g ⊙ P(x) / s(x) + β: the terms cannot add up
        def forward(self, x):
            return x.abs() + x

    scope.parts.final_norm = Squash()
    with pytest.raises(UnsupportedModelError, match="cannot decompose"):
        scope.attribute(SRC)


def test_result_frames_and_plots(tmp_path):
    res = logitscope.Scope(tiny.build("gpt2")).attribute(SRC)
    frame = res.to_pandas()
    assert len(frame) == (len(res.components) + 1) * res.n_positions
    sums = frame.groupby("position")["contribution"].sum().to_numpy()
    np.testing.assert_allclose(sums, res.logit, atol=1e-4)
    data = json.loads(json.dumps(res.to_dict()))
    assert data["components"] == res.components and len(data["contributions"][0]) == res.n_positions
    kinds = res.by_kind()
    np.testing.assert_allclose(kinds["embed"] + kinds["attn"] + kinds["mlp"] + res.bias, res.logit, atol=1e-4)
    for name, kw in (
        ("heat.png", {}),
        ("bars.svg", {"position": -1}),
        ("heat.html", {}),
        ("bars.html", {"position": 0}),
    ):
        res.plot(tmp_path / name, **kw)
        assert (tmp_path / name).stat().st_size > 1000


def test_cli(tiny_lm_dir, tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["attribute", str(tiny_lm_dir), "The quick brown fox", "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    total = np.array(data["contributions"]).sum(0) + np.array(data["norm_bias"]) + np.array(data["head_bias"])
    np.testing.assert_allclose(total, data["logit"], atol=1e-4)
    table = runner.invoke(
        app, ["attribute", str(tiny_lm_dir), "The quick brown fox", "--bars", str(tmp_path / "b.png")]
    )
    assert table.exit_code == 0, table.output
    assert "3.mlp" in table.stdout and (tmp_path / "b.png").exists()
    csv = tmp_path / "a.csv"
    assert runner.invoke(app, ["attribute", str(tiny_lm_dir), "The fox", "-f", "csv", "-o", str(csv)]).exit_code == 0
    assert csv.read_text().startswith("component,position")
    bad = runner.invoke(app, ["attribute", str(tiny_lm_dir), "The fox", "--target", "quick brown fox"])
    assert bad.exit_code == 2 and "error:" in bad.output
