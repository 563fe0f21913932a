"""scope.layer_logits and scope.unembed against the truncation oracle (the model cut after block l)."""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch
from test_lens_exact import BLOCKS, SRC, TGT, truncated

import logitscope
from logitscope.errors import InputError, NonFiniteError


def oracle_logits(model, name: str, n_keep: int) -> torch.Tensor:
    """(positions, vocab) logits of ``model`` with only its first ``n_keep`` blocks."""
    cut = truncated(model, BLOCKS[name], n_keep)
    with torch.no_grad():
        if name in tiny.SEQ2SEQ:
            start = model.config.decoder_start_token_id
            return cut(input_ids=torch.tensor([SRC]), decoder_input_ids=torch.tensor([[start, *TGT]])).logits[0]
        return cut(input_ids=torch.tensor([SRC])).logits[0]


@pytest.mark.parametrize("name", ["llama", "gemma2", "opt", "t5", "bart", "bert"])
def test_layer_logits_equal_truncated_model(name):
    model = tiny.build(name)
    scope = logitscope.Scope(model)
    L = scope.n_layers
    got = scope.layer_logits(SRC, target=TGT if name in tiny.SEQ2SEQ else None, layers=[0, 1, -1])
    assert got.layers == [0, 1, L] and got.layer_names == ["embed", "1", str(L)]
    assert got.logits.dtype == torch.float32 and got.logits.shape[:2] == (3, len(got.tokens))
    for s, row in enumerate(got.layers):
        torch.testing.assert_close(got.logits[s], oracle_logits(model, name, row), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.layer(-1), got.logits[-1])
    lens = scope.lens(SRC, target=TGT if name in tiny.SEQ2SEQ else None, layers=[0, 1, -1])  # same rows
    logp = got.logprobs().double()
    np.testing.assert_allclose(lens.entropy, -(logp.exp() * logp).sum(-1).numpy(), atol=1e-5)


def test_batched_layer_logits_equal_one_at_a_time():
    scope = logitscope.Scope(tiny.build("gpt2"))
    inputs = [SRC[:3], SRC, SRC[2:7]]
    batched = scope.layer_logits(inputs, layers=[0, 2], batch_size=3)
    for x, got in zip(inputs, batched):
        one = scope.layer_logits(x, layers=[0, 2])
        assert got.token_ids.tolist() == x == one.token_ids.tolist()
        torch.testing.assert_close(got.logits, one.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["llama", "gemma2", "bert"])
def test_unembed_any_hidden_state(name):
    model = tiny.build(name)
    scope = logitscope.Scope(model)
    with torch.no_grad():  # HF's hidden_states[l], l < L, is the raw stream after block l
        hidden = model(input_ids=torch.tensor([SRC]), output_hidden_states=True).hidden_states
    z = scope.unembed(hidden[1])  # (1, P, d) -> (1, P, V)
    assert z.shape == (1, len(SRC), model.config.vocab_size) and z.dtype == torch.float32
    torch.testing.assert_close(z[0], oracle_logits(model, name, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scope.unembed(hidden[1][0, 2].numpy()), z[0, 2])  # (d,) -> (V,)


def test_unembed_is_differentiable_and_checks_input():
    scope = logitscope.Scope(tiny.build("llama"))
    h = torch.randn(4, tiny.D, requires_grad=True)
    scope.unembed(h).logsumexp(-1).sum().backward()
    assert h.grad is not None and h.grad.shape == h.shape
    with pytest.raises(InputError, match="d_model = 32"):
        scope.unembed(torch.randn(4, tiny.D + 1))
    with pytest.raises(InputError, match="floating-point"):
        scope.unembed(torch.ones(4, tiny.D, dtype=torch.long))
    with pytest.raises(InputError, match="tensor"):
        scope.unembed([1.0] * tiny.D)
    with pytest.raises(NonFiniteError):
        scope.unembed(torch.full((2, tiny.D), float("nan")))
