"""A persistent JSON-lines child process under a wall-clock limit, for tools that may hang (sympy).

The child (a script run as ``python -I SCRIPT``) prints one line when it is ready, then answers each
request line with one JSON line. :meth:`JsonLineWorker.request` writes a request and waits for the
answer with :func:`select.select` on the child's stdout, so the limit holds from any thread, in
daemonic worker processes (which may not start :mod:`multiprocessing` children) and without signals.
A child that runs past the limit, dies, breaks the protocol or cannot start is killed (and restarted
on the next request); the request's answer is then None — undecided, never wrong. Requests from
several threads are serialised by a lock; a forked process starts its own child.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

__all__ = ["STARTUP_TIMEOUT_S", "JsonLineWorker"]

STARTUP_TIMEOUT_S: Final = 60.0


class JsonLineWorker:
    """One child running ``script``; ``calls`` counts requests sent, ``restarts`` children killed."""

    def __init__(self, script: Path, *, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self.script = script
        self.startup_timeout_s = startup_timeout_s
        self.lock = threading.Lock()  # held by request(); callers may hold it around a cache too
        self._process: subprocess.Popen[str] | None = None
        self._pid = os.getpid()
        self.calls = 0
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def request(self, message: dict[str, Any] | str, timeout_s: float) -> Any:
        """The child's JSON answer to ``message`` (a dict, or a line already encoded), or None."""
        with self.lock:
            return self.request_locked(message, timeout_s)

    def request_locked(self, message: dict[str, Any] | str, timeout_s: float) -> Any:
        """:meth:`request` for a caller that already holds :attr:`lock`."""
        line = message if isinstance(message, str) else json.dumps(message)
        self.calls += 1
        process = self._ensure()
        if process is None or process.stdin is None:
            return None
        try:
            process.stdin.write(line + "\n")
            process.stdin.flush()
        except OSError:  # BrokenPipeError included: the child is gone
            self._kill()
            return None
        answer = _readline(process, timeout_s)
        if answer is None:
            self._kill()
            return None
        try:
            return json.loads(answer)
        except ValueError:
            self._kill()
            return None

    def _ensure(self) -> subprocess.Popen[str] | None:
        if self._pid != os.getpid():  # forked: the parent's child is not ours
            self._process, self._pid = None, os.getpid()
        if self.alive:
            return self._process
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", str(self.script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        except OSError:
            self._process = None
            return None
        if _readline(self._process, self.startup_timeout_s) is None:
            self._kill()
            return None
        return self._process

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            self.restarts += 1
            process.kill()
            process.wait()

    def close(self) -> None:
        with self.lock:
            if self._process is not None:
                self._process.kill()
                self._process.wait()
                self._process = None


def _readline(process: subprocess.Popen[str], timeout_s: float) -> str | None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            line = process.stdout.readline()
            return line or None
