"""The local runner: shards over a pool of worker processes, then the global stages and the manifest.

Shards are fixed by the inputs and ``runner.shard_size``; every seed derives
from the build seed and record ids. The number of workers therefore changes
only the wall time, never the content hash. Workers die with the driver; Ctrl-C
or SIGTERM cancels queued shards, kills the workers and raises
:class:`BuildInterrupted` (nothing is half-committed: every file is renamed into
place and its marker written last).
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
from pathlib import Path
from typing import Any

from prmforge.pipelines.runners.interrupt import (
    BuildInterrupted,
    StopFlag,
    children_ignore_sigint,
    die_with_parent,
    stop_on_signals,
)
from prmforge.pipelines.runners.plan import BuildPlan, BuildResult, ShardTask, Worker, prepare
from prmforge.pipelines.runners.publish import finish
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.schemas.errors import BuildStateError

_worker: Worker | None = None
_events: Any = None


def _init_worker(events: Any, parent: int, plan_json: dict[str, Any], root: str, run_id: str) -> None:
    global _worker, _events  # noqa: PLW0603 - the pool initializer is the only way to hand state to workers
    die_with_parent(parent)
    _events = events
    _worker = Worker.from_json(plan_json, Path(root), run_id, _events.put)
    # Stages' teardown (a Z3 worker, a language server) runs when the pool shuts the worker down.
    multiprocessing.util.Finalize(_worker, _worker.close, exitpriority=10)


def _worker_run(task: ShardTask) -> int:
    if _worker is None:
        raise RuntimeError("worker not initialised")
    _worker.run(task)
    return task.shard


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

    def run(
        self, config: Any, output: Path, restart: bool = False, workers: int | None = None
    ) -> BuildResult:
        flag = StopFlag()
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
                    return finish(plan, run_id, len(pending))
                except KeyboardInterrupt:
                    raise BuildInterrupted(total, total) from None
            finally:
                plan.build.close()

    def _run_here(self, plan: BuildPlan, tasks: list[ShardTask], run_id: str) -> None:
        """In this process; a signal raises KeyboardInterrupt inside the current stage (nothing commits)."""
        worker = Worker(plan.config, plan.graph, plan.build, plan.readers, run_id, self.on_event)
        done = 0
        try:
            for task in tasks:
                worker.run(task)
                done += 1
        except KeyboardInterrupt:
            raise BuildInterrupted(plan.committed_before + done, len(plan.shards)) from None
        finally:
            worker.close()

    def _run_pool(
        self, plan: BuildPlan, tasks: list[ShardTask], workers: int, run_id: str, flag: StopFlag
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        done = 0
        with stop_on_signals(flag, interrupt_main=False):
            events = ctx.Queue()  # starts the resource tracker before any worker (children_ignore_sigint)
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
                initargs=(events, os.getpid(), plan.to_json(), str(plan.build.root), run_id),
            )
            try:
                with children_ignore_sigint():  # the workers are started by the first submits
                    futures: set[Future[int]] = {pool.submit(_worker_run, t) for t in tasks}
                done = _await(futures, flag, plan)
            except BaseException:
                _kill(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                stop_reader.set()
                reader.join()
        if flag:  # a signal while the pool shut down, after the last shard
            raise BuildInterrupted(plan.committed_before + done, len(plan.shards))


def _await(futures: set[Future[int]], flag: StopFlag, plan: BuildPlan) -> int:
    """Wait for every shard; stop at the first signal (or failure). Returns the shards done."""
    done = 0
    while futures:
        finished, futures = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
        for future in finished:
            try:
                future.result()
            except BrokenProcessPool:
                if flag:  # the signal reached the workers too (SIGTERM to the process group)
                    raise BuildInterrupted(plan.committed_before + done, len(plan.shards)) from None
                raise BuildStateError(
                    f"{plan.build.root}: a worker process died while running a shard (killed by a "
                    "signal or out of memory); committed shards are kept: rerun to resume"
                ) from None
            done += 1
        if flag:
            raise BuildInterrupted(plan.committed_before + done, len(plan.shards))
    return done


def _kill(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and kill the workers now (a worker mid-shard commits nothing half-done)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)
