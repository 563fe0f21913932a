"""The chunked kernel (compiled C rows and torch fallback) against plain, full-size float64 math."""

from __future__ import annotations

import pytest
import torch

from logitscope.engine import kernel_native
from logitscope.engine.kernel import stream_stats
from logitscope.errors import NonFiniteError


@pytest.fixture(params=["native", "torch"])
def path(request, monkeypatch):
    """Run the kernel's compiled C rows (skipped without a compiler) or its torch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(kernel_native, "load", lambda: None)
    elif kernel_native.load() is None:
        pytest.skip("no C compiler: the compiled rows are unavailable")
    return request.param


@pytest.mark.parametrize("layout", ["stream-major", "position-major"])
@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64, 10_000])
def test_stats_match_full_softmax(chunk_rows, path, layout):
    """Both layouts of the streams: (S, P, d) contiguous (rows gathered per chunk) and the
    transposed view of a (P, S, d) buffer that engine.run.real_rows builds (chunks are views)."""
    g = torch.Generator().manual_seed(0)
    S, P, d, V = 4, 9, 16, 5003  # V not a multiple of 8: exercises the padded popcount mask
    W = torch.randn(V, d, generator=g)
    streams = torch.randn(S, P, d, generator=g) * 3
    if layout == "position-major":
        streams = streams.transpose(0, 1).contiguous().transpose(0, 1)
        assert not streams.is_contiguous() and streams.transpose(0, 1).is_contiguous()

    def unembed(h, out=None):
        z = h @ W.T
        return out.copy_(z) if out is not None else z

    targets = torch.randint(0, V, (P,), generator=g)
    targets[-1] = -1
    track = torch.tensor([3, 4000, int(targets[0])])
    st = stream_stats(streams, unembed, targets=targets, track=track, top_k=4, chunk_rows=chunk_rows)

    logp = (streams @ W.T).double().log_softmax(-1)  # (S, P, V), the naive full tensor
    p = logp.exp()
    torch.testing.assert_close(st.entropy.double(), -(p * logp).sum(-1), atol=1e-4, rtol=0)
    kl = (p[-1] * (logp[-1] - logp)).sum(-1)
    torch.testing.assert_close(st.kl_to_final.double(), kl, atol=1e-4, rtol=0)
    top_p, top_i = p.topk(4, dim=-1)
    assert torch.equal(st.top_ids, top_i)
    torch.testing.assert_close(st.top_probs.double(), top_p, atol=1e-5, rtol=0)
    has = targets >= 0
    tl = logp[:, has].gather(-1, targets[has].view(1, -1, 1).expand(S, -1, 1)).squeeze(-1)
    torch.testing.assert_close(st.target_logprob[:, has].double(), tl, atol=1e-4, rtol=0)
    assert torch.equal(st.target_rank[:, has], (logp[:, has] > tl.unsqueeze(-1)).sum(-1))
    assert (st.target_rank[:, ~has] == -1).all() and st.target_logprob[:, ~has].isnan().all()
    for j, t in enumerate(track.tolist()):
        torch.testing.assert_close(st.tracked_logprobs[j].double(), logp[..., t], atol=1e-4, rtol=0)
        assert torch.equal(st.tracked_ranks[j], (logp > logp[..., t : t + 1]).sum(-1))
    assert (st.kl_to_final[-1] == 0).all()


@pytest.mark.parametrize("V", [300, 5003, 70_001])
def test_both_paths_match_float64(path, V):
    """The logits themselves are the input (an identity head), so the float64 truth is exact."""
    g = torch.Generator().manual_seed(V)
    S, P = 5, 11
    z = torch.randn(S, P, V, generator=g) * 3
    z[..., :3] += 9.0  # a few confident tokens

    def unembed(h, out=None):
        return out.copy_(h) if out is not None else h.clone()

    targets = torch.randint(0, V, (P,), generator=g)
    targets[3] = -1
    track = torch.tensor([0, V - 1])
    st = stream_stats(z, unembed, targets=targets, track=track, top_k=7, chunk_rows=17)
    zd = z.double()
    logp = zd.log_softmax(-1)
    p = logp.exp()
    torch.testing.assert_close(st.entropy.double(), -(p * logp).sum(-1), atol=5e-6, rtol=0)
    torch.testing.assert_close(st.kl_to_final.double(), (p[-1] * (logp[-1] - logp)).sum(-1), atol=5e-6, rtol=0)
    top_p, top_i = p.topk(7, dim=-1)
    assert torch.equal(st.top_ids, top_i)
    torch.testing.assert_close(st.top_probs.double(), top_p, atol=1e-6, rtol=0)
    has = targets >= 0
    idx = targets[has].view(1, -1, 1).expand(S, -1, 1)
    torch.testing.assert_close(
        st.target_logprob[:, has].double(), logp[:, has].gather(-1, idx).squeeze(-1), atol=5e-6, rtol=0
    )
    assert torch.equal(st.target_rank[:, has], (zd[:, has] > zd[:, has].gather(-1, idx)).sum(-1))
    assert (st.target_rank[:, ~has] == -1).all() and st.target_logprob[:, ~has].isnan().all()
    for j, t in enumerate(track.tolist()):
        torch.testing.assert_close(st.tracked_logprobs[j].double(), logp[..., t], atol=5e-6, rtol=0)
        assert torch.equal(st.tracked_ranks[j], (zd > zd[..., t : t + 1]).sum(-1))


def test_paths_agree_and_many_streams():
    """More streams than chunk rows (the final row projected with the first group): both paths agree."""
    g = torch.Generator().manual_seed(3)
    S, P, d, V = 9, 4, 8, 4099
    W = torch.randn(V, d, generator=g)
    streams = torch.randn(S, P, d, generator=g)

    def unembed(h, out=None):
        z = h @ W.T
        return out.copy_(z) if out is not None else z

    targets = torch.randint(0, V, (P,), generator=g)
    kw = dict(targets=targets, track=torch.tensor([5]), top_k=3, chunk_rows=4)
    a = stream_stats(streams, unembed, **kw)
    real = kernel_native.load
    kernel_native.load = lambda: None
    try:
        b = stream_stats(streams, unembed, **kw)
    finally:
        kernel_native.load = real
    for key in ("entropy", "kl_to_final", "top_probs", "target_logprob", "tracked_logprobs"):
        torch.testing.assert_close(getattr(a, key), getattr(b, key), atol=1e-5, rtol=0)
    for key in ("top_ids", "target_rank", "tracked_ranks"):
        assert torch.equal(getattr(a, key), getattr(b, key))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_raise_on_both_paths(path, bad):
    z = torch.randn(3, 4, 600)
    z[1, 2, 17] = bad

    def unembed(h, out=None):
        return out.copy_(h) if out is not None else h.clone()

    with pytest.raises(NonFiniteError, match="stream rows"):
        stream_stats(z, unembed, targets=torch.tensor([1, 2, 3, 4]), chunk_rows=5)


def test_no_compiler_falls_back(monkeypatch, tmp_path):
    """Without a compiler (or when it fails, or LOGITSCOPE_NATIVE=0) load() is None and the torch path runs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for setup in (
        lambda: monkeypatch.setattr(kernel_native, "_compiler", lambda: None),
        lambda: monkeypatch.setenv("CC", "false"),  # a "compiler" that fails
        lambda: monkeypatch.setenv("LOGITSCOPE_NATIVE", "0"),
    ):
        monkeypatch.undo()
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        setup()
        monkeypatch.setattr(kernel_native, "_lib", False)  # not tried yet
        assert kernel_native.load() is None
        z = torch.randn(2, 3, 500)
        st = stream_stats(
            z, lambda h, out=None: out.copy_(h), targets=torch.tensor([0, 1, 2]), top_k=2, vocab_size=500, device="cpu"
        )
        logp = z.double().log_softmax(-1)
        torch.testing.assert_close(st.entropy.double(), -(logp.exp() * logp).sum(-1), atol=1e-5, rtol=0)
    assert not list(tmp_path.rglob("*.so"))


def test_default_chunk_rows_widens_for_wide_heads():
    from logitscope.engine.kernel import WIDE_HEAD_ROWS, default_chunk_rows

    assert default_chunk_rows(50257, 768) == 2**24 // 50257  # GPT-2: ~16M logits a chunk
    assert default_chunk_rows(128256) == default_chunk_rows(128256, 1024) == 2**24 // 128256
    assert default_chunk_rows(128256, 4096) == WIDE_HEAD_ROWS > 2**24 // 128256  # Llama-3 8B
    assert default_chunk_rows(32000, 4096) == 2**24 // 32000  # already wider than the minimum


def test_scope_takes_the_wide_head_chunk_from_its_width(monkeypatch):
    """The Scope's default chunk follows the model's width; a chunk wider than every row is exact."""
    import tiny
    import torch

    import logitscope
    import logitscope.engine.kernel as kernel

    model = tiny.build("llama")
    monkeypatch.setattr(kernel, "WIDE_HEAD_D", model.config.hidden_size)  # this model counts as wide
    monkeypatch.setattr(kernel, "WIDE_HEAD_ROWS", 10**6)
    scope = logitscope.Scope(model)
    assert scope.chunk_size == 10**6
    ids = list(range(3, 40))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    res = scope.lens(ids)
    assert torch.equal(torch.as_tensor(res.top_ids[-1, :, 0]), logp.argmax(-1))
    torch.testing.assert_close(torch.as_tensor(res.entropy[-1]), -(logp.exp() * logp).sum(-1), rtol=0, atol=1e-5)
