"""A matplotlib Figure that shows itself in a notebook.

The plots are built without pyplot (no global figure manager, nothing to close), so Jupyter's
inline backend never sees them and a returned ``Figure`` would display as
``<Figure size ... with 1 Axes>``. :class:`InlineFigure` adds ``_repr_png_``,
so a figure returned at the end of a cell displays as
the image. :func:`save` writes any figure to a path, GIF included on every supported matplotlib.
"""

from __future__ import annotations

import io
import os

from matplotlib.figure import Figure


class InlineFigure(Figure):
    """A ``matplotlib.figure.Figure`` with a PNG rich display for notebooks."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=max(self.dpi, 100), facecolor=self.get_facecolor(), bbox_inches="tight")
        return buf.getvalue()


def save(fig: Figure, path: str | os.PathLike, **kwargs) -> None:
    """``fig.savefig(path, **kwargs)``, the format from the suffix of ``path``.

    matplotlib before 3.11 has no GIF writer (its ``savefig`` raises on ``.gif``): there the figure is
    drawn to PNG and Pillow (a matplotlib dependency) converts it, as matplotlib 3.11 itself does.
    """
    path = os.fspath(path)
    if path.lower().endswith(".gif") and "gif" not in fig.canvas.get_supported_filetypes():
        from PIL import Image

        buf = io.BytesIO()
        fig.savefig(buf, **{**kwargs, "format": "png"})
        buf.seek(0)
        with Image.open(buf) as image:
            image.save(path, format="GIF")
        return
    fig.savefig(path, **kwargs)
