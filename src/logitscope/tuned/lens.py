"""The tuned lens: one affine translator per stream row, then the model's own exact tail.

For stream rows ``l = 0 .. L-1`` (row 0 = the stream entering block 0) the tuned lens reads

    logits_l = tail(h_l + W_l h_l + b_l)            # W_l: (d, d), b_l: (d,)

where ``tail`` is :meth:`logitscope.arch.parts.ModelParts.unembed` (final norm → rescale → pre-head
modules → head → logits bias → post-head transforms), the same function the logit lens uses.
Row ``L`` is the model's output and has no translator. ``W`` and ``b`` start at zero, so an
untrained lens *is* the logit lens; weight decay pulls the translators towards the identity.

The parameters are those of tuned-lens 0.2.0 (``TunedLens.layer_translators``): a ``ModuleList``
of ``nn.Linear(d, d)`` whose state dict has keys ``"{l}.weight"`` and ``"{l}.bias"``. Reading
and writing that format is :mod:`logitscope.tuned.format`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..arch.registry import residual_width
from ..errors import InputError, LensMismatchError
from .format import (
    DEMO_DIR,
    PARAMS_FILE,
    TunedLensConfig,
    lens_dir,
    read_config,
    read_params,
    unembed_hash,
    write_lens_dir,
)


class TunedLens(nn.Module):
    """Affine translators ``h + W h + b`` for stream rows ``0 .. L-1``: a :class:`~logitscope.engine.lens.Lens`.

    Build one for a model with :meth:`from_scope` (zero translators: equals the logit lens),
    load one with :meth:`load` (a tuned-lens folder, or ``"demo"``), train one with
    :meth:`logitscope.Scope.train_lens`, apply it with ``scope.lens(..., tuned=lens)``.

    Args:
        config: the lens's :class:`TunedLensConfig`.
        source: where the lens came from (a path, ``"demo"``), reported in results' ``meta``.
    """

    kind = "tuned"  # the Lens protocol's name: results say meta["lens"] == "tuned"

    def __init__(self, config: TunedLensConfig, *, source: str | None = None):
        super().__init__()
        d, L = int(config.d_model), int(config.num_hidden_layers)
        if d < 1 or L < 1:
            raise InputError(f"a tuned lens needs d_model >= 1 and num_hidden_layers >= 1, not {d} and {L}")
        self.config = config
        self.source = source
        translators = [nn.Linear(d, d, bias=bool(config.bias)) for _ in range(L)]
        for t in translators:
            nn.init.zeros_(t.weight)
            if t.bias is not None:
                nn.init.zeros_(t.bias)
        self.translators = nn.ModuleList(translators)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_scope(cls, scope, *, bias: bool = True, revision: str | None = None) -> TunedLens:
        """A zero (untrained) lens shaped for ``scope``'s model, carrying its unembedding hash."""
        parts = scope.require_head()
        config = TunedLensConfig(
            base_model_name_or_path=str(scope.name),
            d_model=stream_width(scope),
            num_hidden_layers=parts.n_blocks,
            bias=bias,
            base_model_revision=revision,
            unembed_hash=unembed_hash(parts),
        )
        return cls(config)

    @classmethod
    def load(cls, path, *, scope=None, strict: bool = True) -> TunedLens:
        """Read a tuned-lens folder (or ``"demo"``); with ``scope``, check it fits that model."""
        lens = load_lens(path)
        if scope is not None:
            lens.check(scope, strict=strict)
        return lens

    def save(self, path) -> Path:
        """Write the tuned-lens folder ``path`` (``config.json`` + ``params.pt``), atomically; returns it."""
        return save_lens(self, path)

    # -- properties --------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of translators ``L`` (stream rows ``0 .. L-1``)."""
        return len(self.translators)

    @property
    def d_model(self) -> int:
        return int(self.config.d_model)

    def describe(self) -> str:
        """A short label for results: where the lens came from."""
        return self.source or f"tuned lens for {self.config.base_model_name_or_path}"

    # -- checks ------------------------------------------------------------------------------
    def check(self, scope, *, strict: bool = True) -> None:
        """Refuse a lens made for another model.

        Raises:
            LensMismatchError: the block count or stream width differ, or (``strict``) the
                unembedding hash differs from the model's (with ``strict=False`` a warning).
        """
        parts = scope.require_head()
        name = self.describe()
        if self.n_layers != parts.n_blocks:
            raise LensMismatchError(
                f"tuned lens {name!r} has {self.n_layers} translators but {scope.name} has "
                f"{parts.n_blocks} blocks: it was trained for another model"
            )
        width = stream_width(scope)
        if self.d_model != width:
            raise LensMismatchError(
                f"tuned lens {name!r} has d_model {self.d_model} but {scope.name}'s residual "
                f"stream has width {width}: it was trained for another model"
            )
        want = self.config.unembed_hash
        if want and want != unembed_hash(parts):
            message = (
                f"tuned lens {name!r} was trained for a model with a different unembedding "
                f"(hash {want[:12]}… vs {unembed_hash(parts)[:12]}… for {scope.name})"
            )
            if strict:
                raise LensMismatchError(message + "; pass strict=False to apply it anyway")
            warnings.warn(message, stacklevel=3)

    # -- the Lens protocol (logitscope.engine.lens) ---------------------------------------------
    def covers(self, row) -> bool:
        """Stream rows ``0 .. L`` (row ``L`` is the model's output); no sub-layer rows."""
        return isinstance(row, int) and not isinstance(row, bool) and 0 <= row <= self.n_layers

    def transform(self, row, h: torch.Tensor) -> torch.Tensor:
        """``h + W_row h + b_row`` (:meth:`translate`)."""
        return self.translate(h, row)

    def check_model(self, scope, *, strict: bool = True) -> None:
        """:meth:`check`: refuse a lens made for another model (``LensMismatchError``)."""
        self.check(scope, strict=strict)

    # -- application -------------------------------------------------------------------------
    def translate(self, h: torch.Tensor, row: int) -> torch.Tensor:
        """``h + W_row h + b_row`` for a stream ``(..., d)`` of row ``row`` (row ``L``: ``h`` itself).

        Computed in the translators' dtype (float32 unless converted) and returned in ``h``'s.
        """
        if row == self.n_layers:
            return h
        if not 0 <= row < self.n_layers:
            raise InputError(f"stream row {row} out of range 0..{self.n_layers}")
        if h.shape[-1] != self.d_model:
            raise LensMismatchError(
                f"stream width {h.shape[-1]} does not match the tuned lens's d_model {self.d_model}"
            )
        t = self.translators[row]
        w = t.weight
        x = h.to(w.dtype) if w.device == h.device else h.to(w.device, w.dtype)
        out = x + nn.functional.linear(x, w, t.bias)  # (..., d)
        return out.to(h.device, h.dtype)

    def forward(self, h: torch.Tensor, row: int) -> torch.Tensor:
        return self.translate(h, row)

    def __repr__(self) -> str:
        return f"TunedLens({self.describe()!r}, layers={self.n_layers}, d_model={self.d_model})"


def stream_width(scope) -> int:
    """Width of the residual stream the lens reads (:func:`~logitscope.arch.registry.residual_width`)."""
    width = residual_width(scope.model.config)
    if width is None:
        raise InputError(f"{scope.name}: the model config has no hidden_size; cannot size a tuned lens")
    return width


def save_lens(lens: TunedLens, path, *, extra: dict[str, str] | None = None) -> Path:
    """Write ``lens`` as a tuned-lens folder at ``path`` (created or updated atomically).

    ``extra`` maps further file names to text written in the same step (``training_log.json``).
    """
    state = {k: v.detach().cpu().contiguous() for k, v in lens.translators.state_dict().items()}
    return write_lens_dir(path, lens.config, state, extra)


def load_lens(path) -> TunedLens:
    """Read a tuned-lens folder (or ``"demo"``) into a :class:`TunedLens` (float32 translators)."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"tuned= takes a TunedLens, a folder or 'demo', not {type(path).__name__}")
    folder = lens_dir(path)
    config = read_config(folder)
    state = read_params(folder / PARAMS_FILE, config)
    lens = TunedLens(config, source="demo" if folder == DEMO_DIR else str(folder))
    lens.translators.load_state_dict({k: v.float() for k, v in state.items()})
    return lens
