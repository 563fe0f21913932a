"""The viewer's columns: every row of the lens at one position, and two positions compared row by row.

Both are the library's own numbers, computed by the library's own paths (never recomputed here):

* the lens column is :meth:`~logitscope.Scope.lens` over the whole input, with the column's
  tokens tracked, read at one position: the same floats as ``scope.lens(text, track=ids)``;
* the compare view is :func:`logitscope.diff.run.pair_stats` on the two positions' rows, each
  through its own model's tail: the numbers of ``scope.compare(text, against=other)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..diff.run import pair_stats
from ..engine.inputs import Encoded, encode
from ..engine.rows import row_name
from ..engine.run import capture
from ..errors import InputError


def encode_input(scope, text: str, target: str | None) -> Encoded:
    """Tokenise like the lens does (same positions, same targets)."""
    parts = scope.require_head()
    return encode(
        text,
        kind=parts.kind,
        tokenizer=scope.tokenizer,
        config=scope.model.config,
        vocab_size=parts.vocab_size,
        target=target,
    )


def lens_position(position: int, n: int) -> int:
    """A position of an input of ``n`` lens positions (negative counts from the end), checked."""
    pos = position + n if position < 0 else position
    if not 0 <= pos < n:
        raise InputError(f"position {position} out of range: the input has {n} positions")
    return pos


@dataclass
class LensColumn:
    """The lens at one position, every row (``S`` rows, ``K`` followed tokens).

    Attributes:
        position: the lens position (non-negative).
        layer_names: (S,) row names.
        probs, ranks: (K, S) probability and rank (0 = top-1) of each followed token.
        entropy: (S,) entropy of each row's distribution, nats (float32).
        top1_ids: (S,) each row's most likely token.
    """

    position: int
    layer_names: list[str]
    probs: np.ndarray
    ranks: np.ndarray
    entropy: np.ndarray
    top1_ids: list[int]


def lens_column(scope, text: str, target, position: int, ids: list[int], *, sublayers=False, lens=None) -> LensColumn:
    """``scope.lens(text, target=target, track=ids, sublayers=sublayers, lens=lens)`` read at ``position``."""
    enc = encode_input(scope, text, target)
    pos = lens_position(position, len(enc.lens_ids))
    res = scope.lens(text, target=target, track=ids or None, sublayers=sublayers, lens=lens)
    return LensColumn(
        position=pos,
        layer_names=list(res.layer_names),
        probs=res.tracked_probs[:, :, pos],
        ranks=res.tracked_ranks[:, :, pos],
        entropy=res.entropy[:, pos],
        top1_ids=res.top_ids[:, pos, 0].tolist(),
    )


def target_start(enc: Encoded, has_target: bool) -> int | None:
    """The first lens position scored against a given target (its first token's predictor), or None."""
    if not has_target:
        return None
    return next((p for p, t in enumerate(enc.target_ids) if t >= 0), None)


def paired_position(pos: int, enc: Encoded, start: int | None, other: Encoded, other_start: int | None) -> int:
    """The position of ``other`` compared with position ``pos`` (non-negative) of ``enc``.

    Positions pair by token index, except that a target's positions pair with the other target's
    (the k-th target token with the k-th), so a prompt with and without a target, or with targets
    after prompts of different lengths, line up where they say the same thing. ``start``,
    ``other_start``: each side's :func:`target_start`.
    """
    n = len(other.lens_ids)
    if start is not None and other_start is not None and pos >= start:
        q = other_start + (pos - start)
    elif other_start is not None and (start is None or pos < start):
        q = min(pos, max(other_start - 1, 0))  # a prompt position: stay in the other's prompt
    else:
        q = pos
    return max(0, min(q, n - 1))


@dataclass
class Rows:
    """The stream rows ``0..L`` of one input at one position: ``h`` (S, d) on the head's device."""

    scope: object
    enc: Encoded
    position: int
    h: torch.Tensor

    @property
    def layer_names(self) -> list[str]:
        return [row_name(r) for r in range(self.h.shape[0])]


def position_rows(scope, enc: Encoded, position: int) -> Rows:
    """Capture every stream row of ``enc`` and keep one position."""
    parts = scope.require_head()
    pos = lens_position(position, len(enc.lens_ids))
    rows = list(range(parts.n_blocks + 1))
    captured = capture(scope, [enc], rows)
    h = torch.stack([captured.pop(r)[0, pos].to(parts.head_device) for r in rows])  # (S, d)
    return Rows(scope, enc, pos, h)


def top1(rows: Rows) -> list[int]:
    """Each row's most likely token (the model's own tail, as the lens)."""
    with torch.inference_mode():
        return rows.scope.parts.unembed(rows.h).argmax(-1).tolist()


def kl_by_layer(a: Rows, b: Rows, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """KL(a ‖ b) and KL(b ‖ a) in nats for each pair of rows: :func:`~logitscope.diff.run.pair_stats`."""
    pa, pb = a.scope.parts, b.scope.parts
    ia, ib = [p[0] for p in pairs], [p[1] for p in pairs]
    h_a, h_b = a.h[ia], b.h[ib]
    kw = dict(top_k=1, chunk_rows=a.scope.chunk_size)
    ab = pair_stats(h_a, h_b, pa.unembed, pb.unembed, device=pa.head_device, **kw)["kl"]
    ba = pair_stats(h_b, h_a, pb.unembed, pa.unembed, device=pb.head_device, **kw)["kl"]
    return ab.numpy(), ba.numpy()
