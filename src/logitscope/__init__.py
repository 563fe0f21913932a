"""logitscope: see what a Hugging Face language model predicts at every layer and position.

``import logitscope`` is light: torch and transformers load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "load": "loading",
    "Scope": "scope",
    "compare": "diff.run",
    "LensResult": "lens.result",
    "LayerLogits": "lens.layer_logits",
    "TunedLens": "tuned",
    "JacobianLens": "jacobian",
    "LogitscopeError": "errors",
    "ModelNotFoundError": "errors",
    "CorruptWeightsError": "errors",
    "RemoteCodeError": "errors",
    "NoLMHeadError": "errors",
    "UnsupportedModelError": "errors",
    "InputError": "errors",
    "EmptyInputError": "errors",
    "ContextLengthError": "errors",
    "LensMismatchError": "errors",
    "NonFiniteError": "errors",
    "OutputError": "errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .errors import *  # noqa: F403,F401
    from .lens.result import LensResult  # noqa: F401
    from .loading import load  # noqa: F401
    from .scope import Scope  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'logitscope' has no attribute {name!r}")


def __dir__():
    return __all__
