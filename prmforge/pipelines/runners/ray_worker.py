"""What the Ray runner runs inside Ray: the shard actor (the UDF of Ray Data's ``map_batches``).

A :class:`ShardActor` builds one :class:`~prmforge.pipelines.runners.plan.Worker` (engines and stages set
up once) and runs whole shards through the same :class:`ShardExecutor` and commit protocol as the local
runner. The :class:`~prmforge.pipelines.runners.ray_hub.Hub` is one small actor per build run, in the
driver's job: stage events wait there for the driver to replay them (``on_event``), and it counts
every shard's attempts. An attempt is
begun at the hub before the shard runs, so an attempt whose worker process died (SIGKILL, the OOM
killer, a segfault) is known for what it was when Ray retries the shard on the restarted actor; an
exception ends an attempt with its message. Past ``runner.ray.max_attempts`` the actor runs the
shard no more and answers ``poison`` with the reason, and the driver quarantines it.

Fault-injection seam (for tests only): ``PRMFORGE_FAULT_CRASH_SHARD=<shard>:<mode>`` in the driver's
environment reaches the actors through the job's ``runtime_env`` and is read only here. After the
first stage of ``<shard>`` commits, on an attempt that still has rows to process (not once the
shard is quarantined, as with a real poison row):

- ``kill``: the actor process SIGKILLs itself, on every attempt (a poison shard);
- ``raise``: a ``RuntimeError`` is raised, on every attempt (a poison batch);
- ``hang-once``: on the first attempt only, the actor sleeps until someone kills it (a test kills
  the worker process from outside at a known point, mid-shard).
"""

from __future__ import annotations

import os
import pickle
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from prmforge.pipelines.runners.plan import ShardTask, Worker
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.schemas.errors import BuildStateError, ConfigError, PrmforgeError, RowError

FAULT_ENV = "PRMFORGE_FAULT_CRASH_SHARD"
FAULT_MODES = ("kill", "raise", "hang-once")
HANG_S = 600.0

DONE, POISON, FATAL = "done", "poison", "fatal"


@dataclass(frozen=True, slots=True)
class Fault:
    """The test-only fault seam (see the module docstring)."""

    shard: int
    mode: str

    @classmethod
    def from_env(cls) -> Fault | None:
        value = os.environ.get(FAULT_ENV)
        if not value:
            return None
        shard, _, mode = value.partition(":")
        if not shard.isdigit() or mode not in FAULT_MODES:
            raise ConfigError(f"{FAULT_ENV}: expected <shard>:<{'|'.join(FAULT_MODES)}> (got {value!r})")
        return cls(int(shard), mode)

    def strike(self, shard: int, attempt: int) -> None:
        if shard != self.shard:
            return
        if self.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.mode == "raise":
            raise RuntimeError(f"fault injected into shard {shard} by {FAULT_ENV}")
        elif attempt == 1:  # hang-once
            time.sleep(HANG_S)


class ShardActor:
    """Ray Data's UDF: one Worker per actor; each input row is a pickled :class:`ShardTask`."""

    def __init__(self, config_json: dict[str, Any], root: str, run_id: str, hub: Any) -> None:
        self.hub = hub
        self.pid = os.getpid()
        self.fault = Fault.from_env()
        self.armed = False  # the fault strikes once per attempt, after the attempt's first commit
        self.current = (-1, 0)  # (shard, attempt) running now
        self.worker: Worker | None = Worker.from_json(config_json, Path(root), run_id, self._emit)

    def _emit(self, event: StageEvent) -> None:
        self.hub.emit.remote(pickle.dumps(event))  # in order with this actor's later calls (end, fail)
        shard, attempt = self.current
        if self.fault is not None and self.armed and not event.resumed and event.shard == shard:
            self.armed = False
            self.fault.strike(shard, attempt)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"shard": [], "status": [], "detail": []}
        for blob in batch["task"]:
            task: ShardTask = pickle.loads(blob)  # the driver of this build pickled it
            status, detail = self._run(task)
            out["shard"].append(task.shard)
            out["status"].append(status)
            out["detail"].append(detail)
        return out

    def _run(self, task: ShardTask) -> tuple[str, bytes]:
        worker = self.worker
        if worker is None:
            raise RuntimeError("shard actor used after close")
        while True:
            attempt, exhausted = ray.get(self.hub.begin.remote(task.shard, self.pid))
            if exhausted is not None:
                return POISON, exhausted.encode()
            self.current = (task.shard, attempt)
            self.armed = worker.executor.build.poisoned(task.shard) is None
            try:
                worker.run(task)
            except PrmforgeError as err:
                if isinstance(err, RowError):
                    ray.get(self.hub.fail.remote(task.shard, _cause(err)))
                    continue
                return FATAL, _pickled(err)  # the build's error (a full disk, a changed input): stop it
            except Exception as err:  # any other failure is one attempt of this shard
                ray.get(self.hub.fail.remote(task.shard, _cause(err)))
                continue
            finally:
                self.armed = False
            ray.get(self.hub.end.remote(task.shard))
            return DONE, b""

    def __del__(self) -> None:
        """Stages' teardown (a Z3 worker, a language server) when Ray Data retires the actor."""
        worker, self.worker = getattr(self, "worker", None), None
        if worker is not None:
            worker.close()


def _cause(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def _pickled(err: PrmforgeError) -> bytes:
    try:
        return pickle.dumps(err)
    except (pickle.PicklingError, TypeError, AttributeError):
        return pickle.dumps(BuildStateError(f"{type(err).__name__}: {err}"))
