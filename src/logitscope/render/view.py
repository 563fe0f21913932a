"""Which rows (streams) and columns (positions) of a result a view shows."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def select_positions(n_positions: int, positions=None) -> list[int]:
    """Position indices to show.

    Args:
        n_positions: P, the number of positions in the result.
        positions: ``None`` (all), a ``slice``/``range``, an int, or a list of ints (negative count
            from the end).
    """
    if positions is None:
        return list(range(n_positions))
    if isinstance(positions, slice):
        return list(range(n_positions))[positions]
    if isinstance(positions, (int, np.integer)):
        positions = [int(positions)]
    out = []
    for p in positions:
        q = int(p) + n_positions if int(p) < 0 else int(p)
        if not 0 <= q < n_positions:
            raise InputError(f"position {p} out of range: the result has {n_positions} positions")
        out.append(q)
    if not out:
        raise InputError("no positions selected")
    return out


def select_rows(n_streams: int, stride: int | None = None) -> list[int]:
    """Row indices to show: every ``stride``-th stream from the embeddings, plus always the last."""
    stride = int(stride or 1)
    if stride < 1:
        raise InputError(f"stride must be at least 1, got {stride}")
    return sorted(set(range(0, n_streams, stride)) | {n_streams - 1})


def auto_stride(n_streams: int, max_rows: int = 64) -> int:
    """The smallest stride that shows at most ``max_rows`` rows."""
    return max(1, -(-(n_streams - 1) // (max_rows - 1)))


def top1_matches_target(result) -> np.ndarray:
    """(S, P) bool: the lens's top-1 token is the target at that position."""
    if not result.top_k:
        return np.zeros(result.entropy.shape, dtype=bool)
    return (result.top_ids[:, :, 0] == result.target_ids[None, :]) & (result.target_ids[None, :] >= 0)
