"""The streaming statistics kernel: project residual streams in row chunks, reduce while hot.

Nothing of shape (streams × positions × vocab) is ever held. For each chunk of positions, every
stream (the final one last) is projected in **one** matrix product, as large as the floor's,
into a float32 logits buffer that is allocated once per call and reused (whatever
``torch.get_default_dtype()`` is). The streams are read position-major: given the transposed
view of a ``(P, S, d)`` buffer (as ``engine.run.real_rows`` builds it) each chunk is a view of
it, with no gather; other layouts are copied chunk by chunk into one reused buffer. The
statistics are then taken in cache-sized sub-blocks of positions (``_SUB_ELEMENTS`` logits, a
few MiB, so every pass after the first reads the cache, not memory), the final rows of a
sub-block before the others:

* top-k of the logits ``z`` from block maxima (:func:`_topk`): its top value is the row max
  ``m``; ``z' = z - m`` in place;
* ``e = exp(z')`` and ``s = Σ e`` (torch's pairwise sum), ``lse' = log s`` (so ``p = e / s``);
* entropy ``H = lse' - (Σ e·z') / s``;
* KL(final ‖ layer) ``= lse'_l - lse'_f + (Σ e_f·(z'_f - z'_l)) / s_f``, i.e.
  ``lse'_l - (Σ e_f·z'_l) / s_f - H_f``;
* target/tracked log-probabilities ``z'_t - lse'`` and ranks: the count of strictly larger
  logits, a float comparison (1.0/0.0, exact) summed; the target's in place, last.

Every sum over the vocabulary is an elementwise product into a reused buffer followed by
``Tensor.sum``, whose pairwise (cascade) summation keeps the float32 rounding error near
``log2(V)·eps`` of the sum. A ``bmm``/BLAS dot product (or the running sum inside a fused
softmax) accumulates in a few float32 lanes and errs ~10× more at V = 32k–256k; see
``docs/numerics.md`` and ``bench/bench_numerics.py``. These torch sums are those of the kernel
before issue 24, term for term; only the passes are fewer and hotter (``bench/profile_kernel.py``).

On CPU, when a C compiler is available, each chunk's rows go instead to the fused C rows of
:mod:`.kernel_native` (two passes per row, float64 accumulation, one thread split per call):
the same statistics, with smaller errors, at ~0.3 ns a logit instead of ~1.5 (torch) or ~3
(before issue 24).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_CHUNK_ELEMENTS = 2**24  # logits elements per chunk: 64 MiB of float32
# logits per statistics sub-block of the torch path on CPU: 16 MiB of float32, within the L3 of
# this project's CPU; fewer, larger blocks mean fewer parallel regions, which a shared machine punishes
_SUB_ELEMENTS = 2**22
_BLOCK = 128  # top-k: the maxima of blocks of this many logits pick the candidates


# a wide head (d_model >= 2048) projects at least this many rows at once: each projection packs the
# whole head again, and with ~130 rows (V = 128k) that costs ~30% of the product on CPU
# (d = 2048/4096, V = 128,256, 2 threads: 96 GFLOP/s at 130 rows, 124-135 at 260-520; the lens
# statistics of 33 x 128 rows through a float32 4096 x 128k head 53 s -> 39 s). At d = 768 more
# rows than ~2**24 / V run slower (the head no longer stays in cache between row blocks).
WIDE_HEAD_D = 2048
WIDE_HEAD_ROWS = 256


def default_chunk_rows(
    vocab_size: int, d_model: int | None = None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> int:
    """Rows (stream × position pairs) per projection so a chunk holds ~``chunk_elements`` logits,
    and at least :data:`WIDE_HEAD_ROWS` for a head at least :data:`WIDE_HEAD_D` wide."""
    rows = max(8, chunk_elements // max(1, vocab_size))
    if d_model is not None and d_model >= WIDE_HEAD_D:
        rows = max(rows, WIDE_HEAD_ROWS)
    return rows


def chunk_positions(n_streams: int, chunk_rows: int) -> int:
    """Positions per projection when all ``n_streams`` fit in ``chunk_rows``: the nearest whole number.

    Rounded, not floored, so the matrix product stays as large as ``chunk_rows`` (e.g. 5 × 13 = 65
    rows for 64 at V = 256k, not 52: a smaller product runs measurably slower per row); at most
    ``n_streams / 2`` rows over ``chunk_rows``.
    """
    return max(1, (2 * chunk_rows + n_streams) // (2 * n_streams))


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


def _topk(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``z.topk(k, dim=-1)`` (values, indices) of ``(..., V)`` logits, reading ``z`` ~once.

    ``Tensor.topk`` copies each row into (value, index) pairs and partially sorts them (~1 ns a
    logit on CPU). Here the maxima of blocks of ``_BLOCK`` logits (a vectorised ``amax``) pick
    the ``k`` blocks with the largest maxima; every one of the row's top ``k`` logits lies in
    them (a logit in any other block is exceeded by ``k`` block maxima), so the top-k of those
    ``k·_BLOCK`` candidates (and the last partial block) is the row's. Ties between equal
    logits may be broken differently than ``Tensor.topk`` would (which is unspecified too).
    """
    V = z.shape[-1]
    nb = V // _BLOCK
    if nb < 4 * k:  # small vocabularies / large k: the candidates would be most of the row
        return z.topk(k, dim=-1)
    lead = z.shape[:-1]
    maxima = z[..., : nb * _BLOCK].view(*lead, nb, _BLOCK).amax(dim=-1)  # (..., nb)
    blocks = maxima.topk(k, dim=-1).indices  # (..., k)
    offsets = torch.arange(_BLOCK, device=z.device)
    cand = (blocks.unsqueeze(-1) * _BLOCK + offsets).view(*lead, k * _BLOCK)
    if nb * _BLOCK < V:  # the last, partial block is always a candidate
        tail = torch.arange(nb * _BLOCK, V, device=z.device).expand(*lead, -1)
        cand = torch.cat([cand, tail], dim=-1)
    vals, at = z.gather(-1, cand).topk(k, dim=-1)
    return vals, cand.gather(-1, at)


def _count_above(z: torch.Tensor, zt: torch.Tensor, work: torch.Tensor | None) -> torch.Tensor:
    """(...,) int64 count of entries of ``z`` (..., V) strictly above ``zt`` (..., 1).

    The comparison is written as float32 1.0/0.0 (vectorised, unlike a ``bool`` output) into
    ``work``, or into ``z`` itself when ``work`` is None, and summed: float32 holds every count
    up to 2**24 exactly.
    """
    if work is None:
        flags = z.gt_(zt)
    else:
        flags = torch.gt(z, zt, out=work)
    return flags.sum(dim=-1).long()


def _reduce(z: torch.Tensor, e: torch.Tensor, work: torch.Tensor, tgt, track, top_k: int, e_final=None) -> dict:
    """Statistics of a float32 logits block ``z`` (..., V); ``z`` is spent.

    ``e`` receives ``exp(z')``; ``work`` is scratch of the same shape and may be ``e`` itself
    (``e`` is then spent too). With ``e_final = (e_f, s_f, H_f)`` of the same positions (the
    leading dim of ``z`` being positions, the next streams) ``kl_to_final`` is computed too.
    """
    top_vals, top_ids = _topk(z, top_k)
    m = top_vals[..., :1]
    z.sub_(m)  # z' <= 0, max exactly 0
    torch.exp(z, out=e)
    s = e.sum(dim=-1)  # (...,) Σ exp z' >= 1, pairwise
    lse = s.log()  # log Σ exp z'
    out = {"s": s, "top_ids": top_ids}
    out["top_probs"] = torch.exp(top_vals - m - lse.unsqueeze(-1))
    has = tgt >= 0
    zt = z.gather(-1, tgt.clamp(min=0).unsqueeze(-1))  # (..., 1)
    out["target_logprob"] = torch.where(has, zt.squeeze(-1) - lse, torch.full_like(lse, float("nan")))
    zk = z.index_select(-1, track) if track.numel() else None  # (..., K)
    ez = torch.mul(e, z, out=work)  # e·z'
    out["entropy"] = lse - ez.sum(dim=-1) / s
    if e_final is not None:
        e_f, s_f, h_f = e_final
        pz = torch.mul(z, e_f.unsqueeze(1), out=work).sum(dim=-1) / s_f.unsqueeze(1)  # p_f · z'_l
        out["kl_to_final"] = (lse - pz - h_f.unsqueeze(1)).clamp_(min=0.0)
    else:
        out["kl_to_final"] = torch.zeros_like(lse)
    if zk is not None:
        out["tracked_logprobs"] = zk - lse.unsqueeze(-1)
        out["tracked_ranks"] = torch.stack(
            [_count_above(z, zk[..., i : i + 1], work) for i in range(zk.shape[-1])], dim=-1
        )
    rank = _count_above(z, zt, None)  # in place: z is spent
    out["target_rank"] = torch.where(has, rank, torch.full_like(rank, -1))
    return out


def _check_finite(out: dict, where: str) -> None:
    """Refuse to report statistics of NaN/inf logits (they would look like confident numbers)."""
    if not bool(torch.isfinite(out["entropy"]).all()):
        from ..errors import NonFiniteError

        err = NonFiniteError(
            f"the lens logits hold NaN or inf ({where}); the usual causes: NaN/inf weights, an "
            "overflow in float16/bfloat16 (try dtype='float32'), or NaN in padded positions (try batch_size=1)"
        )
        err.where = f"the lens logits hold NaN or inf ({where})"  # for callers that name the cause
        raise err


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
        chunk_rows: about this many (stream, position) rows are projected at once: whole
            positions of all S streams, the nearest number of them (:func:`chunk_positions`; at
            most S/2 rows more), or, when S > ``chunk_rows``, groups of ``chunk_rows`` streams of
            one position (2 when ``chunk_rows`` is 1 and there are several); peak extra memory is about
            4 bytes × ``chunk_rows`` × vocab (the logits) plus the final rows' probabilities
            (4 bytes × ``chunk_rows / S`` × vocab) and a sub-block of ~16 MiB on CPU, plus one
            logits temporary when the head is not a plain ``nn.Linear``.
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
    # rows are projected by position: a chunk is positions [p0, p1) × streams [s0, s1), all S
    # streams when S <= chunk_rows; else one position at a time in groups taken from the end,
    # so the first group of a position holds its final row (the KL reference), last.
    G = S if S <= chunk_rows else max(2 if S > 1 else 1, chunk_rows)  # streams per chunk
    pos_step = min(P, chunk_positions(S, chunk_rows)) if G == S else 1  # positions per chunk
    rows = streams.transpose(0, 1)  # (P, S, d): contiguous when built by engine.run.real_rows
    zero_copy = rows.is_contiguous()  # then every chunk below is a view: [p0, p1) × all, or one position
    with torch.inference_mode():
        if vocab_size is None or device is None:
            probe = unembed(streams[S - 1, :1])
            vocab_size, device = probe.shape[-1], probe.device
        V = vocab_size
        device = torch.device(device)
        z_buf = torch.empty(pos_step * G, V, **f32, device=device)
        h_buf = None if zero_copy else streams.new_empty(pos_step, G, streams.shape[-1])
        e_final = torch.empty(pos_step, V, **f32, device=device)  # exp z'_f of the chunk's positions
        # statistics sub-blocks: positions per block (CPU: cache-sized; elsewhere the whole chunk)
        sub = pos_step if device.type != "cpu" else max(1, min(pos_step, _SUB_ELEMENTS // (G * V)))
        work = torch.empty(sub * G, V, **f32, device=device)
        targets, track = targets.to(device), track.to(device)
        lib = None
        if device.type == "cpu":
            from . import kernel_native

            lib = kernel_native.load()
            f64 = dict(dtype=torch.float64)
            h64, s64 = torch.empty(pos_step, **f64), torch.empty(pos_step, **f64)
        h_final = torch.empty(pos_step, **f32, device=device)
        s_final = torch.empty(pos_step, **f32, device=device)
        for p0 in range(0, P, pos_step):
            p1 = min(P, p0 + pos_step)
            n = p1 - p0
            tgt = targets[p0:p1]
            for s1 in range(S, 0, -G):
                s0 = max(0, s1 - G)
                first = s1 == S
                if zero_copy:
                    h = rows[p0:p1, s0:s1].view(n * (s1 - s0), -1)
                else:
                    h = h_buf[:n, : s1 - s0].copy_(rows[p0:p1, s0:s1]).view(n * (s1 - s0), -1)
                z = unembed(h, out=z_buf[: h.shape[0]]).view(n, s1 - s0, V)
                z_f = z[:, -1] if first else None  # (n, V), rows G apart
                g = s1 - s0 - first  # other streams in this chunk: s0 .. s0 + g - 1
                z_o = z[:, :g]  # (n, g, V)
                if lib is not None:  # the fused C rows (kernel_native.py), one parallel split per call
                    at = slice(p0, p1)
                    if first:
                        out = kernel_native.rows_stats(lib, z_f, top_k, tgt, track, e_out=e_final[:n])
                        _check_finite(out, f"final stream, positions {p0}..{p1 - 1}")
                        h64[:n], s64[:n] = out["h"], out["s"]
                        _store(res, out, S - 1, at)
                    if g:
                        e_f = (e_final[:n], s64[:n], h64[:n])
                        t = tgt.repeat_interleave(g)
                        out = kernel_native.rows_stats(lib, z_o, top_k, t, track, e_final=e_f)
                        out = {key: val.view(n, g, *val.shape[1:]) for key, val in out.items()}
                        _check_finite(out, f"stream rows {s0}..{s0 + g - 1}, positions {p0}..{p1 - 1}")
                        _store(res, out, slice(s0, s0 + g), at)
                    continue
                for b0 in range(0, n, sub):
                    b1 = min(n, b0 + sub)
                    at = slice(p0 + b0, p0 + b1)
                    if first:
                        out = _reduce(z_f[b0:b1], e_final[b0:b1], work[: b1 - b0], tgt[b0:b1], track, top_k)
                        _check_finite(out, f"final stream, positions {at.start}..{at.stop - 1}")
                        h_final[b0:b1], s_final[b0:b1] = out["entropy"], out["s"]
                        _store(res, out, S - 1, at)
                    if not g:
                        continue
                    w = work[: (b1 - b0) * g].view(b1 - b0, g, V)
                    e_f = (e_final[b0:b1], s_final[b0:b1], h_final[b0:b1])
                    t = tgt[b0:b1].unsqueeze(1).expand(-1, g)
                    out = _reduce(z_o[b0:b1], w, w, t, track, top_k, e_final=e_f)
                    _check_finite(out, f"stream rows {s0}..{s0 + g - 1}, positions {at.start}..{at.stop - 1}")
                    _store(res, out, slice(s0, s0 + g), at)
    return StreamStats(**res)


def _store(res: dict, out: dict, rows, at: slice) -> None:
    """Write a sub-block's results, (b, ...) for the final row or (b, g, ...) for others, into (S, P, ...)."""
    for key, dst in res.items():
        if key not in out:
            continue
        val = out[key].cpu()
        if isinstance(rows, int):  # the final stream: (b, ...)
            if key.startswith("tracked"):  # (b, K) -> (K, b)
                dst[:, rows, at] = val.T
            else:
                dst[rows, at] = val
        elif key.startswith("tracked"):  # (b, g, K) -> (K, g, b)
            dst[:, rows, at] = val.permute(2, 1, 0)
        else:  # (b, g, ...) -> (g, b, ...)
            dst[rows, at] = val.transpose(0, 1)
