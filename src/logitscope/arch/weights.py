"""Sanity of what a :class:`~logitscope.scope.Scope` wraps: a real model, and weights without NaN/inf.

A NaN or inf weight makes every statistic downstream meaningless, and the load-time self-check
would only report "cannot reproduce the logits". :func:`corrupt_weights` names the parameters
instead; :class:`Scope` keeps the error and raises it from lens/logits, so queries that need
only the (finite) input embeddings (``info``, ``embed``, ``nearest``) still work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import CorruptWeightsError, InputError


@contextmanager
def frozen(model) -> Iterator[None]:
    """``requires_grad_(False)`` on every parameter for the duration, restored afterwards: gradients
    reach only activations (a lens's own parameters), never the model's weights."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def check_model(model, tokenizer=None) -> None:
    """Raise :class:`InputError` unless ``model`` is a transformers-style ``torch.nn.Module`` with a config."""
    import torch

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        raise InputError(f"Scope wraps a model object; to load {model!r} by name or path use logitscope.load()")
    if not isinstance(model, torch.nn.Module) or getattr(model, "config", None) is None:
        raise InputError(
            f"Scope needs a Hugging Face model (a torch.nn.Module with a .config), got {type(model).__name__}"
        )
    meta = unloadable_meta(model)
    if meta:
        shown = ", ".join(meta[:3]) + (f" and {len(meta) - 3} more" if len(meta) > 3 else "")
        raise CorruptWeightsError(
            f"{len(meta)} weight(s) of the model are on the 'meta' device with nothing to load them from "
            f"({shown}): load the weights (e.g. from_pretrained, or accelerate's dispatch with offload) first"
        )
    if tokenizer is not None and not callable(tokenizer):
        raise InputError(f"tokenizer must be a Hugging Face tokenizer or None, got {type(tokenizer).__name__}")


def unloadable_meta(model) -> list[str]:
    """Parameters on ``meta`` that nothing will load: no accelerate offload hook (on the module, or
    on an ancestor that places its submodules) and no streamer owns them."""
    covered: set[int] = set()
    streamer = getattr(model, "_logitscope_streamer", None)
    if streamer is not None:
        covered.update(id(m) for m in streamer.blocks.modules())
    for module in model.modules():
        hook = getattr(module, "_hf_hook", None)
        for h in list(getattr(hook, "hooks", [hook])) if hook is not None else []:
            if getattr(h, "offload", False) and getattr(h, "weights_map", None) is not None:
                covered.update(id(m) for m in (module.modules() if getattr(h, "place_submodules", False) else [module]))
    return [
        f"{mod_name}.{name}".lstrip(".")
        for mod_name, module in model.named_modules()
        for name, p in module._parameters.items()
        if p is not None and p.is_meta and id(module) not in covered
    ]


def weights_resident(model) -> bool:
    """Whether every parameter of ``model`` is in memory (not streamed, none offloaded on ``meta``)."""
    if getattr(model, "_logitscope_streamer", None) is not None:
        return False
    return not any(p.is_meta for p in model.parameters())


def all_finite(tensor) -> bool:
    """Whether a floating tensor holds no NaN or inf: one ``aminmax`` pass (NaN propagates into
    min and max, +-inf shows in one of them), ~50x cheaper on CPU than ``isfinite(t).all()``,
    which writes a bool tensor as large as ``t`` (for a streamed 8B block: 1.5 s of CPU a block)."""
    import torch

    if tensor.numel() == 0:
        return True
    lo, hi = torch.aminmax(tensor.detach().reshape(-1))
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def nonfinite_parameters(model) -> list[str]:
    """Names of the parameters and buffers of ``model`` holding NaN or inf (floating point only).

    Weights on ``meta`` (offloaded or streamed) are never read: a streamed model's blocks are
    scanned as they load (``BlockStreamer.nonfinite``), accelerate's offloaded weights are skipped.
    """
    import torch

    bad = []
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and not tensor.is_meta and not all_finite(tensor):
                bad.append(name)
    streamer = getattr(model, "_logitscope_streamer", None)
    if streamer is not None:
        bad.extend(sorted(streamer.nonfinite))
    return bad


def corrupt_weights(model, name: str) -> CorruptWeightsError | None:
    """A :class:`CorruptWeightsError` naming the NaN/inf parameters of ``model``, or ``None`` if all are finite."""
    bad = nonfinite_parameters(model)
    if not bad:
        return None
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return CorruptWeightsError(
        f"the weights of {name!r} hold NaN or inf in {len(bad)} tensor(s): {shown}; "
        "lens and logits would be meaningless (embeddings of finite rows still work)"
    )
