"""The load-time self-check: the lens's last row must reproduce the model's own logits.

:class:`~logitscope.Scope` runs :func:`self_check` at construction. The model's parts (found by
the registry or by structural discovery, :mod:`logitscope.arch`) are trusted only if the final
stream row through the model's own tail (:meth:`~logitscope.arch.parts.ModelParts.unembed`)
gives the model's log-probabilities on a short probe; otherwise the model is refused
(``UnsupportedModelError``) rather than lensed wrongly.
"""

from __future__ import annotations

import torch

from ..arch.registry import decoder_start
from ..errors import LogitscopeError, NonFiniteError, UnsupportedModelError
from .capture import run_captured
from .inputs import Encoded, model_inputs

# Self-check tolerance on log-probabilities, by the model's dtype (half precision: 5e-2).
_SELF_CHECK_TOL = {torch.float64: 1e-5, torch.float32: 1e-3}


def _overflow(scope, kwargs) -> NonFiniteError:
    """The self-check probe gave the model's own logits NaN/inf: name the first block whose output
    is not finite (or the head, when every block is finite)."""
    parts = scope.parts
    captured = run_captured(scope.model, parts.blocks, list(range(parts.n_blocks + 1)), **kwargs)
    bad = [r for r in range(parts.n_blocks + 1) if not bool(torch.isfinite(captured[r]).all())]
    dtype = str(next(scope.model.parameters()).dtype).replace("torch.", "")
    if bad:
        row = bad[0]
        where = (
            "the input embeddings are already non-finite"
            if row == 0
            else f"block {row} ({parts.spec.blocks}.{row - 1}) is the first whose output is not finite"
        )
    else:
        where = f"every block's output is finite, so the head ({parts.head_path}) overflows"
    return NonFiniteError(
        "the model's own logits hold NaN or inf on a short probe",
        f"it overflows in {dtype}: {where} (its weights are finite). Lens and logits would be meaningless; "
        "info and embeddings still work",
    )


def self_check(scope, *, n_tokens: int = 6) -> float:
    """Compare the lens's final row with the model's own logits on a short probe.

    Returns the max absolute difference of log-probabilities; raises
    :class:`UnsupportedModelError` when it is too large to trust the lens.
    """
    parts, model = scope.parts, scope.model
    V = parts.vocab_size
    probe = [(7 + 13 * i) % V for i in range(n_tokens)]
    start = decoder_start(model.config, probe)  # any start token checks the tail; the model's own if it has one
    enc = Encoded(probe, [probe[0] if start is None else start, probe[0]] if parts.kind == "seq2seq" else None, [])
    kwargs = model_inputs(parts.kind, [enc], scope.input_device, scope.pad_id)
    with torch.inference_mode():
        ref = model(**kwargs).logits[0].float().log_softmax(-1)
        if not bool(torch.isfinite(ref).all()):  # nothing to compare with: the model itself overflows
            raise _overflow(scope, kwargs)
        try:
            captured = run_captured(model, parts.blocks, [parts.n_blocks], **kwargs)
            ours = parts.unembed(captured[parts.n_blocks][0, : ref.shape[0]]).to(ref.device).log_softmax(-1)
            diff = float((ref - ours).abs().max()) if ours.shape == ref.shape else float("inf")
        except LogitscopeError:
            raise
        except Exception as err:  # noqa: BLE001 - e.g. shapes that do not chain, a head returning a tuple
            diff, problem = float("inf"), f"{type(err).__name__}: {str(err).splitlines()[0]}"
        else:
            problem = f"log-probabilities differ by {diff:.3g}"
    tol = _SELF_CHECK_TOL.get(next(model.parameters()).dtype, 5e-2)
    if not diff <= tol:
        raise UnsupportedModelError(
            f"logitscope cannot reproduce the logits of architecture {parts.model_type!r} "
            f"({type(model).__name__}): its lens of the last layer does not reproduce the model's own "
            f"output ({problem}; tolerance {tol}). Refusing rather than giving wrong numbers; "
            f"parts used: {parts.describe()}"
        )
    return diff
