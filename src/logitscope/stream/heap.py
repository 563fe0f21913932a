"""Hand the heap's free memory back to the OS between blocks (glibc ``malloc_trim``).

A block's forward (or its recompute and backward) allocates its temporaries and frees them; glibc
keeps freed memory in the heap for reuse, and when they interleave with longer-lived tensors (the
streams, the cotangents) the heap keeps free holes. Measured on the streamed J-lens fit (8 blocks
of 22 MB): without the trim the anonymous memory grew from block to block of the walk and the
process kept 54–56 MB after the fit, with it 37–43 MB and flat between blocks; the peak was
108–110 MB either way (one run without it: 128 MB). ``malloc_trim(0)`` returns the free pages of
every arena (``MADV_DONTNEED`` on whole free pages, so live data never moves); it costs a walk over
the arenas' free lists, ~0.03 ms here, against a block's tens of milliseconds or more. Elsewhere
than glibc (macOS, musl) it does nothing."""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def _malloc_trim():
    try:  # the C library this process already runs on (no library search: find_library spawns ldconfig)
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no process-wide handle
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_heap() -> None:
    """Return the heap's free pages to the OS, where the C library can (glibc); else nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
