"""LensResult: what the logit lens found for one input, as plain numpy arrays.

Shapes use ``S`` = streams (layers shown), ``P`` = positions, ``k`` = top-k, ``K`` = tracked
tokens. A result never refers back to the model: rendering and export work from it alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.jsonable import json_floats
from .export import SCHEMA_VERSION, format_for, read_frame

_ARRAYS = {  # name: (dtype, shape spec)
    "token_ids": ("int64", "P"),
    "layers": ("int64", "S"),
    "entropy": ("float32", "SP"),
    "kl_to_final": ("float32", "SP"),
    "top_ids": ("int64", "SPk"),
    "top_probs": ("float32", "SPk"),
    "target_ids": ("int64", "P"),
    "target_prob": ("float32", "SP"),
    "target_logprob": ("float32", "SP"),
    "target_rank": ("int64", "SP"),
    "tracked_ids": ("int64", "K"),
    "tracked_probs": ("float32", "KSP"),
    "tracked_ranks": ("int64", "KSP"),
}


@dataclass
class LensResult:
    """The logit lens over one input.

    Attributes:
        tokens: (P,) display strings of the tokens at the lens positions.
        token_ids: (P,) their ids.
        layer_names: (S,) ``"embed"`` for stream 0, else the block number ``"1"`` .. ``"L"``.
        layers: (S,) stream index of each row (0 = embeddings, L = final).
        entropy: (S, P) entropy of the lens distribution, nats.
        kl_to_final: (S, P) KL(final ‖ row), nats.
        top_ids: (S, P, k) top-k token ids, most likely first; top_probs: (S, P, k) their probabilities.
        target_ids: (P,) token scored at each position (-1: none).
        target_prob, target_logprob: (S, P) its probability / log-probability (NaN where no target).
        target_rank: (S, P) its rank, 0 = top-1 (-1 where no target).
        tracked_ids: (K,) tokens passed as ``track=``; tracked_probs, tracked_ranks: (K, S, P).
        vocab: display string of every id appearing in the arrays above.
        source_tokens: encoder input tokens (encoder-decoder models), else ``None``.
        meta: model name, model type, kind, number of blocks.
    """

    tokens: list[str]
    token_ids: np.ndarray
    layer_names: list[str]
    layers: np.ndarray
    entropy: np.ndarray
    kl_to_final: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    target_ids: np.ndarray
    target_prob: np.ndarray
    target_logprob: np.ndarray
    target_rank: np.ndarray
    tracked_ids: np.ndarray
    tracked_probs: np.ndarray
    tracked_ranks: np.ndarray
    vocab: dict[int, str]
    source_tokens: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dims = {
            "S": len(self.layer_names),
            "P": len(self.tokens),
            "k": np.shape(self.top_ids)[-1] if np.ndim(self.top_ids) == 3 else 0,
            "K": len(self.tracked_ids),
        }
        for name, (dtype, spec) in _ARRAYS.items():
            arr = np.asarray(getattr(self, name), dtype=dtype)
            expected = tuple(dims[c] for c in spec)
            if arr.shape != expected:
                raise ValueError(f"LensResult.{name} has shape {arr.shape}, expected {expected} ({spec})")
            setattr(self, name, arr)
        self.vocab = {int(k): v for k, v in self.vocab.items()}

    # -- sizes and labels --------------------------------------------------------------------
    @property
    def n_streams(self) -> int:
        return len(self.layer_names)

    @property
    def n_positions(self) -> int:
        return len(self.tokens)

    @property
    def top_k(self) -> int:
        return self.top_ids.shape[-1]

    def token(self, token_id: int) -> str:
        """Display string of a token id that appears in this result."""
        return self.vocab.get(int(token_id), f"<{int(token_id)}>")

    @property
    def top_tokens(self) -> list[list[list[str]]]:
        """(S, P, k) display strings of the top-k tokens."""
        return [[[self.token(i) for i in cell] for cell in row] for row in self.top_ids]

    @property
    def target_tokens(self) -> list[str | None]:
        """(P,) display strings of the targets (``None`` where there is none)."""
        return [self.token(i) if i >= 0 else None for i in self.target_ids]

    @property
    def tracked_tokens(self) -> list[str]:
        return [self.token(i) for i in self.tracked_ids]

    def __repr__(self) -> str:
        text = "".join(self.tokens)
        text = text if len(text) <= 40 else text[:37] + "..."
        return (
            f"LensResult({self.meta.get('model', '?')}, {self.n_streams} streams x "
            f"{self.n_positions} positions, top_k={self.top_k}, text={text!r})"
        )

    # -- export ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the schema documented in README); :meth:`from_dict` inverts it."""

        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "meta": dict(self.meta),
            "tokens": list(self.tokens),
            "layer_names": list(self.layer_names),
            "source_tokens": self.source_tokens,
            "top_tokens": self.top_tokens,
            "target_tokens": self.target_tokens,
            "tracked_tokens": self.tracked_tokens,
            "vocab": {str(k): v for k, v in sorted(self.vocab.items())},
        }
        for name in _ARRAYS:
            out[name] = json_floats(getattr(self, name))  # float32 round-trips; NaN/inf -> null
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. a loaded JSON file)."""
        kwargs = {}
        for name, (dtype, _) in _ARRAYS.items():
            values = data[name]
            if dtype.startswith("float"):
                values = np.array(values, dtype=object)
                values = np.where(values == None, np.nan, values)  # noqa: E711
            kwargs[name] = np.asarray(values, dtype=dtype)
        k = len(data["top_ids"][0][0]) if data["top_ids"] and data["top_ids"][0] else 0
        if kwargs["top_ids"].size == 0:
            kwargs["top_ids"] = kwargs["top_ids"].reshape(len(data["layer_names"]), len(data["tokens"]), k)
            kwargs["top_probs"] = kwargs["top_probs"].reshape(kwargs["top_ids"].shape)
        K, S, P = len(data["tracked_ids"]), len(data["layer_names"]), len(data["tokens"])
        for name in ("tracked_probs", "tracked_ranks"):
            kwargs[name] = kwargs[name].reshape(K, S, P)
        return cls(
            tokens=list(data["tokens"]),
            layer_names=list(data["layer_names"]),
            vocab={int(k): v for k, v in data["vocab"].items()},
            source_tokens=data.get("source_tokens"),
            meta=dict(data.get("meta", {})),
            **kwargs,
        )

    def to_pandas(self):
        """Long format: one row per (stream, position) with every statistic.

        Columns: layer, layer_name, position, token, token_id, entropy, kl_to_final,
        target_id, target_token, target_prob, target_logprob, target_rank, top{i}_id /
        top{i}_token / top{i}_prob for i in 1..k, and tracked{j}_token / _prob / _rank.
        """
        import pandas as pd

        S, P = self.n_streams, self.n_positions
        cols: dict[str, Any] = {
            "layer": np.repeat(self.layers, P),
            "layer_name": np.repeat(np.array(self.layer_names, dtype=object), P),
            "position": np.tile(np.arange(P), S),
            "token": np.tile(np.array(self.tokens, dtype=object), S),
            "token_id": np.tile(self.token_ids, S),
            "entropy": self.entropy.ravel(),
            "kl_to_final": self.kl_to_final.ravel(),
            "target_id": np.tile(self.target_ids, S),
            "target_token": np.tile(np.array(self.target_tokens, dtype=object), S),
            "target_prob": self.target_prob.ravel(),
            "target_logprob": self.target_logprob.ravel(),
            "target_rank": self.target_rank.ravel(),
        }
        for i in range(self.top_k):
            ids = self.top_ids[:, :, i].ravel()
            cols[f"top{i + 1}_id"] = ids
            cols[f"top{i + 1}_token"] = np.array([self.token(t) for t in ids], dtype=object)
            cols[f"top{i + 1}_prob"] = self.top_probs[:, :, i].ravel()
        for j, tid in enumerate(self.tracked_ids):
            cols[f"tracked{j + 1}_token"] = self.token(tid)
            cols[f"tracked{j + 1}_prob"] = self.tracked_probs[j].ravel()
            cols[f"tracked{j + 1}_rank"] = self.tracked_ranks[j].ravel()
        return pd.DataFrame(cols)

    # -- rendering and files (thin delegates to logitscope.render / logitscope.lens.export) ---------
    def plot(self, path=None, *, metric: str = "entropy", **kwargs):
        """Heatmap: top-1 token per cell coloured by ``metric`` (``entropy``, ``prob``, ``target``,
        ``rank``, ``kl``); ``.png``/``.svg``/``.pdf`` via matplotlib, ``.html`` via plotly.
        See :func:`logitscope.render.plot`."""
        from ..render import plot

        return plot(self, path, metric=metric, **kwargs)

    def plot_trajectory(self, position: int = -1, path=None, **kwargs):
        """Probability (or ``value="rank"``) of the ``track=`` tokens across layers at ``position``.
        See :func:`logitscope.render.plot_trajectory`."""
        from ..render import plot_trajectory

        return plot_trajectory(self, position, path, **kwargs)

    def show(self, **kwargs):
        """The interactive lens for a notebook: the viewer's grid, metric switch, cell panel and
        pinned-token trajectories, self-contained. See :func:`logitscope.render.widget.show`."""
        from ..render.widget import show

        return show(self, **kwargs)

    def _repr_html_(self) -> str:
        return self.show()._repr_html_()

    def save(self, path, format: str | None = None):
        """Write as JSON, JSON Lines, CSV or Parquet (from the suffix). See :func:`logitscope.lens.export.save`."""
        from .export import save

        return save(self, path, format)


def load(path, format: str | None = None):
    """Read results back: JSON → a result (or a list for a JSON array), JSON Lines → a list,
    CSV/Parquet → a DataFrame (:func:`~logitscope.lens.export.read_frame`)."""
    fmt, path = format_for(path, format), Path(path)
    if fmt in ("csv", "parquet"):
        return read_frame(path, fmt)
    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl":
        return [LensResult.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return [LensResult.from_dict(d) for d in data] if isinstance(data, list) else LensResult.from_dict(data)
