"""The lens-relevant parts of one loaded model: its blocks and its unembedding pipeline.

``model_parts(model)`` turns an :class:`~logitscope.arch.registry.ArchSpec` into modules, and
:meth:`ModelParts.unembed` is the model's own tail (final norm → rescale → pre-head modules →
head → logits bias → post-head transforms) applied to any residual stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import NoLMHeadError, UnsupportedModelError
from .discover import spec_for
from .registry import ArchSpec, Kind, PostHead, model_kind, post_head, scale_flag
from .streams import Blocks, stream_rule, taps_for


@dataclass
class ModelParts:
    """Blocks and head of a model, with the dotted paths they were found at.

    Attributes:
        kind: ``"causal"``, ``"seq2seq"`` (lens over decoder blocks) or ``"masked"``.
        blocks: the residual blocks; stream row ``l`` is the output of the ``l``-th block call
            (``blocks[l - 1]`` unless the blocks run more than once: ``blocks.taps``).
        scale: factor applied to the normed stream before the head (T5), or ``None``.
        discovered: ``True`` when the architecture was not in the registry.
    """

    kind: Kind
    model_type: str
    spec: ArchSpec
    blocks: Blocks
    final_norm: nn.Module | None
    pre_head: list[nn.Module]
    pre_head_paths: list[str]
    head: nn.Module
    head_path: str
    logits_bias: torch.Tensor | None
    tied_projection: nn.Module | None
    scale: float | None
    post: PostHead
    discovered: bool

    @property
    def n_blocks(self) -> int:
        return self.blocks.n_calls

    @property
    def head_weight(self) -> torch.Tensor:
        """The unembedding matrix (vocab, d): the head's weight, or its last ``nn.Linear``'s (MLM heads)."""
        weight = getattr(self.head, "weight", None)
        if weight is None:  # an MLM head wrapper: its decoder holds the weight
            for module in self.head.modules():
                if isinstance(module, nn.Linear):
                    weight = module.weight
        return weight

    @property
    def vocab_size(self) -> int:
        return int(self.head_weight.shape[0])

    @property
    def head_device(self) -> torch.device:
        """Where the head computes: its offload hook's execution device, else its weights' device."""
        return module_device(self.head)

    @property
    def tail(self) -> list[nn.Module]:
        """The modules of the unembedding, in order: final norm, pre-head modules, head."""
        return [m for m in (self.final_norm, *self.pre_head, self.head) if m is not None]

    @contextmanager
    def materialized(self) -> Iterator[None]:
        """Hold the tail's offloaded weights (accelerate, ``meta`` until called) on their execution
        device while the block runs, so the head is read from disk once per projection, not per
        chunk, and ``head.weight`` is a real tensor inside (the kernel may use it directly).

        A no-op for weights already in memory; re-entrant.
        """
        hooks = [(m, h) for root in self.tail for m in root.modules() for h in _offload_hooks(m)]
        loaded = []
        try:
            for module, hook in hooks:
                hook.pre_forward(module)  # weights_map -> execution device
                hook.offload = False  # calls inside only move inputs; no reload, no unload
                loaded.append((module, hook))
            yield
        finally:
            for module, hook in reversed(loaded):
                hook.offload = True
                hook.post_forward(module, None)  # back to meta

    def unembed(self, h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Map residual streams ``(..., d_model)`` to float32 logits ``(..., vocab)``.

        With ``out`` (a float32 ``(N, vocab)`` buffer, ``h`` 2-D) the logits are written into it,
        avoiding a fresh allocation per chunk.
        """
        h = h.to(self.head_device)
        if self.final_norm is not None:
            h = self.final_norm(h)
        if self.scale is not None:
            h = h * self.scale
        for module in self.pre_head:
            h = module(h)
        if self.tied_projection is not None:  # NeoMME: h @ unembedding_projection.weight
            h = h @ self.tied_projection.weight
        head = self.head
        plain = type(head) is nn.Linear and not head.weight.is_meta
        if out is not None and plain and head.weight.dtype == out.dtype == h.dtype:
            if head.bias is None:
                z = torch.mm(h, head.weight.t(), out=out)
            else:
                z = torch.addmm(head.bias, h, head.weight.t(), out=out)
        else:
            z = head(h)
            if isinstance(z, (tuple, list)):  # heads such as XLM's pred_layer return (scores,)
                z = z[0]
            z = out.copy_(z) if out is not None else z.float()
        if self.logits_bias is not None:
            z.add_(self.logits_bias.to(z.device, torch.float32))
        post = self.post
        if post.divide_by is not None:
            z.div_(post.divide_by)
        if post.multiply_by is not None:
            z.mul_(post.multiply_by)
        if post.softcap is not None:
            if z.requires_grad:  # tuned-lens training: tanh's backward needs its output unmodified
                z = torch.tanh(z / post.softcap) * post.softcap
            else:
                z.div_(post.softcap).tanh_().mul_(post.softcap)
        return z

    def describe(self) -> dict[str, object]:
        """Module paths and transforms, for ``Scope.info()`` and error messages."""
        spec = self.spec
        return {
            "blocks": spec.blocks,
            "final_norm": spec.final_norm if self.final_norm is not None else None,
            "pre_head": list(self.pre_head_paths),
            "head": self.head_path,
            "logits_bias": spec.logits_bias if self.logits_bias is not None else None,
            "tied_projection": spec.tied_projection if self.tied_projection is not None else None,
            "scale": self.scale,
            "post_head": list(self.post.names),
            "discovered": self.discovered,
        }


def _offload_hooks(module: nn.Module) -> list:
    """accelerate hooks on ``module`` that keep its weights offloaded (``offload=True``)."""
    hook = getattr(module, "_hf_hook", None)
    hooks = list(getattr(hook, "hooks", [hook])) if hook is not None else []
    return [h for h in hooks if getattr(h, "offload", False) and hasattr(h, "pre_forward")]


def module_device(module: nn.Module) -> torch.device:
    """Where ``module`` computes: its accelerate hook's execution device, else the device of its
    first weight that is not on ``meta``, else the CPU. Never reads a weight."""
    hook = getattr(module, "_hf_hook", None)
    for h in getattr(hook, "hooks", [hook]) if hook is not None else []:
        dev = getattr(h, "execution_device", None)
        if dev is not None:
            return torch.device(f"cuda:{dev}" if isinstance(dev, int) else dev)
    for t in [*module.parameters(), *module.buffers()]:
        if not t.is_meta:
            return t.device
    return torch.device("cpu")


def _get(model: nn.Module, path: str | None):
    """``model.get_submodule``/attribute lookup that returns ``None`` for absent or ``None`` parts."""
    if not path:
        return None
    obj = model
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def find_parts(model: nn.Module) -> tuple[ModelParts | None, NoLMHeadError | None]:
    """:func:`model_parts`, or ``(None, err)`` for a model without an LM head: the error is kept
    for lens/logits to raise, while info and embeddings still work."""
    try:
        return model_parts(model), None
    except NoLMHeadError as err:
        return None, err


def model_parts(model: nn.Module) -> ModelParts:
    """Find the blocks and unembedding pipeline of ``model``.

    Raises:
        NoLMHeadError: the model has no LM head (e.g. a bare ``BertModel``).
    """
    spec, discovered = spec_for(model)
    kind = model_kind(model)
    blocks = _get(model, spec.blocks)
    if blocks is not None:
        rule = stream_rule(model.config)
        modules = blocks if isinstance(blocks, nn.ModuleList) else [blocks]  # HRM: one module, run repeatedly
        blocks = Blocks(modules, taps_for(model, model.config, spec, rule, modules))
    if spec.head is not None:
        head, head_path = _get(model, spec.head), spec.head
    else:
        getter = getattr(model, "get_output_embeddings", None)
        head = getter() if getter is not None else None
        head_path = next((n for n, m in model.named_modules() if m is head), "") if head is not None else ""
    if isinstance(head, nn.ModuleList):  # one head per codebook (Musicgen)
        if len(head) != 1:
            raise UnsupportedModelError(
                f"logitscope cannot lens architecture {model.config.model_type!r} ({type(model).__name__}): "
                f"it has {len(head)} output heads (one per codebook); the lens reads one"
            )
        head, head_path = head[0], f"{head_path}.0"
    if head is None or blocks is None:
        name = type(model).__name__
        raise NoLMHeadError(
            f"{name} has no language-modelling head (no logits to lens). Load the model with its "
            "head (e.g. *ForCausalLM / *ForMaskedLM), or use scope.embed()/scope.nearest(), which "
            "need only the input embeddings."
        )
    config = model.config
    scale = None
    flag = scale_flag(model, spec)
    if flag is not None and getattr(config, flag, False):
        scale = float(config.d_model) ** -0.5
    present = [p for p in spec.pre_head if _get(model, p) is not None]
    return ModelParts(
        kind=kind,
        model_type=config.model_type,
        spec=spec,
        blocks=blocks,
        final_norm=_get(model, spec.final_norm),
        pre_head=[_get(model, p) for p in present],
        pre_head_paths=present,
        head=head,
        head_path=head_path,
        logits_bias=_get(model, spec.logits_bias),
        tied_projection=_get(model, spec.tied_projection),
        scale=scale,
        post=post_head(config),
        discovered=discovered,
    )
