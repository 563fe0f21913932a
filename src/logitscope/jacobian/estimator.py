"""The Jacobian-lens estimator for one prompt: one forward, ``ceil(d / dim_batch)`` reverse-mode VJPs.

For block outputs ``h_l`` (stream row ``l + 1``), the target block's output ``h_t`` (by default
the last block, *before* the final norm) and the valid positions ``V = [skip_first, T - 1)``::

    J_l = (1/|V|) Σ_{p∈V} Σ_{p'∈V} ∂h_t[p'] / ∂h_l[p]              # (d, d); causal: only p' >= p count

The prompt is replicated ``B = dim_batch`` times in one forward that keeps the autograd graph
from the earliest source row on (:func:`logitscope.capture.run_captured` with ``graph_from``).
Backward pass ``k`` gives batch element ``b`` the one-hot cotangent ``e_{kB+b}`` at every target
position in ``V``, so ``∂⟨cot, h_t⟩/∂h_l[b, p] = Σ_{p'∈V} ∂h_t[p', kB+b]/∂h_l[p]`` — row
``kB + b`` of the sum above at source position ``p``; averaging over ``p ∈ V`` (in float32) gives
rows ``kB .. kB+B-1`` of every ``J_l`` at once. Parameters are frozen by the caller, so no weight
gradient is ever formed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..engine.capture import run_captured
from ..errors import NonFiniteError


def valid_positions(T: int, skip_first: int) -> torch.Tensor:
    """The positions ``[skip_first, T - 1)`` averaged over (the last one has no next token)."""
    return torch.arange(skip_first, max(skip_first, T - 1))


def prompt_jacobians(
    scope, ids: Sequence[int], sources: Sequence[int], target: int, *, dim_batch: int = 8, skip_first: int = 16
) -> dict[int, torch.Tensor]:
    """``{l: J_l}`` (float32, on the activations' device) of one prompt of at least ``skip_first + 2`` tokens.

    Args:
        scope: a :class:`~logitscope.Scope` of a causal LM whose parameters are frozen.
        ids: the prompt's token ids (BOS first, already truncated).
        sources: block indices ``l`` (all below ``target``).
        target: the block whose output is differentiated.
        dim_batch: output dimensions per backward pass (= copies of the prompt in the forward).
        skip_first: leading positions left out of ``V``.
    """
    parts = scope.require_head()
    T = len(ids)
    pos = valid_positions(T, skip_first)
    if len(pos) == 0:
        raise ValueError(f"prompt of {T} tokens has no valid position (needs > {skip_first + 1})")
    rows = sorted({layer + 1 for layer in sources} | {target + 1})
    x = torch.tensor([list(ids)], dtype=torch.long, device=scope.input_device).expand(dim_batch, T)
    captured = run_captured(
        scope.model, parts.blocks, rows, graph_from=min(sources) + 1, input_ids=x, use_cache=False
    )  # {row: (B, T, d)}, the graph from the earliest source on
    out = captured[target + 1]
    inputs = [captured[layer + 1] for layer in sources]
    d = out.shape[-1]
    J = {layer: torch.zeros(d, d, dtype=torch.float32, device=h.device) for layer, h in zip(sources, inputs)}
    cot = torch.zeros_like(out)  # (B, T, d)
    b = torch.arange(dim_batch, device=out.device)
    p_out = pos.to(out.device)
    n_pass = math.ceil(d / dim_batch)
    for k in range(n_pass):
        start = k * dim_batch
        n = min(dim_batch, d - start)
        cot.zero_()
        cot[b[:n, None], p_out[None, :], start + b[:n, None]] = 1.0  # e_{start+b} at every valid position
        grads = torch.autograd.grad(out, inputs, grad_outputs=cot, retain_graph=k < n_pass - 1)
        for layer, g in zip(sources, grads):  # g: (B, T, d)
            J[layer][start : start + n] = g[:n, pos.to(g.device)].float().mean(dim=1)
        del grads
    return check_finite(J)


def check_finite(J: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """``J`` itself, or one ``NonFiniteError`` naming the first block whose Jacobian holds NaN/inf."""
    for layer, m in J.items():
        if not bool(torch.isfinite(m).all()):
            raise NonFiniteError(f"the Jacobian of block {layer} is NaN or inf on this prompt (fp16 overflow?)")
    return J
