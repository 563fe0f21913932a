"""Every layer's distribution at one position, and the per-layer KL between two of them.

The lens kernel reduces every (layer, position) cell to statistics without keeping a vocabulary
row. The panel and the compare view need more at *one* position: the rank of a token in the layer
below, a token's probability at every layer, KL between two models' layer distributions. That is
``(L + 1) × vocab`` logits: the streams at that position through the model's own tail
(:meth:`~logitscope.arch.parts.ModelParts.unembed`), exactly as the lens projects them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine.capture import run_captured
from ..engine.inputs import Encoded, encode
from ..errors import InputError, NonFiniteError
from ..lens.run import layer_name, model_inputs


@dataclass
class Column:
    """The lens at one position, all layers.

    Attributes:
        logits: (S, V) float32, S = n_blocks + 1 (row 0 = embeddings, last = model output).
        enc: the encoded input.
        position: the lens position (non-negative).
    """

    logits: torch.Tensor
    enc: Encoded
    position: int
    rows: list | None = None  # the rows (ints, and "l.attn" names with sub-layers); None: 0..S-1

    @property
    def layer_names(self) -> list[str]:
        rows = self.rows if self.rows is not None else range(self.logits.shape[0])
        return [layer_name(r) if isinstance(r, int) else r for r in rows]


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


def column(scope, enc: Encoded, position: int, *, sublayers: bool = False, tuned=None) -> Column:
    """The (S, V) lens logits at ``position`` of an encoded input (negative counts from the end).

    ``sublayers``: also the ``"l.attn"`` rows, as ``scope.lens(sublayers=True)`` (S = 2L + 1).
    ``tuned``: a checked :class:`~logitscope.tuned.TunedLens` translating rows 0..L-1 first.
    """
    parts = scope.require_head()
    n = len(enc.lens_ids)
    pos = position + n if position < 0 else position
    if not 0 <= pos < n:
        raise InputError(f"position {position} out of range: the input has {n} positions")
    if sublayers and tuned is not None:
        raise InputError("sublayers=True works with the logit lens only, not with a tuned lens")
    rows: list = list(range(parts.n_blocks + 1))
    kwargs = model_inputs(parts.kind, [enc], scope.input_device, scope.pad_id)
    if sublayers:
        from ..engine.sublayers import layout_of, run_captured_rows, with_sublayers

        layout = layout_of(parts, scope.model.config)
        rows = with_sublayers(rows, layout)
        captured = run_captured_rows(scope.model, parts.blocks, layout, rows, **kwargs)
    else:
        captured = run_captured(scope.model, parts.blocks, rows, **kwargs)
    h = torch.stack([captured.pop(r)[0, pos].to(parts.head_device) for r in rows])  # (S, d)
    if tuned is not None:
        with torch.no_grad():
            h = torch.stack([tuned.translate(h[i], r) for i, r in enumerate(rows)])  # (S, d)
    with torch.inference_mode():
        z = parts.unembed(h)  # (S, V) float32
    if not bool(torch.isfinite(z).all()):
        raise NonFiniteError("the lens logits hold NaN or inf at this position")
    return Column(z, enc, pos, rows if sublayers else None)


def follow(col: Column, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and ranks (0 = top-1: the count of strictly larger logits) of ``ids`` at every layer.

    Returns:
        ``(probs, ranks)``, both (K, S).
    """
    z = col.logits
    if not ids:
        S = z.shape[0]
        return np.zeros((0, S), np.float32), np.zeros((0, S), np.int64)
    idx = torch.tensor(ids, dtype=torch.long, device=z.device)
    zt = z[:, idx]  # (S, K)
    logp = zt - z.logsumexp(-1, keepdim=True)
    ranks = torch.stack(
        [(z > zt[:, k : k + 1]).sum(-1) for k in range(len(ids))], 1
    )  # (S, K), one (S, V) mask at a time
    return logp.exp().T.cpu().numpy(), ranks.T.cpu().numpy()


def entropy(col: Column) -> np.ndarray:
    """(S,) entropy of every layer's distribution at the position, nats."""
    logp = col.logits.double().log_softmax(-1)
    return (-(logp.exp() * logp).sum(-1)).float().cpu().numpy()


def aligned_rows(n_a: int, n_b: int) -> list[tuple[int, int]]:
    """Pair the streams of two models by fraction of depth.

    The shallower model's every stream is paired with the deeper model's stream at the same
    fraction of depth (rounded half up): embeddings with embeddings, output with output. With
    equal depths this is the identity.

    Args:
        n_a, n_b: number of blocks of each model.
    """
    from ..diff.run import aligned_rows as deeper_row  # the one depth rule, shared with `logitscope diff`

    if min(n_a, n_b) == 0:
        return [(0, 0)]
    if n_a <= n_b:
        return list(enumerate(deeper_row(n_a, n_b)))
    return [(a, b) for b, a in enumerate(deeper_row(n_b, n_a))]


def kl_by_layer(a: Column, b: Column, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """KL(a ‖ b) and KL(b ‖ a) in nats for each pair of stream rows, in float64."""
    la = a.logits.double().log_softmax(-1)
    lb = b.logits.to(la.device).double().log_softmax(-1)
    ia = torch.tensor([p[0] for p in pairs], device=la.device)
    ib = torch.tensor([p[1] for p in pairs], device=la.device)
    pa, pb = la[ia], lb[ib]  # (n, V)
    kl_ab = (pa.exp() * (pa - pb)).sum(-1)
    kl_ba = (pb.exp() * (pb - pa)).sum(-1)
    return kl_ab.clamp(min=0).cpu().numpy(), kl_ba.clamp(min=0).cpu().numpy()
