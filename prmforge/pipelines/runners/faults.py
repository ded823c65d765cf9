"""What the local and Beam runners share about a shard that kills or fails its worker process.

``MAX_ATTEMPTS`` failed attempts, then the shard is recorded as poisoned (:meth:`BuildDir.record_poison`)
and runs once more with every row quarantined at load, so the build commits. ``DIED`` is the cause
of an attempt whose worker process died (a signal, the OOM killer, a crash in native code).

Fault injection (tests only): ``PRMFORGE_FAULT_CRASH_SHARD=<shard>:<kill|raise|hang>[:<attempts>]``
makes the worker running that shard SIGKILL itself (``kill``), raise (``raise``) or stop forever, for
a test to kill it from outside (``hang``), right after the shard's first stage committed, on its
first ``attempts`` attempts (default: every attempt), never once the shard is poisoned. Only the
runners' worker modules read it.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

MAX_ATTEMPTS = 3  # failed attempts of a shard before it is quarantined whole
FAULT_ENV = "PRMFORGE_FAULT_CRASH_SHARD"
FAULT_MODES = ("kill", "raise", "hang")
DIED = "the worker process died (killed by a signal or out of memory)"


@dataclass(frozen=True, slots=True)
class Fault:
    """The fault-injection seam (see the module docstring)."""

    shard: int
    mode: str
    attempts: int | None

    @classmethod
    def from_env(cls) -> Fault | None:
        value = os.environ.get(FAULT_ENV)
        if not value:
            return None
        parts = value.split(":")
        if len(parts) not in (2, 3) or parts[1] not in FAULT_MODES or not parts[0].isdigit():
            raise ValueError(f"{FAULT_ENV}={value!r}: expected <shard>:<kill|raise|hang>[:<attempts>]")
        return cls(int(parts[0]), parts[1], int(parts[2]) if len(parts) == 3 else None)

    def fires(self, shard: int, attempt: int) -> bool:
        return shard == self.shard and (self.attempts is None or attempt <= self.attempts)

    def crash(self) -> None:
        if self.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        while self.mode == "hang":
            time.sleep(3600)
        raise RuntimeError(f"{FAULT_ENV}: shard {self.shard} crashes its worker (fault injection)")


def poison_reason(runner: str, shard: int, errors: tuple[str, ...] | list[str]) -> str:
    """``shard 3 failed its Beam worker on 3 of 3 attempts (last: ...)``."""
    n = len(errors)
    return f"shard {shard} failed its {runner} on {n} of {n} attempts (last: {errors[-1]})"


def describe(kind: type, text: str) -> str:
    """One line for a failed attempt: a dead worker process, or the exception the stages raised."""
    if isinstance(kind, type) and issubclass(kind, BrokenProcessPool):
        return DIED
    return text if len(text) <= 300 else text[:297] + "..."
