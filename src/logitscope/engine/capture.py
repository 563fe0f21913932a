"""Capture the residual stream at chosen rows during one forward pass, with hooks.

Row 0 is the input of block 0 (after any embedding scaling or embedding norm the model applies);
row ``l`` is the output of the ``l``-th block call, in the order the forward makes them: block
``l - 1`` for most models; for models that run blocks more than once (ALBERT, HRM, Dory: the
registry's stream rules, ``Blocks.taps``) whichever block the forward ran ``l``-th. Where the
blocks carry several streams per position (hyper-connections, AltUp), each row is the model's own
merge of them. The forward is stopped right after the last block call needed, so the model never
computes its own full-vocabulary logits.

:func:`pad_guard` keeps the pad positions of a right-padded batch from poisoning real ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..arch.streams import Blocks, StreamTaps
from ..errors import UnsupportedModelError


class _StopForward(Exception):
    """Raised from a hook once every requested row is captured."""


def first_tensor(x) -> torch.Tensor:
    """Block outputs are a tensor or a tuple/ModelOutput whose first entry is the stream."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        return x[0]
    if hasattr(x, "to_tuple"):
        return x.to_tuple()[0]
    raise UnsupportedModelError(f"unexpected block output type {type(x).__name__}")


def _taps(blocks) -> StreamTaps:
    return blocks.taps if isinstance(blocks, Blocks) else StreamTaps()


@contextmanager
def capture_streams(
    blocks: nn.ModuleList, rows: Sequence[int], *, stop: bool = True, graph_from: int | None = None
) -> Iterator[dict[int, torch.Tensor]]:
    """Hook ``blocks`` so the next forward fills a dict ``{row: stream tensor}`` (as the blocks carry it).

    Args:
        blocks: the model's blocks (``ModelParts.blocks``; a bare block list reads as one call per block).
        rows: stream rows wanted, each in ``0..n_calls``.
        stop: abort the forward after the last wanted row (use :func:`run_captured`).
        graph_from: keep the rows in the autograd graph (not detached) and make row
            ``graph_from`` (one of ``rows``) its leaf, so gradients with respect to every captured
            row can be taken (the Jacobian-lens fit). Needs grad mode and frozen parameters.
    """
    taps = _taps(blocks)
    captured: dict[int, torch.Tensor] = {}
    last = max(rows)
    wanted = set(rows) | {row for row in taps.history if row < last}  # rows a later row's merge reads
    calls = 0
    handles = []

    def store(row: int, x) -> None:
        h = x if isinstance(x, torch.Tensor) else first_tensor(x)
        if graph_from is None:
            h = h.detach()
        elif row == graph_from:
            h.requires_grad_(True)  # a leaf (frozen parameters, integer inputs): the graph starts here
        captured[row] = h
        if stop and row == last:
            raise _StopForward

    def pre_hook(module, args, kwargs):
        if 0 not in captured:
            if taps.halves:  # Reformer: the two half-streams entering the first block
                store(0, torch.cat([kwargs[name] for name in taps.halves[1]], dim=-1))
            else:
                store(0, args[0] if args else kwargs["hidden_states"])

    def hook(module, args, output, index: int):
        nonlocal calls
        calls += 1
        if taps.calls is None and index != calls - 1:
            raise UnsupportedModelError(
                f"block {index} ran as block call {calls} of one forward (shared layers?); "
                "the lens needs one call per block, in order"
            )
        if calls in wanted:
            if taps.halves:  # Reformer: the block's two half-streams, as its encoder concatenates them
                output = torch.cat([getattr(output, name) for name in taps.halves[0]], dim=-1)
            store(calls, output)

    if 0 in wanted:
        entry = taps.stream_in if taps.stream_in is not None else blocks[0]
        handles.append(entry.register_forward_pre_hook(pre_hook, with_kwargs=True))
    n_hooked = len(blocks) if taps.calls is not None else min(last, len(blocks))
    for index, block in enumerate(list(blocks)[:n_hooked]):
        module = block.get_submodule(taps.block_out) if taps.block_out else block
        handles.append(module.register_forward_hook(lambda m, a, o, index=index: hook(m, a, o, index)))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def read_streams(captured: dict[int, torch.Tensor], blocks, n_tokens: int, rows=None) -> dict[int, torch.Tensor]:
    """Captured block streams (``rows`` of them; default all) as ``(batch, seq, d_model)``: merged
    (several streams per position, or a mix with earlier rows), permuted (sequence- or
    channels-first layouts) and sliced (ProphetNet's stream slots, CPM-Ant's prompt)."""
    taps = _taps(blocks)
    out = {}
    for row in sorted(captured) if rows is None else rows:
        h = captured[row]
        if taps.merge is not None:  # e.g. DeepSeek-V4's hc_head over its hc_mult streams
            h = taps.merge(h, [captured[i] for i in taps.history if i < row])
        if taps.order is not None:  # e.g. XLNet's (seq, batch, d) streams, as (batch, seq, d)
            h = h.permute(*taps.order)
        if taps.slot:  # e.g. ProphetNet's first predicting stream, beside its main stream
            h = h[:, taps.slot * n_tokens : (taps.slot + 1) * n_tokens]
        if taps.skip:  # e.g. CPM-Ant's prompt positions, ahead of the input
            h = h[:, taps.skip :]
        out[row] = h
    return out


@contextmanager
def pad_guard(blocks: nn.ModuleList, real: torch.Tensor | None) -> Iterator[None]:
    """Zero the pad positions of every block's input during the next forward.

    A pad position can turn NaN inside a block: with a sliding window (Mistral, Gemma 2/3...) a
    pad query farther than the window from the last real token sees no unmasked key; in float16
    the mask's minimum plus a negative score overflows to -inf and softmax returns NaN. Real
    queries give that position's value a weight of exactly 0, but ``0 × NaN = NaN`` in the
    attention's weighted sum, so at the next block every real token would be NaN too. With the
    pad positions of each block's input set to 0 their keys and values stay finite, and real
    positions are untouched (bit for bit): their outputs never depend on pad values.

    Args:
        blocks: the model's block list.
        real: (batch, seq) mask, nonzero at real tokens (the ``attention_mask`` of the blocks'
            sequence), or ``None``. No hooks when nothing is padded; a block input that is not
            ``(batch, seq, d_model)`` is left alone, and so is one whose layout is ambiguous
            (seq == batch or seq == d_model: it could be seq-first or channels-first).
    """
    if real is None or bool(real.bool().all()):
        yield
        return
    pad = ~real.bool()  # (B, T)
    B, T = pad.shape
    shape = (B, T)
    on_device: dict[torch.device, torch.Tensor] = {}

    def pre_hook(module, args, kwargs):
        h = args[0] if args else kwargs.get("hidden_states")
        if not isinstance(h, torch.Tensor) or h.dim() != 3 or tuple(h.shape[:2]) != shape or T in (B, h.shape[2]):
            return None  # not (batch, seq, d_model), or ambiguous with (seq, batch, d) / (batch, d, seq)
        mask = on_device.setdefault(h.device, pad.to(h.device))
        h = h.masked_fill(mask.unsqueeze(-1), 0)
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    handles = [block.register_forward_pre_hook(pre_hook, with_kwargs=True) for block in blocks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_captured(
    model: nn.Module, blocks: nn.ModuleList, rows: Sequence[int], *, graph_from: int | None = None, **inputs
) -> dict[int, torch.Tensor]:
    """One forward pass of ``model(**inputs)`` that returns the captured stream rows.

    With ``graph_from`` (see :func:`capture_streams`) the forward records the autograd graph from
    that row on instead of running in inference mode.
    """
    grad = torch.inference_mode() if graph_from is None else torch.enable_grad()
    with capture_streams(blocks, rows, graph_from=graph_from) as captured, grad:
        try:
            model(**inputs)
        except _StopForward:
            pass
    missing = set(rows) - set(captured)
    if missing:
        raise UnsupportedModelError(f"the forward pass never reached stream rows {sorted(missing)}")
    T = (
        inputs["decoder_input_ids" if "decoder_input_ids" in inputs else "input_ids"].shape[1]
        if _taps(blocks).slot
        else 0
    )
    with torch.inference_mode():
        return read_streams(captured, blocks, T, sorted(set(rows)))
