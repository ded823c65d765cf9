"""sympy under a wall-clock limit: one persistent child process (:mod:`prmforge.verifiers._equation_worker`).

:func:`symbolic_facts` sends one claim's trees and returns the child's facts, or None when
the child could not answer in time (it is then killed and restarted on the next request), could
not start, or failed on the input. A pipe and :func:`select.select` bound the wait, so the limit
works from any thread and in worker processes, without signals. Answers are cached per request.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final

__all__ = ["DEFAULT_TIMEOUT_S", "SymbolicEngine", "symbolic_facts"]

DEFAULT_TIMEOUT_S = 2.0
STARTUP_TIMEOUT_S = 30.0
CACHE_SIZE = 4096


class SymbolicEngine:
    """One child process running sympy; requests from several threads are serialised by a lock."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._pid = os.getpid()
        self._cache: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self.calls = 0  # requests sent to the child (cache hits send none)
        self.restarts = 0

    def facts(self, request: dict[str, Any]) -> dict[str, Any] | None:
        line = json.dumps(request, sort_keys=True)
        with self._lock:
            if line in self._cache:
                self._cache.move_to_end(line)
                return self._cache[line]
            restarts = self.restarts
            reply = self._request(line)
            if self.restarts == restarts and self._process is not None:
                # an answer or the child's own error; a timeout may be the machine's load: not cached
                self._cache[line] = reply
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            return reply

    def _request(self, line: str) -> dict[str, Any] | None:
        self.calls += 1
        process = self._ensure()
        if process is None or process.stdin is None:
            return None
        try:
            process.stdin.write(line + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            self._kill()
            return None
        answer = self._readline(process, self.timeout_s)
        if answer is None:
            self._kill()
            return None
        try:
            reply = json.loads(answer)
        except ValueError:
            self._kill()
            return None
        return reply if isinstance(reply, dict) and "error" not in reply else None

    def _ensure(self) -> subprocess.Popen[str] | None:
        if self._pid != os.getpid():  # forked: the parent's child is not ours
            self._process, self._pid = None, os.getpid()
        if self._process is not None and self._process.poll() is None:
            return self._process
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", str(Path(__file__).with_name("_equation_worker.py"))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        except OSError:
            self._process = None
            return None
        if self._readline(self._process, STARTUP_TIMEOUT_S) is None:
            self._kill()
            return None
        return self._process

    @staticmethod
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

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            self.restarts += 1
            process.kill()
            process.wait()

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._process.kill()
                self._process.wait()
                self._process = None


ENGINE: Final = SymbolicEngine()
atexit.register(ENGINE.close)


def symbolic_facts(request: dict[str, Any]) -> dict[str, Any] | None:
    """The shared engine's facts for one request (see :mod:`prmforge.verifiers._equation_worker`)."""
    return ENGINE.facts(request)
