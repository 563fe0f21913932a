"""Logit lens vs tuned and/or Jacobian lens over a corpus: EvalResults from the same forward passes, side by side.

``scope.evaluate(data, tuned=..., jacobian=...)`` (and ``logitscope eval --tuned/--jacobian``)
returns a :class:`LensComparison`. Its ``metrics.json`` keeps the logit lens's schema (the same
keys as without them) and adds, to every layer record, a ``"tuned"`` and/or ``"jacobian"`` object
with the same metrics and intervals for that lens; ``per_window.parquet`` gains a ``lens`` column;
``curves.png`` / ``curves.html`` draw every lens in each panel (solid: logit lens, dashed: tuned
lens, dotted: Jacobian lens).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..render.curves import PANELS
from .intervals import METRICS
from .result import EvalResult, save_run

LENSES = (
    ("logit", "logit lens", "-"),
    ("tuned", "tuned lens", "--"),
    ("jacobian", "Jacobian lens", ":"),
)  # (key, label, line style)
SHORT = {"jacobian": "J-lens"}  # table column labels


@dataclass
class LensComparison:
    """Per-layer corpus metrics of the logit lens and a tuned and/or Jacobian lens, over the same tokens.

    Attributes:
        logit: the logit lens's :class:`~logitscope.evaluate.EvalResult`.
        tuned: the tuned lens's (same layers, windows and tokens), or ``None``.
        jacobian: the Jacobian lens's, or ``None``.
    """

    logit: EvalResult
    tuned: EvalResult | None = None
    jacobian: EvalResult | None = None

    @property
    def lenses(self) -> list[tuple[str, str, str]]:
        """``(key, label, line style)`` of the lenses present, logit lens first."""
        return [entry for entry in LENSES if getattr(self, entry[0]) is not None]

    @classmethod
    def from_windows(cls, rows, ids, tokens, nbytes, sums, totals, *, lenses, meta, **kw) -> LensComparison:
        """Split per-window sums ``(W, kS, 5)`` and totals ``(5·kS + 2,)`` into one result per lens.

        ``lenses``: ``[(key, lens), ...]`` of the lenses after the logit lens, in the order of the sums.
        """
        S, k = len(rows), 1 + len(lenses)
        per_metric = np.asarray(totals[:-2]).reshape(5, k * S)
        results = {}
        for j, name in enumerate(["logit", *(key for key, _ in lenses)]):
            cols = slice(j * S, (j + 1) * S)
            own = np.concatenate([per_metric[:, cols].ravel(), totals[-2:]])
            m = dict(meta, lens=name)
            m.update({f"{key}_lens": other.describe() for key, other in lenses})
            if name != "logit":  # rows the lens has no transform for (they repeat the logit lens)
                own_lens = dict(lenses)[name]
                m["untransformed_rows"] = [r for r in rows[:-1] if not own_lens.covers(r)]
            results[name] = EvalResult.from_windows(rows, ids, tokens, nbytes, sums[:, cols], own, meta=m, **kw)
        return cls(**results)

    def describe(self) -> str:
        """``logit lens vs tuned lens (demo) vs Jacobian lens (lens.pt)``."""
        others = [f"{label} ({self.logit.meta.get(f'{key}_lens')})" for key, label, _ in self.lenses[1:]]
        return " vs ".join(["logit lens", *others])

    # -- the EvalResult surface the CLI uses -------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return self.logit.meta

    @property
    def n_tokens(self) -> int:
        return self.logit.n_tokens

    @property
    def n_windows(self) -> int:
        return self.logit.n_windows

    @property
    def layer_names(self) -> list[str]:
        return self.logit.layer_names

    def to_dict(self) -> dict[str, Any]:
        """The logit lens's ``metrics.json`` record, each layer extended with a ``"tuned"``/``"jacobian"`` object."""
        out = self.logit.to_dict()
        out["lenses"] = [name for name, _, _ in self.lenses]
        for name, _, _ in self.lenses[1:]:
            for rec, other in zip(out["layers"], getattr(self, name).to_dict()["layers"]):
                rec[name] = {k: v for k, v in other.items() if k not in ("layer", "name")}
        return out

    def to_pandas(self):
        """One row per (lens, layer): the metrics and their CI bounds."""
        import pandas as pd

        frames = []
        for name, _, _ in self.lenses:
            frame = getattr(self, name).to_pandas()
            frame.insert(0, "lens", name)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def windows_frame(self):
        """One row per (lens, window, layer): every lens's per-window sums, a ``lens`` column first."""
        import pandas as pd

        frames = []
        for name, _, _ in self.lenses:
            frame = getattr(self, name).windows_frame()
            frame.insert(0, "lens", name)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def save(self, out_dir, *, plots: bool = True) -> Path:
        """Write ``metrics.json``, ``per_window.parquet`` and (``plots``) ``curves.png``/``.html``, all or nothing;
        returns the folder."""
        return save_run(self, out_dir, plots=plots)

    # -- plots ---------------------------------------------------------------------------------
    def _title(self) -> str:
        return f"{self.meta.get('model', 'model')}: {self.describe()}, {self.n_tokens:,} tokens"

    def plot(self):
        """A matplotlib Figure: the four per-layer panels, each with both lenses and CI bands."""
        from ..render.figure import InlineFigure as Figure

        fig = Figure(figsize=(11, 7.5), layout="constrained")
        axes = fig.subplots(2, 2, sharex=True).ravel()
        x = self.logit.layers
        for ax, (title, series) in zip(axes, PANELS):
            for k, (name, label, style) in enumerate(self.lenses):
                res = getattr(self, name)
                for j, (what, m) in enumerate(series):
                    colour = f"C{k + 3 * j}"
                    text = label if len(series) == 1 else f"{label}: {what}"
                    ax.plot(x, getattr(res, m), style, marker="o", ms=3, color=colour, label=text)
                    ax.fill_between(x, res.ci[m][:, 0], res.ci[m][:, 1], alpha=0.2, color=colour)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        for ax in axes[2:]:
            ax.set_xlabel("layer (0 = embeddings)")
            ax.xaxis.get_major_locator().set_params(integer=True)
        fig.suptitle(self._title())
        return fig

    def plot_html(self):
        """The same comparison as an interactive plotly Figure (``write_html`` works offline)."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=2, cols=2, subplot_titles=[t for t, _ in PANELS], shared_xaxes=True)
        x = [int(v) for v in self.logit.layers]
        for p, (_, series) in enumerate(PANELS):
            r, c = p // 2 + 1, p % 2 + 1
            for name, label, style in self.lenses:
                res = getattr(self, name)
                for what, m in series:
                    text = label if len(series) == 1 else f"{label}: {what}"
                    line = {"dash": {"--": "dash", ":": "dot"}.get(style, "solid")}
                    fig.add_trace(
                        go.Scatter(x=x, y=getattr(res, m).tolist(), mode="lines+markers", name=text, line=line),
                        row=r,
                        col=c,
                    )
        fig.update_xaxes(title_text="layer (0 = embeddings)", row=2)
        fig.update_layout(title=self._title(), height=700, template="plotly_white")
        return fig

    def __repr__(self) -> str:
        return (
            f"LensComparison({self.meta.get('model', '?')!r}, layers={len(self.logit.layers)}, "
            f"tokens={self.n_tokens}, lenses={[k for k, _, _ in self.lenses]})"
        )


def print_comparison(result: LensComparison, paths: dict) -> None:
    """Per-layer table of every lens on stdout (CE, bits/byte, KL, top-1), then the files written."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result.meta.get('model')}: {result.describe()}, {result.n_tokens:,} tokens",
        caption="CE, KL(final ‖ layer): nats/token; bits/B: bits/byte; top-1 accuracy",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("layer", justify="right", no_wrap=True)
    names = [key for key, _, _ in result.lenses]
    for metric in ("CE", "bits/B", "KL", "top-1"):
        for lens in names:
            table.add_column(f"{metric}\n{SHORT.get(lens, lens)}", justify="right", no_wrap=True)
    fmt = lambda v: f"{v:.3f}" if v == v else "n/a"  # noqa: E731
    res = [getattr(result, key) for key in names]
    for i, name in enumerate(result.logit.layer_names):
        cells = []
        for m in ("ce", "bits_per_byte", "kl_to_final"):
            cells += [fmt(getattr(r, m)[i]) for r in res]
        cells += [f"{r.top1_accuracy[i]:.1%}" for r in res]
        table.add_row(name, *cells)
    console = Console()
    console.print(table)
    for path in paths.values():
        console.print(f"wrote {path}")


__all__ = ["LensComparison", "print_comparison", "METRICS"]
