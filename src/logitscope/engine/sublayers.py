"""Inside a block: the residual stream after each block's attention sub-layer.

Stream rows (see :mod:`logitscope.engine.capture`) are block outputs. A block ``l`` (1-based, as the
row it outputs) computes

* sequential blocks: ``mid_l = row_{l-1} + attn_l``, ``row_l = mid_l + mlp_l``;
* parallel blocks: ``row_l = row_{l-1} + attn_l + mlp_l`` (no ``mid`` exists in the model).

The sub-layer row ``"l.attn"`` is ``mid_l``, captured as the input of the block's pre-MLP module
(where that is, per architecture, is :data:`logitscope.arch.registry.BLOCK_LAYOUTS`). Parallel
blocks get the row ``"l.in+attn"`` = ``row_l - mlp_l`` = ``row_{l-1} + attn_l``: what the block
would output with its MLP silenced. Either way the row equals the model itself with the blocks
after ``l`` removed and block ``l``'s MLP output zeroed (the oracle in ``tests/engine/test_sublayers.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnsupportedModelError
from .capture import first_tensor, run_captured
from .rows import Row, block_of


@dataclass(frozen=True)
class SublayerTap:
    """Where the hook reads the stream after attention in one loaded model (from the registry's
    :class:`~logitscope.arch.registry.BlockLayout`, checked against the model's blocks)."""

    path: str  # relative to a block: the pre-MLP module (sequential) or the MLP (parallel)
    parallel: bool

    @property
    def suffix(self) -> str:
        """Row-name suffix: ``"attn"``, or ``"in+attn"`` for parallel blocks (stream in + attention)."""
        return "in+attn" if self.parallel else "attn"

    def name(self, block: int) -> str:
        return f"{block}.{self.suffix}"


def sublayer_tap(parts, config) -> SublayerTap:
    """The :class:`SublayerTap` of a model, or a clear :class:`UnsupportedModelError`."""
    from ..arch.registry import block_layout

    found = block_layout(config)
    if found is None or parts.kind == "masked" or not parts.blocks.taps.plain:
        raise UnsupportedModelError(
            f"the sub-layer lens does not know where the stream after attention is in architecture "
            f"{parts.model_type!r}: post-norm blocks (BERT, RoBERTa, BART, OPT-350m) have none that the "
            "MLP only adds to, and unlisted architectures are refused rather than guessed; "
            "see docs/inside.md"
        )
    spec, parallel = found
    path = spec.mlp if parallel else spec.mid
    for block in parts.blocks:
        try:
            block.get_submodule(path)
        except AttributeError:
            raise UnsupportedModelError(
                f"architecture {parts.model_type!r}: block has no module {path!r} (registry entry out of date?)"
            ) from None
    return SublayerTap(path, parallel)


@contextmanager
def capture_mids(blocks: nn.ModuleList, tap: SublayerTap, wanted: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Hook blocks ``wanted`` (1-based) so the next forward fills ``{l: tensor}``.

    Sequential: the input of the pre-MLP module (the stream after attention, possibly flattened
    to ``(batch·seq, d)``). Parallel: a copy of the MLP's output (some blocks add to it in place).
    """
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def store(block: int, x: torch.Tensor) -> None:
        if block in captured:
            raise UnsupportedModelError(f"module {tap.path!r} of block {block} ran twice in one forward")
        captured[block] = x.detach().clone() if tap.parallel else x.detach()

    for block in sorted(set(wanted)):
        module = blocks[block - 1].get_submodule(tap.path)
        if tap.parallel:

            def hook(module, args, output, block=block):
                store(block, first_tensor(output))

            handles.append(module.register_forward_hook(hook))
        else:

            def pre_hook(module, args, kwargs, block=block):
                store(block, args[0] if args else kwargs["hidden_states"])

            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def run_captured_rows(
    model: nn.Module, blocks: nn.ModuleList, tap: SublayerTap, rows: Sequence[Row], *, capture=None, **inputs
):
    """One forward that returns ``{row: (batch, seq, d_model)}`` for stream rows and sub-layer rows.

    ``capture(stream_rows, **inputs)`` runs that forward for the stream rows (default:
    :func:`~logitscope.engine.capture.run_captured`; the engine passes the one that carries a
    pending self-check, so a streamed model's check costs no pass of its own here either).
    """
    mids = [block_of(r) for r in rows if isinstance(r, str)]
    ints = sorted({r for r in rows if not isinstance(r, str)} | set(mids))
    with capture_mids(blocks, tap, mids) as captured_mid:
        if capture is None:
            streams = run_captured(model, blocks, ints, **inputs)
        else:
            streams = capture(ints, **inputs)
    out: dict[Row, torch.Tensor] = {}
    for r in rows:
        if isinstance(r, str):
            l = block_of(r)  # noqa: E741
            if l not in captured_mid:
                raise UnsupportedModelError(f"the forward pass never reached module {tap.path!r} of block {l}")
            post = streams[l]
            mid = captured_mid.pop(l).to(post.device).reshape(post.shape)  # (batch, seq, d)
            out[r] = post - mid if tap.parallel else mid
    for r in rows:
        if not isinstance(r, str):
            out[r] = streams[r]
    return out
