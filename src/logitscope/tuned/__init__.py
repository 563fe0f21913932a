"""The tuned lens (Belrose et al. 2023): train, apply, save and load, in tuned-lens 0.2.0's format.

``lens.py`` holds :class:`TunedLens` (one affine translator per stream row, then the model's own
exact tail), ``format.py`` the on-disk format, ``train.py`` the training loop (streaming, one
layer backpropagated at a time, data-parallel under torchrun), ``checkpoint.py`` resumable
checkpoints. Logit-vs-tuned corpus metrics are :mod:`logitscope.evaluate.lens_comparison`.
``tuned="demo"`` is the lens shipped for the bundled demo model (``demo/``, made by ``scripts/train_tuned_demo.py``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_LAZY = {  # name: module; imported on first use, so the CLI's checks need no torch
    "TunedLens": "lens",
    "load_lens": "lens",
    "save_lens": "lens",
    "TunedLensConfig": "format",
    "unembed_hash": "format",
}
__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .format import TunedLensConfig, unembed_hash  # noqa: F401
    from .lens import TunedLens, load_lens, save_lens  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
