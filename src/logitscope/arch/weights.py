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
    if tokenizer is not None and not callable(tokenizer):
        raise InputError(f"tokenizer must be a Hugging Face tokenizer or None, got {type(tokenizer).__name__}")


def nonfinite_parameters(model) -> list[str]:
    """Names of the parameters and buffers of ``model`` holding NaN or inf (floating point only)."""
    import torch

    bad = []
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad.append(name)
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
