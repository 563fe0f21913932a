"""The public name of the lens output formats: ``logitscope.export`` is :mod:`logitscope.lens.export`.

``logitscope.export.to_json(res)``, ``.load(path)``, ``.read_frame(path)`` and ``.JSON_SCHEMA``
(docs/lens_output.md) keep working from here; the code lives with the lens it writes.
"""

from .lens.export import FORMATS, JSON_SCHEMA, TEXT_COLUMNS, format_for, frame, load, read_frame, save, to_json

__all__ = ["FORMATS", "JSON_SCHEMA", "TEXT_COLUMNS", "format_for", "frame", "load", "read_frame", "save", "to_json"]
