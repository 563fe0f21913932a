"""Per-layer corpus curves (EvalResult): a matplotlib figure and an interactive plotly figure."""

from __future__ import annotations

PANELS = [  # (title, [(label, metric)]) of the four plot panels
    ("cross-entropy vs next token (nats)", [("CE", "ce")]),
    ("KL(final ‖ layer) (nats)", [("KL", "kl_to_final")]),
    ("entropy (nats)", [("entropy", "entropy")]),
    ("top-1", [("accuracy", "top1_accuracy"), ("agreement with final", "top1_agreement")]),
]


def _title(res) -> str:
    n, w = res.n_tokens, res.n_windows
    return f"{res.meta.get('model', 'model')}: {n:,} token{'s' * (n != 1)}, {w:,} window{'s' * (w != 1)}"


def curves_figure(res):
    """A matplotlib Figure of the four per-layer curves with CI bands."""
    from .figure import InlineFigure as Figure

    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    x = res.layers
    for ax, (title, series) in zip(axes, PANELS):
        for label, m in series:
            ax.plot(x, getattr(res, m), marker="o", ms=3, label=label)
            ax.fill_between(x, res.ci[m][:, 0], res.ci[m][:, 1], alpha=0.25)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
    for ax in axes[2:]:
        ax.set_xlabel("layer (0 = embeddings)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(_title(res))
    return fig


def curves_html(res):
    """The same curves as an interactive plotly Figure (``write_html`` works offline)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for t, _ in PANELS], shared_xaxes=True)
    x = [int(v) for v in res.layers]
    for k, (_, series) in enumerate(PANELS):
        r, c = k // 2 + 1, k % 2 + 1
        for label, m in series:
            lo, hi = res.ci[m][:, 0].tolist(), res.ci[m][:, 1].tolist()
            fig.add_trace(
                go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", opacity=0.25, hoverinfo="skip",
                           line={"width": 0}, showlegend=False),
                row=r, col=c,
            )  # fmt: skip
            fig.add_trace(go.Scatter(x=x, y=getattr(res, m).tolist(), mode="lines+markers", name=label), row=r, col=c)
    fig.update_xaxes(title_text="layer (0 = embeddings)", row=2)
    fig.update_layout(title=_title(res), height=700, template="plotly_white")
    return fig
