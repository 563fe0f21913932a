"""DiffResult: a lens diff (two models, or two prompts) as plain numpy arrays.

Shapes: ``S`` aligned rows (A's stream rows), ``P`` positions (1 for two prompts: the last
position of each), ``k`` top-k.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.formats import format_of
from ..io.jsonable import json_floats


@dataclass
class DiffResult:
    """KL(A ‖ B), top-1 agreement and each side's top-k, per aligned row and position.

    Attributes:
        tokens: (P,) A's tokens; token_ids: (P,) their ids. b_tokens: (P,) B's tokens (the same
            for two models; for two prompts, the second prompt's last token).
        layer_names, layers: (S,) A's rows; b_layer_names, b_layers: (S,) the B row each meets
            (by fraction of depth when the models' depths differ).
        kl: (S, P) KL(A ‖ B) in nats.
        delta: (S, P) log p_B(t) - log p_A(t) for A's top-1 token t (< 0: B believes it less).
        a_top_ids, a_top_probs, b_top_ids, b_top_probs: (S, P, k) each side's top-k.
        vocab: display string of every id above.
        meta: mode (``"models"``/``"prompts"``), model names, depths, alignment, prompts.
    """

    tokens: list[str]
    token_ids: np.ndarray
    b_tokens: list[str]
    layer_names: list[str]
    layers: np.ndarray
    b_layer_names: list[str]
    b_layers: np.ndarray
    kl: np.ndarray
    delta: np.ndarray
    a_top_ids: np.ndarray
    a_top_probs: np.ndarray
    b_top_ids: np.ndarray
    b_top_probs: np.ndarray
    vocab: dict[int, str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        S, P = len(self.layer_names), len(self.tokens)
        for name in ("kl", "delta"):
            if np.shape(getattr(self, name)) != (S, P):
                raise ValueError(f"DiffResult.{name} must have shape ({S}, {P})")
        for name in ("a_top_ids", "a_top_probs", "b_top_ids", "b_top_probs"):
            if np.shape(getattr(self, name))[:2] != (S, P):
                raise ValueError(f"DiffResult.{name} must have shape ({S}, {P}, k)")
        if len(self.b_layer_names) != S or len(self.b_tokens) != P:
            raise ValueError("DiffResult: B's rows and tokens must match A's")

    @property
    def n_streams(self) -> int:
        return len(self.layer_names)

    @property
    def n_positions(self) -> int:
        return len(self.tokens)

    @property
    def top_k(self) -> int:
        return self.a_top_ids.shape[-1]

    @property
    def top1_agree(self) -> np.ndarray:
        """(S, P) bool: both sides have the same top-1 token."""
        return self.a_top_ids[..., 0] == self.b_top_ids[..., 0]

    def token(self, token_id: int) -> str:
        return self.vocab.get(int(token_id), f"<{int(token_id)}>")

    def per_layer(self) -> dict[str, np.ndarray]:
        """(S,) mean KL(A ‖ B) and top-1 agreement over positions."""
        return {"kl": self.kl.mean(1), "top1_agreement": self.top1_agree.mean(1)}

    def to_pandas(self):
        """Long format: one row per (row, position) with KL, delta, agreement and both top-k."""
        import pandas as pd

        S, P = self.kl.shape
        cols: dict[str, Any] = {
            "layer": np.repeat(self.layers, P),
            "layer_name": np.repeat(np.array(self.layer_names, dtype=object), P),
            "b_layer": np.repeat(self.b_layers, P),
            "b_layer_name": np.repeat(np.array(self.b_layer_names, dtype=object), P),
            "position": np.tile(np.arange(P), S),
            "token": np.tile(np.array(self.tokens, dtype=object), S),
            "b_token": np.tile(np.array(self.b_tokens, dtype=object), S),
            "kl": self.kl.ravel(),
            "delta": self.delta.ravel(),
            "top1_agree": self.top1_agree.ravel(),
        }
        for side in ("a", "b"):
            ids, probs = getattr(self, f"{side}_top_ids"), getattr(self, f"{side}_top_probs")
            for i in range(self.top_k):
                cols[f"{side}_top{i + 1}_token"] = np.array([self.token(t) for t in ids[..., i].ravel()], dtype=object)
                cols[f"{side}_top{i + 1}_prob"] = probs[..., i].ravel()
        return pd.DataFrame(cols)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats by :mod:`logitscope.io.jsonable`: float32 round-trips; NaN/inf as ``null``)."""

        tokens = lambda ids: [[[self.token(t) for t in cell] for cell in row] for row in ids]  # noqa: E731
        return {
            "meta": dict(self.meta),
            "tokens": list(self.tokens),
            "token_ids": self.token_ids.tolist(),
            "b_tokens": list(self.b_tokens),
            "layer_names": list(self.layer_names),
            "b_layer_names": list(self.b_layer_names),
            "kl": json_floats(self.kl),
            "delta": json_floats(self.delta),
            "top1_agree": self.top1_agree.tolist(),
            "a_top_tokens": tokens(self.a_top_ids),
            "a_top_probs": json_floats(self.a_top_probs),
            "b_top_tokens": tokens(self.b_top_ids),
            "b_top_probs": json_floats(self.b_top_probs),
            "per_layer": {k: json_floats(v) for k, v in self.per_layer().items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.json``, ``.csv`` or ``.parquet`` (from the suffix), atomically."""
        from ..io.atomic import atomic_file

        path = Path(path)
        fmt = format_of(path, {".json": "json", ".csv": "csv", ".parquet": "parquet"}, what="diff")
        with atomic_file(path) as tmp:
            if fmt == "json":
                tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
            elif fmt == "csv":
                self.to_pandas().to_csv(tmp, index=False)
            else:
                self.to_pandas().to_parquet(tmp, index=False)
        return path

    def plot(self, path=None, *, metric: str = "delta", **kwargs):
        """Heatmap: ``delta`` (diverging, 0 = B agrees with A's top-1 probability) or ``kl``.

        ``.png``/``.svg``/``.pdf`` via matplotlib, ``.html`` via plotly. See
        :func:`logitscope.render.diff.plot_diff`.
        """
        from ..render.diff import plot_diff

        return plot_diff(self, path, metric=metric, **kwargs)

    def show(self, **kwargs):
        """Two linked lens grids (A, B) with the per-layer KL at the clicked position, for a notebook.
        See :func:`logitscope.render.widget.show`."""
        from ..render.widget import show

        return show(self, **kwargs)

    def _repr_html_(self) -> str:
        return self.show()._repr_html_()

    def __repr__(self) -> str:
        m = self.meta
        what = f"{m.get('model_a')} vs {m.get('model_b')}" if m.get("mode") == "models" else f"{m.get('model_a')}"
        return (
            f"DiffResult({m.get('mode', '?')}: {what}, {self.n_streams} rows x {self.n_positions} positions, "
            f"final KL {float(self.kl[-1].mean()):.4f})"
        )
