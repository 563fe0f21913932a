"""The load-time self-check: the lens's last row must reproduce the model's own logits.

:class:`~logitscope.Scope` runs :func:`self_check` at construction. The model's parts (found by
the registry or by structural discovery, :mod:`logitscope.arch`) are trusted only if the final
stream row through the model's own tail (:meth:`~logitscope.arch.parts.ModelParts.unembed`)
gives the model's log-probabilities on a short probe; otherwise the model is refused
(``UnsupportedModelError``) rather than lensed wrongly.

For a model whose weights are on disk (streamed, or offloaded by accelerate) every forward is a
pass over the disk, so :class:`~logitscope.Scope` leaves the check pending and
:func:`capture_checked` makes the first lens/eval forward do it: the forward that captures the
stream rows continues into the model's own head for the first input's first positions
(``logits_to_keep``), compared with the tail applied to the captured last stream; same tolerance.
Paths that cannot ride along run the check alone, in one forward (:func:`self_check`).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch

from ..arch.registry import decoder_start
from ..arch.weights import corrupt_weights, weights_resident
from ..errors import LogitscopeError, NonFiniteError, UnsupportedModelError
from .capture import capture_streams, read_streams, run_captured
from .inputs import Encoded, model_inputs

# Self-check tolerance on log-probabilities, by the model's dtype (half precision: 5e-2).
_SELF_CHECK_TOL = {torch.float64: 1e-5, torch.float32: 1e-3}
N_CHECKED = 6  # positions compared by the check that rides along a real forward


def _verdict(scope, diff: float, problem: str | None = None) -> float:
    """Raise :class:`UnsupportedModelError` when ``diff`` exceeds the tolerance; else return it."""
    parts, model = scope.parts, scope.model
    tol = _SELF_CHECK_TOL.get(next(model.parameters()).dtype, 5e-2)
    if not diff <= tol:
        problem = problem or f"log-probabilities differ by {diff:.3g}"
        raise UnsupportedModelError(
            f"logitscope cannot reproduce the logits of architecture {parts.model_type!r} "
            f"({type(model).__name__}): its lens of the last layer does not reproduce the model's own "
            f"output ({problem}; tolerance {tol}). Refusing rather than giving wrong numbers; "
            f"parts used: {parts.describe()}"
        )
    return diff


def _compare(scope, ref: torch.Tensor, final: torch.Tensor) -> float:
    """Max |Δ log p| between the model's logits ``ref`` (n, V) and the tail of ``final`` (n, d)."""
    parts = scope.parts
    with torch.inference_mode(), parts.materialized():
        ours = parts.unembed(final).to(ref.device).float().log_softmax(-1)
    ref = ref.float().log_softmax(-1)
    return float((ref - ours).abs().max()) if ours.shape == ref.shape else float("inf")


def _forward_with_logits(scope, rows, inputs: dict, keep: torch.Tensor | None):
    """One forward capturing ``rows`` without stopping, returning the model's own logits too."""
    extra = {} if keep is None else {"logits_to_keep": keep}
    with capture_streams(scope.parts.blocks, rows, stop=False) as captured, torch.inference_mode():
        logits = scope.model(**inputs, **extra).logits
    missing = set(rows) - set(captured)
    if missing:
        raise UnsupportedModelError(f"the forward pass never reached stream rows {sorted(missing)}")
    ids = inputs["decoder_input_ids" if "decoder_input_ids" in inputs else "input_ids"]
    with torch.inference_mode():
        return read_streams(dict(captured), scope.parts.blocks, ids.shape[1], sorted(set(rows))), logits


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
    if not weights_resident(model):
        try:  # weights on disk: one forward, not two
            captured, logits = _forward_with_logits(scope, [parts.n_blocks], kwargs, None)
            diff = _compare(scope, logits[0], captured[parts.n_blocks][0, : logits.shape[1]])
        except LogitscopeError:
            raise
        except Exception as err:  # noqa: BLE001 - shapes that do not chain, a head returning a tuple
            return _verdict(scope, float("inf"), f"{type(err).__name__}: {str(err).splitlines()[0]}")
        return _verdict(scope, diff)
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
    return _verdict(scope, diff, problem)


def guarded(scope, check) -> None:
    """Run ``check()``; a failure caused by NaN/inf weights is named and deferred to lens/logits
    (``scope._corrupt``), any other failure raised."""
    try:
        check()
    except (UnsupportedModelError, NonFiniteError) as err:
        scope._corrupt = corrupt_weights(scope.model, scope.name)
        if scope._corrupt is None and isinstance(err, NonFiniteError):
            scope._corrupt = err  # finite weights that overflow: deferred too (info, embed still work)
        if scope._corrupt is None:
            raise


def schedule_check(scope, enabled: bool) -> None:
    """Set up ``scope``'s self-check at construction: run it now, or, when the weights are on disk
    (streamed, or offloaded by accelerate), leave it pending to ride along the first lens/eval
    forward (:func:`capture_checked`) instead of costing a pass of its own."""
    scope._corrupt = None  # CorruptWeightsError | NonFiniteError found by the check, raised by lens/logits
    scope._deferring = 0  # depth of :func:`deferred` blocks
    scope._check_pending = bool(enabled and scope.parts is not None and not weights_resident(scope.model))
    if enabled and scope.parts is not None and not scope._check_pending:
        run_check(scope)


def ensure_checked(scope) -> None:
    """Before using ``scope``'s parts: a pending check runs now unless a :func:`deferred` block will
    carry it (a path it cannot ride along: one pass of its own); weights it found corrupt raise.

    Raises:
        CorruptWeightsError | NonFiniteError: the check found NaN/inf weights, or logits that overflow.
    """
    if scope._check_pending and not scope._deferring:
        run_check(scope)
    if scope._corrupt is not None:
        raise scope._corrupt


def run_check(scope) -> None:
    """The self-check on its own probe, now (one forward when the weights are on disk)."""
    scope._check_pending = False
    guarded(scope, lambda: self_check(scope))


@contextmanager
def deferred(scope):
    """Let a pending self-check ride along the forwards inside (:func:`capture_checked`); run it
    alone at the end if none did."""
    scope._deferring += 1
    try:
        yield
    finally:
        scope._deferring -= 1
    if scope._check_pending and not scope._deferring:
        run_check(scope)


def _can_ride(scope) -> bool:
    model = scope.model
    if scope.parts.kind != "causal":
        return False
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def capture_checked(scope, rows, **inputs) -> dict:
    """:func:`~logitscope.engine.capture.run_captured` for ``scope``, doing a pending self-check
    (``scope._check_pending``) on the way; the check alone first where it cannot ride along.

    Raises:
        UnsupportedModelError (or the ``CorruptWeightsError`` naming NaN weights): the check failed.
    """
    parts = scope.parts
    if getattr(scope, "_check_pending", False) and not _can_ride(scope):
        run_check(scope)
    if not getattr(scope, "_check_pending", False):
        return run_captured(scope.model, parts.blocks, rows, **inputs)
    L = parts.n_blocks
    mask = inputs.get("attention_mask")
    n = int(mask[0].sum()) if mask is not None else inputs["input_ids"].shape[1]
    k = min(n, N_CHECKED)
    keep = torch.arange(k, device=inputs["input_ids"].device)
    captured, logits = _forward_with_logits(scope, sorted(set(rows) | {L}), inputs, keep)
    scope._check_pending = False
    guarded(scope, lambda: _verdict(scope, _compare(scope, logits[0, :k], captured[L][0, :k])))
    if scope._corrupt is not None:
        raise scope._corrupt
    return {r: captured[r] for r in rows}
