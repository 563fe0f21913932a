"""Streamed models: blocks read one at a time from the checkpoint's own safetensors shards.

For models larger than memory. :func:`load_streamed` builds the model, :class:`BlockStreamer`
materialises each block for its forward (prefetching the next one in a thread), :mod:`.shards`
maps tensors zero-copy, and :mod:`.budget` reads ``max_memory``.
"""

from __future__ import annotations

__all__ = ["load_streamed", "is_streamed", "streamer_of"]


def load_streamed(*args, **kwargs):
    """See :func:`logitscope.stream.build.load_streamed`."""
    from .build import load_streamed as _load

    return _load(*args, **kwargs)


def streamer_of(model):
    """The :class:`~logitscope.stream.streamer.BlockStreamer` of a streamed model, else ``None``."""
    return getattr(model, "_logitscope_streamer", None)


def is_streamed(model) -> bool:
    return streamer_of(model) is not None
