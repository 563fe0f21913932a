"""The lens engine: captured rows → lens transform → the model's own tail → streaming statistics.

Every lens query goes through here::

    encoded inputs (engine.inputs)
      → one forward with hooks, pad positions guarded (capture: engine.capture / engine.sublayers)
      → the real positions of each row, (S, N, d)                 (real_rows)
      → lens.transform(row, h) for every row but the final one     (apply_lens; engine.lens)
      → tail → statistics, in row chunks, never S × N × vocab      (lens_stats; engine.kernel)
        or tail → full logits of chosen rows, on request           (row_logits)

The final stream row ``L`` is always captured and never transformed: it is the model's own
output, the reference of ``kl_to_final``. Non-finite logits raise one
:class:`~logitscope.errors.NonFiniteError` whose message names the cause
(:mod:`logitscope.engine.nonfinite`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError, NonFiniteError
from .capture import pad_guard
from .check import capture_checked
from .inputs import Encoded, model_inputs
from .kernel import StreamStats, stream_stats
from .lens import Lens, is_identity
from .rows import Row, is_sublayer, row_name


def check_rows(lens: Lens | None, rows: Sequence[Row], n_blocks: int) -> None:
    """Refuse rows ``lens`` has no transform for (``InputError`` naming them)."""
    if is_identity(lens):
        return
    missing = [r for r in rows if r != n_blocks and not lens.covers(r)]
    if not missing:
        return
    if any(is_sublayer(r) for r in missing):
        raise InputError(f"sublayers=True works with the logit lens only, not with a {lens.kind} lens")
    shown = ", ".join(row_name(r) for r in missing[:6]) + (" ..." if len(missing) > 6 else "")
    raise InputError(f"the {lens.kind} lens {lens.describe()!r} has no transform for layer {shown}")


def capture(scope, batch: Sequence[Encoded], rows: Sequence[Row], *, tap=None) -> dict[Row, torch.Tensor]:
    """One forward over a right-padded batch: ``{row: (B, T, d)}`` for every row asked.

    Pad positions of every block's input are zeroed (:func:`~logitscope.engine.capture.pad_guard`),
    so a NaN in a pad position never reaches a real one. ``tap``: the model's
    :class:`~logitscope.engine.sublayers.SublayerTap`, needed when ``rows`` hold sub-layer rows.
    """
    parts = scope.parts
    kwargs = model_inputs(parts.kind, batch, scope.input_device, scope.pad_id)
    real = kwargs.get("decoder_attention_mask", kwargs["attention_mask"])  # (B, T) the blocks' sequence
    with pad_guard(parts.blocks, real):
        if tap is None:  # a pending self-check (weights on disk) rides along this forward
            return capture_checked(scope, rows, **kwargs)
        from .sublayers import run_captured_rows

        ride = lambda ints, **kw: capture_checked(scope, ints, **kw)  # noqa: E731 - the check rides along
        return run_captured_rows(scope.model, parts.blocks, tap, rows, capture=ride, **kwargs)


def real_rows(captured: dict[Row, torch.Tensor], rows: Sequence[Row], lengths: Sequence[int], device) -> torch.Tensor:
    """(S, sum(lengths), d): the real (unpadded) positions of each row, popped from ``captured``.

    The batch is right-padded, so input ``b``'s real positions are its first ``lengths[b]``: they
    are copied as slices. The result is a transposed view of one position-major ``(N, S, d)``
    buffer, so each chunk of positions is a contiguous block of rows for the kernel (no gather
    per chunk; :func:`~logitscope.engine.kernel.stream_stats`). Popping as we copy keeps the
    peak near one copy of the streams. Rows may sit on other devices; models that pad
    internally (Longformer) are cut back to the batch's width.
    """
    ref = captured[rows[-1]]
    buf = ref.new_empty(sum(lengths), len(rows), ref.shape[-1], device=device)  # (N, S, d)
    del ref
    streams = buf.transpose(0, 1)  # (S, N, d) view
    for i, r in enumerate(rows):
        h = captured.pop(r).to(device)
        offset = 0
        for b, n in enumerate(lengths):
            streams[i, offset : offset + n] = h[b, :n]
            offset += n
        del h
    return streams


def apply_lens(lens: Lens | None, streams: torch.Tensor, rows: Sequence[Row], final: int) -> torch.Tensor:
    """``streams[i] = lens.transform(rows[i], streams[i])`` in place, for every row but ``final``."""
    if is_identity(lens):
        return streams
    with torch.no_grad():
        for i, row in enumerate(rows):
            if row == final:
                continue
            h = streams[i]
            out = lens.transform(row, h)
            if out is not h:
                streams[i] = out
    return streams


def final_last(rows: Sequence[Row], final: int) -> list[Row]:
    """``rows`` with the final stream row moved (or added) last: the kernel's KL reference."""
    return [r for r in rows if r != final] + [final]


def lens_stats(
    scope,
    batch: Sequence[Encoded],
    rows: Sequence[Row],
    lens: Lens | None = None,
    *,
    tap=None,
    targets: torch.Tensor,
    track: torch.Tensor | None = None,
    top_k: int = 5,
) -> tuple[StreamStats, list[Row]]:
    """Statistics of ``lens`` at ``rows`` over the real positions of a batch of encoded inputs.

    Returns:
        ``(stats, stat_rows)``: :class:`~logitscope.engine.kernel.StreamStats` over
        ``stat_rows`` (``rows`` with the final row last) × the batch's positions in order.
    """
    parts = scope.parts
    L = parts.n_blocks
    stat_rows = final_last(rows, L)
    captured = capture(scope, batch, stat_rows, tap=tap)
    lengths = [len(e.lens_ids) for e in batch]
    streams = real_rows(captured, stat_rows, lengths, captured[L].device)
    apply_lens(lens, streams, stat_rows, L)
    try:
        with parts.materialized():  # an offloaded head: on its device once, not per chunk
            stats = stream_stats(
                streams,
                parts.unembed,
                targets=targets,
                track=track,
                top_k=top_k,
                chunk_rows=scope.chunk_size,
                vocab_size=parts.vocab_size,
                device=parts.head_device,
            )
    except NonFiniteError as err:  # say why: NaN weights, padding or overflow (nonfinite.py)
        from .nonfinite import explain

        raise explain(scope, err, streams=streams, rows=stat_rows, batch=batch) from err
    return stats, stat_rows


def row_logits(scope, h: torch.Tensor, row: Row, lens: Lens | None = None) -> torch.Tensor:
    """Float32 logits ``tail(lens.transform(row, h))`` of one row's streams ``h`` (N, d), checked finite."""
    from .nonfinite import check_finite

    parts = scope.parts
    with torch.inference_mode():
        if not is_identity(lens) and row != parts.n_blocks:
            h = lens.transform(row, h.to(parts.head_device))
        return check_finite(parts.unembed(h), f"the lens logits of row {row_name(row)}")
