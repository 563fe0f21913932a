"""Notebook displays as one-line class attributes: ``_repr_html_ = shown("top_tokens_html")``.

The display code lives in :mod:`logitscope.render.reprs`, imported only when a result is shown.
"""

from __future__ import annotations


def shown(name: str):
    """A method calling ``logitscope.render.reprs.<name>(self)``."""

    def method(self) -> str:
        from ..render import reprs

        return getattr(reprs, name)(self)

    method.__name__ = name
    return method
