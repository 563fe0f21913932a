"""Corpus-scale evaluation: per-layer cross-entropy, KL, entropy and top-1 curves over a dataset.

Data flows one way: corpus → token windows (:mod:`logitscope.data`) → batches of equal-length
windows → one forward with hooks capturing every stream row → the streaming kernel
(:func:`~logitscope.kernel.stream_stats`, ``top_k=1``) → per-window sums → :class:`EvalResult`.
Nothing of shape (layers × tokens × vocab) is held, and per window only ``5 × (L+1)`` sums are
kept (for confidence intervals and ``per_window.parquet``). Under torchrun, windows are sharded
round-robin across ranks (:mod:`logitscope.distributed`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from .capture import run_captured
from .data import resolve_seq_len, token_byte_lengths, token_stream, windows
from .distributed import DistContext, auto_batch_size, eval_chunk_rows
from .errors import InputError
from .kernel import stream_stats

SUMS = ("ce", "kl_to_final", "entropy", "top1_agreement", "top1_accuracy")  # window_sums[..., j]
METRICS = ("ce", "bits_per_byte", "kl_to_final", "entropy", "top1_agreement", "top1_accuracy")
LN2 = math.log(2.0)
PANELS = [  # (title, [(label, metric)]) of the four plot panels
    ("cross-entropy vs next token (nats)", [("CE", "ce")]),
    ("KL(final ‖ layer) (nats)", [("KL", "kl_to_final")]),
    ("entropy (nats)", [("entropy", "entropy")]),
    ("top-1", [("accuracy", "top1_accuracy"), ("agreement with final", "top1_agreement")]),
]


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
        point = _metrics(totals[: 5 * S].reshape(5, S), totals[-2], totals[-1])
        conf, n_boot, seed = kw.pop("confidence", 0.95), kw.pop("n_boot", 1000), kw.pop("seed", 0)
        bounds = _intervals(sums, tokens, nbytes, point, ci, conf, n_boot, seed)
        meta = dict(kw.pop("meta", {}), ci=ci, confidence=conf, n_boot=n_boot if ci == "bootstrap" else None)
        return cls(
            layers=np.asarray(layers),
            layer_names=["embed" if r == 0 else str(r) for r in layers],
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
                rec[m] = _num(getattr(self, m)[i])
                rec[f"{m}_ci"] = [_num(v) for v in self.ci[m][i]]
            rows.append(rec)
        head = {"n_tokens": self.n_tokens, "n_bytes": self.n_bytes, "n_windows": self.n_windows}
        return {**head, **{k: _jsonable(v) for k, v in self.meta.items()}, "layers": rows}

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

    def save(self, out_dir, *, plots: bool = True) -> dict[str, Path]:
        """Write ``metrics.json``, ``per_window.parquet`` and (``plots``) ``curves.png``/``curves.html``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"metrics": out / "metrics.json", "per_window": out / "per_window.parquet"}
        paths["metrics"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        self.windows_frame().to_parquet(paths["per_window"], index=False)
        if plots:
            paths["png"], paths["html"] = out / "curves.png", out / "curves.html"
            self.plot().savefig(paths["png"], dpi=120, bbox_inches="tight")
            self.plot_html().write_html(paths["html"], include_plotlyjs=True)
        return paths

    def plot(self):
        """A matplotlib Figure of the four per-layer curves with CI bands."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 7.5), layout="constrained")
        axes = fig.subplots(2, 2, sharex=True).ravel()
        x = self.layers
        for ax, (title, series) in zip(axes, PANELS):
            for label, m in series:
                ax.plot(x, getattr(self, m), marker="o", ms=3, label=label)
                ax.fill_between(x, self.ci[m][:, 0], self.ci[m][:, 1], alpha=0.25)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            if len(series) > 1:
                ax.legend()
        for ax in axes[2:]:
            ax.set_xlabel("layer (0 = embeddings)")
            ax.xaxis.get_major_locator().set_params(integer=True)
        fig.suptitle(self._title())
        return fig

    def plot_html(self):
        """The same curves as an interactive plotly Figure (``write_html`` works offline)."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=2, cols=2, subplot_titles=[t for t, _ in PANELS], shared_xaxes=True)
        x = [int(v) for v in self.layers]
        for k, (_, series) in enumerate(PANELS):
            r, c = k // 2 + 1, k % 2 + 1
            for label, m in series:
                lo, hi = self.ci[m][:, 0].tolist(), self.ci[m][:, 1].tolist()
                fig.add_trace(
                    go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", opacity=0.25, hoverinfo="skip",
                               line={"width": 0}, showlegend=False),
                    row=r, col=c,
                )  # fmt: skip
                fig.add_trace(
                    go.Scatter(x=x, y=getattr(self, m).tolist(), mode="lines+markers", name=label), row=r, col=c
                )
        fig.update_xaxes(title_text="layer (0 = embeddings)", row=2)
        fig.update_layout(title=self._title(), height=700, template="plotly_white")
        return fig

    def _title(self) -> str:
        return f"{self.meta.get('model', 'model')}: {self.n_tokens:,} tokens, {self.n_windows:,} windows"

    def __repr__(self) -> str:
        return (
            f"EvalResult({self.meta.get('model', '?')!r}, layers={len(self.layers)}, tokens={self.n_tokens}, "
            f"final ce={self.ce[-1]:.4f} nats, bpb={self.bits_per_byte[-1]:.4f})"
        )


def _metrics(sums: np.ndarray, n_tokens, n_bytes) -> dict[str, np.ndarray]:
    """Metrics from summed (5, ...) statistics and token/byte totals (broadcasting)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {name: sums[j] / n_tokens for j, name in enumerate(SUMS)}
        out["bits_per_byte"] = np.where(n_bytes > 0, sums[0] / (LN2 * n_bytes), np.nan)
    return {m: np.asarray(out[m], dtype=np.float64) for m in METRICS}


def _intervals(sums, tokens, nbytes, point, method, confidence, n_boot, seed) -> dict[str, np.ndarray]:
    """CI bounds per metric: percentile bootstrap over windows, or ratio-estimator standard error."""
    W, S, _ = sums.shape
    alpha = (1 - confidence) / 2
    if method == "stderr":
        z = NormalDist().inv_cdf(1 - alpha)
        out = {}
        for m in METRICS:
            j = 0 if m == "bits_per_byte" else SUMS.index(m)
            den = (nbytes * LN2 if m == "bits_per_byte" else tokens).astype(np.float64)  # (W,)
            resid = sums[:, :, j] - point[m][None, :] * den[:, None]  # (W, S)
            with np.errstate(divide="ignore", invalid="ignore"):
                se = np.sqrt(W / (W - 1) * (resid**2).sum(0)) / den.sum() if W > 1 else np.full(S, np.nan)
            out[m] = np.stack([point[m] - z * se, point[m] + z * se], axis=1)
        return out
    rng = np.random.default_rng(seed)
    flat = np.concatenate([sums.reshape(W, S * 5), tokens[:, None], nbytes[:, None]], axis=1).astype(np.float64)
    draws = []
    step = max(1, 2_000_000 // max(1, W))  # resamples per block: bounds the (step, W) count matrix
    for b0 in range(0, n_boot, step):
        counts = rng.multinomial(W, np.full(W, 1.0 / W), size=min(step, n_boot - b0)).astype(np.float64)
        draws.append(counts @ flat)  # (b, 5·S + 2)
    boot = np.concatenate(draws)
    stats = _metrics(boot[:, : 5 * S].reshape(-1, S, 5).transpose(2, 0, 1), boot[:, -2:-1], boot[:, -1:])
    out = {}
    for m in METRICS:
        ok = np.isfinite(stats[m]).any(0)  # (S,): bits per byte is NaN throughout without bytes
        out[m] = np.full((S, 2), np.nan)
        if ok.any():
            out[m][ok] = np.nanquantile(stats[m][:, ok], [alpha, 1 - alpha], axis=0).T
    return out


def _num(v):
    v = float(v)
    return None if math.isnan(v) else v


def _jsonable(v):
    return v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)


def run_eval(
    scope,
    data,
    *,
    max_tokens: int | None = None,
    seq_len: int | None = None,
    batch_size: int | str = "auto",
    ci: str = "bootstrap",
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    dist: DistContext | None = None,
    progress: Callable[[int, float | None], None] | None = None,
) -> EvalResult:
    """Implementation of :meth:`logitscope.Scope.evaluate` (see there).

    ``progress(tokens_done, total_estimate)`` is called after every batch with the tokens scored
    so far (estimated over all ranks) and the expected total (``None`` when unknown).
    """
    _check_args(max_tokens, seq_len, batch_size, ci, confidence, n_boot)
    parts = scope.require_head()
    if parts.kind != "causal":
        raise InputError(f"corpus evaluation scores next-token prediction: causal LMs only, not {parts.kind}")
    dist = dist or DistContext()
    config, tok, V, L = scope.model.config, scope.tokenizer, parts.vocab_size, parts.n_blocks
    seq_len = resolve_seq_len(seq_len, config)
    chunk = eval_chunk_rows(scope)
    B = auto_batch_size(scope, seq_len, chunk) if batch_size in ("auto", None) else int(batch_size)
    chunks, corpus = token_stream(data, tok, config)
    produced = [0]  # tokens the tokenizer has produced (for the progress total)

    def counted():
        for c in chunks:
            produced[0] += len(c)
            yield c

    byte_len = token_byte_lengths(tok, V) if tok is not None else None
    rows = list(range(L + 1))
    S = L + 1
    table = np.empty((1024, 3 + 5 * S))  # per window: id, tokens, bytes, (S, 5) sums; grown by doubling
    n_rows = 0
    batch: list[tuple[int, np.ndarray]] = []
    t0, done = time.perf_counter(), 0

    def flush():
        nonlocal done, n_rows, table
        x = np.stack([w[:-1] for _, w in batch])  # (B, T)
        y = np.stack([w[1:] for _, w in batch])
        if n_rows + len(batch) > len(table):  # one growing array: no small long-lived allocations
            table = np.concatenate([table, np.empty_like(table)])
        new = table[n_rows : n_rows + len(batch)]
        new[:, 0], new[:, 1] = [i for i, _ in batch], y.shape[1]
        new[:, 2] = byte_len[y].sum(1) if byte_len is not None else 0
        new[:, 3:] = _window_sums(scope, parts, rows, x, y, chunk).reshape(len(batch), -1)
        n_rows += len(batch)
        done += y.size
        batch.clear()
        if progress is not None:
            total = max_tokens
            if corpus is not None and corpus.fraction() > 0:
                est = produced[0] / corpus.fraction()
                total = min(total, est) if total else est
            progress(done * dist.world_size, total)

    for i, w in enumerate(windows(counted(), seq_len, max_tokens)):
        if not dist.owns(i):
            continue
        if w.max() >= V or w.min() < 0:
            raise InputError(f"token ids outside the vocabulary (size {V}) in window {i}")
        if batch and len(batch[0][1]) != len(w):
            flush()
        batch.append((i, w))
        if len(batch) == B:
            flush()
    if batch:
        flush()
    t = table[:n_rows]
    local_sums = t[:, 3:].reshape(n_rows, S, 5)
    local = (t[:, 0].astype(np.int64), t[:, 1].astype(np.int64), t[:, 2].astype(np.int64), local_sums.copy())
    totals = dist.all_reduce_sum(np.concatenate([local_sums.sum(0).T.ravel(), [local[1].sum(), local[2].sum()]]))
    parts_all = dist.all_gather(local)
    w_ids, w_tok, w_bytes, w_sums = (np.concatenate(p) for p in zip(*parts_all))
    order = np.argsort(w_ids, kind="stable")
    if len(order) == 0:
        raise InputError("the data holds fewer than two tokens: nothing to score")
    elapsed = time.perf_counter() - t0
    meta = dict(model=scope.name, model_type=parts.model_type, seq_len=seq_len, max_tokens=max_tokens, batch_size=B)
    meta["chunk_rows"] = chunk
    meta.update(world_size=dist.world_size, dtype=str(next(scope.model.parameters()).dtype).replace("torch.", ""))
    meta.update(bytes_known=byte_len is not None, elapsed_s=round(elapsed, 3))
    meta["tokens_per_s"] = round(float(totals[-2]) / elapsed, 1) if elapsed > 0 else None
    picked = (w_ids[order], w_tok[order], w_bytes[order], w_sums[order])
    return EvalResult.from_windows(
        rows, *picked, totals, ci=ci, confidence=confidence, n_boot=n_boot, seed=seed, meta=meta
    )


def _check_args(max_tokens, seq_len, batch_size, ci, confidence, n_boot) -> None:
    """Reject bad settings before any work (``InputError``)."""

    def is_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if seq_len is not None and not (is_int(seq_len) and seq_len >= 1):
        raise InputError(f"seq_len must be an integer of at least 1, not {seq_len!r}")
    if max_tokens is not None and not (is_int(max_tokens) and max_tokens >= 1):
        raise InputError(f"max_tokens must be an integer of at least 1, not {max_tokens!r}")
    if batch_size not in ("auto", None) and not (is_int(batch_size) and batch_size >= 1):
        raise InputError(f"batch_size must be 'auto' or an integer of at least 1, not {batch_size!r}")
    if ci not in ("bootstrap", "stderr"):
        raise InputError(f"ci must be 'bootstrap' or 'stderr', not {ci!r}")
    if not (isinstance(confidence, (int, float, np.floating)) and 0 < confidence < 1):
        raise InputError(f"confidence must be between 0 and 1 (exclusive), not {confidence!r}")
    if not (is_int(n_boot) and n_boot >= 1):
        raise InputError(f"n_boot must be an integer of at least 1, not {n_boot!r}")


def _window_sums(scope, parts, rows: list[int], x: np.ndarray, y: np.ndarray, chunk: int) -> np.ndarray:
    """(B, S, 5) float64 per-window sums for a batch of equal-length windows, inputs x and targets y (B, T)."""
    B, T = x.shape
    S = len(rows)
    inputs = torch.from_numpy(x).to(scope.input_device)
    captured = run_captured(scope.model, parts.blocks, rows, input_ids=inputs, use_cache=False)
    head = parts.head_device
    streams = torch.stack([captured.pop(r).reshape(B * T, -1).to(head) for r in rows])  # (S, B·T, d)
    del captured
    targets = torch.from_numpy(y.reshape(-1))
    st = stream_stats(
        streams, parts.unembed, targets=targets, top_k=1, chunk_rows=chunk, vocab_size=parts.vocab_size, device=head
    )
    del streams
    view = lambda t: t.view(S, B, T)  # noqa: E731
    top = view(st.top_ids[..., 0])
    out = torch.stack(
        [
            -view(st.target_logprob).double().sum(-1),
            view(st.kl_to_final).double().sum(-1),
            view(st.entropy).double().sum(-1),
            (top == top[-1:]).sum(-1).double(),
            (top == targets.view(1, B, T)).sum(-1).double(),
        ],
        dim=-1,
    )  # (S, B, 5)
    return out.transpose(0, 1).numpy()
