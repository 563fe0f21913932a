"""Run a model whose blocks live on disk: each block's weights exist only while it computes.

The model's own forward drives the order (every architecture works as it does in memory, with the
whole batch going through each block). A forward pre-hook on block ``i`` installs its weights
(converted to the compute dtype and moved to the compute device) and hands block ``i + 1`` to a
worker thread, which reads it from disk while block ``i`` computes; a forward hook puts block
``i``'s ``meta`` parameters back, so at most two blocks are materialised at a time (one when
``prefetch=False``). The worker reads a block that is not in the page cache with ``O_DIRECT`` into
a reused buffer (:mod:`.direct`: on a 2-core machine the page cache's copying costs the compute a
core); a block whose pages are cached already (or a file system without direct reads) is mapped
zero-copy from the shards and its pages read in by the worker, so the compute never waits on a
page fault. The first time a block loads, that read is its NaN/inf scan
(:attr:`BlockStreamer.nonfinite`): the scan costs no pass over the disk of its own. When the last
block starts, the worker has the kernel read the head (first pass) and block 0 (for the next
forward: a corpus ``eval`` runs one per batch) into the page cache, so the disk stays busy while
the lens statistics compute, and those pages count in the process's memory only once used.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import nn

from ..arch.weights import all_finite
from .direct import DirectReader
from .heap import trim_heap
from .shards import Shards


def touch(t: torch.Tensor) -> None:
    """Fault in every page of a CPU tensor's memory (one byte read per 4 KiB page)."""
    if t.device.type != "cpu" or not t.numel() or not t.is_contiguous():
        return
    flat = t.reshape(-1)
    if flat.dtype != torch.uint8:
        flat = flat.view(torch.uint8)
    flat[::4096].sum()


class BlockStreamer:
    """Hooks that stream ``blocks`` from ``shards``.

    Args:
        blocks: the model's block list, its parameters on ``meta``.
        keys: per block, ``{parameter path inside the block: checkpoint tensor name}``.
        shards: where the tensors are.
        dtype: compute dtype (floating tensors are converted per block).
        device: compute device.
        prefetch: read block ``i + 1`` in a thread while block ``i`` computes.
        direct: read blocks not in the page cache with ``O_DIRECT`` (:mod:`.direct`), where the
            platform has it.

    Attributes:
        nonfinite: checkpoint names of streamed tensors found holding NaN/inf so far.
        loads: blocks materialised so far (a full pass over the model adds ``len(blocks)``).
        wait_s: seconds the forwards spent waiting for a block's weights (the disk, when it is
            slower than the compute).
        timeline: ``(event, block, perf_counter seconds)`` for ``"enter"``/``"ready"``/``"exit"`` of
            each block forward and ``"load0"``/``"load1"`` (start/end of the worker's read of it):
            where a streamed pass spends its time (``bench/bench_bigmodel.py`` summarises it).
        warm: checkpoint names of mapped resident tensors (the head) read when the last block of
            the first pass starts: with ``O_DIRECT`` into memory of their own, put in place of the
            maps when that block ends (where the tensor's owners are in ``warm_owners``:
            ``{name: [(module, attribute, is_parameter), ...]}``), else into the page cache.
        cyclic: when the last block starts, read block 0 into the page cache for the next forward.
        forget: after a block's forward, drop its pages from the page cache (set by
            :func:`~logitscope.stream.build.load_streamed` when the checkpoint is larger than the
            available memory, so the cache could not keep it between passes anyway).
        budget, resident_bytes: ``max_memory`` in bytes (``None``: not given) and the bytes of the
            parts kept in memory, set by :func:`~logitscope.stream.build.load_streamed`; they size
            the batches of corpus ``eval`` and lens training.
    """

    def __init__(
        self,
        blocks: nn.ModuleList,
        keys: list[dict[str, str]],
        shards: Shards,
        *,
        dtype: torch.dtype,
        device: torch.device,
        prefetch: bool = True,
        direct: bool = True,
    ) -> None:
        self.blocks, self.keys, self.shards = blocks, keys, shards
        self.dtype, self.device, self.prefetch = dtype, torch.device(device), prefetch
        self.nonfinite: set[str] = set()
        self.loads = 0
        self.wait_s = 0.0
        self.timeline: deque[tuple[str, int, float]] = deque(maxlen=8192)  # the latest events
        self.warm: list[str] = []
        self.warm_owners: dict[str, list[tuple[nn.Module, str, bool]]] = {}
        self._warm_read: Future | None = None
        self.budget: int | None = None
        self.resident_bytes = 0
        self.cyclic = True
        self.forget = False
        self._meta = [{p: _get_param(b, p) for p in k} for b, k in zip(blocks, keys)]
        self.direct = DirectReader() if direct and DirectReader.available() else None
        self._mapped: set[int] = set()  # blocks last loaded as maps of the shards (their pages are cached)
        self._installed: set[int] = set()
        self._scanned: set[int] = set()
        self._pending: dict[int, Future] = {}
        self._held = False  # a block is held for calls outside a model forward: the hooks stand aside
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logitscope-prefetch") if prefetch else None
        self._handles = []
        for i, block in enumerate(blocks):
            self._handles.append(block.register_forward_pre_hook(lambda m, a, i=i: self._enter(i)))
            self._handles.append(block.register_forward_hook(lambda m, a, o, i=i: self._exit(i)))

    @property
    def block_bytes(self) -> int:
        """Bytes of the largest block in the compute dtype."""
        return max(self._bytes(i) for i in range(len(self.blocks)))

    def _bytes(self, i: int) -> int:
        total = 0
        for key in self.keys[i].values():
            e = self.shards.entries[key]
            size = self.dtype.itemsize if e.dtype.is_floating_point else e.dtype.itemsize
            total += size * max(1, e.nbytes // e.dtype.itemsize)
        return total

    # -- loading -----------------------------------------------------------------------------
    def _load(self, i: int) -> dict[str, torch.Tensor]:
        """Block ``i``'s tensors, ready to compute with, their pages read (runs in the worker thread).

        The worker, not the compute, reads the bytes. A block whose pages are not in the page cache
        is read with ``O_DIRECT`` into a reused buffer (:mod:`.direct`: the disk's DMA instead of
        the page cache's CPU time). Otherwise, or where the file system refuses direct reads, the
        block is mapped zero-copy, and a map is only a promise of pages: a matmul that faults them
        in one 4 KiB page at a time waits on the disk with both cores idle, so every tensor is
        read here, by the NaN/inf scan the first time the block loads (it reads each byte once)
        and by touching one byte a page after that.
        """
        out = {}
        self.timeline.append(("load0", i, time.perf_counter()))
        scan = i not in self._scanned
        read = self._read_direct(i)
        for path, key in self.keys[i].items():
            t = read[key] if read is not None else self.shards.view(key, willneed=True)
            if t.is_floating_point() and t.dtype != self.dtype:
                t = t.to(self.dtype)  # reads the pages and writes a converted copy
            if t.device != self.device:
                t = t.to(self.device)
            if scan and t.is_floating_point():
                if not all_finite(t):
                    self.nonfinite.add(key)
            elif read is None:
                touch(t)
            out[path] = t
        self._scanned.add(i)
        if read is None:
            self._mapped.add(i)
        else:
            self._mapped.discard(i)
        self.timeline.append(("load1", i, time.perf_counter()))
        return out

    def _read_direct(self, i: int) -> dict[str, torch.Tensor] | None:
        """Block ``i`` read with ``O_DIRECT`` (by checkpoint name), or ``None``: its pages are in the
        page cache already (mostly), direct reads are off, or its files refuse them."""
        if self.direct is None:
            return None
        keys = list(self.keys[i].values())
        if self.shards.resident(keys) >= 0.5:
            return None
        return self.direct.read({k: self.shards.entries[k] for k in keys})

    def read_ahead(self, i: int) -> None:
        """Start reading block ``i`` for the next forward (block 0 at load): into a buffer where the
        block is not in the page cache (it then holds one block's memory until used), else into
        the page cache only (a cached block mapped now would count in this process until used)."""
        if self._pool is None:
            return
        keys = list(self.keys[i].values())
        if self.direct is not None and not self.direct.refused and self.shards.resident(keys) < 0.5:
            self._fetch(i)
        else:
            self._ahead(keys)

    def _read_resident(self, keys: list[str]) -> dict[str, torch.Tensor] | None:
        """The mapped resident tensors ``keys`` (the head) read with ``O_DIRECT`` into memory of
        their own (worker thread); ``None`` where refused, or where their pages are cached (mostly)
        already: then the kernel reads the rest into the page cache, and the maps stay."""
        if self.shards.resident(keys) < 0.5:
            got = self.direct.read({k: self.shards.entries[k] for k in keys}, pooled=False)
            if got is not None:
                return got
        self.shards.advise(keys)
        return None

    def _adopt_resident(self) -> None:
        """Put the directly read resident tensors in place of their maps (every tied name's
        parameter gets the new data: the same bytes, now in anonymous memory, so the statistics
        fault no file page in and the maps' pages are released)."""
        future, self._warm_read = self._warm_read, None
        got = future.result() if future is not None else None
        for key, t in (got or {}).items():
            for module, attr, is_param in self.warm_owners.get(key, ()):
                if is_param:
                    module._parameters[attr].data = t
                else:
                    module._buffers[attr] = t

    def _ahead(self, keys) -> None:
        """Have the kernel read ``keys`` into the page cache (not into this process), in the worker."""
        self._pool.submit(self.shards.advise, list(keys))

    def _fetch(self, i: int) -> Future:
        if i not in self._pending:
            if self._pool is not None:
                self._pending[i] = self._pool.submit(self._load, i)
            else:
                f: Future = Future()
                f.set_result(self._load(i))
                self._pending[i] = f
        return self._pending[i]

    @property
    def in_memory(self) -> list[int]:
        """Blocks whose weights this streamer holds now: installed, or read (or being read) ahead."""
        return sorted(self._installed | set(self._pending))

    def _install(self, i: int, keep: tuple[int | None, ...]) -> None:
        """Install block ``i`` alone: other blocks put back, prefetches not in ``keep`` dropped."""
        for j in list(self._installed):  # after an aborted forward (the lens stops early)
            if j != i:
                self._exit(j)
        for j in list(self._pending):  # a prefetch that the last forward never used
            if j != i and j not in keep:
                self._pending.pop(j).result()
        if i not in self._installed:
            t0 = time.perf_counter()
            self.timeline.append(("enter", i, t0))
            tensors = self._fetch(i).result()
            t1 = time.perf_counter()
            self.timeline.append(("ready", i, t1))
            self.wait_s += t1 - t0
            for path, t in tensors.items():
                _set_param(self.blocks[i], path, nn.Parameter(t, requires_grad=False))
            self._installed.add(i)
            self.loads += 1
            self._pending.pop(i, None)

    @contextmanager
    def hold(self, i: int, *, ahead: int | None = None) -> Iterator[nn.Module]:
        """Block ``i`` materialised for calls outside the model's forward (a recompute), released after.

        The same loading as a forward's (dtype, device, NaN/inf scan, ``loads``); ``ahead``: a
        block the worker reads meanwhile (the next one a backward walk needs). While held, the
        forward hooks stand aside, so calling the block neither releases it nor reads
        block ``i + 1``. At most two blocks are in memory: ``i`` and ``ahead``.
        """
        self._install(i, (ahead,))
        if ahead is not None and self.prefetch and ahead != i:
            self._fetch(ahead)
        self._held = True
        try:
            yield self.blocks[i]
        finally:
            self._held = False
            self._exit(i)

    def _enter(self, i: int) -> None:
        if self._held:
            return
        self._install(i, (i + 1,))
        if self.prefetch and i + 1 < len(self.blocks):
            self._fetch(i + 1)
        elif self.prefetch and self._pool is not None:  # the last block: the head, then the next pass
            if self.direct is not None:
                self.direct.shrink(0)  # no block follows in this pass: the free buffer goes before the head comes
            if self.warm:
                warm, self.warm = self.warm, []
                if self.direct is not None and self.warm_owners:
                    self._warm_read = self._pool.submit(self._read_resident, warm)
                else:
                    self._ahead(warm)
            if self.cyclic and i:  # into the page cache only: the statistics' memory stays one block lower
                self._ahead(self.keys[0].values())

    def _exit(self, i: int) -> None:
        if i in self._installed and not self._held:
            self.timeline.append(("exit", i, time.perf_counter()))
            for path, meta in self._meta[i].items():
                _set_param(self.blocks[i], path, meta)
            self._installed.discard(i)
            trim_heap()  # the block's temporaries are freed: their pages go back, not into a growing heap
            if self.direct is not None and i == len(self.blocks) - 1:
                self.direct.shrink(0)  # the pass is over: unmap the free buffers (the head's statistics follow)
                self._adopt_resident()
            if self.forget and i in self._mapped:  # the views are gone with the parameters: their pages can go too
                keys = list(self.keys[i].values())
                if self._pool is not None:
                    self._pool.submit(self.shards.forget, keys)
                else:
                    self.shards.forget(keys)

    def release(self) -> None:
        """Drop every materialised block and wait for the worker: a prefetch in flight and the
        read-ahead and page-cache drops it has queued (one worker thread: a no-op submitted
        last runs after all of them)."""
        for j in list(self._installed):
            self._exit(j)
        for j in list(self._pending):
            self._pending.pop(j).result()
        if self._pool is not None:
            self._pool.submit(lambda: None).result()
        if self.direct is not None:
            self.direct.shrink(0)
            self._adopt_resident()  # a forward that failed in its last block

    def close(self) -> None:
        """Remove the hooks and stop the worker; the blocks stay on ``meta``."""
        self.release()
        for h in self._handles:
            h.remove()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.direct is not None:
            self.direct.close()


def _owner(block: nn.Module, path: str) -> tuple[nn.Module, str]:
    mod_path, _, name = path.rpartition(".")
    return (block.get_submodule(mod_path) if mod_path else block), name


def _get_param(block: nn.Module, path: str) -> nn.Parameter:
    module, name = _owner(block, path)
    return module._parameters[name]


def _set_param(block: nn.Module, path: str, value: nn.Parameter) -> None:
    module, name = _owner(block, path)
    module._parameters[name] = value
