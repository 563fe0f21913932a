"""Lens diff: two models on one input, or one model on two prompts, row by row.

For every aligned pair of stream rows ``(h_A, h_B)`` both lenses are projected through their own
model's exact tail (``ModelParts.unembed``) in row chunks, and reduced while the chunk is hot::

    KL(A ‖ B) = Σ_v p_A(v) (z_A(v) - z_B(v)) - lse_A + lse_B

plus each side's top-k and ``delta`` = log p_B(t) - log p_A(t) for A's top-1 token ``t`` (how
much less, or more, B believes A's answer). Nothing larger than three ``(chunk, vocab)`` float32
buffers is held. Models with different depths are aligned by fraction of depth: A's row ``i``
(of ``L_A``) meets B's row ``round(i · L_B / L_A)``, so embeddings meet embeddings and final
meets final. Models whose vocabularies differ are refused.
"""

from __future__ import annotations

import numpy as np
import torch

from ..engine.inputs import display_tokens, encode_all
from ..engine.nonfinite import check_finite
from ..engine.rows import row_name
from ..errors import InputError
from .result import DiffResult


def aligned_rows(n_a: int, n_b: int) -> list[int]:
    """B's row for each of A's rows ``0..n_a``, by fraction of depth (half rounds up)."""
    return [int(np.floor(i * n_b / n_a + 0.5)) for i in range(n_a + 1)]


def row_pairs(n_a: int, n_b: int) -> list[tuple[int, int]]:
    """``(row of A, row of B)`` pairs: every row of the shallower model, with the deeper model's
    row at the same fraction of depth (:func:`aligned_rows`). Equal depths: the identity.

    Args:
        n_a, n_b: number of blocks of each model.
    """
    if min(n_a, n_b) == 0:
        return [(0, 0)]
    if n_a <= n_b:
        return list(enumerate(aligned_rows(n_a, n_b)))
    return [(a, b) for b, a in enumerate(aligned_rows(n_b, n_a))]


def check_comparable(a, b) -> None:
    """Refuse two scopes whose lenses cannot be compared: different vocabularies, kinds or tokenizers (``InputError``)."""
    va, vb = a.require_head().vocab_size, b.require_head().vocab_size
    if va != vb:
        raise InputError(f"cannot compare: the models' vocabularies differ ({va} vs {vb} tokens)")
    if a.require_head().kind != b.require_head().kind:
        raise InputError(f"cannot compare a {a.kind} model with a {b.kind} one")
    ta, tb = a.tokenizer, b.tokenizer
    if ta is not None and tb is not None and ta is not tb and ta.get_vocab() != tb.get_vocab():
        raise InputError("cannot compare: the models' tokenizers differ (same ids would mean different tokens)")


def _streams(scope, enc, rows: list[int]) -> torch.Tensor:
    """(len(rows), P, d) captured stream rows of one encoded input."""
    from ..engine.run import capture

    parts = scope.parts
    captured = capture(scope, [enc], sorted(set(rows)))
    return torch.stack([captured[r][0].to(parts.head_device) for r in rows])


def pair_stats(h_a, h_b, unembed_a, unembed_b, *, top_k: int, chunk_rows: int, device) -> dict[str, torch.Tensor]:
    """Statistics of aligned rows ``h_a`` (N, d_a) and ``h_b`` (N, d_b) through two tails.

    Returns CPU tensors: ``kl`` (N,), ``delta`` (N,), ``a_top_ids``/``b_top_ids`` (N, k) and
    ``a_top_probs``/``b_top_probs`` (N, k). Peak extra memory: 3 × ``chunk_rows`` × vocab floats.
    """
    N = h_a.shape[0]
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("kl", "delta", "a_ids", "a_probs", "b_ids", "b_probs")}
    with torch.inference_mode():
        V = unembed_a(h_a[:1]).shape[-1]
        same = unembed_b(h_b[:1]).device == torch.device(device)  # B's logits can go straight into a buffer
        n = max(1, min(N, chunk_rows))
        za_buf = torch.empty(n, V, device=device)
        zb_buf = torch.empty(n, V, device=device)
        p_buf = torch.empty(n, V, device=device)
        for r0 in range(0, N, n):
            r1 = min(N, r0 + n)
            m = r1 - r0
            za = unembed_a(h_a[r0:r1], out=za_buf[:m])  # (m, V) float32
            zb = unembed_b(h_b[r0:r1], out=zb_buf[:m]) if same else unembed_b(h_b[r0:r1]).to(device)
            va, ia = za.topk(top_k, dim=-1)
            vb, ib = zb.topk(top_k, dim=-1)
            lse_a, lse_b = torch.logsumexp(za, -1), torch.logsumexp(zb, -1)
            t = ia[:, :1]
            out["delta"].append((zb.gather(1, t) - lse_b[:, None] - va[:, :1] + lse_a[:, None]).squeeze(1))
            torch.softmax(za, dim=-1, out=p_buf[:m])
            za.sub_(zb)  # z_A - z_B
            pz = torch.bmm(p_buf[:m].unsqueeze(1), za.unsqueeze(2)).view(m)
            out["kl"].append((pz - lse_a + lse_b).clamp_(min=0.0))
            out["a_ids"].append(ia)
            out["a_probs"].append(torch.exp(va - lse_a[:, None]))
            out["b_ids"].append(ib)
            out["b_probs"].append(torch.exp(vb - lse_b[:, None]))
    res = {k: torch.cat(v).cpu() for k, v in out.items()}
    check_finite(res["kl"], "the lens logits of a compared model (no KL to report)")
    return res


def _result(a, b, stats, S, P, **fields) -> DiffResult:
    shape = lambda t, *rest: t.view(S, P, *rest).numpy()  # noqa: E731
    k = stats["a_ids"].shape[-1]
    a_ids, b_ids = shape(stats["a_ids"], k), shape(stats["b_ids"], k)
    ids = sorted(set(a_ids.ravel().tolist()) | set(b_ids.ravel().tolist()) | set(fields["token_ids"].tolist()))
    tok = a.tokenizer if a.tokenizer is not None else b.tokenizer
    vocab = dict(zip(ids, display_tokens(ids, tok)))
    return DiffResult(
        kl=shape(stats["kl"]),
        delta=shape(stats["delta"]),
        a_top_ids=a_ids,
        a_top_probs=shape(stats["a_probs"], k),
        b_top_ids=b_ids,
        b_top_probs=shape(stats["b_probs"], k),
        vocab={**vocab, **fields.pop("extra_vocab", {})},
        **fields,
    )


def compare(a, b=None, inputs=None, *, against=None, top_k: int = 5, truncate: bool = False) -> DiffResult:
    """Lens diff of two models on one input, or of one model on two prompts.

    Args:
        a: a :class:`~logitscope.scope.Scope` (model A).
        b: another Scope (model B), or ``None`` with ``against=``.
        inputs: one text or list of token ids.
        against: a second prompt for model A: compares the last position's distribution of
            ``inputs`` with that of ``against``, layer by layer.
        top_k: top tokens kept per side and cell.
        truncate: cut over-long inputs to the context length instead of raising.

    Returns:
        :class:`~logitscope.diff.result.DiffResult`.
    """
    from ..engine.inputs import check_top_k

    if inputs is None:
        raise InputError("compare() needs an input text (or token ids)")
    if b is None and against is None:
        raise InputError(
            "compare() needs something to compare with: a second model (b, a Scope) or a second prompt (against=)"
        )
    if b is not None and against is not None:
        raise InputError("compare() takes either a second model (b) or a second prompt (against=), not both")
    if b is not None and not hasattr(b, "require_head"):
        raise InputError(f"compare()'s b must be a Scope (from logitscope.load), not {type(b).__name__}")
    pa = a.require_head()
    top_k = check_top_k(top_k, pa.vocab_size)
    encode = lambda scope, x: encode_all(  # noqa: E731
        x, kind=scope.parts.kind, tokenizer=scope.tokenizer, config=scope.model.config,
        vocab_size=scope.parts.vocab_size, truncate=truncate,
    )  # fmt: skip
    single, encs = encode(a, inputs)
    if not single:
        raise InputError("compare() takes one input (text or token ids); call it once per input")
    enc = encs[0]
    L = pa.n_blocks
    rows_a = list(range(L + 1))
    if against is not None:
        single_b, encs_b = encode(a, against)
        if not single_b:
            raise InputError("against= takes one prompt (text or token ids)")
        enc_b = encs_b[0]
        h_a = _streams(a, enc, rows_a)[:, -1]  # (S, d): the last position of each prompt
        h_b = _streams(a, enc_b, rows_a)[:, -1]
        stats = pair_stats(
            h_a, h_b, pa.unembed, pa.unembed, top_k=top_k, chunk_rows=a.chunk_size, device=pa.head_device
        )
        last_a, last_b = enc.lens_ids[-1], enc_b.lens_ids[-1]
        tok = a.tokenizer
        names = [row_name(r) for r in rows_a]
        return _result(
            a, a, stats, L + 1, 1,
            tokens=display_tokens([last_a], tok), token_ids=np.asarray([last_a]),
            b_tokens=display_tokens([last_b], tok),
            layer_names=names, layers=np.asarray(rows_a), b_layer_names=names, b_layers=np.asarray(rows_a),
            meta=dict(mode="prompts", model_a=a.name, model_b=a.name, prompt_a=_text(enc.lens_ids, tok),
                      prompt_b=_text(enc_b.lens_ids, tok), n_blocks_a=L, n_blocks_b=L),
        )  # fmt: skip
    pb = b.require_head()
    check_comparable(a, b)
    rows_b = aligned_rows(L, pb.n_blocks)
    P = len(enc.lens_ids)
    h_a = _streams(a, enc, rows_a).reshape((L + 1) * P, -1)  # (S·P, d_A), row-major
    h_b = _streams(b, enc, rows_b).reshape((L + 1) * P, -1)
    stats = pair_stats(h_a, h_b, pa.unembed, pb.unembed, top_k=top_k, chunk_rows=a.chunk_size, device=pa.head_device)
    tokens = display_tokens(enc.lens_ids, a.tokenizer)
    return _result(
        a, b, stats, L + 1, P,
        tokens=tokens, token_ids=np.asarray(enc.lens_ids), b_tokens=list(tokens),
        layer_names=[row_name(r) for r in rows_a], layers=np.asarray(rows_a),
        b_layer_names=[row_name(r) for r in rows_b], b_layers=np.asarray(rows_b),
        meta=dict(mode="models", model_a=a.name, model_b=b.name, n_blocks_a=L, n_blocks_b=pb.n_blocks,
                  aligned="by fraction of depth" if pb.n_blocks != L else "one to one"),
    )  # fmt: skip


def _text(ids, tok) -> str:
    return tok.decode(ids) if tok is not None else " ".join(map(str, ids))
