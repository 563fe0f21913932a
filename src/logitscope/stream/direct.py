"""Blocks read with ``O_DIRECT`` into reused, page-aligned buffers: the disk's bytes, not the CPU's time.

A buffered read goes through the page cache: the kernel allocates a cache page for every 4 KiB,
copies into it, maps it into the process on the first touch, and reclaims it later. On a machine
with few cores that is CPU the blocks' compute needs. Measured on this project's 2-core VM, one
5 GB shard cold: buffered 0.73–0.86 GB/s with 5.0–6.4 s of system time; ``O_DIRECT`` 0.9–2.2 GB/s
with 0.2–0.4 s (the device DMAs into the buffer; large requests are faster: 8 MiB 0.88 GB/s,
64 MiB ~1.1–1.4, whole spans of a few hundred MB the fastest).

:class:`DirectReader` reads the byte spans of a block's tensors (tensors a few bytes apart merged
into one span) into one anonymous buffer and returns the tensors as views of it. Buffers are
reused, never while a tensor still views them: a ``torch.frombuffer`` tensor holds an export of
the buffer, so the buffer's reference count says whether any tensor, view or parameter made from
it is still alive (a caller that keeps a block's weight keeps its buffer, and the next block gets
a new one). The price: the pages never enter the page cache, so a model that would fit in RAM is
read from disk again on every pass (the streamer maps blocks whose pages are cached already
instead, :meth:`~logitscope.stream.shards.Shards.resident`).

Where ``O_DIRECT`` is refused (tmpfs, some network file systems, macOS: no such flag),
:meth:`DirectReader.read` returns ``None`` and the streamer maps the block as before: the same
bytes, a slower path.
"""

from __future__ import annotations

import errno
import mmap
import os
import sys
import threading
from collections.abc import Iterable

import torch

from ..errors import CorruptWeightsError
from .shards import Entry, tensor_in

ALIGN = 4096  # O_DIRECT: file offsets, lengths and buffer addresses in multiples of the logical block size
_MERGE_GAP = 1 << 20  # tensors at most this many bytes apart are read in one request
_MAX_IO = 1 << 30  # bytes per read call (Linux caps one call at ~2 GiB)


def spans(entries: Iterable[tuple[str, Entry]]) -> list[tuple[str, int, int, list[tuple[str, Entry]]]]:
    """``(path, begin, end, [(name, entry), ...])`` byte ranges covering ``entries``, aligned to
    :data:`ALIGN`, with tensors of one file less than ``_MERGE_GAP`` apart in one range."""
    out: list[tuple[str, int, int, list]] = []
    for name, e in sorted(entries, key=lambda ne: (ne[1].path, ne[1].begin)):
        begin, end = e.begin - e.begin % ALIGN, -(-e.end // ALIGN) * ALIGN
        if out and out[-1][0] == e.path and begin <= out[-1][2] + _MERGE_GAP:
            path, b, last, items = out[-1]
            out[-1] = (path, b, max(last, end), items + [(name, e)])
        else:
            out.append((e.path, begin, end, [(name, e)]))
    return out


class _Buffer:
    """One anonymous, page-aligned mapping; free when no tensor views it."""

    def __init__(self, nbytes: int) -> None:
        self.mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.reading = False  # taken by a read that has not made its tensors yet
        if hasattr(self.mm, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
            self.mm.madvise(mmap.MADV_HUGEPAGE)  # fewer page faults the first time it is filled

    @property
    def free(self) -> bool:
        # this attribute and the call's argument: no tensor exports it, and no read is filling it
        return not self.reading and sys.getrefcount(self.mm) <= 2

    def __len__(self) -> int:
        return len(self.mm)


class DirectReader:
    """Read tensors with ``O_DIRECT`` into a pool of reused buffers (thread-safe).

    Attributes:
        refused: files where ``O_DIRECT`` was refused (their blocks are mapped instead).
        bytes_read: bytes read so far.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._buffers: list[_Buffer] = []
        self._lock = threading.Lock()
        self.refused: set[str] = set()
        self.bytes_read = 0

    @staticmethod
    def available() -> bool:
        return hasattr(os, "O_DIRECT") and hasattr(os, "preadv")

    def read(self, entries: dict[str, Entry], *, pooled: bool = True) -> dict[str, torch.Tensor] | None:
        """The tensors ``{name: entry}`` as views of one buffer, read from disk; ``None`` where a
        file refuses ``O_DIRECT`` (nothing read). ``pooled=False``: a buffer of their own, outside
        the pool (for tensors kept for good, such as the head), freed with the last of them.

        Raises:
            CorruptWeightsError: a file ends before a tensor does.
        """
        plan = spans(entries.items())
        if not plan or any(path in self.refused for path, *_ in plan):
            return None
        need = sum(end - begin for _, begin, end, _ in plan)
        if pooled:
            buf = self._take(need)
        else:
            buf = _Buffer(need)
            buf.reading = True
        try:
            out = self._fill(buf, plan)
        finally:
            with self._lock:
                buf.reading = False
        if out is not None:
            self.bytes_read += need
        return out

    def _fill(self, buf: _Buffer, plan) -> dict[str, torch.Tensor] | None:
        out: dict[str, torch.Tensor] = {}
        pos = 0
        with memoryview(buf.mm) as mv:
            for path, begin, end, items in plan:
                want = max(e.end for _, e in items) - begin  # bytes that must arrive (the file may end sooner than `end`)
                got = self._pread(path, mv[pos : pos + end - begin], begin)
                if got is None:
                    return None
                if got < want:
                    raise CorruptWeightsError(
                        f"{path!r} ends at byte {begin + got}, before its tensor {items[-1][0]!r} does "
                        f"({begin + want}): the file is truncated"
                    )
                for name, e in items:
                    out[name] = tensor_in(buf.mm, pos + e.begin - begin, e)
                pos += end - begin
        return out

    def _pread(self, path: str, dst: memoryview, offset: int) -> int | None:
        fd = self._fd(path)
        if fd is None:
            return None
        done = 0
        try:
            while done < len(dst):
                n = os.preadv(fd, [dst[done : done + _MAX_IO]], offset + done)
                if n <= 0:
                    break  # end of file
                done += n
        except OSError as err:
            if done == 0 and err.errno == errno.EINVAL:  # this file system takes no direct reads
                self.refused.add(path)
                return None
            raise
        return done

    def _fd(self, path: str) -> int | None:
        with self._lock:
            if path in self._fds:
                return self._fds[path]
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
                self.refused.add(path)
                return None
            self._fds[path] = fd
            return fd

    def _take(self, nbytes: int) -> _Buffer:
        with self._lock:
            for buf in self._buffers:
                if len(buf) >= nbytes and buf.free:
                    buf.reading = True
                    return buf
            buf = _Buffer(-(-nbytes // (2 << 20)) * (2 << 20))  # whole 2 MiB (huge) pages
            buf.reading = True
            self._buffers.append(buf)
            return buf

    def shrink(self, keep: int = 0) -> None:
        """Unmap free buffers until at most ``keep`` buffers remain (buffers in use stay)."""
        with self._lock:
            for buf in list(self._buffers):
                if len(self._buffers) <= keep:
                    break
                if buf.free:
                    self._buffers.remove(buf)
                    buf.mm.close()

    @property
    def held_bytes(self) -> int:
        """Bytes of the buffers this reader holds now (in use or free)."""
        return sum(len(b) for b in self._buffers)

    def close(self) -> None:
        self.shrink(0)
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

