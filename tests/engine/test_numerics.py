"""Kernel numerics against a float64 truth at real vocabulary sizes, and float32 buffers always.

The truth is float64 ``log_softmax`` of the very float32 logits the kernel sees; the bar is a plain
float32 ``log_softmax`` computing the same statistics (the kernel may err at most 2× as much).
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch

import logitscope
from logitscope.engine.kernel import stream_stats


def _logits(V: int, S: int = 3, P: int = 3, seed: int = 0) -> torch.Tensor:
    """(S, P, V) float32 logits of realistic scale: a sharp final row, blurrier rows below it."""
    g = torch.Generator().manual_seed(seed)
    final = torch.randn(P, V, generator=g, dtype=torch.float64) * 4.0
    final[:, :4] += 12.0  # a few confident tokens
    rows = [
        (i + 1) / S * final + (1 - (i + 1) / S) * 3.0 * torch.randn(P, V, generator=g, dtype=torch.float64)
        for i in range(S - 1)
    ]
    return torch.stack([*rows, final]).float()


def _stats(logp: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    p = logp.exp()
    S = logp.shape[0]
    return {
        "entropy": -(p * logp).sum(-1),
        "kl_to_final": (p[-1] * (logp[-1] - logp)).sum(-1),
        "target_logprob": logp.gather(-1, targets.view(1, -1, 1).expand(S, -1, 1)).squeeze(-1),
    }


def _identity(h, out=None):
    return out.copy_(h) if out is not None else h.clone()


@pytest.mark.parametrize("V", [32_000, 128_256, 262_144])
def test_kernel_errs_no_more_than_plain_float32(V):
    z = _logits(V)
    targets = torch.tensor([0, V // 2, V - 1])
    truth = _stats(z.double().log_softmax(-1), targets)
    plain = _stats(z.log_softmax(-1), targets)  # float32 throughout
    st = stream_stats(z, _identity, targets=targets, top_k=2, chunk_rows=4)
    for key, ref in truth.items():
        ours = float((getattr(st, key).double() - ref).abs().max())
        bar = float((plain[key].double() - ref).abs().max())
        assert ours <= 2 * bar, f"V={V} {key}: kernel errs {ours:.2e}, plain float32 {bar:.2e}"
        assert ours < 1e-5, f"V={V} {key}: kernel errs {ours:.2e}"


@pytest.mark.parametrize("default", [torch.float64, torch.bfloat16])
def test_buffers_are_float32_whatever_the_default_dtype(default):
    z = _logits(5003)
    targets = torch.tensor([1, 2, 3])
    seen = []

    def unembed(h, out=None):
        seen.append(None if out is None else out.dtype)
        return _identity(h, out)

    truth = _stats(z.double().log_softmax(-1), targets)
    before = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        st = stream_stats(z, unembed, targets=targets, top_k=2, chunk_rows=4, vocab_size=5003, device="cpu")
    finally:
        torch.set_default_dtype(before)
    assert set(seen) == {torch.float32}
    for key, ref in truth.items():
        assert getattr(st, key).dtype == torch.float32
        torch.testing.assert_close(getattr(st, key).double(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("default", [torch.float64, torch.bfloat16])
def test_lens_under_another_default_dtype(default):
    model = tiny.build("llama")
    scope = logitscope.Scope(model)
    ids = [5, 17, 33, 8, 61]
    ref = scope.lens(ids)
    before = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        res = scope.lens(ids)
    finally:
        torch.set_default_dtype(before)
    assert res.entropy.dtype == np.float32
    np.testing.assert_allclose(res.entropy, ref.entropy, atol=1e-6)
    np.testing.assert_allclose(res.kl_to_final, ref.kl_to_final, atol=1e-6)
