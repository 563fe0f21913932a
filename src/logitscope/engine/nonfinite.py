"""NaN/inf in logits: one check and one message (:func:`check_finite`), and the cause named (:func:`explain`).

Every site that refuses non-finite logits raises ``NonFiniteError(where)`` through
:func:`check_finite` (the kernel raises the same error for its statistics);
:func:`explain` then turns ``where`` into ``where: cause``: NaN weights, padding, or overflow.

The kernel refuses non-finite logits (:class:`~logitscope.errors.NonFiniteError`) but only knows
where they are. :func:`explain` looks at the model and the captured streams to say why:

1. weights holding NaN/inf (a corrupt checkpoint);
2. padding: the batch was padded and every input alone gives finite streams (the model's
   attention produced NaN in pad positions and it leaked into real tokens);
3. overflow: the first stream row (or the head) where values stop being finite, and whether
   the model runs in float16/bfloat16 (where to try a wider dtype) or float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import NonFiniteError
from .rows import Row, block_of, depth_key

_HALF = {torch.float16: "float16 (largest value 65504)", torch.bfloat16: "bfloat16"}


def check_finite(t: torch.Tensor, what: str) -> torch.Tensor:
    """``t`` itself, or a :class:`NonFiniteError` ``"{what} hold NaN or inf; the usual causes: ..."``."""
    if not bool(torch.isfinite(t).all()):
        raise NonFiniteError(f"{what} hold NaN or inf")
    return t


def first_nonfinite_row(streams: torch.Tensor, rows: Sequence[Row]) -> Row | None:
    """The shallowest row of ``streams`` (S, N, d), labelled by ``rows``, holding NaN/inf."""
    bad = [r for i, r in enumerate(rows) if not bool(torch.isfinite(streams[i]).all())]
    if not bad:
        return None
    return min(bad, key=depth_key)


def explain(scope, err: NonFiniteError, *, streams: torch.Tensor, rows: Sequence, batch) -> NonFiniteError:
    """A :class:`NonFiniteError` that names the cause of ``err``.

    Args:
        scope: the :class:`~logitscope.Scope` whose lens failed.
        err: the kernel's error (it says where the logits are not finite).
        streams: (S, N, d_model) the real (unpadded) rows of the captured streams.
        rows: the stream row label of each of the S streams (the final stream last).
        batch: the :class:`~logitscope.engine.inputs.Encoded` inputs of the forward pass.
    """
    from ..arch.weights import nonfinite_parameters

    model = scope.model
    where = err.where
    bad = nonfinite_parameters(model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        return NonFiniteError(
            where, f"the model's weights hold NaN or inf ({shown}): a corrupt checkpoint or a broken edit"
        )
    first = first_nonfinite_row(streams, rows)
    padded = len({len(e.input_ids) for e in batch}) > 1 or len({len(e.lens_ids) for e in batch}) > 1
    if padded and all(_finite_alone(scope, enc, rows) for enc in batch):
        return NonFiniteError(
            where,
            "caused by padding: each input alone is finite, but padded together the model "
            "produced NaN/inf in pad positions that reached real tokens (e.g. a sliding-window "
            "attention row with no real token in reach); run these inputs with batch_size=1",
        )
    dtype = next(model.parameters()).dtype
    at = (
        f"the residual stream is already non-finite at stream row {first}"
        if first is not None
        else "the residual streams are finite, so the model's head (final norm → unembedding) overflows"
    )
    if dtype in _HALF:
        return NonFiniteError(
            where,
            f"{_HALF[dtype]} overflow: {at}; load the model with dtype='float32' "
            f"{'or bfloat16 ' if dtype == torch.float16 else ''}(its weights are finite)",
        )
    return NonFiniteError(
        where, f"the model overflows in {str(dtype).replace('torch.', '')}: {at} (its weights are finite)"
    )


def _finite_alone(scope, enc, rows: Sequence) -> bool:
    """Whether the captured streams of one unpadded input are all finite."""
    from .capture import run_captured
    from .inputs import model_inputs

    parts = scope.parts
    ints = sorted({block_of(r) for r in rows})
    kwargs = model_inputs(parts.kind, [enc], scope.input_device, scope.pad_id)
    captured = run_captured(scope.model, parts.blocks, ints, **kwargs)
    if not all(bool(torch.isfinite(t).all()) for t in captured.values()):
        return False
    with torch.inference_mode():
        return bool(torch.isfinite(parts.unembed(captured[parts.n_blocks][0])).all())
