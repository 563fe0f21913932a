"""Render a :class:`~logitscope.lens.result.LensResult`: static and interactive heatmaps, trajectories,
a notebook grid and terminal tables.

Data flows one way: these functions take a result and never touch the model. matplotlib, plotly
and rich are imported inside the functions that use them, so ``import logitscope`` stays fast.
"""

from __future__ import annotations

import os

from ..io.formats import check_plot_path, is_html
from .metrics import METRICS, Metric, get_metric, metric_values
from .text import label, visible

__all__ = [
    "HTML",
    "METRICS",
    "Metric",
    "get_metric",
    "label",
    "metric_values",
    "notebook_html",
    "plot",
    "plot_trajectory",
    "visible",
]


def plot(result, path: str | os.PathLike | None = None, *, metric: str = "entropy", **kwargs):
    """Heatmap of a result: PNG/SVG/PDF through matplotlib, ``.html`` through plotly.

    Args:
        result: a :class:`~logitscope.lens.result.LensResult`.
        path: file to write (atomically: complete or not at all); its suffix picks the
            renderer. ``None`` returns the matplotlib figure without saving.
        metric: ``entropy``, ``prob``, ``target``, ``rank`` or ``kl`` (see :mod:`.metrics`).
        **kwargs: passed to :func:`.heatmap.heatmap` or :func:`.interactive.heatmap_html`.

    Returns:
        The matplotlib ``Figure``, or the plotly ``Figure`` for ``.html``.
    """
    if path is None:
        from .heatmap import heatmap

        return heatmap(result, None, metric=metric, **kwargs)
    from ..io.atomic import atomic_file

    check_plot_path(path)

    with atomic_file(path) as tmp:  # the file appears complete or not at all
        if is_html(path):
            from .interactive import heatmap_html

            return heatmap_html(result, tmp, metric=metric, **kwargs)
        from .heatmap import heatmap

        return heatmap(result, tmp, metric=metric, **kwargs)


def plot_trajectory(result, position: int = -1, path: str | os.PathLike | None = None, **kwargs):
    """Probability or rank of the tracked tokens (and the target) across layers at one position.

    See :func:`.trajectory.trajectory`; ``.html`` paths are drawn with plotly.
    """
    from .trajectory import trajectory

    if path is None:
        return trajectory(result, position, None, **kwargs)
    from ..io.atomic import atomic_file

    check_plot_path(path)

    with atomic_file(path) as tmp:  # the file appears complete or not at all
        return trajectory(result, position, tmp, **kwargs)


class HTML(str):
    """An HTML string that a notebook displays as HTML (``_repr_html_``), not as escaped text."""

    def _repr_html_(self) -> str:
        return str(self)


def notebook_html(result, **kwargs) -> HTML:
    """The static coloured grid of a result (no script; see :func:`.notebook.grid_html`), as
    :class:`HTML`. ``result.show()`` is the interactive widget."""
    from .notebook import grid_html

    return HTML(grid_html(result, **kwargs))
