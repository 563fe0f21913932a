"""Direct logit attribution: how much each sub-layer's output adds to a target token's logit.

The final stream is a sum of parts: ``x_L = e + Σ_l (a_l + m_l)`` with ``e`` the stream entering
block 1 (embeddings), ``a_l`` block ``l``'s attention output and ``m_l`` its MLP output as added
to the stream (differences of captured rows: ``a_l = mid_l - row_{l-1}``, ``m_l = row_l - mid_l``,
see :mod:`logitscope.engine.sublayers`). The final norm ``N(x) = g ⊙ P(x) / s(x) + β`` (``P`` centres
for LayerNorm, is the identity for RMSNorm) is linear once its scale ``s`` is frozen at the
final stream's value ``s(x_L)`` (the standard choice), and the rest of the tail up to the logits
(T5's rescale, linear pre-head projections, the head, logit biases, Granite/Cohere logit
scaling) is affine. So for target token ``t``::

    logit_t = Σ_c r_t · (g ⊙ P(c) / s) + r_t · β + head bias      (sum over c in e, a_l, m_l)

with ``r_t`` the target's row of the composed linear tail. The norm's ``g``, ``β`` and whether
it centres are read off the norm module itself with three probes (no per-architecture formula),
and ``s`` per position from ``N(x_L)``; every result is checked: the terms must add up to the
model's own logit, or the attribution is refused. Softcapped models (Gemma 2/3): the attribution
is of the **pre-softcap** logit (``tanh`` is not additive); ``final_logit`` holds the real one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ..engine.inputs import check_vocab, display_tokens, encode_all, to_ids
from ..errors import InputError, UnsupportedModelError
from .result import AttributionResult

_PROBE = 16.0  # probe magnitude: large enough that a norm's eps is negligible, small for fp16


def _frozen_norm(norm: nn.Module | None, x: torch.Tensor):
    """``(g, beta, centres, s)`` of ``N(x) = g ⊙ P(x) / s(x) + beta``, float64; ``s`` (P,) at ``x`` (P, d)."""
    P, d = x.shape
    f64 = dict(dtype=torch.float64, device="cpu")
    if norm is None:
        return torch.ones(d, **f64), torch.zeros(d, **f64), False, torch.ones(P, **f64)

    def run(v: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return norm(v.to(x.dtype).to(x.device)).to(**f64)

    beta = run(torch.zeros(1, d))[0]
    # zero-mean probes of equal RMS: alternating ±K, the first (a) or last (b) entry 0 when d is odd
    sign = torch.tensor([1.0, -1.0]).repeat(d // 2 + 1)[:d].to(torch.float64)
    a, b = sign.clone(), sign.roll(1)
    if d % 2:
        a[-1], b[0] = 0.0, 0.0
    rms = _PROBE * ((a != 0).sum() / d).sqrt()
    ga = (run(_PROBE * a[None])[0] - beta) * rms / _PROBE * a
    gb = (run(_PROBE * b[None])[0] - beta) * rms / _PROBE * b
    g = torch.where(a != 0, ga, gb)  # a, b hold ±1 or 0: division = multiplication
    flat = run(torch.full((1, d), _PROBE))[0] - beta  # a constant vector: 0 after centring
    centres = bool(flat.abs().max() <= 1e-3 * g.abs().max())
    xf = x.to(**f64)
    u = g * (xf - xf.mean(-1, keepdim=True) if centres else xf)  # (P, d)
    y = run(x) - beta
    s = (u * u).sum(-1) / (u * y).sum(-1)  # least squares: y = u / s
    return g, beta, centres, s


def _tail_rows(parts, targets: torch.Tensor):
    """``(r, bias)``: the target rows (P, d) of the linear tail after the norm, and its bias (P,)."""
    head = parts.head
    if not isinstance(head, nn.Linear) or not all(isinstance(m, nn.Linear) for m in parts.pre_head):
        raise UnsupportedModelError(
            f"direct logit attribution needs a linear head; {parts.model_type!r} has "
            f"{type(head).__name__} after the final norm"
        )
    f64 = dict(dtype=torch.float64, device="cpu")
    idx = targets.to(head.weight.device)
    r = head.weight.detach()[idx].to(**f64)  # (P, d_head)
    bias = head.bias.detach()[idx].to(**f64) if head.bias is not None else torch.zeros(len(targets), **f64)
    if parts.logits_bias is not None:
        bias = bias + parts.logits_bias.detach().reshape(-1)[targets.to(parts.logits_bias.device)].to(**f64)
    for module in reversed(parts.pre_head):  # fold Linear(A, a): r·(A v + a) = (r A)·v + r·a
        if module.bias is not None:
            bias = bias + r @ module.bias.detach().to(**f64)
        r = r @ module.weight.detach().to(**f64)
    if parts.scale is not None:
        r = r * parts.scale
    post = parts.post
    factor = (1.0 / post.divide_by if post.divide_by else 1.0) * (post.multiply_by or 1.0)
    return r * factor, bias * factor


def _pick_targets(target, scope, z: torch.Tensor) -> torch.Tensor:
    """(P,) target ids: the model's top-1 at each position (``None``), one token, or one per position."""
    P, V = z.shape
    if target is None:
        return z.argmax(-1).cpu()
    if target == "":
        raise InputError("the target= token is empty: give a single-token string such as ' the', or a token id")
    if isinstance(target, (str, int, np.integer)) and not isinstance(target, bool):
        ids = [int(target)] if not isinstance(target, str) else to_ids(target, scope.tokenizer, special_tokens=False)
        if len(ids) != 1:
            raise InputError(
                f"target {target!r} is {len(ids)} tokens; attribute one token (or give one id per position)"
            )
        check_vocab(ids, V)
        return torch.full((P,), ids[0], dtype=torch.long)
    ids = [int(t) for t in target]
    if len(ids) != P:
        raise InputError(f"target= gives {len(ids)} ids for {P} positions; give one token, or one id per position")
    check_vocab(ids, V)
    return torch.tensor(ids, dtype=torch.long)


def run_attribute(scope, inputs, *, target=None, truncate: bool = False) -> AttributionResult:
    """Implementation of :meth:`logitscope.Scope.attribute` (see there)."""
    from ..engine.run import capture
    from ..engine.sublayers import sublayer_tap

    parts = scope.require_head()
    tap = sublayer_tap(parts, scope.model.config)
    tok, config, V, L = scope.tokenizer, scope.model.config, parts.vocab_size, parts.n_blocks
    single, encs = encode_all(inputs, kind=parts.kind, tokenizer=tok, config=config, vocab_size=V, truncate=truncate)
    if not single:
        raise InputError("attribute() takes one input (text or token ids); call it once per input")
    enc = encs[0]
    rows = [0] + [r for b in range(1, L + 1) for r in (tap.name(b), b)]
    captured = capture(scope, [enc], rows, tap=tap)
    streams = [captured.pop(r)[0].to(parts.head_device) for r in rows]  # 2L+1 of (P, d)
    x = streams[-1]
    with torch.inference_mode():
        final = parts.unembed(x)  # (P, V): the model's own logits, float32
        no_cap = replace(parts, post=replace(parts.post, softcap=None)).unembed(x)  # pre-softcap
    targets = _pick_targets(target, scope, final)
    at = torch.arange(len(targets))
    logit = no_cap.cpu()[at, targets].double()
    final_logit = final.cpu()[at, targets].double()
    del final, no_cap
    g, beta, centres, s = _frozen_norm(parts.final_norm, x)
    r, head_bias = _tail_rows(parts, targets)
    parts64 = torch.stack([h.to("cpu", torch.float64) for h in streams])  # (2L+1, P, d) stream rows
    comps = torch.cat([parts64[:1], parts64[1:] - parts64[:-1]])  # embed, a_1, m_1, ..., a_L, m_L
    if centres:
        comps = comps - comps.mean(-1, keepdim=True)
    contrib = torch.einsum("cpd,pd->cp", comps * g, r) / s  # (C, P)
    norm_bias = r @ beta
    total = contrib.sum(0) + norm_bias + head_bias
    err = float((total - logit).abs().max())
    fp32 = next(scope.model.parameters()).dtype == torch.float32
    tol = (1e-3 if fp32 else 5e-2) * max(1.0, float(logit.abs().max()))
    if not err <= tol:
        raise UnsupportedModelError(
            f"direct logit attribution cannot decompose the tail of {parts.model_type!r}: its terms add up to "
            f"within {err:.3g} of the model's own logit (tolerance {tol:.3g}); refusing rather than giving "
            "wrong numbers"
        )
    names = ["embed"] + [f"{b}.{kind}" for b in range(1, L + 1) for kind in ("attn", "mlp")]
    ids = sorted(set(enc.lens_ids) | set(targets.tolist()))
    vocab = dict(zip(ids, display_tokens(ids, tok)))
    return AttributionResult(
        tokens=[vocab[i] for i in enc.lens_ids],
        token_ids=np.asarray(enc.lens_ids),
        target_ids=targets.numpy(),
        components=names,
        contributions=contrib.numpy(),
        norm_bias=norm_bias.numpy(),
        head_bias=head_bias.numpy(),
        logit=logit.numpy(),
        final_logit=final_logit.numpy(),
        norm_scale=s.numpy(),
        vocab=vocab,
        meta={
            "model": scope.name,
            "model_type": parts.model_type,
            "n_blocks": L,
            "blocks": "parallel" if tap.parallel else "sequential",
            "norm": "layernorm" if centres else "rmsnorm" if parts.final_norm is not None else None,
            "softcap": parts.post.softcap,
            "max_error": err,
        },
    )
