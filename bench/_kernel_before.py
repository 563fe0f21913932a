"""The kernel as it was before issue 24 (a copy for bench/bench_kernel_ab.py and bench/profile_kernel.py).

The streaming statistics kernel: project residual streams in row chunks, reduce while hot.

Nothing of shape (streams × positions × vocab) is ever held. For each chunk of positions the
final row is projected first (its distribution is needed for KL), then the other streams in
groups; every statistic comes from one ``(rows, vocab)`` float32 logits chunk, in float32
buffers (whatever ``torch.get_default_dtype()`` is) that are allocated once per call and reused
(fresh multi-MB allocations page-fault on every chunk):

* top-k of the logits ``z`` first: its top value is the row max ``m``; ``z' = z - m`` in place;
* ``e = exp(z')`` and ``s = Σ e`` (torch's pairwise sum), ``lse' = log s`` (so ``p = e / s``);
* entropy ``H = lse' - (Σ e·z') / s``;
* KL(final ‖ layer) ``= lse'_l - lse'_f + (Σ e_f·(z'_f - z'_l)) / s_f``, i.e.
  ``lse'_l - (Σ e_f·z'_l) / s_f - H_f``;
* target/tracked log-probabilities ``z'_t - lse'`` and ranks: the count of strictly larger
  logits, a comparison into a reused mask and a word-wise popcount (:func:`_count_true`).

Every sum over the vocabulary is an elementwise product into a reused buffer followed by
``Tensor.sum``, whose pairwise (cascade) summation keeps the float32 rounding error near
``log2(V)·eps`` of the sum. A ``bmm``/BLAS dot product (or the running sum inside a fused
softmax) accumulates in a few float32 lanes and errs ~10× more at V = 32k–256k; see
``docs/numerics.md`` and ``bench/bench_numerics.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_CHUNK_ELEMENTS = 2**24  # logits elements per chunk: 64 MiB of float32
_LANE = 255  # int64 words summed per block: each byte lane stays <= 255, no carry


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


class _Buffers:
    """Reused per-chunk work buffers: logits, probabilities, comparison mask."""

    def __init__(self, rows: int, vocab: int, device) -> None:
        width = -(-vocab // (8 * _LANE)) * (8 * _LANE)  # mask padded to whole popcount blocks
        self.z = torch.empty(rows, vocab, dtype=torch.float32, device=device)
        self.p = torch.empty(rows, vocab, dtype=torch.float32, device=device)
        self.mask = torch.zeros(rows, width, dtype=torch.bool, device=device)
        self.vocab = vocab


def _count_true(mask: torch.Tensor) -> torch.Tensor:
    """Row counts of a (R, W) bool mask, W a multiple of 8·255: a SWAR popcount.

    The bytes are summed as int64 words in blocks of 255, so each of the 8 byte lanes holds at
    most 255 (no carry between lanes); the lanes are then added up. ~10× faster on CPU than
    ``mask.sum(-1)``, whose bool reduction is not vectorised.
    """
    R, W = mask.shape
    if mask.device.type != "cpu":
        return mask.sum(dim=-1)
    lanes = mask.view(torch.int64).view(R, W // (8 * _LANE), _LANE).sum(dim=-1)  # (R, blocks)
    return lanes.view(torch.uint8).view(R, -1).sum(dim=-1, dtype=torch.int64)


def _rank(z: torch.Tensor, zt: torch.Tensor, buf: _Buffers) -> torch.Tensor:
    """(R,) number of entries of each row of ``z`` strictly larger than ``zt`` (R, 1)."""
    R, V = z.shape
    mask = buf.mask[:R]
    torch.gt(z, zt, out=mask[:, :V])
    return _count_true(mask)


def _check_finite(out: dict, where: str) -> None:
    """Refuse to report statistics of NaN/inf logits (they would look like confident numbers)."""
    if not bool(torch.isfinite(out["entropy"]).all()):
        from logitscope.errors import NonFiniteError

        err = NonFiniteError(
            f"the lens logits hold NaN or inf ({where}); the usual causes: NaN/inf weights, an "
            "overflow in float16/bfloat16 (try dtype='float32'), or NaN in padded positions (try batch_size=1)"
        )
        err.where = f"the lens logits hold NaN or inf ({where})"  # for callers that name the cause
        raise err


def _reduce(z: torch.Tensor, e: torch.Tensor, buf: _Buffers, targets, track, top_k: int, keep_e: bool) -> dict:
    """Statistics of one float32 logits chunk ``z`` (R, V).

    Fills ``e`` with ``exp(z')`` (unnormalised probabilities; ``p = e / s``). With ``keep_e``
    (the final row, needed later for KL) the entropy's product is taken into ``z`` (which is
    then spent); otherwise into ``e``, and ``z'`` stays intact for the caller's KL.
    """
    top_vals, top_ids = z.topk(top_k, dim=-1)
    z.sub_(top_vals[:, :1])  # z' <= 0, max exactly 0
    torch.exp(z, out=e)
    s = e.sum(dim=-1)  # (R,) Σ exp z' >= 1, pairwise
    lse = s.log()  # log Σ exp z'
    out = {"lse": lse, "s": s, "top_ids": top_ids}
    out["top_probs"] = torch.exp(top_vals - top_vals[:, :1] - lse.unsqueeze(1))
    has = targets >= 0
    zt = z.gather(1, targets.clamp(min=0).unsqueeze(1))  # (R, 1)
    out["target_logprob"] = torch.where(has, zt.squeeze(1) - lse, torch.full_like(lse, float("nan")))
    out["target_rank"] = torch.where(has, _rank(z, zt, buf), torch.full_like(has, -1, dtype=torch.long))
    if track.numel():
        zk = z.index_select(1, track)  # (R, K)
        out["tracked_logprobs"] = (zk - lse.unsqueeze(1)).T  # (K, R)
        out["tracked_ranks"] = torch.stack([_rank(z, zk[:, i : i + 1], buf) for i in range(track.numel())])
    ez = z.mul_(e) if keep_e else torch.mul(e, z, out=e)  # (R, V) e·z'
    out["entropy"] = lse - ez.sum(dim=-1) / s
    return out


def stream_stats(
    streams: torch.Tensor,
    unembed: Callable[..., torch.Tensor],
    *,
    targets: torch.Tensor,
    track: torch.Tensor | None = None,
    top_k: int = 5,
    chunk_rows: int = 512,
    vocab_size: int | None = None,
    device: torch.device | str | None = None,
) -> StreamStats:
    """Lens statistics of residual streams through ``unembed``.

    Args:
        streams: (S, P, d_model) hidden states; the **last row is the final stream**, the
            reference for ``kl_to_final``.
        unembed: maps (N, d_model) to float32 logits (N, vocab); called as
            ``unembed(h, out=buffer)`` when it accepts ``out`` (see ``ModelParts.unembed``).
        targets: (P,) token id scored at each position, -1 for none.
        track: (K,) token ids whose log-probability and rank are recorded everywhere.
        top_k: how many top tokens to keep per row.
        chunk_rows: at most this many (stream, position) rows are projected at once; peak
            extra memory is about 9 bytes × ``chunk_rows`` × vocab (logits, probabilities,
            comparison mask), 13 when only one or two streams are kept (the final row's
            probabilities then fill a whole chunk), plus one logits temporary when the head is
            not a plain ``nn.Linear``.
        vocab_size, device: size and device of the logits (found with a one-row probe when
            either is not given).
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
        if vocab_size is None or device is None:
            probe = unembed(streams[S - 1, :1])
            vocab_size, device = probe.shape[-1], probe.device
        V = vocab_size
        buf = _Buffers(max(pos_step, pos_step * grp_step), V, device)
        e_final = torch.empty(pos_step, V, dtype=torch.float32, device=device)  # exp z'_f
        targets, track = targets.to(device), track.to(device)
        for p0 in range(0, P, pos_step):
            p1 = min(P, p0 + pos_step)
            n = p1 - p0
            tgt = targets[p0:p1]
            z = unembed(streams[S - 1, p0:p1], out=buf.z[:n])  # (n, V)
            out = _reduce(z, e_final[:n], buf, tgt, track, top_k, keep_e=True)
            _check_finite(out, f"final stream, positions {p0}..{p1 - 1}")
            h_final, s_final = out["entropy"], out["s"]
            out["kl_to_final"] = torch.zeros_like(h_final)
            _store(res, out, slice(S - 1, S), p0, p1, n, 1)
            for g0 in range(0, n_other, grp_step):
                g1 = min(n_other, g0 + grp_step)
                g = g1 - g0
                h = streams[g0:g1, p0:p1].transpose(0, 1).reshape(n * g, -1)  # position-major
                z = unembed(h, out=buf.z[: n * g])  # (n*g, V)
                out = _reduce(z, buf.p[: n * g], buf, tgt.repeat_interleave(g), track, top_k, keep_e=False)
                _check_finite(out, f"stream rows {g0}..{g1 - 1}, positions {p0}..{p1 - 1}")
                ez = z.view(n, g, V).mul_(e_final[:n].unsqueeze(1))  # (n, g, V) e_f·z'_l
                pz = (ez.sum(dim=-1) / s_final[:n].unsqueeze(1)).view(n * g)  # p_f · z'_l
                out["kl_to_final"] = (out["lse"] - pz - h_final.repeat_interleave(g)).clamp_(min=0.0)
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
