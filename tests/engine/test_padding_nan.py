"""Padded batches of sliding-window models, and NonFiniteError naming its real cause.

Found in transformers 5.23 (eager attention, right padding): a pad query farther than the
sliding window from the last real token has every key masked. In float32 the additive mask
(dtype min) keeps its softmax finite, but in float16 ``min + score`` overflows to -inf, the row's
softmax is NaN, and at the next block ``0 × NaN`` in the attention's weighted sum makes every
real token of that sequence NaN as well. The lens must give the real rows exactly and not raise.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import tiny
import torch

import logitscope
from logitscope.errors import NonFiniteError

SHORT = [5, 17, 33]
LONG = [5, 17, 33, 8, 61, 12, 40, 77, 23, 9, 11, 12, 13]  # 10 pad positions after SHORT: > the window
FIELDS = ("entropy", "kl_to_final", "top_probs", "target_logprob", "tracked_probs")


def windowed(name: str, window: int = 4, qk_scale: float = 1.0, dtype=torch.float32):
    """A tiny causal LM of ``name`` whose sliding window (test-side config key) is ``window`` tokens."""
    model = tiny.build(name, sliding_window=window)
    with torch.no_grad():
        for layer in model.model.layers:  # large attention scores: masked ones overflow in float16
            layer.self_attn.q_proj.weight.mul_(qk_scale)
            layer.self_attn.k_proj.weight.mul_(qk_scale)
    return model.to(dtype)


def assert_batch_equals_one_at_a_time(scope, inputs, atol):
    batched = scope.lens(inputs, batch_size=len(inputs), track=[3])
    for x, got in zip(inputs, batched):
        one = scope.lens(x, track=[3])
        for field in FIELDS:
            np.testing.assert_allclose(getattr(got, field), getattr(one, field), atol=atol, equal_nan=True)
        np.testing.assert_array_equal(got.top_ids[:, :, 0], one.top_ids[:, :, 0])


@pytest.mark.parametrize("name", ["mistral", "gemma2", "gemma3_text"])
def test_sliding_window_padded_batch_float32(name):
    scope = logitscope.Scope(windowed(name))
    assert_batch_equals_one_at_a_time(scope, [SHORT, LONG, LONG[:7]], atol=1e-5)


@pytest.mark.parametrize("name", ["mistral", "gemma2"])
def test_float16_pad_nan_stays_in_pad_rows(name):
    model = windowed(name, qk_scale=40.0, dtype=torch.float16)
    ids = torch.zeros(2, len(LONG), dtype=torch.long)
    mask = torch.zeros_like(ids)
    ids[0, :3], mask[0, :3] = torch.tensor(SHORT), 1
    ids[1], mask[1] = torch.tensor(LONG), 1
    with torch.no_grad():  # the model itself: NaN reaches the real tokens of the short row
        hidden = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True).hidden_states
    assert torch.isnan(hidden[-1][0, :3]).any()
    scope = logitscope.Scope(model)
    assert_batch_equals_one_at_a_time(scope, [SHORT, LONG], atol=1e-6)
    batched = scope.logits([SHORT, LONG], batch_size=2)  # the model's own logits: same guard
    for x, got in zip([SHORT, LONG], batched):
        one = scope.logits(x)
        assert torch.isfinite(got.logits).all()
        torch.testing.assert_close(got.logits, one.logits, atol=1e-6, rtol=0)


def test_padding_named_when_pad_nan_leaks(monkeypatch):
    import logitscope.engine.run as engine_run

    monkeypatch.setattr(engine_run, "pad_guard", lambda blocks, real: contextlib.nullcontext())
    scope = logitscope.Scope(windowed("mistral", qk_scale=40.0, dtype=torch.float16))
    with pytest.raises(NonFiniteError, match="caused by padding.*batch_size=1"):
        scope.lens([SHORT, LONG], batch_size=2)


def test_nan_weights_named():
    model = tiny.build("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    scope = logitscope.Scope(model, self_check=False)
    with pytest.raises(NonFiniteError, match=r"weights hold NaN or inf \(model\.layers\.1\.mlp\.down_proj\.weight\)"):
        scope.lens(SHORT)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_overflow_named_with_its_stream_row(dtype):
    model = tiny.build("llama").to(dtype)
    scope = logitscope.Scope(model)
    with torch.no_grad():  # block 2's MLP now overflows the dtype (its weights stay finite)
        for proj in ("up_proj", "down_proj"):
            getattr(model.model.layers[1].mlp, proj).weight.mul_(3e3 if dtype == torch.float16 else 1e22)
    expected = "float16 .*overflow" if dtype == torch.float16 else "overflows in float32"
    with pytest.raises(NonFiniteError, match=f"{expected}.*stream row 2") as info:
        scope.lens(SHORT)
    assert "padding" not in str(info.value)


def test_pad_guard_zeroes_only_unambiguous_batch_first_inputs():
    from torch import nn

    from logitscope.engine.capture import pad_guard

    class Seen(nn.Module):
        def forward(self, hidden_states):
            return hidden_states

    blocks = nn.ModuleList([Seen()])
    real = torch.tensor([[1, 1, 0], [1, 1, 1]])  # (B=2, T=3)
    with pad_guard(blocks, real):
        out = blocks[0](torch.full((2, 3, 5), float("nan")))  # (B, T, d): pad position zeroed
        assert out[0, 2].eq(0).all() and out[0, :2].isnan().all() and out[1].isnan().all()
        same = blocks[0](hidden_states=torch.ones(2, 3, 3))  # d == T: could be channels-first, left alone
        assert same.eq(1).all()
    square = torch.tensor([[1, 0], [1, 1]])  # B == T: could be seq-first, left alone
    with pad_guard(blocks, square):
        assert blocks[0](torch.ones(2, 2, 4)).eq(1).all()
    assert not blocks[0]._forward_pre_hooks  # hooks removed
