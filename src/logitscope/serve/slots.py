"""One computation at a time per model, in a worker thread, behind a bounded queue.

Each model has a :class:`Slot`: an ``asyncio.Lock`` plus a count of admitted requests (running or
waiting). A request that would make more than ``1 + max_queue`` admitted gets :class:`Busy`
(the app answers 503 with ``Retry-After``) instead of piling up memory. The torch work runs in
Starlette's thread pool, so the event loop keeps answering while a model computes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class Busy(Exception):
    """The model's queue is full; try again after ``retry_after`` seconds."""

    def __init__(self, name: str, retry_after: int) -> None:
        super().__init__(f"model {name!r} is busy: its request queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class Gone(Exception):
    """The client went away (e.g. a newer request superseded it) before its turn came."""


class Stopping(Exception):
    """The server is shutting down (Ctrl-C): a request still waiting or computing is answered 503."""


class Stop:
    """The server's shutdown flag, awaitable by requests; :meth:`set` may be called from a signal handler."""

    def __init__(self) -> None:
        self.requested = False
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        self.requested = True
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # created inside the running loop (a test client may run several)
            self._event = asyncio.Event()
            self._loop = loop
        if self.requested:
            self._event.set()
        await self._event.wait()


async def unless_stopped(stop: Stop, work) -> T:
    """Await ``work`` (a coroutine), unless the server stops first: then :class:`Stopping`.

    The computation's thread cannot be interrupted; its result is dropped and the client gets its
    answer (503) at once, so the shutdown does not wait for it.
    """
    if stop.requested:
        work.close()
        raise Stopping()
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no "never retrieved" log
    raise Stopping()


class Slot:
    """The queue of one model.

    Args:
        name: the model's name (for messages).
        max_queue: requests allowed to wait while one runs.
    """

    def __init__(self, name: str, max_queue: int) -> None:
        self.name = name
        self.max_queue = max_queue
        self.admitted = 0  # running + waiting
        self.seconds = 0.5  # running mean of one computation, for Retry-After
        self._lock: asyncio.Lock | None = None

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:  # created inside the running loop
            self._lock = asyncio.Lock()
        return self._lock

    def retry_after(self) -> int:
        return max(1, math.ceil(self.seconds * self.admitted))


async def run_exclusive(slots: Sequence[Slot], fn: Callable[[], T], *, disconnected=None) -> T:
    """Run ``fn()`` in a worker thread while holding every slot's lock.

    Args:
        slots: the models ``fn`` uses (two for a two-model comparison; locked in name order, so
            two comparisons can never deadlock).
        fn: the blocking torch work.
        disconnected: optional ``async () -> bool``; checked once the locks are held, so a request
            the page already superseded does not compute.

    Raises:
        Busy: a slot's queue is full (nothing was admitted).
        Gone: the client disconnected while waiting.
    """
    unique = sorted({id(s): s for s in slots}.values(), key=lambda s: s.name)
    for slot in unique:
        if slot.admitted >= 1 + slot.max_queue:
            raise Busy(slot.name, slot.retry_after())
    for slot in unique:
        slot.admitted += 1
    try:
        async with AsyncExitStack() as stack:
            for slot in unique:
                await stack.enter_async_context(slot.lock)
            if disconnected is not None and await disconnected():
                raise Gone()
            start = time.perf_counter()
            try:
                return await run_in_threadpool(fn)
            finally:
                took = time.perf_counter() - start
                for slot in unique:
                    slot.seconds = 0.8 * slot.seconds + 0.2 * took
    finally:
        for slot in unique:
            slot.admitted -= 1
