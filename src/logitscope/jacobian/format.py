"""The Jacobian lens and its on-disk format (the published one: ``anthropics/jacobian-lens``).

A J-lens file is one ``torch.save`` dict::

    {"J": {l: Tensor[d, d]},          # block index l (0-based) -> J_l, float16 by default
     "n_prompts": int,                 # prompts averaged over (the weight of a merge)
     "source_layers": [l, ...],        # sorted block indices, = sorted(J)
     "d_model": int,
     "metadata": {...}}                # optional, plain values only (model, skip_first, ...)

It is read with ``torch.load(weights_only=True)`` (no pickled code runs) and upcast to float32.
A fit *checkpoint* (``{"jacobian_sum", "n_done", "next_idx", ...}``) is another layout and is
refused with a message that says so. ``J_l`` reads the output of block ``l``, which is
logitscope's stream row ``l + 1``: :meth:`JacobianLens.transform` (the Lens protocol of
:mod:`logitscope.engine.lens`) maps ``h -> h @ J_lᵀ``, and the engine then applies the model's
own tail (docs/jacobian_lens.md).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from ..arch.registry import residual_width
from ..errors import CorruptWeightsError, InputError, LensMismatchError
from ..io.atomic import atomic_file

DEMO_FILE = Path(__file__).parent / "demo" / "lens.pt"
CHECKPOINT_KEYS = ("jacobian_sum", "n_done", "next_idx")
_PLAIN = (str, int, float, bool, type(None))


@dataclass
class JacobianLens:
    """Per-block average Jacobians ``J_l = E[∂h_final / ∂h_l]`` and their readout ``tail(J_l h)``.

    Build one with :meth:`logitscope.Scope.fit_jacobian_lens`, load one with :meth:`load`
    (a file in the published layout, or ``"demo"``), apply it with
    ``scope.lens(..., jacobian=lens)``.

    Attributes:
        J: ``{block index l: (d_model, d_model) float32 tensor}``; row ``i`` of ``J_l`` is the
            average gradient of final-stream dimension ``i`` with respect to ``h_l``.
        n_prompts: prompts the lens was averaged over.
        d_model: width of the residual stream.
        metadata: provenance (model, revision, skip_first, max_seq_len, corpus, version...).
        source: where the lens came from (a path or ``"demo"``), for results' ``meta``.
    """

    kind: ClassVar[str] = "jacobian"  # the Lens protocol's name: results say meta["lens"] == "jacobian"
    J: dict[int, torch.Tensor]
    n_prompts: int
    d_model: int
    metadata: dict = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        if not self.J:
            raise InputError("a Jacobian lens needs at least one source layer")
        d = int(self.d_model)
        for layer, m in self.J.items():
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise InputError(f"J keys are block indices (ints >= 0), not {layer!r}")
            if not isinstance(m, torch.Tensor) or tuple(m.shape) != (d, d) or not m.is_floating_point():
                got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise InputError(f"J[{layer}] must be a float ({d}, {d}) tensor, not {got}")
        self.J = {int(k): self.J[k].detach().to("cpu", torch.float32) for k in sorted(self.J)}
        self.n_prompts, self.d_model = int(self.n_prompts), d
        self.metadata = dict(self.metadata or {})

    # -- properties --------------------------------------------------------------------------
    @property
    def source_layers(self) -> list[int]:
        """The fitted block indices, sorted (``J_l`` reads stream row ``l + 1``)."""
        return sorted(self.J)

    @property
    def rows(self) -> list[int]:
        """The stream rows the lens transforms: ``l + 1`` for each source layer."""
        return [layer + 1 for layer in self.source_layers]

    def describe(self) -> str:
        """A short label for results: where the lens came from."""
        return self.source or f"Jacobian lens for {self.metadata.get('model', 'a model')}"

    def __repr__(self) -> str:
        layers = self.source_layers
        return f"JacobianLens({self.describe()!r}, d_model={self.d_model}, n_prompts={self.n_prompts}, source_layers={layers})"

    # -- files -------------------------------------------------------------------------------
    def to_state(self, dtype: torch.dtype = torch.float16) -> dict:
        """The published dict (``J`` cast to ``dtype``), ready for ``torch.save``."""
        state = {
            "J": {layer: m.to(dtype).contiguous() for layer, m in self.J.items()},
            "n_prompts": self.n_prompts,
            "source_layers": self.source_layers,
            "d_model": self.d_model,
        }
        if self.metadata:
            state["metadata"] = _plain(self.metadata, "metadata")
        return state

    def save(self, path, *, dtype: torch.dtype = torch.float16) -> Path:
        """Write the lens to ``path`` in the published layout (float16 by default), atomically."""
        dest = Path(path).expanduser()
        if dest.is_dir():
            raise InputError(f"{dest} is a directory; give a file name such as lens.pt")
        state = self.to_state(dtype)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(dest) as tmp:
            torch.save(state, tmp)
        return dest

    @classmethod
    def load(cls, path, *, scope=None, strict: bool = True) -> JacobianLens:
        """Read a J-lens file (or ``"demo"``); with ``scope``, check that it fits that model."""
        if isinstance(path, JacobianLens):
            lens = path
        else:
            if not isinstance(path, (str, os.PathLike)):
                raise InputError(f"jacobian= takes a JacobianLens, a file or 'demo', not {type(path).__name__}")
            file = DEMO_FILE if isinstance(path, str) and path == "demo" else Path(path).expanduser()
            lens = cls.from_state(read_state(file), file)
            lens.source = "demo" if file == DEMO_FILE else str(file)
        if scope is not None:
            lens.check(scope, strict=strict)
        return lens

    @classmethod
    def from_state(cls, state, file="<state>") -> JacobianLens:
        """Check a loaded dict key by key and build the lens (float32)."""
        if not isinstance(state, dict):
            raise CorruptWeightsError(f"{file}: expected a dict, found {type(state).__name__}")
        if "J" not in state and any(k in state for k in CHECKPOINT_KEYS):
            raise InputError(
                f"{file} is a Jacobian-lens fit checkpoint (keys {sorted(map(str, state))}), not a lens: "
                "resume the fit (fit-jlens --resume) to finish it, which writes the lens file"
            )
        missing = [k for k in ("J", "n_prompts", "d_model") if k not in state]
        if missing:
            raise CorruptWeightsError(f"{file}: not a Jacobian lens (missing {', '.join(missing)})")
        J, d, n = state["J"], state["d_model"], state["n_prompts"]
        if not isinstance(J, dict) or not J:
            raise CorruptWeightsError(f"{file}: 'J' must be a non-empty dict of block index -> matrix")
        for key, value in (("d_model", d), ("n_prompts", n)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CorruptWeightsError(f"{file}: {key!r} must be a positive integer, not {value!r}")
        listed = state.get("source_layers")
        if listed is not None and sorted(listed) != sorted(J):
            raise CorruptWeightsError(f"{file}: source_layers {list(listed)} do not match the keys of J {sorted(J)}")
        for layer, m in J.items():
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise CorruptWeightsError(f"{file}: J key {layer!r} is not a block index")
            if not isinstance(m, torch.Tensor) or tuple(m.shape) != (d, d) or not m.is_floating_point():
                got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise CorruptWeightsError(f"{file}: J[{layer}] should be a float ({d}, {d}) tensor, found {got}")
            if not bool(torch.isfinite(m).all()):
                raise CorruptWeightsError(f"{file}: J[{layer}] holds NaN or inf")
        meta = state.get("metadata") or {}
        if not isinstance(meta, dict):
            raise CorruptWeightsError(f"{file}: 'metadata' must be a dict")
        return cls(J=dict(J), n_prompts=n, d_model=d, metadata=meta)

    # -- combining ---------------------------------------------------------------------------
    @classmethod
    def merge(cls, *lenses) -> JacobianLens:
        """The prompt-weighted mean of lenses fitted on disjoint prompt sets (= one joint fit).

        Accepts lenses, paths, or one list of them. Refuses lenses whose source layers or
        d_model differ (``LensMismatchError``).
        """
        if len(lenses) == 1 and isinstance(lenses[0], (list, tuple)):
            lenses = tuple(lenses[0])
        if not lenses:
            raise InputError("merge needs at least one Jacobian lens")
        lenses = [x if isinstance(x, JacobianLens) else cls.load(x) for x in lenses]
        first = lenses[0]
        for other in lenses[1:]:
            if other.d_model != first.d_model or other.source_layers != first.source_layers:
                raise LensMismatchError(
                    f"cannot merge {other.describe()!r} (d_model {other.d_model}, layers {other.source_layers}) "
                    f"with {first.describe()!r} (d_model {first.d_model}, layers {first.source_layers})"
                )
            for key in ("model", "target_layer", "skip_first", "max_seq_len"):
                a, b = first.metadata.get(key), other.metadata.get(key)
                if a is not None and b is not None and a != b:
                    raise LensMismatchError(f"cannot merge lenses fitted with different {key}: {a!r} and {b!r}")
        total = sum(x.n_prompts for x in lenses)
        J = {}
        for layer in first.source_layers:
            acc = torch.zeros_like(first.J[layer], dtype=torch.float64)
            for x in lenses:
                acc += x.J[layer].double() * x.n_prompts
            J[layer] = (acc / total).float()
        meta = dict(first.metadata)
        meta.update(merged_from=[x.describe() for x in lenses], merged_n_prompts=[x.n_prompts for x in lenses])
        return cls(J=J, n_prompts=total, d_model=first.d_model, metadata=meta)

    # -- checks and application -------------------------------------------------------------
    def check(self, scope, *, strict: bool = True) -> None:
        """Refuse a lens made for another model (``LensMismatchError``): width, blocks or (when the
        file records it) the unembedding hash do not fit; with ``strict=False`` a hash mismatch warns."""
        parts = scope.require_head()
        L, width = parts.n_blocks, residual_width(scope.model.config)
        if self.d_model != width:
            raise LensMismatchError(
                f"Jacobian lens {self.describe()!r} has d_model {self.d_model} but {scope.name}'s residual "
                f"stream has width {width}: it was fitted for another model"
            )
        if self.source_layers[-1] >= L - 1 or len(self.source_layers) > L - 1:
            raise LensMismatchError(
                f"Jacobian lens {self.describe()!r} has source layers {self.source_layers} but {scope.name} has "
                f"{L} blocks (sources must be below the last block, 0..{L - 2}): it was fitted for another model"
            )
        fitted_for = self.metadata.get("n_layers")
        if isinstance(fitted_for, int) and fitted_for != L:
            raise LensMismatchError(
                f"Jacobian lens {self.describe()!r} was fitted for a model with {fitted_for} blocks; "
                f"{scope.name} has {L}"
            )
        want = self.metadata.get("unembed_hash")
        if isinstance(want, str) and want:
            from ..tuned.format import unembed_hash

            have = unembed_hash(parts)
            if want != have:
                message = (
                    f"Jacobian lens {self.describe()!r} was fitted for a model with a different unembedding "
                    f"(hash {want[:12]}… vs {have[:12]}… for {scope.name})"
                )
                if strict:
                    raise LensMismatchError(message + "; pass strict=False to apply it anyway")
                warnings.warn(message, stacklevel=3)
        target = self.metadata.get("target_layer")
        if isinstance(target, int) and target >= L:
            raise LensMismatchError(f"Jacobian lens {self.describe()!r} targets block {target}; {scope.name} has {L}")

    # -- the Lens protocol (logitscope.engine.lens) ---------------------------------------------
    def covers(self, row) -> bool:
        """Stream rows ``l + 1`` of the fitted blocks ``l`` (no row 0 unless fitted; no sub-layer rows)."""
        return isinstance(row, int) and not isinstance(row, bool) and row - 1 in self.J

    def transform(self, row, h: torch.Tensor) -> torch.Tensor:
        """``h @ J_{row-1}ᵀ`` for a stream ``(..., d)`` of row ``row``, computed in float32 and
        returned in ``h``'s dtype and device (then the engine applies the model's own tail)."""
        m = self.J.get(row - 1) if isinstance(row, int) else None
        if m is None:
            raise InputError(f"the Jacobian lens {self.describe()!r} has no J for stream row {row}")
        if h.shape[-1] != self.d_model:
            raise LensMismatchError(f"stream width {h.shape[-1]} does not match the Jacobian lens's {self.d_model}")
        return (h.float() @ m.to(h.device).T).to(h.dtype)

    def check_model(self, scope, *, strict: bool = True) -> None:
        """:meth:`check`: refuse a lens made for another model (``LensMismatchError``)."""
        self.check(scope, strict=strict)


def read_state(file: Path) -> dict:
    """``torch.load(file, weights_only=True)``; a missing, damaged or pickled file is one clear error."""
    if file == DEMO_FILE and not file.is_file():
        raise InputError(f"the demo Jacobian lens is missing from {file.parent} (broken install?)")
    if not file.exists():
        raise InputError(f"no Jacobian lens at {file}: the file does not exist")
    if file.is_dir():
        raise InputError(f"{file} is a directory, not a Jacobian lens file")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before refusing them
            warnings.simplefilter("ignore")
            return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged or hostile file
        text = str(err).strip()
        if "Unsupported global" in text or "can still be loaded" in text:
            raise CorruptWeightsError(
                f"{file}: refused: it holds pickled Python objects that torch.load(weights_only=True) will not "
                "run; a Jacobian lens holds only tensors and plain values"
            ) from None
        detail = text.split("WeightsUnpickler error:")[-1].strip() if "WeightsUnpickler" in text else text
        first = detail.splitlines()[0] if detail else type(err).__name__
        raise CorruptWeightsError(
            f"{file}: cannot read the Jacobian lens: not a torch.save file, or damaged ({first[:200]})"
        ) from None


def _plain(value, where: str):
    """``value`` as plain str/int/float/bool/None, lists and str-keyed dicts (weights_only-safe).

    Subclasses are converted to the base type: ``torch.__version__`` is a ``str`` subclass that
    ``torch.load(weights_only=True)`` would refuse to unpickle.
    """
    if value is None or isinstance(value, bool):
        return value if value is None else bool(value)
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise InputError(f"{where} must hold plain values (str, numbers, lists, dicts), not {type(value).__name__}")
