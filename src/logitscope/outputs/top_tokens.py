"""The top-k tokens of a logits matrix at each position (:class:`TopTokens`), as plain arrays.

:meth:`logitscope.outputs.logits.LogitsResult.top` and the ``logits`` command build one; it
round-trips through JSON (``to_dict`` / ``from_dict``, schema in docs/logits_embeddings.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..engine.inputs import check_top_k, display_tokens
from ..errors import InputError
from ..io.jsonable import floats_from_json, json_floats
from .display import shown

SCHEMA_VERSION = 1


@dataclass
class TopTokens:
    """The top-k tokens of a logits matrix at each position, as plain lists and numpy arrays.

    ``P`` = positions shown, ``k`` = tokens kept per position. This is the ``--format json``
    payload of ``logitscope logits`` (see ``docs/logits_embeddings.md``); :meth:`from_dict`
    inverts :meth:`to_dict`.

    Attributes:
        positions: (P,) index of each row among the positions of the source result.
        tokens: (P,) display string of the token at each position.
        token_ids: (P,) its id.
        top_ids: (P, k) most likely tokens first; top_tokens: (P, k) their display strings.
        top_probs: (P, k) softmax probabilities; top_logits: (P, k) the raw logits.
        target_ids: (P,) the token each position is scored against, -1 for none;
            target_tokens: its display string (``None`` for none).
        target_probs: (P,) its probability (NaN for none); target_ranks: (P,) its rank, 0 = top-1
            (-1 for none).
        source_tokens: tokens of the input that are not positions (encoder input, or the prompt of
            a causal ``generate``), else ``None``.
        generated_text: the greedy continuation when ``generate=`` was used, else ``None``.
        meta: model name, model type, kind.
    """

    positions: np.ndarray
    tokens: list[str]
    token_ids: np.ndarray
    top_ids: np.ndarray
    top_tokens: list[list[str]]
    top_probs: np.ndarray
    top_logits: np.ndarray
    target_ids: np.ndarray
    target_tokens: list[str | None]
    target_probs: np.ndarray
    target_ranks: np.ndarray
    source_tokens: list[str] | None = None
    generated_text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        P = len(self.tokens)
        self.positions = np.asarray(self.positions, dtype=np.int64).reshape(P)
        self.token_ids = np.asarray(self.token_ids, dtype=np.int64).reshape(P)
        self.top_ids = np.asarray(self.top_ids, dtype=np.int64).reshape(P, -1)
        self.top_probs = np.asarray(self.top_probs, dtype=np.float32).reshape(self.top_ids.shape)
        self.top_logits = np.asarray(self.top_logits, dtype=np.float32).reshape(self.top_ids.shape)
        self.target_ids = np.asarray(self.target_ids, dtype=np.int64).reshape(P)
        self.target_probs = np.asarray(self.target_probs, dtype=np.float32).reshape(P)
        self.target_ranks = np.asarray(self.target_ranks, dtype=np.int64).reshape(P)

    __repr__ = shown("top_tokens_repr")
    _repr_html_ = shown("top_tokens_html")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (schema in ``docs/logits_embeddings.md``); floats by :mod:`logitscope.io.jsonable` (NaN as ``null``)."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = json_floats(value)
            out[f.name] = copy.deepcopy(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopTokens:
        """Rebuild from :meth:`to_dict` output (e.g. ``json.load`` of ``--format json``)."""
        kwargs = {f.name: copy.deepcopy(data[f.name]) for f in fields(cls) if f.name in data}
        for name in ("target_probs", "top_probs", "top_logits"):
            if name in kwargs:
                kwargs[name] = floats_from_json(kwargs[name])
        return cls(**kwargs)


def top_tokens(
    logits: torch.Tensor,
    k: int,
    *,
    token_ids,
    target_ids,
    tokenizer,
    positions=None,
    **extra,
) -> TopTokens:
    """Top-k summary of a (P, V) logits matrix (rows restricted to ``positions`` if given)."""
    P, V = logits.shape
    k = check_top_k(k, V, "k")
    rows = np.arange(P) if positions is None else np.asarray(positions, dtype=np.int64).reshape(-1)
    if rows.size and not (rows.min() >= -P and rows.max() < P):
        raise InputError(f"positions must be in range for {P} positions")
    rows = rows % P if P else rows
    z = logits[torch.as_tensor(rows, dtype=torch.long, device=logits.device)].float()
    logp = z.log_softmax(-1)
    top_z, top_i = z.topk(k, dim=-1)
    tgt = torch.as_tensor(np.asarray(target_ids, dtype=np.int64)[rows], device=z.device)
    has = tgt >= 0
    tgt_logp = logp.gather(1, tgt.clamp(min=0).unsqueeze(1)).squeeze(1)
    ranks = (z > z.gather(1, tgt.clamp(min=0).unsqueeze(1))).sum(-1)
    top_i = top_i.cpu().numpy()
    ids = np.asarray(token_ids, dtype=np.int64)[rows]
    tgt_np = tgt.cpu().numpy()
    wanted = sorted(set(top_i.ravel().tolist()) | set(ids.tolist()) | set(tgt_np[tgt_np >= 0].tolist()))
    vocab = dict(zip(wanted, display_tokens(wanted, tokenizer)))
    return TopTokens(
        positions=rows,
        tokens=[vocab[int(i)] for i in ids],
        token_ids=ids,
        top_ids=top_i,
        top_tokens=[[vocab[int(i)] for i in row] for row in top_i],
        top_probs=(top_z - z.logsumexp(-1, keepdim=True)).exp().cpu().numpy(),
        top_logits=top_z.cpu().numpy(),
        target_ids=tgt_np,
        target_tokens=[vocab[int(i)] if i >= 0 else None for i in tgt_np],
        target_probs=torch.where(has, tgt_logp.exp(), torch.full_like(tgt_logp, float("nan"))).cpu().numpy(),
        target_ranks=torch.where(has, ranks, torch.full_like(ranks, -1)).cpu().numpy(),
        **extra,
    )
