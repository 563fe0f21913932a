"""The streaming statistics kernel: project residual streams in row chunks, reduce while hot.

Nothing of shape (streams × positions × vocab) is ever held. For each chunk of positions the
final row is projected first (its distribution is needed for KL), then the other streams in
groups; every statistic comes from the one ``(rows, vocab)`` float32 logits chunk:

* ``z' = z - max(z)`` in place, ``e = exp(z')``, ``lse' = log Σe``;
* entropy ``H = lse' - (e · z') / Σe`` (a batched dot product, no ``p·log p`` temporary);
* KL(final ‖ layer) ``= -H_f - p_f · z'_l + lse'_l``;
* top-k, and target/tracked log-probabilities and ranks (count of strictly larger logits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_CHUNK_ELEMENTS = 2**24  # logits elements per chunk: 64 MiB of float32


def default_chunk_rows(vocab_size: int, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    """Rows (stream × position pairs) per projection so a chunk holds ~``chunk_elements`` logits."""
    return max(8, chunk_elements // max(1, vocab_size))


@dataclass
class StreamStats:
    """Per-(stream, position) statistics, float32/int64 CPU tensors.

    Shapes: ``S`` streams, ``P`` positions, ``k`` top-k, ``K`` tracked tokens.
    entropy, kl_to_final, target_logprob, target_rank: (S, P); top_ids, top_probs: (S, P, k);
    tracked_logprobs, tracked_ranks: (K, S, P). Rows without a target hold NaN / -1.
    """

    entropy: torch.Tensor
    kl_to_final: torch.Tensor
    top_ids: torch.Tensor
    top_probs: torch.Tensor
    target_logprob: torch.Tensor
    target_rank: torch.Tensor
    tracked_logprobs: torch.Tensor
    tracked_ranks: torch.Tensor


def _reduce(z: torch.Tensor, targets: torch.Tensor, track: torch.Tensor, top_k: int, keep_probs: bool):
    """Statistics of one float32 logits chunk ``z`` (R, V), modified in place.

    Returns ``(out, probs)``: ``out`` is a dict of per-row tensors, ``probs`` the (R, V)
    distribution when ``keep_probs`` (needed for the final row's KL), else ``None``.
    """
    z.sub_(z.amax(dim=-1, keepdim=True))  # z' <= 0
    e = torch.exp(z)
    s = e.sum(dim=-1)  # (R,)
    lse = s.log()
    ez = torch.bmm(e.unsqueeze(1), z.unsqueeze(2)).view(-1)  # Σ e·z'
    out = {"entropy": lse - ez / s, "lse": lse}
    top_vals, out["top_ids"] = z.topk(top_k, dim=-1)
    out["top_probs"] = torch.exp(top_vals - lse.unsqueeze(1))
    has = targets >= 0
    zt = z.gather(1, targets.clamp(min=0).unsqueeze(1))  # (R, 1)
    out["target_logprob"] = torch.where(has, zt.squeeze(1) - lse, torch.full_like(lse, float("nan")))
    out["target_rank"] = torch.where(has, (z > zt).sum(dim=-1), torch.full_like(has, -1, dtype=torch.long))
    if track.numel():
        zk = z.index_select(1, track)  # (R, K)
        out["tracked_logprobs"] = (zk - lse.unsqueeze(1)).T  # (K, R)
        out["tracked_ranks"] = torch.stack([(z > zk[:, i : i + 1]).sum(dim=-1) for i in range(track.numel())])
    probs = e.div_(s.unsqueeze(1)) if keep_probs else None
    return out, probs


def stream_stats(
    streams: torch.Tensor,
    unembed: Callable[[torch.Tensor], torch.Tensor],
    *,
    targets: torch.Tensor,
    track: torch.Tensor | None = None,
    top_k: int = 5,
    chunk_rows: int = 512,
) -> StreamStats:
    """Lens statistics of residual streams through ``unembed``.

    Args:
        streams: (S, P, d_model) hidden states; the **last row is the final stream**, the
            reference for ``kl_to_final``.
        unembed: maps (..., d_model) to float32 logits (..., vocab).
        targets: (P,) token id scored at each position, -1 for none.
        track: (K,) token ids whose log-probability and rank are recorded everywhere.
        top_k: how many top tokens to keep per row.
        chunk_rows: at most this many (stream, position) rows are projected at once; peak
            extra memory is about ``2.3 * chunk_rows * vocab * 4`` bytes.
    """
    S, P, _ = streams.shape
    track = torch.empty(0, dtype=torch.long) if track is None else track
    K = track.numel()
    f32 = dict(dtype=torch.float32)
    res = {
        "entropy": torch.empty(S, P, **f32),
        "kl_to_final": torch.empty(S, P, **f32),
        "top_ids": torch.empty(S, P, top_k, dtype=torch.long),
        "top_probs": torch.empty(S, P, top_k, **f32),
        "target_logprob": torch.empty(S, P, **f32),
        "target_rank": torch.empty(S, P, dtype=torch.long),
        "tracked_logprobs": torch.empty(K, S, P, **f32),
        "tracked_ranks": torch.empty(K, S, P, dtype=torch.long),
    }
    n_other = S - 1
    pos_step = max(1, min(P, chunk_rows // max(1, n_other)))
    grp_step = max(1, min(n_other, chunk_rows // pos_step)) if n_other else 1
    with torch.inference_mode():
        for p0 in range(0, P, pos_step):
            p1 = min(P, p0 + pos_step)
            n = p1 - p0
            tgt = targets[p0:p1].to(streams.device)
            trk = track.to(streams.device)
            z = unembed(streams[S - 1, p0:p1])  # (n, V)
            tgt, trk = tgt.to(z.device), trk.to(z.device)
            out, p_final = _reduce(z, tgt, trk, top_k, keep_probs=n_other > 0)
            del z
            h_final = out["entropy"]
            out["kl_to_final"] = torch.zeros_like(h_final)
            _store(res, out, slice(S - 1, S), p0, p1, n, 1)
            for g0 in range(0, n_other, grp_step):
                g1 = min(n_other, g0 + grp_step)
                g = g1 - g0
                h = streams[g0:g1, p0:p1].transpose(0, 1).reshape(n * g, -1)  # position-major
                z = unembed(h)  # (n*g, V)
                V = z.shape[-1]
                out, _ = _reduce(z, tgt.repeat_interleave(g), trk, top_k, keep_probs=False)
                pz = torch.bmm(z.view(n, g, V), p_final.unsqueeze(2)).view(n * g)  # p_f · z'_l
                out["kl_to_final"] = (out["lse"] - pz - h_final.repeat_interleave(g)).clamp_(min=0.0)
                del z
                _store(res, out, slice(g0, g1), p0, p1, n, g)
    return StreamStats(**res)


def _store(res: dict, out: dict, rows: slice, p0: int, p1: int, n: int, g: int) -> None:
    """Write position-major chunk results (n*g rows) into the (S, P, ...) outputs."""
    for key, dst in res.items():
        if key not in out:
            continue
        val = out[key].cpu()
        if key.startswith("tracked"):  # (K, n*g) -> (K, g, n)
            dst[:, rows, p0:p1] = val.view(val.shape[0], n, g).transpose(1, 2)
        else:  # (n*g, ...) -> (g, n, ...)
            dst[rows, p0:p1] = val.view(n, g, *val.shape[1:]).transpose(0, 1)
