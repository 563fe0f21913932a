"""AttributionResult: each sub-layer's direct contribution to a target logit, as numpy arrays.

Shapes: ``C = 2L + 1`` components (``"embed"``, ``"1.attn"``, ``"1.mlp"``, …, ``"L.mlp"``),
``P`` positions. ``contributions.sum(0) + norm_bias + head_bias == logit`` at every position (to
float precision; ``meta["max_error"]`` is the largest gap found).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.jsonable import json_floats


@dataclass
class AttributionResult:
    """Direct logit attribution over one input.

    Attributes:
        tokens: (P,) display strings of the tokens; token_ids: (P,) their ids.
        target_ids: (P,) the token whose logit is attributed at each position.
        components: (C,) ``"embed"``, then ``"l.attn"`` and ``"l.mlp"`` for each block ``l``.
        contributions: (C, P) each component's share of the target logit, through the final
            norm frozen at the final stream's scale and the (linear) head.
        norm_bias: (P,) the final norm's bias ``β`` through the head (0 for RMSNorm).
        head_bias: (P,) the head's bias, logit bias (BART) and other constant terms.
        logit: (P,) the model's own target logit, before any softcap (what is attributed).
        final_logit: (P,) the model's output logit (after softcap; equal to ``logit`` otherwise).
        norm_scale: (P,) the final norm's scale ``s(x_L)`` the attribution froze.
        vocab: display string of every id above.
        meta: model, model type, block kind, norm kind, softcap, max_error.
    """

    tokens: list[str]
    token_ids: np.ndarray
    target_ids: np.ndarray
    components: list[str]
    contributions: np.ndarray
    norm_bias: np.ndarray
    head_bias: np.ndarray
    logit: np.ndarray
    final_logit: np.ndarray
    norm_scale: np.ndarray
    vocab: dict[int, str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        P, C = len(self.tokens), len(self.components)
        for name in ("token_ids", "target_ids", "norm_bias", "head_bias", "logit", "final_logit", "norm_scale"):
            if np.shape(getattr(self, name)) != (P,):
                raise ValueError(f"AttributionResult.{name} must have shape ({P},)")
        if np.shape(self.contributions) != (C, P):
            raise ValueError(f"AttributionResult.contributions must have shape ({C}, {P})")

    @property
    def n_positions(self) -> int:
        return len(self.tokens)

    @property
    def target_tokens(self) -> list[str]:
        return [self.vocab.get(int(i), f"<{int(i)}>") for i in self.target_ids]

    @property
    def bias(self) -> np.ndarray:
        """(P,) every constant term: ``norm_bias + head_bias``."""
        return self.norm_bias + self.head_bias

    def by_kind(self) -> dict[str, np.ndarray]:
        """(P,) totals of the embeddings, all attention outputs and all MLP outputs."""
        kinds = np.array([c.split(".")[-1] for c in self.components])
        return {k: self.contributions[kinds == k].sum(0) for k in ("embed", "attn", "mlp")}

    def position(self, position: int) -> int:
        """``position`` as an index ``0 .. P-1`` (negative counts from the end)."""
        P = self.n_positions
        if not -P <= position < P:
            from ..errors import InputError

            raise InputError(f"position {position} out of range: the input has {P} positions")
        return position % P

    def to_pandas(self):
        """Long format: one row per (component, position), plus a ``"bias"`` row per position.

        Columns: component, position, token, target_id, target_token, contribution, logit.
        """
        import pandas as pd

        C, P = self.contributions.shape
        names = list(self.components) + ["bias"]
        values = np.vstack([self.contributions, self.bias[None]])
        return pd.DataFrame(
            {
                "component": np.repeat(np.array(names, dtype=object), P),
                "position": np.tile(np.arange(P), C + 1),
                "token": np.tile(np.array(self.tokens, dtype=object), C + 1),
                "target_id": np.tile(self.target_ids, C + 1),
                "target_token": np.tile(np.array(self.target_tokens, dtype=object), C + 1),
                "contribution": values.ravel(),
                "logit": np.tile(self.logit, C + 1),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats by :mod:`logitscope.io.jsonable`; NaN/inf as ``null``)."""

        C, P = self.contributions.shape
        return {
            "meta": {k: v for k, v in self.meta.items()},
            "tokens": list(self.tokens),
            "token_ids": self.token_ids.tolist(),
            "target_ids": self.target_ids.tolist(),
            "target_tokens": self.target_tokens,
            "components": list(self.components),
            "contributions": [json_floats(row) for row in self.contributions],
            "norm_bias": json_floats(self.norm_bias),
            "head_bias": json_floats(self.head_bias),
            "logit": json_floats(self.logit),
            "final_logit": json_floats(self.final_logit),
            "norm_scale": json_floats(self.norm_scale),
        }

    def plot(self, path=None, *, position: int | None = None, **kwargs):
        """Bars of one position's contributions (``position=``), else a components × positions heatmap.

        ``.png``/``.svg``/``.pdf`` via matplotlib, ``.html`` via plotly. See
        :func:`logitscope.render.attribution.plot_attribution`.
        """
        from ..render.attribution import plot_attribution

        return plot_attribution(self, path, position=position, **kwargs)

    def _repr_html_(self) -> str:
        from ..render.reprs import attribution_html

        return attribution_html(self)

    def __repr__(self) -> str:
        text = "".join(self.tokens)
        text = text if len(text) <= 40 else text[:37] + "..."
        return (
            f"AttributionResult({self.meta.get('model', '?')}, {len(self.components)} components x "
            f"{self.n_positions} positions, text={text!r})"
        )
