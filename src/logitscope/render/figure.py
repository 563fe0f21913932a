"""A matplotlib Figure that shows itself in a notebook.

The plots are built without pyplot (no global figure manager, nothing to close), so Jupyter's
inline backend never sees them and a returned ``Figure`` would display as
``<Figure size ... with 1 Axes>``. :class:`InlineFigure` adds ``_repr_png_``,
so a figure returned at the end of a cell displays as
the image; saving is unchanged.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure


class InlineFigure(Figure):
    """A ``matplotlib.figure.Figure`` with a PNG rich display for notebooks."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=max(self.dpi, 100), facecolor=self.get_facecolor(), bbox_inches="tight")
        return buf.getvalue()
