"""The Jacobian-lens estimator on a streamed model: block-wise reverse VJPs, one block's weights at a time.

:func:`~logitscope.jacobian.estimator.prompt_jacobians` keeps one autograd graph over every
block from the earliest source on; on a streamed model that graph's saved tensors hold all those
blocks' weights at once. Here, for sources ``l`` (block outputs, row ``l + 1``), the target block
``t`` and ``low = min(sources) + 1``:

1. One forward without a graph (the prompt replicated ``B = dim_batch`` times, as the in-memory
   estimator runs it), stopped at block ``t``'s entry: a forward pre-hook keeps every block
   ``j ∈ [low, t]``'s input ``h_j`` ``(B, T, d)`` and the other arguments the model called it
   with (attention mask, position embeddings/ids: whatever the model passed). Blocks ``0 .. t - 1``
   are read once. All ``B`` copies are kept: they are equal in value, but a batched matmul rounds
   a row differently by its place in the batch, and from the very copies the graph estimator saw
   the result is bit-identical to it (one copy, replicated, differs by an ulp or two).
2. A reverse pass walks ``j = t, t - 1, .., low``: block ``j`` is materialised once
   (:meth:`BlockStreamer.hold`: the streamer's own loading, prefetching block ``j - 1``
   meanwhile), its forward recomputed with grad from ``h_j`` (the graph at batch ``B``), and every
   cotangent group carried so far is pulled back through it (``torch.autograd.grad`` w.r.t. the
   block input); at ``j - 1 ∈ sources`` the group's rows of ``J_{j-1}`` are recorded as the
   in-memory estimator does (mean over the valid positions, float32). Group ``k`` starts as the
   one-hot ``e_{kB+b}`` at every valid position of block ``t``'s output.

The ``ceil(d / B)`` groups are carried ``per_pass`` at a time (:func:`groups_per_pass`: as many as
the streamer's ``budget``, or without one 40% of the free memory, holds after the resident parts,
two blocks, the streams and one block's recompute), so a prompt costs one forward over blocks
``0 .. t - 1`` plus ``ceil(ceil(d / B) / per_pass)`` reverse passes over blocks ``low .. t``.
Memory: resident parts + one or two blocks (the one computing, the one read ahead) + the
``t - low + 1`` block inputs ``(B, T, d)`` + ``per_pass`` cotangents ``(B, T, d)`` + one block's
recompute graph at batch ``B``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..engine.capture import first_tensor
from .estimator import check_finite, prompt_jacobians, valid_positions

SHARE = 0.4  # of the free memory, when the streamer has no budget


class _Stop(Exception):
    """Raised at the target block's entry: the forward has given every input the walk needs."""


def groups_per_pass(
    scope, streamer, *, n_groups: int, T: int, d: int, dim_batch: int, n_inputs: int, n_sources: int
) -> int:
    """Cotangent groups (``(B, T, d)`` each) one reverse pass carries: all that memory holds, at least one.

    Room = ``streamer.budget`` (at most the free memory; without a budget :data:`SHARE` of it)
    less the resident parts, one or two blocks, ``n_inputs`` block inputs ``(B, T, d)``, the
    ``n_sources`` float32 ``(d, d)`` Jacobians, an estimate of one block's recompute graph at
    batch ``B`` (~24 d-wide tensors and two attention maps per token) and two cotangents in
    flight in the backward.
    """
    from ..data.distributed import free_memory

    e = torch.empty((), dtype=streamer.dtype).element_size()
    cfg = scope.model.config
    heads = next((getattr(cfg, k) for k in ("num_attention_heads", "n_head") if getattr(cfg, k, None)), 16)
    free = free_memory(streamer.device)
    room = SHARE * free if streamer.budget is None else min(streamer.budget, free)
    room -= streamer.resident_bytes + (2 if streamer.prefetch else 1) * streamer.block_bytes
    group = dim_batch * T * d * e
    room -= n_inputs * group + n_sources * d * d * 4
    room -= dim_batch * T * (24 * d * e + 2 * heads * T * 4) + 2 * group
    return int(max(1, min(n_groups, room // group)))


def _capture_inputs(scope, blocks, ids, low: int, target: int, dim_batch: int):
    """``{j: h_j (B, T, d)}`` and ``{j: (args, kwargs)}`` (the stream's slot left ``None``) for ``j ∈ [low, target]``."""
    inputs: dict[int, torch.Tensor] = {}
    calls: dict[int, tuple[tuple, dict]] = {}

    def pre_hook(module, args, kwargs, j: int):
        if args:
            h, args = args[0], (None, *args[1:])
        else:
            h, kwargs = kwargs["hidden_states"], {**kwargs, "hidden_states": None}
        inputs[j], calls[j] = h.clone(), (args, kwargs)
        if j == target:
            raise _Stop

    handles = [
        blocks[j].register_forward_pre_hook(lambda m, a, k, j=j: pre_hook(m, a, k, j), with_kwargs=True, prepend=True)
        for j in range(low, target + 1)
    ]  # prepended: the target block's weights are never read in this forward
    x = torch.tensor([list(ids)], dtype=torch.long, device=scope.input_device).expand(dim_batch, len(ids))
    try:
        with torch.no_grad():  # not inference mode: the recompute saves these tensors for its backward
            scope.model(input_ids=x, use_cache=False)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return inputs, calls


def _call(block, h: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return first_tensor(block(h, *args[1:], **kwargs))
    return first_tensor(block(*args, **{**kwargs, "hidden_states": h}))


def streamed_prompt_jacobians(
    scope,
    ids: Sequence[int],
    sources: Sequence[int],
    target: int,
    *,
    dim_batch: int = 8,
    skip_first: int = 16,
    per_pass: int | None = None,
    stats: dict | None = None,
) -> dict[int, torch.Tensor]:
    """:func:`~logitscope.jacobian.estimator.prompt_jacobians` on a streamed model, in bounded memory.

    Same arguments and result (``{l: J_l}``, float32 ``(d, d)``); ``per_pass``: cotangent groups
    per reverse pass (default :func:`groups_per_pass`); ``stats``, when given, gets ``passes``
    (reverse passes) and ``per_pass``. Block layouts the walk does not cover (several calls per
    block, merged or reshaped streams) go to the graph estimator.
    """
    parts = scope.require_head()
    streamer = scope.model._logitscope_streamer
    blocks = parts.blocks
    taps = getattr(blocks, "taps", None)
    plain = taps is None or (taps.plain and taps.order is None and not taps.slot and not taps.history)
    if not plain or len(blocks) != len(streamer.blocks) or any(a is not b for a, b in zip(blocks, streamer.blocks)):
        if stats is not None:
            stats.update(passes=None, per_pass=None)
        return prompt_jacobians(scope, ids, sources, target, dim_batch=dim_batch, skip_first=skip_first)
    T = len(ids)
    pos = valid_positions(T, skip_first)
    if len(pos) == 0:
        raise ValueError(f"prompt of {T} tokens has no valid position (needs > {skip_first + 1})")
    low = min(sources) + 1
    inputs, calls = _capture_inputs(scope, blocks, ids, low, target, dim_batch)
    h_t = inputs[target]
    d, B = h_t.shape[-1], dim_batch
    J = {layer: torch.zeros(d, d, dtype=torch.float32, device=h_t.device) for layer in sources}
    n_groups = math.ceil(d / B)
    if per_pass is None:
        per_pass = groups_per_pass(
            scope, streamer, n_groups=n_groups, T=T, d=d, dim_batch=B, n_inputs=len(inputs), n_sources=len(J)
        )
    b = torch.arange(B, device=h_t.device)
    p_out = pos.to(h_t.device)
    wanted = set(sources)
    passes = 0
    for first in range(0, n_groups, per_pass):
        groups = range(first, min(n_groups, first + per_pass))
        # one buffer for the groups carried, updated in place: the backward's temporaries then come
        # and go around it, and the allocator can reuse their memory (separate long-lived group
        # tensors interleaved with them fragment the heap: measured 2-3x the live bytes in RSS)
        cots = torch.zeros(len(groups), B, T, d, dtype=h_t.dtype, device=h_t.device)
        for i, k in enumerate(groups):  # e_{kB+b} at every valid position of the target block's output
            n = min(B, d - k * B)
            cots[i][b[:n, None], p_out[None, :], k * B + b[:n, None]] = 1.0
        more = groups.stop < n_groups
        for j in range(target, low - 1, -1):
            ahead = j - 1 if j > low else (target if more else None)
            with streamer.hold(j, ahead=ahead) as block, torch.enable_grad():
                h = inputs[j].detach().requires_grad_(True)
                out = _call(block, h, *calls[j])
                for i in range(len(cots)):
                    (g,) = torch.autograd.grad(out, h, grad_outputs=cots[i], retain_graph=i < len(cots) - 1)
                    cots[i].copy_(g)
                del out, h, g
            if j - 1 in wanted:
                for k, g in zip(groups, cots):  # g: (B, T, d), the cotangent at block j's input
                    n = min(B, d - k * B)
                    J[j - 1][k * B : k * B + n] = g[:n, pos.to(g.device)].float().mean(dim=1)
        passes += 1
        del cots
    if stats is not None:
        stats.update(passes=passes, per_pass=per_pass)
    return check_finite(J)
