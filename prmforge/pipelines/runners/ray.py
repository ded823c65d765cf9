"""The Ray runner: the planned shards as a Ray Data dataset, mapped by a pool of shard actors, then the
global stages and the manifest in the driver.

The pending :class:`ShardTask` s become ``ray.data.from_items`` (one block, one batch per shard) and
``map_batches`` runs them on a fixed pool of ``runner.workers`` :class:`ShardActor` s, two tasks in
flight per actor: the next shard already waits at the actor when one ends (with one, each actor sat
idle while the executor dispatched the next: 1.47x instead of 1.66x from 1 to 2 workers on 2 cores).
A shard waiting at an actor that dies costs no attempt (an attempt begins when the shard starts).
Each actor builds its Worker (engines, stages) once and commits every stage of a
shard through the same :class:`ShardExecutor`, build directory and markers as the local runner, so
the content hash is the same; nothing is written with ``write_parquet``. An actor asks Ray for the
stages' largest ``resources.cpus`` and, when a stage holds a model engine, ``runner.ray.num_gpus``.

Why whole shards in one actor, not one ``map_batches`` per stage with the CPU stages as tasks: a
stage reuses its marker only when the upstream records it was made from are exactly those committed,
so stage k of a shard must see stage k-1's committed records. Per stage, every hop would re-read and
re-verify those files (or ship records through the object store beside the commit), a Ray task would
set up its stage (a Z3 worker, a sandbox pool, a language server) for every shard, an actor pool per
stage would hold CPUs for stages that are idle (two cores cannot host five pools), and a poisoned
shard must rerun all its stages from load anyway. One actor per shard keeps all of that as in the
local runner; the cost is that a GPU actor also runs its shard's CPU stages.

Faults: Ray restarts a dead actor and retries its task; the :class:`Hub` counts each shard's
attempts (a dead worker process, or an exception) and after ``runner.ray.max_attempts`` the driver
records the shard as poisoned (:meth:`BuildDir.record_poison`, with the reason) and runs it once
more, its rows quarantined at load, so the build commits. ``max_errored_blocks`` stays 0: no block
is ever dropped, and a shard counts as done only when its markers verify in the build directory.
A build's error (a full disk, a changed input) stops the build. Ctrl-C or SIGTERM stops the dataset
(its actors are killed) and raises :class:`BuildInterrupted`; a rerun resumes. A local Ray started
for the build dies with the driver, even on SIGKILL: Ray's fate sharing takes its head processes and
workers, and :mod:`ray_reaper` the agents that would linger for a minute.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import ray
import ray.data

from prmforge.pipelines.runners.interrupt import BuildInterrupted, StopFlag, stop_on_signals
from prmforge.pipelines.runners.plan import BuildPlan, BuildResult, ShardTask, prepare
from prmforge.pipelines.runners.publish import finish
from prmforge.pipelines.runners.ray_hub import Hub
from prmforge.pipelines.runners.ray_session import first_line as _first_line
from prmforge.pipelines.runners.ray_session import ray_session
from prmforge.pipelines.runners.ray_worker import FATAL, FAULT_ENV, POISON, ShardActor
from prmforge.pipelines.runners.shard import StageEvent, shard_is_current
from prmforge.schemas import errors
from prmforge.schemas.errors import BuildStateError, ConfigError, PrmforgeError

DRAIN_S = 0.25  # how often the driver collects the workers' stage events


class RayRunner:
    """Runs a build's shards on Ray (a local Ray, or the cluster at ``runner.ray.address``)."""

    name = "ray"

    def __init__(
        self,
        on_event: Callable[[StageEvent], None] | None = None,
        on_plan: Callable[[int], None] | None = None,
    ) -> None:
        self.on_event = on_event or (lambda event: None)
        self.on_plan = on_plan or (lambda num_shards: None)
        self.running: dict[int, int] = {}  # shard -> pid of the worker process running it (as last seen)
        self.poisoned: dict[int, str] = {}  # shards this run quarantined whole, with the reason
        self._flag = StopFlag()

    def run(
        self, config: Any, output: Path, restart: bool = False, workers: int | None = None
    ) -> BuildResult:
        self._flag = flag = StopFlag()
        self.poisoned = {}  # this run's
        with stop_on_signals(flag, interrupt_main=True):  # a signal raises KeyboardInterrupt here
            plan = prepare(config, output, restart, self.on_event)
            try:
                self.on_plan(len(plan.shards))
                n_workers = config.runner.workers if workers is None else workers
                run_id = uuid.uuid4().hex
                pending = plan.pending()
                if pending:
                    try:
                        with ray_session(config.runner.ray.address):
                            self._schedule(plan, pending, max(1, n_workers), run_id)
                    except KeyboardInterrupt:  # while Ray started or stopped
                        raise BuildInterrupted(plan.committed_before, len(plan.shards)) from None
                total = len(plan.shards)
                try:
                    return finish(plan, run_id, len(pending))
                except KeyboardInterrupt:
                    raise BuildInterrupted(total, total) from None
            finally:
                plan.build.close()

    def _schedule(self, plan: BuildPlan, pending: list[ShardTask], workers: int, run_id: str) -> None:
        """Every pending shard committed: attempts, then the poisoned shards once more, quarantined."""
        check_resources(plan)
        hub: Any = ray.remote(Hub).options(num_cpus=0).remote(plan.config.runner.ray.max_attempts)
        try:
            poisoned = self._pass(plan, pending, workers, run_id, hub)
            if poisoned:
                for shard, reason in sorted(poisoned.items()):
                    plan.build.record_poison(shard, reason)
                    self.poisoned[shard] = reason
                ray.get(hub.forget.remote(sorted(poisoned)))
                again = [t for t in pending if t.shard in poisoned]
                still = self._pass(plan, again, workers, run_id, hub)
                if still:
                    shard, reason = min(still.items())
                    raise BuildStateError(
                        f"{plan.build.root}: shard {shard} failed its worker even with every row "
                        f"quarantined: {reason}"
                    )
        except KeyboardInterrupt:
            # The build directory, not Ray's (buffered) output, says which shards are committed.
            done = {t.shard for t in pending if shard_is_current(plan.graph, plan.build, t.shard)}
            raise BuildInterrupted(plan.committed_before + len(done), len(plan.shards)) from None
        finally:
            with suppress(Exception):  # Ray may already be stopping
                ray.kill(hub)
        lost = [t.shard for t in pending if shard_is_current(plan.graph, plan.build, t.shard) is None]
        if lost:  # never expected: every row is accounted for by the build directory, not by Ray
            raise BuildStateError(
                f"{plan.build.root}: shard(s) {lost} are not committed after the Ray job ended; "
                "rerun to resume"
            )

    def _pass(
        self,
        plan: BuildPlan,
        tasks: list[ShardTask],
        workers: int,
        run_id: str,
        hub: Any,
    ) -> dict[int, str]:
        """One Ray Data job over ``tasks``; returns the shards out of attempts, with the reason."""
        poisoned: dict[int, str] = {}
        stop = threading.Event()
        drainer = threading.Thread(target=self._drain, args=(hub, stop), daemon=True)
        drainer.start()
        results: Iterator[dict[str, Any]] | None = None
        try:
            with _quiet_ray_data():
                results = iter(_dataset(plan, tasks, workers, run_id, hub).iter_rows())
                for row in results:
                    shard, status, detail = int(row["shard"]), str(row["status"]), bytes(row["detail"])
                    if status == POISON:
                        poisoned[shard] = detail.decode()
                    elif status == FATAL:
                        raise _unpickle(detail)
        except (KeyboardInterrupt, PrmforgeError):
            raise
        except Exception as err:  # Ray's own failure (workers that cannot start, a lost node)
            if self._flag:  # Ctrl-C reached the workers too, and their failure came back first
                raise KeyboardInterrupt from None
            own = build_error_in(err)
            if own is not None:  # the build's error, raised where a worker started (a missing input)
                raise own from None
            raise BuildStateError(
                f"{plan.build.root}: the Ray job failed ({_first_line(err)}); committed shards are kept: "
                "rerun to resume"
            ) from None
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()  # stops the dataset: its actors are killed
            stop.set()
            drainer.join()
        self._replay(hub)
        return poisoned

    def _drain(self, hub: Any, stop: threading.Event) -> None:
        while not stop.wait(DRAIN_S):
            try:
                self._replay(hub)
            except Exception:  # the hub is gone (Ray stopping); the final replay tells
                return

    def _replay(self, hub: Any) -> None:
        events, running = ray.get(hub.drain.remote(), timeout=60)
        self.running = running
        for blob in events:
            self.on_event(pickle.loads(blob))  # pickled by this build's own shard actors


def worker_resources(plan: BuildPlan) -> tuple[float, float]:
    """(CPUs, GPUs) one shard actor asks Ray for: the stages' largest needs, and ``runner.ray.num_gpus``
    when a stage holds a model engine."""
    stages = plan.graph.stages
    engine = any(s.resources.holds_engine for s in stages)
    gpus = max([plan.config.runner.ray.num_gpus if engine else 0.0, *(s.resources.gpus for s in stages)])
    return max(s.resources.cpus for s in stages), gpus


def check_resources(plan: BuildPlan) -> None:
    """A worker asking for more than the whole cluster has would wait for it forever: refuse it."""
    cpus, gpus = worker_resources(plan)
    have: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    for kind, want, field in (("CPU", cpus, "stage resources (cpus)"), ("GPU", gpus, "runner.ray.num_gpus")):
        if want > have.get(kind, 0.0):
            raise ConfigError(
                f"{field}: each Ray worker asks for {want:g} {kind}(s); the Ray cluster has "
                f"{have.get(kind, 0.0):g} (on an autoscaling cluster, start such a node first)"
            )


def _dataset(plan: BuildPlan, tasks: list[ShardTask], workers: int, run_id: str, hub: Any) -> Any:
    """The pending shards, one block each, mapped by a fixed pool of shard actors (two tasks in flight
    per actor: one running, the next queued; see the module's docstring)."""
    rows = [{"shard": t.shard, "task": pickle.dumps(t)} for t in tasks]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    context = ds.context
    context.enable_progress_bars = False  # the command line draws its own board
    context.print_on_execution_start = False
    context.max_errored_blocks = 0  # never drop a block: a shard that cannot run stops the job
    context.execution_no_progress_timeout_s = -1  # one shard may take hours on one engine
    cpus, gpus = worker_resources(plan)
    fault = os.environ.get(FAULT_ENV)
    return ds.map_batches(
        ShardActor,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(tasks)), max_tasks_in_flight_per_actor=2),
        fn_constructor_kwargs={
            "config_json": plan.to_json(),
            "root": str(plan.build.root.resolve()),
            "run_id": run_id,
            "hub": hub,
        },
        num_cpus=cpus,
        num_gpus=gpus or None,
        runtime_env={"env_vars": {FAULT_ENV: fault}} if fault else None,
        # Ray 2.60 names no parameter for these two: only the deprecated **ray_remote_args carry them.
        max_restarts=plan.config.runner.ray.max_attempts * len(tasks) + 1,  # bounded, never the limit
        max_task_retries=-1,  # a retried shard costs an attempt at the hub, which bounds them
    )


@contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data's console log and its own deprecation warnings off while a pass runs (its file log in
    the Ray session keeps everything): a retried shard is the runner's to report, not a traceback."""
    handlers = [h for h in logging.getLogger("ray.data").handlers if "File" not in type(h).__name__]
    levels = [h.level for h in handlers]
    for h in handlers:
        h.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*ray_remote_args.* is deprecated")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.data")
            yield
    finally:
        for h, level in zip(handlers, levels, strict=True):
            h.setLevel(level)


def _unpickle(blob: bytes) -> PrmforgeError:
    try:
        err = pickle.loads(blob)  # written by this build's own actors
    except Exception:
        return BuildStateError("a worker failed with an error that could not be read back")
    return err if isinstance(err, PrmforgeError) else BuildStateError(str(err))


_OWN_ERROR = re.compile(r"prmforge\.schemas\.errors\.(\w+): (.+)")


def build_error_in(err: BaseException) -> PrmforgeError | None:
    """The project's own error that Ray wrapped (an actor's ``__init__`` that raised one), if any.

    Ray keeps the cause of a failed actor creation only as text; the last such line names it.
    """
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, PrmforgeError):
            return seen
        seen = seen.__cause__ or seen.__context__
    found = _OWN_ERROR.findall(str(err))
    if not found:
        return None
    name, message = found[-1]
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, PrmforgeError) and not issubclass(cls, errors.RowError):
        return cls(message.strip())
    return None


__all__ = ["RayRunner", "ray_session"]  # ray_session: from ray_session.py, where it lives
