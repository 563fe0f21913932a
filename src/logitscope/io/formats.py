"""Output formats by file suffix: one rule for every ``save()``, ``plot(path)`` and ``--out``/``--plot``.

Every writer picks its format from the destination's suffix through :func:`format_of` (an unknown
suffix is one ``InputError`` listing the known ones), plots are HTML (plotly) when
:func:`is_html` and images (matplotlib) otherwise, and every ``save()`` returns the
:class:`~pathlib.Path` it wrote (a file, or the folder of a corpus run).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".html", ".htm")  # matplotlib images, or a plotly page (the CLI's)
# every suffix ``plot(path)`` writes in Python: matplotlib's image formats (GIF on every supported
# matplotlib, see ``render.figure.save``) and plotly's HTML
IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".gif", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".eps", ".ps", ".svgz")
HTML_SUFFIXES = (".html", ".htm")


def suffix_of(path) -> str:
    """The lower-case suffix of ``path`` (``""`` for ``None``)."""
    return Path(path).suffix.lower() if path is not None else ""


def is_html(path) -> bool:
    """Whether a plot written to ``path`` is an interactive HTML page (else an image)."""
    return suffix_of(path) in HTML_SUFFIXES


def format_of(path, formats: dict[str, str], *, what: str = "output", hint: str = "") -> str:
    """The format ``formats[suffix]`` of ``path``, or an ``InputError`` naming the suffixes that work.

    Args:
        path: the destination.
        formats: ``{".json": "json", ...}``: suffix (lower case, with the dot) → format name.
        what: what is written, for the message.
        hint: appended to the message (e.g. ``" or pass format="``).
    """
    suffix = suffix_of(path)
    if suffix not in formats:
        raise InputError(
            f"cannot tell the format of {os.fspath(path)!r} for the {what}; use a suffix {', '.join(formats)}{hint}"
        )
    return formats[suffix]


def check_plot_path(path) -> None:
    """Refuse, before anything is drawn, a plot path whose suffix names no image format or HTML.

    Without this a missing suffix reached matplotlib as the atomic temporary's (``Format 'tmp' is
    not supported``) and an unknown one as a raw ``ValueError``.
    """
    suffix = suffix_of(path)
    if suffix in IMAGE_SUFFIXES or suffix in HTML_SUFFIXES:
        return
    got = f"the suffix {suffix!r}" if suffix else "no suffix"
    known = ", ".join(IMAGE_SUFFIXES[:5] + HTML_SUFFIXES[:1])
    raise InputError(f"cannot tell the plot format of {os.fspath(path)!r} ({got}); use a suffix such as {known}")
