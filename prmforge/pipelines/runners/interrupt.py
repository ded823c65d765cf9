"""Interruption: Ctrl-C or SIGTERM stop a build promptly, and workers never outlive their driver."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

PR_SET_PDEATHSIG = 1
EXIT_INTERRUPTED = 130


class BuildInterrupted(Exception):  # it is what happened, not an error of the build
    """A build stopped by a signal; committed shards are kept and a rerun resumes."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"interrupted after {done} of {total} shards; rerun to resume")
        self.done = done
        self.total = total


def die_with_parent(parent: int) -> None:
    """In a worker: the kernel kills this process when its parent dies (Linux ``PR_SET_PDEATHSIG``).

    If the parent is already gone (it died before this ran), exit at once.
    """
    # The symbols already loaded, not ctypes.util.find_library("c"): that runs `/sbin/ldconfig -p` in
    # a child, a copy of this worker (its command line too) until it execs.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    # Ctrl-C reaches the whole process group: the driver alone decides what stops, and kills workers.
    # Ignoring it discards one held since the start (children_ignore_sigint); then it can be unblocked.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class StopFlag:
    """Set by SIGINT/SIGTERM while a build runs; the runner checks it between shards."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.event.is_set()


@contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Processes started within the block begin life with SIGINT blocked.

    A blocked mask survives ``exec``, so a Ctrl-C that reaches the whole process group while a worker
    is still importing stays pending in it instead of killing it with a KeyboardInterrupt (a broken
    pool and a traceback); the worker discards it and unblocks (:func:`die_with_parent`). Only this
    thread blocks SIGINT, and its handler is left as it is: one that reaches the driver meanwhile is
    taken by another of its threads and the handler runs. (It used to be ignored here as well; a
    process-directed SIGINT then went to a thread that did not block it and was thrown away.) The
    multiprocessing resource tracker must already be running: starting it unblocks SIGINT.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


@contextmanager
def stop_on_signals(flag: StopFlag, interrupt_main: bool) -> Iterator[StopFlag]:
    """Within the block, SIGINT and SIGTERM set ``flag``; with ``interrupt_main`` they also raise
    KeyboardInterrupt in the main thread (an in-process build stops inside its current stage)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        flag.signum = signum
        flag.event.set()
        if interrupt_main:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
