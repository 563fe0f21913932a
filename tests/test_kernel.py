"""The chunked kernel against plain, full-size torch math on random logits."""

from __future__ import annotations

import pytest
import torch

from logitscope.engine.kernel import _count_true, stream_stats


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 10_000])
def test_stats_match_full_softmax(chunk_rows):
    g = torch.Generator().manual_seed(0)
    S, P, d, V = 4, 9, 16, 5003  # V not a multiple of 8: exercises the padded popcount mask
    W = torch.randn(V, d, generator=g)
    streams = torch.randn(S, P, d, generator=g) * 3

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


def test_popcount_counts_exactly():
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(5, 8 * 255 * 3, generator=g) > 0.3
    mask[0] = True  # a full row: every byte lane at its 255 maximum
    assert torch.equal(_count_true(mask), mask.sum(-1))
