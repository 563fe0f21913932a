"""Zero-copy tensors from a checkpoint's own safetensors shards.

A safetensors file is an 8-byte little-endian header length, a JSON header
``{name: {"dtype", "shape", "data_offsets": [begin, end]}}`` and the raw bytes. :class:`Shards`
parses the headers only (no weights are read) and :meth:`Shards.view` maps one tensor's bytes
with ``mmap`` (private, copy-on-write: nothing is written back) and wraps them with
``torch.frombuffer``: no copy in memory and no second copy on disk. The pages come from the page
cache when first touched; they leave the process's memory when the last view of the map is gone.
"""

from __future__ import annotations

import ctypes
import functools
import json
import mmap
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CorruptWeightsError, UnsupportedModelError

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_PAGE = mmap.ALLOCATIONGRANULARITY


@dataclass(frozen=True)
class Entry:
    """Where one tensor lives: its file, byte range (absolute offsets) and layout."""

    path: str
    begin: int
    end: int
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _read_header(path: Path) -> dict[str, Entry]:
    try:
        with open(path, "rb", buffering=0) as f:
            if hasattr(os, "posix_fadvise"):  # the header's pages only: no read-ahead into the weights
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError(f"header length {n}")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as err:
        raise CorruptWeightsError(f"cannot read the safetensors header of {str(path)!r}: {err}") from None
    base = 8 + n
    size = os.path.getsize(path)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise UnsupportedModelError(
                f"{name!r} in {path.name} has dtype {info['dtype']}, which streaming cannot map"
            )
        b, e = info["data_offsets"]
        if base + e > size:
            raise CorruptWeightsError(
                f"{str(path)!r} is truncated: it ends at byte {size}, and its tensor {name!r} at {base + e}"
            )
        out[name] = Entry(str(path), base + b, base + e, _DTYPES[info["dtype"]], tuple(info["shape"]))
    return out


class Shards:
    """The tensors of every ``*.safetensors`` file of a model directory, by name.

    Args:
        folder: a model directory (``model.safetensors``, or shards listed in
            ``model.safetensors.index.json``).

    Raises:
        UnsupportedModelError: the directory holds no safetensors weights (streaming maps only
            safetensors; ``.bin`` checkpoints must be loaded whole or with ``offload_folder``).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        index = folder / "model.safetensors.index.json"
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            paths = [folder / f for f in files]
        else:
            paths = sorted(folder.glob("*.safetensors"))
        if not paths:
            raise UnsupportedModelError(
                f"streaming reads safetensors shards, and {str(folder)!r} has none; "
                "load the whole model, or pass offload_folder= to let accelerate offload it"
            )
        self.entries: dict[str, Entry] = {}
        for p in paths:
            self.entries.update(_read_header(p))

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def nbytes(self, names) -> int:
        """Bytes on disk of the named tensors."""
        return sum(self.entries[n].nbytes for n in names)

    def advise(self, names) -> None:
        """Ask the kernel to read the named tensors into the page cache, in the background
        (``POSIX_FADV_WILLNEED``): a later :meth:`view` finds its pages there, and until then they
        count in no process's memory."""
        self._fadvise(names, "POSIX_FADV_WILLNEED")

    def _fadvise(self, names, advice: str) -> None:
        if not hasattr(os, "posix_fadvise"):
            return
        flag = getattr(os, advice)
        by_file: dict[str, list[Entry]] = {}
        for n in names:
            by_file.setdefault(self.entries[n].path, []).append(self.entries[n])
        for path, entries in by_file.items():
            fd = os.open(path, os.O_RDONLY)
            try:
                for e in entries:
                    os.posix_fadvise(fd, e.begin, e.nbytes, flag)
            finally:
                os.close(fd)

    def resident(self, names) -> float:
        """The fraction of the named tensors' pages that are in the page cache now (``mincore`` on a
        map of them: nothing is read); 0.0 where ``mincore`` is not available."""
        mincore = _mincore()
        total = hit = 0
        for n in names:
            e = self.entries[n]
            start = e.begin - e.begin % _PAGE
            length = e.end - start
            if length <= 0 or mincore is None:
                continue
            try:
                with open(e.path, "rb") as f:
                    mm = mmap.mmap(f.fileno(), length, access=mmap.ACCESS_COPY, offset=start)
            except (OSError, ValueError):  # gone or truncated since the load: the read will say so
                total += 1
                continue
            try:
                pages = -(-length // mmap.PAGESIZE)
                vec = (ctypes.c_ubyte * pages)()
                anchor = ctypes.c_char.from_buffer(mm)  # the map's address (exports the buffer until deleted)
                try:
                    if mincore(ctypes.addressof(anchor), ctypes.c_size_t(length), vec) != 0:
                        return 0.0
                finally:
                    del anchor
                hit += sum(b & 1 for b in bytes(vec))
                total += pages
            finally:
                mm.close()
        return hit / total if total else 0.0

    def forget(self, names) -> None:
        """Drop the named tensors' pages from the page cache (``POSIX_FADV_DONTNEED``).

        For a checkpoint larger than the memory: a pass reads every block once, so a block's pages
        would be evicted before the next pass anyway; dropping them as soon as the block is done
        leaves free pages for the next block's read, instead of making the kernel reclaim the
        oldest ones (on a small machine, CPU time the compute needs). Pages still mapped by a live
        view are kept by the kernel.
        """
        self._fadvise(names, "POSIX_FADV_DONTNEED")

    def view(self, name: str, *, willneed: bool = False) -> torch.Tensor:
        """The tensor ``name`` backed by the file's pages (no copy); copied only if misaligned.

        With ``willneed`` the kernel is asked to read the pages into the page cache now
        (``MADV_WILLNEED``, from a worker thread): the compute that touches them later finds them
        there, and they count in this process's memory only while a view of them is alive.
        """
        e = self.entries[name]
        start = e.begin - e.begin % _PAGE
        if e.nbytes == 0:
            return torch.empty(e.shape, dtype=e.dtype)
        with open(e.path, "rb") as f:
            if os.fstat(f.fileno()).st_size < e.end:  # a map past the end would fault (SIGBUS) when read
                raise CorruptWeightsError(
                    f"{e.path!r} is truncated: it ends before its tensor {name!r} does (byte {e.end})"
                )
            mm = mmap.mmap(f.fileno(), e.end - start, access=mmap.ACCESS_COPY, offset=start)
        if willneed and hasattr(mm, "madvise"):
            mm.madvise(mmap.MADV_WILLNEED)
        return tensor_in(mm, e.begin - start, e)


def tensor_in(buffer, offset: int, e: Entry) -> torch.Tensor:
    """The tensor ``e`` whose bytes start at ``offset`` of a writable ``buffer`` (a file map or a
    read buffer): a view, no copy, and the view keeps the buffer alive; copied only if misaligned."""
    if e.nbytes == 0:
        return torch.empty(e.shape, dtype=e.dtype)
    numel = 1
    for s in e.shape:
        numel *= s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frombuffer warns about non-writable buffers; these are writable
        t = torch.frombuffer(buffer, dtype=e.dtype, count=numel, offset=offset).view(e.shape)
    if offset % t.element_size():  # an odd-aligned tensor: kernels want natural alignment
        t = t.clone()
    return t


@functools.cache
def _mincore():
    try:
        fn = ctypes.CDLL(None, use_errno=True).mincore
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    fn.restype = ctypes.c_int
    return fn
