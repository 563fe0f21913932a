"""Hand the heap's free memory back to the OS between blocks (glibc ``malloc_trim``).

A block's forward (or its recompute and backward) allocates its temporaries and frees them; glibc
keeps freed memory in the heap for reuse, and after a few blocks whose temporaries interleave
with longer-lived tensors (the streams, the cotangents) the heap holds free holes worth several
blocks: measured on the streamed J-lens fit, the process's anonymous memory grew by ~2 blocks
beyond what was alive. ``malloc_trim(0)`` returns the free pages of every arena (``MADV_DONTNEED``
on whole free pages, so live data never moves); it costs a walk over the arenas' free lists, well
under a millisecond here, against a block's tens of milliseconds or more. Elsewhere than glibc
(macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_heap() -> None:
    """Return the heap's free pages to the OS, where the C library can (glibc); else nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
