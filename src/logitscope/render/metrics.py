"""The statistics a heatmap can colour by, with their colour scales.

Every metric maps a :class:`~logitscope.lens.result.LensResult` to an ``(S, P)`` float array with NaN
where it is undefined (e.g. the target statistics at the last position, which has no next token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

MISSING = "#d9d9d9"  # colour of a cell whose metric is undefined (NaN)


@dataclass(frozen=True)
class Metric:
    """How to show one statistic.

    Attributes:
        name: key in :data:`METRICS`.
        label: colour-bar label.
        cmap: matplotlib colormap name.
        log: colour on a log scale (ranks).
        bounds: fixed (vmin, vmax); ``None`` ends are taken from the data.
        fmt: format of one value in tooltips.
    """

    name: str
    label: str
    cmap: str
    log: bool = False
    bounds: tuple[float | None, float | None] = (0.0, None)
    fmt: str = "{:.3f}"


METRICS: dict[str, Metric] = {
    "entropy": Metric("entropy", "entropy (nats)", "viridis"),
    "prob": Metric("prob", "top-1 probability", "Blues", bounds=(0.0, 1.0)),
    "target": Metric("target", "target probability", "Greens", bounds=(0.0, 1.0)),
    "rank": Metric("rank", "target rank (1 = top-1)", "Blues_r", log=True, bounds=(1.0, None), fmt="{:.0f}"),
    "kl": Metric("kl", "KL(final \u2016 layer) (nats)", "magma_r"),
}
ALIASES = {"top1": "prob", "top_prob": "prob", "target_prob": "target", "target_rank": "rank", "kl_to_final": "kl"}


def get_metric(name: str | Metric) -> Metric:
    """The :class:`Metric` called ``name`` (or one of its aliases); ``InputError`` if unknown."""
    if isinstance(name, Metric):
        return name
    key = ALIASES.get(name, name)
    if key not in METRICS:
        raise InputError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return METRICS[key]


def metric_values(result, metric: str | Metric) -> np.ndarray:
    """(S, P) float64 values of ``metric`` for ``result``; NaN where undefined.

    ``rank`` is 1-based (1 = the target is the top-1 token) so it can be drawn on a log scale.
    """
    name = get_metric(metric).name
    if name == "entropy":
        values = result.entropy
    elif name == "prob":
        values = result.top_probs[:, :, 0] if result.top_k else np.full(result.entropy.shape, np.nan)
    elif name == "target":
        values = result.target_prob
    elif name == "rank":
        ranks = result.target_rank.astype(np.float64)
        values = np.where(ranks >= 0, ranks + 1.0, np.nan)
    else:
        values = result.kl_to_final
    return np.asarray(values, dtype=np.float64)


def color_limits(values: np.ndarray, metric: str | Metric) -> tuple[float, float]:
    """(vmin, vmax) of the colour scale: the metric's fixed bounds, else the data's range."""
    m = get_metric(metric)
    finite = values[np.isfinite(values)]
    lo, hi = m.bounds
    if lo is None:
        lo = float(finite.min()) if finite.size else 0.0
    if hi is None:
        hi = float(finite.max()) if finite.size else lo + 1.0
        if m.log:
            hi = max(hi, 10.0)
    if hi <= lo:
        hi = lo + (1.0 if not m.log else 9.0)
    return float(lo), float(hi)


def norm_for(values: np.ndarray, metric: str | Metric):
    """A matplotlib ``Normalize`` (``LogNorm`` for ranks) over :func:`color_limits`."""
    from matplotlib.colors import LogNorm, Normalize

    lo, hi = color_limits(values, metric)
    return LogNorm(lo, hi) if get_metric(metric).log else Normalize(lo, hi)


def cell_colors(values: np.ndarray, metric: str | Metric, cmap: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Background and text colours of each cell, as ``#rrggbb`` strings.

    Args:
        values: (S, P) from :func:`metric_values`.
        metric: which metric (sets the colormap and scale).
        cmap: override the metric's colormap.

    Returns:
        ``(background, text)``, both (S, P) object arrays; NaN cells get :data:`MISSING` on black.
    """
    import matplotlib
    from matplotlib.colors import to_hex

    m = get_metric(metric)
    rgba = matplotlib.colormaps[cmap or m.cmap](norm_for(values, m)(np.ma.masked_invalid(values)).filled(0.0))
    bg = np.empty(values.shape, dtype=object)
    fg = np.empty(values.shape, dtype=object)
    for idx in np.ndindex(values.shape):
        if np.isfinite(values[idx]):
            bg[idx] = to_hex(rgba[idx][:3])
            fg[idx] = text_color(rgba[idx][:3])
        else:
            bg[idx], fg[idx] = MISSING, "#000000"
    return bg, fg


def text_color(rgb) -> str:
    """Black or white, whichever reads better on background ``rgb`` (floats in 0..1)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3])
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "#ffffff"


def colorscale(cmap: str, n: int = 11) -> list[list]:
    """A matplotlib colormap as ``[[t, "#rrggbb"], ...]`` stops (plotly's and the viewer's format)."""
    import matplotlib
    from matplotlib.colors import to_hex

    cm = matplotlib.colormaps[cmap]
    return [[i / (n - 1), to_hex(cm(i / (n - 1)))] for i in range(n)]


SHORT = {
    "entropy": "entropy",
    "prob": "top-1 prob",
    "target": "target prob",
    "rank": "target rank",
    "kl": "KL to final",
}


def metric_specs(names=None) -> dict[str, dict]:
    """Label, scale and colour stops of each metric, as the viewer's JavaScript reads them."""
    return {
        name: {
            "label": m.label,
            "short": SHORT.get(name, name),
            "log": m.log,
            "bounds": list(m.bounds),
            "colorscale": colorscale(m.cmap),
        }
        for name, m in METRICS.items()
        if names is None or name in names
    }
