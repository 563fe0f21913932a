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

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import InputError, LensMismatchError

LENS_TYPE = "linear_tuned_lens"


@dataclass
class TunedLensConfig:
    """The ``config.json`` of a tuned-lens folder, field for field (tuned-lens 0.2.0).

    Attributes:
        base_model_name_or_path: the model the lens was trained for.
        d_model: width of the residual stream.
        num_hidden_layers: number of blocks ``L`` (= number of translators).
        bias: whether the translators have a bias.
        base_model_revision: the model's revision, if known.
        unembed_hash: :func:`~logitscope.tuned.format.unembed_hash` of the model's head.
        lens_type: always ``"linear_tuned_lens"``.
    """

    base_model_name_or_path: str
    d_model: int
    num_hidden_layers: int
    bias: bool = True
    base_model_revision: str | None = None
    unembed_hash: str | None = None
    lens_type: str = LENS_TYPE

    def to_dict(self) -> dict:
        return asdict(self)


class TunedLens(nn.Module):
    """Affine translators ``h + W h + b`` for stream rows ``0 .. L-1``.

    Build one for a model with :meth:`from_scope` (zero translators: equals the logit lens),
    load one with :meth:`load` (a tuned-lens folder, or ``"demo"``), train one with
    :meth:`logitscope.Scope.train_lens`, apply it with ``scope.lens(..., tuned=lens)``.

    Args:
        config: the lens's :class:`TunedLensConfig`.
        source: where the lens came from (a path, ``"demo"``), reported in results' ``meta``.
    """

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
        from .format import unembed_hash

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
        from .format import load_lens

        lens = load_lens(path)
        if scope is not None:
            lens.check(scope, strict=strict)
        return lens

    def save(self, path) -> None:
        """Write the tuned-lens folder ``path`` (``config.json`` + ``params.pt``), atomically."""
        from .format import save_lens

        save_lens(self, path)

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
        from .format import unembed_hash

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

    def translate_rows_(self, streams: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Translate ``streams`` (S, N, d) in place, stream ``i`` being row ``rows[i]``."""
        with torch.no_grad():
            for i, row in enumerate(rows):
                if row != self.n_layers:
                    streams[i] = self.translate(streams[i], row)
        return streams

    def forward(self, h: torch.Tensor, row: int) -> torch.Tensor:
        return self.translate(h, row)

    def __repr__(self) -> str:
        return f"TunedLens({self.describe()!r}, layers={self.n_layers}, d_model={self.d_model})"


def stream_width(scope) -> int:
    """Width of the residual stream the lens reads: the model config's ``hidden_size``.

    Every transformers config maps its own name for it (``n_embd``, ``d_model``) to ``hidden_size``.
    """
    width = getattr(scope.model.config, "hidden_size", None)
    if not isinstance(width, int):
        raise InputError(f"{scope.name}: the model config has no hidden_size; cannot size a tuned lens")
    return width


def resolve(scope, tuned, *, strict: bool = True) -> TunedLens:
    """``tuned=`` of ``scope.lens``/``scope.evaluate``: a :class:`TunedLens`, a folder, or ``"demo"``, checked."""
    lens = tuned if isinstance(tuned, TunedLens) else TunedLens.load(tuned)
    lens.check(scope, strict=strict)
    return lens
