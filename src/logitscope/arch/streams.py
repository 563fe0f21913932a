"""Where the residual stream passes, for blocks that are not "input of ``blocks[0]``, output of ``blocks[l - 1]``".

:class:`StreamRule` rows (per ``model_type``, in :data:`STREAMS`) say it in words: blocks run more
than once (rows follow the block calls in forward order), a row-0 or block-end module other than
the block itself, several streams per position merged by the model's own module or inline code
(:data:`MERGE_RULES`), sequence-first layouts, extra positions. :func:`taps_for` resolves a rule
against one loaded model into :class:`StreamTaps`, which :class:`Blocks` carries to
:mod:`logitscope.engine.capture`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnsupportedModelError
from .registry import ArchSpec


@dataclass(frozen=True)
class StreamRule:
    """Where the stream passes, for blocks that are not "input of ``blocks[0]``, output of ``blocks[l - 1]``".

    Module paths are relative to the module that holds the block list (the base model).

    Attributes:
        calls: config field with the number of block applications per forward, for models that
            run their blocks more than once (ALBERT's one layer group, HRM's H cycles, Dory's
            loop). Row ``k`` is then the stream after the ``k``-th call, in the order the
            forward makes them, whichever block it was.
        stream_in: module whose first input is row 0 (default: the first block's input).
        block_out: module inside each block whose output is that block's stream (blocks whose
            own ``forward`` is called directly, which module hooks never see).
        merge: module that maps the several streams per position the blocks carry to the one
            the tail reads (hyper-connections' ``hc_head``); applied to every row.
        merge_rule: the same, where the model writes its merge inline (a name in
            :data:`MERGE_RULES`).
        order: permutation from the blocks' stream layout to ``(batch, seq, d_model)``.
        slot: which T-long slot of the blocks' sequence axis holds the stream the head reads.
        halves: for reversible blocks (Reformer), which carry the stream as two halves: the
            block-output fields and the block-input keyword arguments, concatenated on the last
            axis in this order, that make up the stream the model's tail reads.
        skip: config field with a number of leading positions the model adds inside (CPM-Ant's
            prompt) and drops before its head: dropped from every row too.
    """

    calls: str | None = None
    stream_in: str | None = None
    block_out: str | None = None
    merge: str | None = None
    merge_rule: str | None = None
    order: tuple[int, ...] | None = None
    slot: int = 0
    skip: str | None = None
    halves: tuple[tuple[str, str], tuple[str, str]] | None = None


_DEFAULT_STREAM = StreamRule()
_PARALLEL_LISTS = StreamRule(stream_in="attentions.0")  # XLM/FlauBERT: "blocks" = each block's closing norm
_HC_HEAD = StreamRule(merge="hc_head")  # hyper-connections: hc_mult streams, collapsed by hc_head

STREAMS: dict[str, StreamRule] = {
    # XLNet's blocks also carry a query stream; the content stream (the block output's first
    # entry) is the one its head reads when no target mapping is given. FSMT is sequence-first.
    **dict.fromkeys(["xlnet", "fsmt"], StreamRule(order=(1, 0, 2))),
    # ProphetNet: the first of its config.ngram predicting streams, after the main stream
    "prophetnet": StreamRule(slot=1),
    "cpmant": StreamRule(skip="prompt_length"),
    # Reformer's reversible blocks: the stream is cat(attn_output, hidden_states), as its encoder returns it
    "reformer": StreamRule(
        halves=(("attn_output", "hidden_states"), ("prev_attn_output", "hidden_states"))
    ),  # config.prompt_length prompt positions ahead of the input
    "albert": StreamRule(calls="num_hidden_layers"),  # one layer group, run num_hidden_layers times
    "hrm_text": StreamRule(calls="H_cycles", stream_in="rotary_emb"),  # rows: H-module calls; row 0: scaled embeds
    "dory": StreamRule(calls="n_layer_calls"),  # input layers, the recurrent ones n_recurrent_loops times, output
    # SqueezeBERT's encoder calls block.forward() directly, channels first; each block ends in `output`
    "squeezebert": StreamRule(stream_in="layers.0.attention", block_out="output", order=(0, 2, 1)),
    **dict.fromkeys(["xlm", "flaubert"], _PARALLEL_LISTS),
    # BLT's local decoder adds cross-attention to the patches before a layer, inside the loop: row 0
    # is the stream before the first one (the decoder with no layers applies none)
    "blt": StreamRule(stream_in="cross_attn_layers.0"),
    **dict.fromkeys(["deepseek_v4", "hy_v4"], _HC_HEAD),
    **dict.fromkeys(["qwen4_exp", "qwen4_exp_text"], StreamRule(merge="hyper_connection_mixer")),
    # Gemma 3n: altup_num_inputs predictions per position, merged after the last block
    **dict.fromkeys(["gemma3n", "gemma3n_text"], StreamRule(merge_rule="altup")),
    # Inkling 2's block attention residuals: its head reads final_input's mix of the block-boundary
    # streams so far and the current one; row l is that mix over the layers before l
    **dict.fromkeys(["inkling2", "inkling2_text"], StreamRule(merge_rule="block_attention")),
}

# Block-call counts a StreamRule.calls may name that no config field holds.
_DERIVED_CALLS = {
    "n_layer_calls": lambda c: c.n_input_layers + c.n_recurrent_layers * c.n_recurrent_loops + c.n_output_layers,
}


def stream_rule(config) -> StreamRule:
    """How to read the stream of a model (the default rule for most)."""
    return STREAMS.get(getattr(config, "model_type", None), _DEFAULT_STREAM)


def block_calls(config, rule: StreamRule) -> int | None:
    """Block applications per forward under ``rule``, or ``None``: one call per block."""
    if rule.calls is None:
        return None
    derived = _DERIVED_CALLS.get(rule.calls)
    return int(derived(config) if derived else getattr(config, rule.calls))


Merge = Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class StreamTaps:
    """Where :mod:`logitscope.capture` reads the stream in one loaded model (see :class:`StreamRule`).

    Attributes:
        calls: block applications per forward (rows follow them in call order), or ``None``:
            one call per block, in list order.
        stream_in: module whose first input is row 0 (``None``: the first block's input).
        block_out: path inside each block of the module whose output is the block's stream.
        merge: ``merge(h, earlier)`` maps the stream the blocks carry to the ``(batch, seq,
            d_model)`` one the tail reads (hyper-connections: several streams per position;
            block attention residuals: a mix with the ``earlier`` rows named in ``history``).
        history: rows every later row's merge also reads (in order, those before it).
        order: permutation of each captured stream to ``(batch, seq, d_model)``.
        slot: the T-long slot of the sequence axis the head reads.
        skip: leading positions the model adds inside and drops before its head.
        halves: (block-output fields, block-input kwargs) concatenated into the stream (Reformer).
    """

    calls: int | None = None
    stream_in: nn.Module | None = None
    block_out: str | None = None
    merge: Merge | None = None
    history: tuple[int, ...] = ()
    order: tuple[int, ...] | None = None
    slot: int = 0
    skip: int = 0
    halves: tuple[tuple[str, str], tuple[str, str]] | None = None

    @property
    def plain(self) -> bool:
        """One call per block, row 0 its input, each row its output: what the sub-layer lens assumes."""
        return (self.calls, self.stream_in, self.block_out, self.merge, self.skip, self.halves) == (None,) * 4 + (
            0,
            None,
        )


class Blocks(nn.ModuleList):
    """The model's residual blocks as the lens reads them: the modules and :class:`StreamTaps`.

    A view (not registered in the model): the same block modules, in the model's order.
    Row 0 is the stream entering the first call; :attr:`n_calls` rows follow, one per block call.
    """

    def __init__(self, modules, taps: StreamTaps):
        super().__init__(modules)
        self.taps = taps

    @property
    def n_calls(self) -> int:
        return self.taps.calls if self.taps.calls is not None else len(self)


def _altup_merge(owner: nn.Module, blocks) -> tuple[Merge, tuple[int, ...]]:
    """Gemma 3n: the mean of prediction 0 and the unembedded, magnitude-matched others (its forward's tail)."""
    projections = owner.altup_unembed_projections

    def merge(h: torch.Tensor, earlier) -> torch.Tensor:  # (altup_num_inputs, batch, seq, d) -> (batch, seq, d)
        target = torch.mean(h[0] ** 2, dim=-1, keepdim=True) ** 0.5
        streams = [h[0]]
        for i in range(1, h.shape[0]):
            x = projections[i - 1](h[i]).to(dtype=h.dtype, device=target.device)
            magnitude = torch.sqrt(torch.mean(x**2, dim=-1, keepdim=True).clamp(min=1e-5))
            streams.append(x * target / magnitude)
        return torch.mean(torch.stack(streams), dim=0)

    return merge, ()


def _block_attention_merge(owner: nn.Module, blocks) -> tuple[Merge, tuple[int, ...]]:
    """Inkling 2: ``final_input`` attends over the streams entering each block-boundary layer so
    far and the current stream (what its forward does after the last layer)."""
    final_input = owner.final_input
    history = tuple(i for i, block in enumerate(blocks) if block.is_block_boundary)

    def merge(h: torch.Tensor, earlier: list[torch.Tensor]) -> torch.Tensor:  # (batch, seq, d)
        states = torch.stack(earlier, dim=-2) if earlier else h.new_zeros(*h.shape[:-1], 0, h.shape[-1])
        return final_input(states.to(h.device), h)[0]

    return merge, history


# Merges a model writes inline in its forward (StreamRule.merge_rule): built from the block list's
# owner and the blocks, they return the merge and the rows it reads besides each row's own.
MERGE_RULES: dict[str, Callable[[nn.Module, nn.ModuleList], tuple[Merge, tuple[int, ...]]]] = {
    "altup": _altup_merge,
    "block_attention": _block_attention_merge,
}


def _module_merge(module: nn.Module) -> Merge:
    return lambda h, earlier: module(h)


def taps_for(model: nn.Module, config, spec: ArchSpec, rule: StreamRule, blocks) -> StreamTaps:
    """The :class:`StreamTaps` of one loaded model, from its rule (module paths resolved)."""
    owner_path = spec.blocks.rpartition(".")[0]
    owner = model.get_submodule(owner_path) if owner_path else model
    merge, history = None, ()
    try:
        stream_in = owner.get_submodule(rule.stream_in) if rule.stream_in else None
        if rule.merge:
            merge = _module_merge(owner.get_submodule(rule.merge))
        if rule.merge_rule:
            merge, history = MERGE_RULES[rule.merge_rule](owner, blocks)
    except AttributeError as err:
        raise UnsupportedModelError(
            f"architecture {config.model_type!r}: registry stream rule out of date ({err})"
        ) from None
    skip = int(getattr(config, rule.skip)) if rule.skip else 0
    calls = block_calls(config, rule)
    return StreamTaps(calls, stream_in, rule.block_out, merge, history, rule.order, rule.slot, skip, rule.halves)
