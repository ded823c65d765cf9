"""The local runner: shards over a pool of worker processes, then the global stages and the manifest.

Shards are fixed by the inputs and ``runner.shard_size``; every seed derives
from the build seed and record ids. The number of workers therefore changes
only the wall time, never the content hash. Workers die with the driver; Ctrl-C
or SIGTERM cancels queued shards, kills the workers and raises
:class:`BuildInterrupted` (nothing is half-committed: every file is renamed into
place and its marker written last).

A shard that kills its worker process (a signal, the OOM killer, a crash in native code) or fails
it with an exception that is not the build's own error is retried from its committed stages, like
on Beam and Ray: after :data:`faults.MAX_ATTEMPTS` failed attempts it is recorded as poisoned and
runs once more with every row quarantined at load (the reason in ``poisoned/``), so one poison row
cannot stop a build forever. A dead worker takes the pool down with it, and with several shards in
flight nobody can tell whose fault it was: the shards that had begun then run again *alone*, one
per pool, where a death is that shard's attempt; the others go back to the pool, uncharged.

With ``runner.shards_per_worker`` above 1 (the default with an out-of-process engine) a worker runs that many
shards at once on threads (:mod:`prmforge.pipelines.overlap`): the pool's tasks are groups of that
many shards, and in this process the shards are taken by that many threads.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prmforge.pipelines.runners.faults import DIED, MAX_ATTEMPTS, Fault, describe, poison_reason
from prmforge.pipelines.runners.interrupt import (
    BuildInterrupted,
    StopFlag,
    children_ignore_sigint,
    die_with_parent,
    stop_on_signals,
)
from prmforge.pipelines.runners.plan import BuildPlan, BuildResult, ShardTask, Worker, prepare
from prmforge.pipelines.runners.publish import finish
from prmforge.pipelines.runners.shard import StageEvent, shard_is_current
from prmforge.schemas.errors import BuildStateError, PrmforgeError

_worker: Worker | None = None
_events: Any = None
_begun: Any = None
_fault: Fault | None = None
_current: dict[int, int] = {}  # the shards this worker runs and their attempt numbers


def _init_worker(
    events: Any, begun: Any, parent: int, plan_json: dict[str, Any], root: str, run_id: str
) -> None:
    global _worker, _events, _begun, _fault  # noqa: PLW0603 - the pool initializer hands state to workers
    die_with_parent(parent)
    _events, _begun, _fault = events, begun, Fault.from_env()
    _worker = Worker.from_json(plan_json, Path(root), run_id, _emit)
    # Stages' teardown (a Z3 worker, a language server) runs when the pool shuts the worker down.
    multiprocessing.util.Finalize(_worker, _worker.close, exitpriority=10)


def _emit(event: StageEvent) -> None:
    _events.put(event)
    shard = event.shard
    if (
        _fault is not None
        and _worker is not None
        and shard in _current
        and event.stage == _worker.graph.stages[0].name
        and _fault.fires(shard, _current[shard])
        and _worker.executor.build.poisoned(shard) is None
    ):
        _fault.crash()


def _worker_run(tasks: list[ShardTask], attempts: list[int]) -> dict[int, str]:
    """Run a group of shards (at once, on threads, when there are several): why each that failed
    failed. The build's own error is raised, once the group's other shards are done."""
    if _worker is None:
        raise RuntimeError("worker not initialised")
    _current.clear()
    for task, attempt in zip(tasks, attempts, strict=True):
        _begun.put(task.shard)  # a SimpleQueue writes before returning: known even if this process dies
        _current[task.shard] = attempt
    failures = _worker.run_all(tasks, stop_on_error=False)
    for _, err in failures:
        if isinstance(err, PrmforgeError):
            raise err
    return {task.shard: _cause(err) for task, err in failures}


def _cause(err: BaseException) -> str:
    return describe(type(err), f"{type(err).__name__}: {err}")


@dataclass(slots=True)
class _Round:
    """What one pool did: shards committed, attempts that failed (blamed), shards to run alone."""

    done: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    suspects: set[int] = field(default_factory=set)


class LocalRunner:
    """Runs a build in this process (``workers == 0``) or in a pool of worker processes."""

    name = "local"

    def __init__(
        self,
        on_event: Callable[[StageEvent], None] | None = None,
        on_plan: Callable[[int], None] | None = None,
    ) -> None:
        self.on_event = on_event or (lambda event: None)
        self.on_plan = on_plan or (lambda num_shards: None)
        self.poisoned: dict[int, str] = {}  # shards this run quarantined whole, with the reason
        self.causes: dict[int, list[str]] = {}  # why each failed attempt of a shard failed, this run

    def run(
        self, config: Any, output: Path, restart: bool = False, workers: int | None = None
    ) -> BuildResult:
        flag = StopFlag()
        self.poisoned, self.causes = {}, {}  # this run's, for its warnings
        # SIGINT/SIGTERM at any moment (planning, the global stages) raise KeyboardInterrupt here; while
        # the pool runs they only set the flag, and the driver kills the workers itself.
        with stop_on_signals(flag, interrupt_main=True):
            plan = prepare(config, output, restart, self.on_event)
            try:
                self.on_plan(len(plan.shards))
                n_workers = config.runner.workers if workers is None else workers
                run_id = uuid.uuid4().hex
                pending = plan.pending()
                if n_workers == 0 or len(pending) <= 1:
                    self._run_here(plan, pending, run_id)
                else:
                    self._run_pool(plan, pending, min(n_workers, len(pending)), run_id, flag)
                total = len(plan.shards)
                try:
                    built = finish(plan, run_id, len(pending))
                except KeyboardInterrupt:
                    raise BuildInterrupted(total, total) from None
                return replace(built, warnings=built.warnings + self._warnings())
            finally:
                plan.build.close()

    def _run_here(self, plan: BuildPlan, tasks: list[ShardTask], run_id: str) -> None:
        """In this process; a signal raises KeyboardInterrupt inside the current stage (nothing commits),
        or, with several shards at once, stops each shard thread at its next step."""
        worker = Worker(plan.config, plan.graph, plan.build, plan.readers, run_id, self.on_event)
        try:
            failures = worker.run_all(tasks, stop_on_error=True)
            if failures:
                raise failures[0][1]
        except KeyboardInterrupt:
            done = sum(1 for t in tasks if shard_is_current(plan.graph, plan.build, t.shard) is not None)
            raise BuildInterrupted(plan.committed_before + done, len(plan.shards)) from None
        finally:
            worker.close()

    def _run_pool(
        self, plan: BuildPlan, tasks: list[ShardTask], workers: int, run_id: str, flag: StopFlag
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        done = 0
        with stop_on_signals(flag, interrupt_main=False):
            together: list[ShardTask] = list(tasks)
            alone: list[ShardTask] = []
            while together or alone:
                batch = together if together else [alone.pop(0)]
                groups = -(-len(batch) // plan.config.shards_per_worker)
                size = min(workers, groups) if together else 1
                together = [] if batch is together else together
                outcome = self._round(ctx, plan, batch, size, run_id, flag, done)
                done += outcome.done
                for task in batch:
                    if shard_is_current(plan.graph, plan.build, task.shard) is not None:
                        continue
                    if task.shard in outcome.failed:
                        self._charge(plan, task.shard, outcome.failed[task.shard])
                    if task.shard in outcome.suspects or len(batch) == 1:
                        alone.append(task)
                    else:
                        together.append(task)
        if flag:  # a signal while the pool shut down, after the last shard
            raise BuildInterrupted(plan.committed_before + done, len(plan.shards))

    def _warnings(self) -> tuple[str, ...]:
        retried = [
            f"shard {shard}: {len(causes)} attempt(s) failed on a worker; retried"
            for shard, causes in sorted(self.causes.items())
            if shard not in self.poisoned
        ]
        return (
            *retried,
            *(f"shard {s} was quarantined whole: {r}" for s, r in sorted(self.poisoned.items())),
        )

    def _charge(self, plan: BuildPlan, shard: int, cause: str) -> None:
        """One failed attempt of ``shard``; past the limit it is poisoned (its next run quarantines it)."""
        if plan.build.poisoned(shard) is not None:
            raise BuildStateError(
                f"{plan.build.root}: shard {shard} failed its worker even with every row quarantined: {cause}"
            )
        causes = self.causes.setdefault(shard, [])
        causes.append(cause)
        if len(causes) >= MAX_ATTEMPTS:
            reason = poison_reason("worker", shard, causes)
            plan.build.record_poison(shard, reason)
            self.poisoned[shard] = reason

    def _round(
        self,
        ctx: Any,
        plan: BuildPlan,
        tasks: list[ShardTask],
        workers: int,
        run_id: str,
        flag: StopFlag,
        done_before: int,
    ) -> _Round:
        """One pool over ``tasks``; returns when every one ended or the pool broke. Its queues are its
        own: a worker killed while writing to one leaves that queue's lock held for good."""
        events = ctx.Queue()  # starts the resource tracker before any worker (children_ignore_sigint)
        begun = ctx.SimpleQueue()
        stop_reader = threading.Event()

        def drain() -> None:
            while not stop_reader.is_set() or not events.empty():
                try:
                    self.on_event(events.get(timeout=0.1))
                except queue.Empty:
                    continue

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        pool = ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(events, begun, os.getpid(), plan.to_json(), str(plan.build.root), run_id),
        )
        try:
            per = plan.config.shards_per_worker
            groups = [tasks[i : i + per] for i in range(0, len(tasks), per)]
            with children_ignore_sigint():  # the workers are started by the first submits
                futures = {
                    pool.submit(_worker_run, g, [len(self.causes.get(t.shard, ())) + 1 for t in g]): tuple(
                        t.shard for t in g
                    )
                    for g in groups
                }
            outcome = _await(futures, flag, plan, done_before)
        except BaseException:
            _kill(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            stop_reader.set()
            reader.join()
        started: set[int] = set()
        while not begun.empty():
            started.add(begun.get())
        if outcome.suspects:  # the pool broke: those that had begun are suspects, the others are not
            if not started:
                raise BuildStateError(
                    f"{plan.build.root}: the worker processes died before running any shard (killed "
                    "by a signal or out of memory while starting); committed shards are kept: rerun "
                    "to resume"
                )
            outcome.suspects &= started
            if workers == 1 and len(outcome.suspects) == 1:  # one process: the death is this shard's
                outcome.failed[outcome.suspects.pop()] = DIED
        return outcome


def _await(
    futures: dict[Future[dict[int, str]], tuple[int, ...]], flag: StopFlag, plan: BuildPlan, done_before: int
) -> _Round:
    """Wait for every group of shards; stop at the first signal. A build's own error stops the build;
    any other exception is a failed attempt of its shard; a broken pool makes every unfinished shard a
    suspect."""
    outcome = _Round()
    waiting = set(futures)
    while waiting:
        finished, waiting = wait(waiting, timeout=0.2, return_when=FIRST_COMPLETED)
        for future in finished:
            shards = futures[future]
            try:
                failed = future.result()
            except BrokenProcessPool:
                if flag:  # the signal reached the workers too (SIGTERM to the process group)
                    raise BuildInterrupted(
                        plan.committed_before + done_before + outcome.done, len(plan.shards)
                    ) from None
                outcome.suspects.update(shards)
                continue
            except PrmforgeError:
                raise
            except Exception as err:  # the group's own failure (its result did not come back): one attempt
                outcome.failed.update({shard: _cause(err) for shard in shards})
                continue
            outcome.failed.update(failed)  # each shard's own failure: one attempt
            outcome.done += len(shards) - len(failed)
        if flag:
            raise BuildInterrupted(plan.committed_before + done_before + outcome.done, len(plan.shards))
    return outcome


def _kill(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and kill the workers now (a worker mid-shard commits nothing half-done)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)
