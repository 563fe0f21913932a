"""The public name of the lens output formats: ``logitscope.export`` is :mod:`logitscope.lens.export`.

``logitscope.export.to_json(res)``, ``.load(path)``, ``.read_frame(path)`` and ``.JSON_SCHEMA``
(docs/lens_output.md) keep working from here; the code lives with the lens it writes
(:mod:`logitscope.lens.export`; ``load`` is :func:`logitscope.lens.result.load`).
"""

from .lens.export import FORMATS, JSON_SCHEMA, TEXT_COLUMNS, format_for, frame, read_frame, save, to_json
from .lens.result import load

__all__ = ["FORMATS", "JSON_SCHEMA", "TEXT_COLUMNS", "format_for", "frame", "load", "read_frame", "save", "to_json"]
