"""The Beam runner's shard worker: the stage graph's Worker, its event log and the fault seam.

Nothing here imports Beam: a :class:`ShardWorker` lives in the Beam worker itself (an in-memory
runner), or in a spawned subprocess of it (:class:`ShardPool`, the default), where a SIGKILL, the OOM
killer or a crash inside a stage kills only that process: the Beam worker sees a
``BrokenProcessPool`` and the shard goes to its next attempt. One :class:`SharedWorker` per Beam
worker process serves every attempt step. The subprocess ignores SIGINT (the driver
decides what stops) and exits as soon as its Beam worker or, on the driver's machine, the driver is
gone: a killed driver leaves no worker running a shard.

Events cannot cross processes as callbacks: a worker appends them as JSON lines to a file of its own
under the run's side directory (:class:`EventLog`), which the driver tails (:class:`EventTail`).

Fault injection (tests only): ``PRMFORGE_FAULT_CRASH_SHARD``, the runners' shared seam
(:mod:`faults`), read here and by the local runner.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from prmforge.pipelines import tables
from prmforge.pipelines.runners import faults
from prmforge.pipelines.runners.builddir import StageCounts
from prmforge.pipelines.runners.faults import MAX_ATTEMPTS, Fault
from prmforge.pipelines.runners.plan import ShardTask, Worker
from prmforge.pipelines.runners.shard import EventSink, StageEvent

TAIL_S = 0.1  # how often the driver reads the workers' event logs

Process = tuple[int, int]  # a pid and its start time: a reused pid is another process


@dataclass(frozen=True, slots=True)
class ShardJob:
    """What every shard worker needs (pickled with the DoFn): the plan, and where to write events."""

    config_json: dict[str, Any]
    root: str
    run_id: str
    events: str  # the directory of the workers' event logs
    driver: Process | None  # the driver, when the workers share its machine


@dataclass(frozen=True, slots=True)
class Attempt:
    """A shard on its way through the attempts, with the errors of the failed ones."""

    task: ShardTask
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ShardOutput:
    shard: int
    attempt: int
    quarantined: tuple[tuple[str, str], ...]  # (stage, reason) of every quarantined row of the shard


def poison_reason(shard: int, errors: tuple[str, ...]) -> str:
    return faults.poison_reason("Beam worker", shard, errors)


def event_from_json(data: dict[str, Any]) -> StageEvent:
    return StageEvent(
        int(data["shard"]),
        str(data["stage"]),
        StageCounts(**data["counts"]),
        bool(data["resumed"]),
        float(data["seconds"]),
        float(data.get("generate_seconds", 0.0)),
    )


class EventLog:
    """A worker's event file: one JSON line per StageEvent (with the pid), flushed as it happens."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self._fh: IO[str] | None = None

    def __call__(self, event: StageEvent) -> None:
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex}.jsonl"
            self._fh = path.open("a", encoding="utf-8")
        self._fh.write(json.dumps({**asdict(event), "pid": os.getpid()}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class EventTail:
    """Replays the workers' event logs to ``on_event`` as they grow (in a thread), then once more at the
    end. A retried attempt's reused stages (resumed events of a (shard, stage) already replayed) are
    not replayed twice."""

    def __init__(self, directory: Path, on_event: EventSink) -> None:
        self.directory = directory
        self.on_event = on_event
        self._offsets: dict[Path, int] = {}
        self._seen: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prmforge-beam-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(TAIL_S):
            self.poll()

    def poll(self) -> None:
        for path in sorted(self.directory.glob("*.jsonl")):
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # complete lines only; a worker may be writing the last
            self._offsets[path] = offset + end
            for line in data[:end].splitlines():
                self._deliver(event_from_json(json.loads(line)))

    def _deliver(self, event: StageEvent) -> None:
        key = (event.shard, event.stage)
        if event.resumed and key in self._seen:
            return
        self._seen.add(key)
        self.on_event(event)


class ShardWorker:
    """A stage-graph Worker that runs attempts: the poison decision, the fault seam, the outputs."""

    def __init__(self, job: ShardJob) -> None:
        self.events = EventLog(job.events)
        self.fault = Fault.from_env()
        self.current = (-1, 0)  # the shard being run and its attempt number
        self.worker = Worker.from_json(job.config_json, Path(job.root), job.run_id, self._emit)

    def _emit(self, event: StageEvent) -> None:
        self.events(event)
        shard, attempt = self.current
        fault = self.fault
        if (
            fault is not None
            and event.shard == shard
            and event.stage == self.worker.graph.stages[0].name
            and fault.fires(shard, attempt)
            and self.worker.executor.build.poisoned(shard) is None
        ):
            fault.crash()

    def run(self, attempt: Attempt) -> ShardOutput:
        """Run the shard (first recording it as poisoned after ``MAX_ATTEMPTS`` failed attempts)."""
        build, graph = self.worker.executor.build, self.worker.graph
        shard = attempt.task.shard
        if len(attempt.errors) >= MAX_ATTEMPTS and build.poisoned(shard) is None:
            build.record_poison(shard, poison_reason(shard, attempt.errors))
        self.current = (shard, len(attempt.errors) + 1)
        self.worker.run(attempt.task)
        quarantined = []
        for stage in graph.stages:
            marker = build.committed(stage.name, shard, graph.hashes[stage.name])
            for entry in marker.files if marker is not None else ():
                if entry.path.startswith("quarantine/"):
                    for q in tables.decode("quarantine", build.read_table(entry)):
                        quarantined.append((stage.name, q.summary()))
        return ShardOutput(shard, self.current[1], tuple(quarantined))

    def close(self) -> None:
        self.worker.close()
        self.events.close()


def process_start(pid: int) -> int | None:
    """The start time of a live process (``/proc/<pid>/stat`` field 22), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in "ZX" else int(fields[19])


def this_process() -> Process | None:
    start = process_start(os.getpid())
    return None if start is None else (os.getpid(), start)


# -- the subprocess ---------------------------------------------------------------------------------

_worker: ShardWorker | None = None


def _watch(processes: list[Process]) -> None:
    """Exit as soon as one of ``processes`` is gone (polled: a Beam worker's threads come and go, so
    ``PR_SET_PDEATHSIG``, which follows the spawning thread, would kill this process with one)."""

    def watch() -> None:
        while all(process_start(pid) == start for pid, start in processes):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="prmforge-beam-watch", daemon=True).start()


def _init(job: ShardJob, parent: Process | None) -> None:
    global _worker  # noqa: PLW0603 - the pool initializer is the only way to hand state to the process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch([p for p in (parent, job.driver) if p is not None])
    _worker = ShardWorker(job)
    multiprocessing.util.Finalize(_worker, _worker.close, exitpriority=10)


def _ready() -> int:
    return os.getpid()


def _run(attempt: Attempt) -> ShardOutput:
    if _worker is None:
        raise RuntimeError("shard worker not initialised")
    return _worker.run(attempt)


class ShardPool:
    """One spawned subprocess holding a ShardWorker; a new one after the process died."""

    def __init__(self, job: ShardJob) -> None:
        self.job = job
        self._pool: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(self.job, this_process()),
            )
        return self._pool

    def start(self) -> int:
        """Start the process and build its Worker now; its pid."""
        pid: int = self.call(_ready)
        return pid

    def run(self, attempt: Attempt) -> ShardOutput:
        out: ShardOutput = self.call(_run, attempt)
        return out

    def call(self, fn: Any, *args: Any) -> Any:
        try:
            return self._get().submit(fn, *args).result()
        except BrokenProcessPool:
            self.kill()
            raise

    def kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
        for process in processes:
            process.join(timeout=5)

    def close(self) -> None:
        """Shut the process down (its Worker's stages are torn down first)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class SharedWorker:
    """The shard worker of this process for one run, shared by every attempt step's DoFn: a retry step
    builds no second Worker (no second engine, no second model in memory) beside the first. Calls are
    serialised; with ``isolate`` the Worker lives in a :class:`ShardPool` subprocess."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _shared: ClassVar[dict[str, tuple[SharedWorker, int]]] = {}  # run id -> the worker, its users

    def __init__(self, job: ShardJob, isolate: bool) -> None:
        self.job = job
        self._pool = ShardPool(job) if isolate else None
        self._worker: ShardWorker | None = None
        self._calls = threading.Lock()

    @classmethod
    def acquire(cls, job: ShardJob, isolate: bool) -> SharedWorker:
        with cls._lock:
            shared, users = cls._shared.get(job.run_id, (None, 0))
            if shared is None:
                shared = cls(job, isolate)
            cls._shared[job.run_id] = (shared, users + 1)
            return shared

    @classmethod
    def release(cls, job: ShardJob) -> None:
        """The last user of a run's worker closes it."""
        with cls._lock:
            shared, users = cls._shared.pop(job.run_id, (None, 0))
            if shared is not None and users > 1:
                cls._shared[job.run_id] = (shared, users - 1)
                return
        if shared is not None:
            shared.close()

    @classmethod
    def discard(cls, run_id: str) -> None:
        """After the pipeline: close what a runner that skipped ``teardown`` left of the run here."""
        with cls._lock:
            shared, _ = cls._shared.pop(run_id, (None, 0))
        if shared is not None:
            shared.close()

    def start(self) -> None:
        """Build the Worker now (in its subprocess, when isolated)."""
        with self._calls:
            if self._pool is not None:
                self._pool.start()
            elif self._worker is None:
                self._worker = ShardWorker(self.job)

    def run(self, attempt: Attempt) -> ShardOutput:
        with self._calls:
            if self._pool is not None:
                return self._pool.run(attempt)
            if self._worker is None:
                self._worker = ShardWorker(self.job)
            return self._worker.run(attempt)

    def close(self) -> None:
        with self._calls:
            if self._pool is not None:
                self._pool.close()
            if self._worker is not None:
                self._worker.close()
                self._worker = None
