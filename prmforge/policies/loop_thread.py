"""An asyncio event loop on a daemon thread, for sync APIs built on async clients (small, generic).

:class:`LoopThread` starts its loop on construction and stops it in
:meth:`~LoopThread.close` (which first awaits an optional async clean-up, e.g.
an HTTP client's ``aclose``). :meth:`~LoopThread.stream` runs a coroutine that
emits items and yields them to the calling thread as they come, so a sync
caller sees each result as soon as it exists; it works from any thread,
including one with no event loop. Closing the iterator early cancels the
coroutine and waits until it has unwound.

A loop thread belongs to the process that started it: in a forked child
:attr:`~LoopThread.alive` is false and ``close`` does nothing (the thread is the
parent's), so the owner starts a new one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["LoopThread", "gather_or_cancel"]

T = TypeVar("T")
_DONE = object()
_JOIN_TIMEOUT_S = 10.0


class _Job:
    """A coroutine run as a task on ``loop``; ``done`` completes only once the task has finished."""

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop = loop
        self._task: asyncio.Task[None] | None = None
        loop.call_soon_threadsafe(self._start, coro)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._task = self._loop.create_task(coro)
        self._task.add_done_callback(self._finish)

    def _finish(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self.done.cancel()
        elif (exc := task.exception()) is not None:
            self.done.set_exception(exc)
        else:
            self.done.set_result(None)

    def cancel(self) -> None:
        """Cancel the task (from any thread); ``done`` completes once it has unwound."""
        self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class LoopThread:
    """An event loop running forever on a daemon thread named ``name``."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Running, and in the process that started it."""
        return self.pid == os.getpid() and self._thread.is_alive() and not self.loop.is_closed()

    def stream(
        self, work: Callable[[Callable[[T], None]], Coroutine[Any, Any, None]]
    ) -> Generator[T, None, None]:
        """Run ``work(emit)`` on the loop; yield each item it emits, then raise what it raised."""
        out: queue.Queue[object] = queue.Queue()
        job = _Job(self.loop, work(out.put))
        job.done.add_done_callback(lambda _: out.put(_DONE))
        try:
            while (item := out.get()) is not _DONE:
                yield item  # type: ignore[misc]
            job.done.result()
        finally:
            if not job.done.done():
                job.cancel()
                # (not concurrent.futures.wait: it never sees a future cancelled outside an executor)
                with contextlib.suppress(Exception):  # cancelled, timed out, or failed while unwinding
                    job.done.result(timeout=_JOIN_TIMEOUT_S)

    def close(self, cleanup: Callable[[], Awaitable[object]] | None = None) -> None:
        """Await ``cleanup()`` on the loop, stop it and join the thread (idempotent)."""
        if self.pid != os.getpid() or self.loop.is_closed():
            return

        async def run_cleanup() -> None:
            if cleanup is not None:
                await cleanup()

        if threading.current_thread() is self._thread:  # e.g. a finalizer run by the loop itself
            task = self.loop.create_task(run_cleanup())
            task.add_done_callback(lambda _: self.loop.stop())
            return
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(run_cleanup(), self.loop).result(timeout=_JOIN_TIMEOUT_S)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(timeout=_JOIN_TIMEOUT_S)
        if not self._thread.is_alive():
            self.loop.close()


async def gather_or_cancel(aws: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``aws`` together; on the first failure cancel the rest and raise that failure itself."""
    if not aws:
        return []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(a) for a in aws]
    except BaseExceptionGroup as eg:
        raise eg.exceptions[0] from None
    return [t.result() for t in tasks]
