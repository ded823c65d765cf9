"""The hub of a Ray build run: one small actor in the driver's job that holds the stage events on their
way to the driver and counts every shard's attempts (see :mod:`ray_worker` for how attempts are begun
and ended).

This module imports nothing but the standard library, so the hub's Ray worker process starts in the
time it takes to import Ray: it begins while the shard actors start, and importing the stages there
took a core from them for a second and a half of every build. Events cross it as pickles the shard
actors made and only the driver reads.
"""

from __future__ import annotations

from collections import Counter

DIED = "its worker process died mid-shard: killed by a signal, out of memory or a crash"


class Hub:
    """Stage events on their way to the driver, and every shard's attempts (one per build run)."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self.events: list[bytes] = []  # pickled StageEvents: the hub never imports prmforge's stages
        self.running: dict[int, int] = {}  # shard -> pid of the worker process running it
        self.causes: dict[int, list[str]] = {}  # shard -> why each failed attempt failed

    def emit(self, event: bytes) -> None:
        self.events.append(event)

    def begin(self, shard: int, pid: int) -> tuple[int, str | None]:
        """The attempt about to start, and the poison reason instead when no attempt is left."""
        causes = self.causes.setdefault(shard, [])
        if self.running.pop(shard, None) is not None:  # begun, neither ended nor failed: its process died
            causes.append(DIED)
        if len(causes) >= self.max_attempts:
            return len(causes) + 1, poison_reason(shard, causes)
        self.running[shard] = pid
        return len(causes) + 1, None

    def fail(self, shard: int, cause: str) -> None:
        self.running.pop(shard, None)
        self.causes.setdefault(shard, []).append(cause)

    def end(self, shard: int) -> None:
        self.running.pop(shard, None)

    def forget(self, shards: list[int]) -> None:
        """A fresh count of attempts (for the run of shards just quarantined)."""
        for shard in shards:
            self.causes.pop(shard, None)
            self.running.pop(shard, None)

    def drain(self) -> tuple[list[bytes], dict[int, int]]:
        events, self.events = self.events, []
        return events, dict(self.running)


def poison_reason(shard: int, causes: list[str]) -> str:
    """``shard 3 killed its worker on 3 of 3 attempts (its worker process died mid-shard: ...)``."""
    n = len(causes)
    verb = "killed" if all(c == DIED for c in causes) else "failed"
    counted = Counter(causes)
    why = "; ".join(c if k == n else f"{c} (x{k})" for c, k in counted.items())
    return f"shard {shard} {verb} its worker on {n} of {n} attempts ({why})"
