"""Lens diff over a corpus: per-layer mean KL(A ‖ B) and top-1 agreement of two models.

The corpus is cut into the windows :meth:`logitscope.Scope.evaluate` uses (:mod:`logitscope.data.windows`);
each batch of windows goes through both models once, with hooks, and the aligned rows are reduced
by :func:`logitscope.diff.run.pair_stats` in row chunks (never a layers × tokens × vocab tensor). Per
window only ``2 × S`` sums are kept, for percentile-bootstrap confidence intervals over windows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io.jsonable import json_float


@dataclass
class CorpusDiff:
    """Per-layer KL(A ‖ B) and top-1 agreement, averaged over every scored token.

    Attributes:
        layers, layer_names: (S,) A's rows; b_layer_names: (S,) the B row each meets.
        kl: (S,) mean KL(A ‖ B), nats; kl_ci: (S, 2) its confidence bounds.
        top1_agreement: (S,) share of tokens whose top-1 is the same; agreement_ci: (S, 2).
        n_tokens, n_windows: totals. meta: models, seq_len, alignment, confidence.
    """

    layers: np.ndarray
    layer_names: list[str]
    b_layer_names: list[str]
    kl: np.ndarray
    kl_ci: np.ndarray
    top1_agreement: np.ndarray
    agreement_ci: np.ndarray
    n_tokens: int
    n_windows: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """What ``compare.json`` holds: totals, settings and one record per layer."""
        rows = [
            {
                "layer": int(r),
                "name": n,
                "b_name": bn,
                "kl": json_float(self.kl[i]),
                "kl_ci": [json_float(v) for v in self.kl_ci[i]],
                "top1_agreement": json_float(self.top1_agreement[i]),
                "top1_agreement_ci": [json_float(v) for v in self.agreement_ci[i]],
            }
            for i, (r, n, bn) in enumerate(zip(self.layers, self.layer_names, self.b_layer_names))
        ]
        return {"n_tokens": self.n_tokens, "n_windows": self.n_windows, **self.meta, "layers": rows}

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "layer": self.layers,
                "name": self.layer_names,
                "b_name": self.b_layer_names,
                "kl": self.kl,
                "kl_lo": self.kl_ci[:, 0],
                "kl_hi": self.kl_ci[:, 1],
                "top1_agreement": self.top1_agreement,
                "agreement_lo": self.agreement_ci[:, 0],
                "agreement_hi": self.agreement_ci[:, 1],
            }
        )

    def plot(self):
        """A matplotlib Figure: KL(A ‖ B) and top-1 agreement by layer, with CI bands."""
        from ..render.diff import corpus_curves

        return corpus_curves(self)

    def save(self, out_dir, *, plots: bool = True) -> Path:
        """Write ``compare.json`` (and ``compare.png``) into ``out_dir``, each file atomically; returns the folder."""
        from ..io.atomic import atomic_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = compare_files(out, plots)
        with atomic_file(paths["compare"]) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        if plots:
            with atomic_file(paths["compare_png"]) as tmp:
                self.plot().savefig(tmp, dpi=120, bbox_inches="tight", facecolor="white")
        return out


def compare_files(out_dir, plots: bool = True) -> dict[str, Path]:
    """The files :meth:`CorpusDiff.save` writes into ``out_dir``, by role."""
    out = Path(out_dir)
    return {"compare": out / "compare.json", **({"compare_png": out / "compare.png"} if plots else {})}


def compare_corpus(
    a,
    b,
    data,
    *,
    max_tokens: int | None = None,
    seq_len: int | None = None,
    batch_size: int = 4,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> CorpusDiff:
    """Per-layer KL(A ‖ B) and top-1 agreement of models ``a`` and ``b`` (Scopes) over ``data``.

    Args:
        a, b: two causal LMs with the same vocabulary (rows aligned by fraction of depth).
        data: anything :meth:`logitscope.Scope.evaluate` reads; tokenised with A's tokenizer.
        max_tokens, seq_len: as for ``evaluate``; ``seq_len`` is capped by both contexts.
        batch_size: windows per forward.
        confidence, n_boot, seed: percentile-bootstrap intervals over windows.
    """
    from ..data.windows import resolve_seq_len, token_stream, window_batches, windows
    from ..engine.capture import run_captured
    from ..engine.rows import row_name
    from ..evaluate.intervals import ratio_intervals
    from .run import aligned_rows, check_comparable, pair_stats

    pa, pb = a.require_head(), b.require_head()
    if pa.kind != "causal":
        raise InputError(f"corpus comparison scores next-token prediction: causal LMs only, not {pa.kind}")
    check_comparable(a, b)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, not {batch_size!r}")
    seq_len = resolve_seq_len(resolve_seq_len(seq_len, a.model.config), b.model.config)
    rows_a = list(range(pa.n_blocks + 1))
    rows_b = aligned_rows(pa.n_blocks, pb.n_blocks)
    S, V = len(rows_a), pa.vocab_size
    kl_sums, agree_sums, tokens = [], [], []

    def capture(scope, rows, x):
        parts = scope.parts
        got = run_captured(
            scope.model, parts.blocks, sorted(set(rows)), input_ids=x.to(scope.input_device), use_cache=False
        )
        return torch.stack([got[r].reshape(-1, got[r].shape[-1]).to(parts.head_device) for r in rows])

    def flush(batch: list[tuple[int, np.ndarray]]) -> None:
        x = torch.from_numpy(np.stack([w[:-1] for _, w in batch]))  # (B, T)
        B, T = x.shape
        h_a = capture(a, rows_a, x).reshape(S * B * T, -1)
        h_b = capture(b, rows_b, x).reshape(S * B * T, -1)
        st = pair_stats(h_a, h_b, pa.unembed, pb.unembed, top_k=1, chunk_rows=a.chunk_size, device=pa.head_device)
        kl_sums.append(st["kl"].double().view(S, B, T).sum(-1).T.numpy())  # (B, S)
        agree = (st["a_ids"][:, 0] == st["b_ids"][:, 0]).double().view(S, B, T)
        agree_sums.append(agree.sum(-1).T.numpy())
        tokens.extend([T] * B)

    chunks, _ = token_stream(data, a.tokenizer, a.model.config)
    for batch in window_batches(windows(chunks, seq_len, max_tokens), batch_size, vocab_size=V):
        flush(batch)
    if not tokens:
        raise InputError("the data holds fewer than two tokens: nothing to score")
    kl_w, agree_w, tok = np.concatenate(kl_sums), np.concatenate(agree_sums), np.asarray(tokens, dtype=np.float64)
    return CorpusDiff(
        layers=np.asarray(rows_a),
        layer_names=[row_name(r) for r in rows_a],
        b_layer_names=[row_name(r) for r in rows_b],
        kl=kl_w.sum(0) / tok.sum(),
        kl_ci=ratio_intervals(kl_w, tok, confidence, n_boot, seed),
        top1_agreement=agree_w.sum(0) / tok.sum(),
        agreement_ci=ratio_intervals(agree_w, tok, confidence, n_boot, seed + 1),
        n_tokens=int(tok.sum()),
        n_windows=len(tok),
        meta={
            "model_a": a.name,
            "model_b": b.name,
            "seq_len": seq_len,
            "max_tokens": max_tokens,
            "aligned": "by fraction of depth" if pb.n_blocks != pa.n_blocks else "one to one",
            "ci": "bootstrap",
            "confidence": confidence,
            "n_boot": n_boot,
        },
    )
