"""EvalResult: per-layer corpus metrics with confidence intervals, and their files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.rows import row_name
from ..io.jsonable import json_float, json_value
from .intervals import LN2, METRICS, SUMS, intervals, metrics


@dataclass
class EvalResult:
    """Per-layer metrics averaged over every scored token of a corpus.

    Shapes: ``S = L + 1`` stream rows (0 = embeddings, ``L`` = final), ``W`` windows.

    Attributes:
        layers: (S,) stream rows; layer_names: (S,) ``"embed"``, ``"1"`` .. ``"L"``.
        ce: (S,) mean cross-entropy against the true next token, nats per token.
        bits_per_byte: (S,) total cross-entropy / (ln 2 · total UTF-8 bytes of the scored
            tokens); NaN when bytes are unknown (token-id input without a tokenizer).
        kl_to_final: (S,) mean KL(final ‖ layer), nats. entropy: (S,) mean entropy, nats.
        top1_agreement: (S,) share of tokens whose top-1 equals the final layer's top-1.
        top1_accuracy: (S,) share of tokens whose top-1 is the true next token.
        ci: ``{metric: (S, 2)}`` lower/upper confidence bounds of each metric above.
        n_tokens, n_bytes, n_windows: totals.
        window_ids: (W,) window index in the corpus order; window_tokens, window_bytes: (W,).
        window_sums: (W, S, 5) float64 per-window sums in :data:`SUMS` order.
        meta: model, seq_len, CI method, timing and other run settings.
    """

    layers: np.ndarray
    layer_names: list[str]
    ce: np.ndarray
    bits_per_byte: np.ndarray
    kl_to_final: np.ndarray
    entropy: np.ndarray
    top1_agreement: np.ndarray
    top1_accuracy: np.ndarray
    ci: dict[str, np.ndarray]
    n_tokens: int
    n_bytes: int
    n_windows: int
    window_ids: np.ndarray
    window_tokens: np.ndarray
    window_bytes: np.ndarray
    window_sums: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        S = len(self.layers)
        for name in METRICS:
            if getattr(self, name).shape != (S,) or self.ci[name].shape != (S, 2):
                raise ValueError(f"{name} must have shape ({S},) and its CI ({S}, 2)")
        W = len(self.window_ids)
        if self.window_sums.shape != (W, S, len(SUMS)):
            raise ValueError(f"window_sums must have shape ({W}, {S}, {len(SUMS)})")

    @classmethod
    def from_windows(cls, layers, ids, tokens, nbytes, sums, totals=None, *, ci="bootstrap", **kw) -> EvalResult:
        """Build a result from per-window sums; ``totals`` (5·S + 2,) overrides their sum (all-reduced)."""
        S = len(layers)
        if totals is None:
            totals = np.concatenate([sums.sum(0).T.ravel(), [tokens.sum(), nbytes.sum()]])
        point = metrics(totals[: 5 * S].reshape(5, S), totals[-2], totals[-1])
        conf, n_boot, seed = kw.pop("confidence", 0.95), kw.pop("n_boot", 1000), kw.pop("seed", 0)
        bounds = intervals(sums, tokens, nbytes, point, ci, conf, n_boot, seed)
        meta = dict(kw.pop("meta", {}), ci=ci, confidence=conf, n_boot=n_boot if ci == "bootstrap" else None)
        return cls(
            layers=np.asarray(layers),
            layer_names=[row_name(r) for r in layers],
            **point,
            ci=bounds,
            n_tokens=int(totals[-2]),
            n_bytes=int(totals[-1]),
            n_windows=len(ids),
            window_ids=ids,
            window_tokens=tokens,
            window_bytes=nbytes,
            window_sums=sums,
            meta=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: totals, run settings and one record per layer (what ``metrics.json`` holds)."""
        rows = []
        for i, (row, name) in enumerate(zip(self.layers, self.layer_names)):
            rec: dict[str, Any] = {"layer": int(row), "name": name}
            for m in METRICS:
                rec[m] = json_float(getattr(self, m)[i])
                rec[f"{m}_ci"] = [json_float(v) for v in self.ci[m][i]]
            rows.append(rec)
        head = {"n_tokens": self.n_tokens, "n_bytes": self.n_bytes, "n_windows": self.n_windows}
        return {**head, **{k: json_value(v) for k, v in self.meta.items()}, "layers": rows}

    def to_pandas(self):
        """One row per layer: the metrics and their CI bounds."""
        import pandas as pd

        data = {"layer": self.layers, "name": self.layer_names}
        for m in METRICS:
            data[m], data[f"{m}_lo"], data[f"{m}_hi"] = getattr(self, m), self.ci[m][:, 0], self.ci[m][:, 1]
        return pd.DataFrame(data)

    def windows_frame(self):
        """One row per (window, layer): token/byte counts, the sums and their per-window means."""
        import pandas as pd

        W, S = len(self.window_ids), len(self.layers)
        frame = pd.DataFrame(
            {
                "window": np.repeat(self.window_ids, S),
                "layer": np.tile(self.layers, W),
                "n_tokens": np.repeat(self.window_tokens, S),
                "n_bytes": np.repeat(self.window_bytes, S),
            }
        )
        flat = self.window_sums.reshape(W * S, len(SUMS))
        for j, name in enumerate(SUMS):
            frame[f"{name}_sum"] = flat[:, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            for j, name in enumerate(SUMS):
                frame[name] = flat[:, j] / frame["n_tokens"].to_numpy()
            frame["bits_per_byte"] = flat[:, 0] / (LN2 * frame["n_bytes"].to_numpy())
        return frame

    def save(self, out_dir, *, plots: bool = True) -> Path:
        """Write ``metrics.json``, ``per_window.parquet`` and (``plots``) ``curves.png``/``curves.html``;
        returns the folder (:func:`run_files` names its files).

        All or nothing: the files are written into a temporary folder beside ``out_dir`` and moved
        into place only when every one is complete (see :func:`logitscope.io.atomic.atomic_dir`), so
        an interrupted save leaves no partial set. ``out_dir`` may exist (its other files stay);
        an existing file there is an ``OutputError``, raised before anything is written.
        """
        return save_run(self, out_dir, plots=plots)

    def plot(self):
        """A matplotlib Figure of the four per-layer curves with CI bands."""
        from ..render.curves import curves_figure

        return curves_figure(self)

    def plot_html(self):
        """The same curves as an interactive plotly Figure (``write_html`` works offline)."""
        from ..render.curves import curves_html

        return curves_html(self)

    def _repr_html_(self) -> str:
        from ..render.reprs import eval_html

        return eval_html(self)

    def _title(self) -> str:
        n, w = self.n_tokens, self.n_windows
        return f"{self.meta.get('model', 'model')}: {n:,} token{'s' * (n != 1)}, {w:,} window{'s' * (w != 1)}"

    def __repr__(self) -> str:
        return (
            f"EvalResult({self.meta.get('model', '?')!r}, layers={len(self.layers)}, tokens={self.n_tokens}, "
            f"final ce={self.ce[-1]:.4f} nats, bpb={self.bits_per_byte[-1]:.4f})"
        )


def run_files(out_dir, plots: bool = True) -> dict[str, Path]:
    """The files of a corpus run's folder, by role: ``metrics``, ``per_window`` and (``plots``) ``png``, ``html``."""
    names = {"metrics": "metrics.json", "per_window": "per_window.parquet"}
    if plots:
        names.update(png="curves.png", html="curves.html")
    return {key: Path(out_dir) / name for key, name in names.items()}


def save_run(result, out_dir, *, plots: bool = True) -> Path:
    """Write a corpus result's folder, all or nothing: ``result.to_dict()`` as ``metrics.json``,
    ``result.windows_frame()`` as ``per_window.parquet`` and (``plots``) ``result.plot()`` /
    ``result.plot_html()`` as ``curves.png``/``curves.html``.
    """
    from ..io.atomic import atomic_dir, check_dir_dest

    out = check_dir_dest(out_dir)
    names = {key: path.name for key, path in run_files(out, plots).items()}
    with atomic_dir(out) as tmp:
        (tmp / names["metrics"]).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        result.windows_frame().to_parquet(tmp / names["per_window"], index=False)
        if plots:
            result.plot().savefig(tmp / names["png"], dpi=120, bbox_inches="tight")
            result.plot_html().write_html(tmp / names["html"], include_plotlyjs=True)
    return out
