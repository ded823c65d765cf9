"""Several shards in one worker: one shard's CPU work runs while another's engine call generates.

A worker that runs shards one after another leaves its engine idle while a shard loads, grades,
labels, fuses and commits. With ``runner.shards_per_worker: 2`` it runs two shards on two threads
that pass a :class:`Baton`:

- CPU work (every stage outside an engine call) runs one thread at a time: whoever holds the baton.
  Nothing a stage shares across shards (a verifier's child process, the sandbox pool, the build
  directory) is ever used by two shard threads at once, so none of it needs to be thread-safe.
- An engine call hands the baton on: the calling thread lets go of it for the call and takes it
  back afterwards. Engine calls go one at a time (one model in memory; a GPU engine releases the
  GIL while it computes, an HTTP engine while it waits), so the engine works on one shard while the
  other shard's CPU work runs, and never sits idle while there is a call to make.

A grading thread a stage starts for itself (Monte Carlo grades one call while the engine generates
the next) does not take the baton: it already ran beside its own engine calls, and shares only the
answer grader (whose child process has a lock) with the other shard.

A request's result depends only on its own seed and every shard commits its own files, so the
content hash does not depend on how shards interleave. A signal cancels the threads: each stops at
its next step (taking the baton back after its engine call, or a stage boundary), and the worker is
torn down only once both have stopped.

Worked timeline (two shards, E: inside the engine, C: CPU work with the baton)::

    shard 0:  C(load) E(rollouts) C(grade) E(mc call 1) C(grade, fuse, commit)
    shard 1:         C(load)      E(rollouts)  C(grade)  E(mc call 1) ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["Baton", "Cancelled", "run_threads"]

T = TypeVar("T")


class Cancelled(Exception):
    """Raised in a shard thread at its next step once the worker is cancelled (a signal)."""


class Baton:
    """CPU work one thread at a time, engine calls one at a time, an engine call handing the baton on."""

    def __init__(self) -> None:
        self._cpu = threading.Lock()
        self._engine = threading.Lock()
        self._local = threading.local()
        self._cancelled = threading.Event()

    def holds(self) -> bool:
        """Whether the calling thread holds the baton."""
        return bool(getattr(self._local, "holds", False))

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the baton for a shard's whole run (let go of only inside :meth:`engine`)."""
        self._take()
        try:
            yield
        finally:
            if self.holds():
                self._local.holds = False
                self._cpu.release()

    @contextmanager
    def engine(self) -> Iterator[None]:
        """Around one engine call: one call at a time; the baton, if this thread holds it, is let go
        of for the call and taken back after it (raising :class:`Cancelled` once cancelled)."""
        handed_on = self.holds()
        if handed_on:
            self._local.holds = False
            self._cpu.release()
        try:
            with self._engine:
                yield
        finally:
            if handed_on:
                self._take()

    def cancel(self) -> None:
        """Make every shard thread stop at its next step (taking the baton, or a stage boundary)."""
        self._cancelled.set()

    def reset(self) -> None:
        """Undo :meth:`cancel` (once no shard thread runs)."""
        self._cancelled.clear()

    def check(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called."""
        if self._cancelled.is_set():
            raise Cancelled("the worker was cancelled")

    def _take(self) -> None:
        self._cpu.acquire()
        self._local.holds = True
        if self._cancelled.is_set():
            self._local.holds = False
            self._cpu.release()
            raise Cancelled("the worker was cancelled")


def run_threads(
    items: Sequence[T], threads: int, run: Callable[[T], None], baton: Baton, *, stop_on_error: bool
) -> list[tuple[T, BaseException]]:
    """Run ``run(item)`` for every item on ``threads`` threads, each holding ``baton`` for its item.

    Returns the items that raised, with what they raised, in the order they were taken. With
    ``stop_on_error`` the first failure cancels the rest (they raise :class:`Cancelled`, which is
    not returned for them). A KeyboardInterrupt while waiting cancels the threads, waits for them
    to stop at their next step (a second one does not cut that wait short: the caller tears the
    worker down next), and is raised again.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    queue = list(items)
    taken = threading.Lock()
    failures: list[tuple[T, BaseException]] = []

    def loop() -> None:
        while True:
            with taken:
                if not queue or (stop_on_error and failures):
                    return
                item = queue.pop(0)
            try:
                with baton.held():
                    run(item)
            except Cancelled:
                return
            except BaseException as err:
                with taken:
                    failures.append((item, err))
                if stop_on_error:
                    baton.cancel()

    ended = [threading.Event() for _ in range(threads)]

    def thread(i: int) -> None:
        try:
            loop()
        finally:
            ended[i].set()

    workers = [
        threading.Thread(target=thread, args=(i,), name=f"shard-thread-{i}", daemon=True)
        for i in range(threads)
    ]
    try:
        for worker in workers:
            worker.start()
        for event in ended:
            event.wait()
    except KeyboardInterrupt:
        baton.cancel()
        _wait_through_interrupts(workers, ended)  # never tear the worker down under a running shard thread
        raise
    for worker in workers:
        worker.join()
    baton.reset()  # the worker may run more shards after this
    return failures


def _wait_through_interrupts(workers: Sequence[threading.Thread], ended: Sequence[threading.Event]) -> None:
    """Wait for every started thread, whatever further signals arrive: each stops at its next step
    (the engine call in flight, then the stage step it is in).

    Waits on each thread's own end event, not ``Thread.join``: on CPython 3.11 a join interrupted by
    KeyboardInterrupt marks a thread that still runs as stopped (bpo-45274's fix), so ``is_alive``
    would end this wait while a shard thread is still inside the engine."""
    for worker, event in zip(workers, ended, strict=True):
        while worker.ident is not None and not event.is_set():
            try:
                event.wait()
            except KeyboardInterrupt:
                continue
    for worker in workers:  # each has left its loop; the join is only the thread's last few steps
        while worker.ident is not None and worker.is_alive():
            try:
                worker.join()
            except KeyboardInterrupt:
                continue
