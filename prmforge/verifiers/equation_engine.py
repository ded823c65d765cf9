"""sympy under a wall-clock limit: one persistent child process (:mod:`prmforge.verifiers._equation_worker`).

:func:`symbolic_facts` sends one claim's trees and returns the child's facts, or None when
the child could not answer in time (it is then killed and restarted on the next request), could
not start, or failed on the input. A pipe and :func:`select.select` bound the wait, so the limit
works from any thread and in worker processes, without signals. Answers are cached per request.
"""

from __future__ import annotations

import atexit
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final

from prmforge.verifiers.child_worker import JsonLineWorker

__all__ = ["DEFAULT_TIMEOUT_S", "SymbolicEngine", "symbolic_facts"]

DEFAULT_TIMEOUT_S = 2.0
STARTUP_TIMEOUT_S = 30.0
CACHE_SIZE = 4096


class SymbolicEngine:
    """One child process running sympy (:class:`~prmforge.verifiers.child_worker.JsonLineWorker`);
    requests from several threads are serialised by its lock."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._worker = JsonLineWorker(
            Path(__file__).with_name("_equation_worker.py"), startup_timeout_s=STARTUP_TIMEOUT_S
        )
        self._cache: OrderedDict[str, dict[str, Any] | None] = OrderedDict()

    @property
    def calls(self) -> int:
        """Requests sent to the child (cache hits send none)."""
        return self._worker.calls

    @property
    def restarts(self) -> int:
        return self._worker.restarts

    def facts(self, request: dict[str, Any]) -> dict[str, Any] | None:
        line = json.dumps(request, sort_keys=True)
        with self._worker.lock:
            if line in self._cache:
                self._cache.move_to_end(line)
                return self._cache[line]
            restarts = self.restarts
            reply = self._worker.request_locked(line, self.timeout_s)
            answer = reply if isinstance(reply, dict) and "error" not in reply else None
            if self.restarts == restarts and self._worker.alive:
                # an answer or the child's own error; a timeout may be the machine's load: not cached
                self._cache[line] = answer
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            return answer

    def close(self) -> None:
        self._worker.close()


ENGINE: Final = SymbolicEngine()
atexit.register(ENGINE.close)


def symbolic_facts(request: dict[str, Any]) -> dict[str, Any] | None:
    """The shared engine's facts for one request (see :mod:`prmforge.verifiers._equation_worker`)."""
    return ENGINE.facts(request)
