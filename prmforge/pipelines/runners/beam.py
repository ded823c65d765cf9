"""The Apache Beam runner (``runner.kind: beam``): the planned shards as a Beam pipeline, then the global
stages and the manifest in the driver, through the same ``finish`` as every runner.

The pipeline (:mod:`.beam_shards`, :mod:`.beam_dedup`; the shard worker is :mod:`.beam_worker`)::

    Create(pending ShardTasks) | Reshuffle | Attempt1: RunShard --dead letters--> Reshuffle | Attempt2 ..
                                              | done          | quarantined rows (tagged output)
                                              |               | BatchElements | counted per stage
    Count.Globally (every shard committed) | shard indices | Reshuffle | ReadAssembled
        | GroupByKey(example id): clashing ids | GroupByKey(prompt, completions): repeats
        | GroupByKey(question): duplicate questions | ToList | the decision (side directory)

A RunShard DoFn builds the stage graph's Worker once per Beam worker and commits each shard through the
shard executor, markers and build directory of the local runner: a retried bundle reuses what was
committed, and nothing is written by a Beam sink. Then the driver runs ``finish`` (dedup, write, the
manifest, the card: the local runner's content hash) and requires the committed dedup stage to agree
with Beam's GroupByKey decision. Stage events and the decision travel through ``OUT/.beam/<run id>/``
(removed at the end; a killed run's is removed by the next).

Options: ``PipelineOptions([--runner=<runner.beam.runner>, <from workers>, *runner.beam.options])``,
the options as written and last, so they win. ``workers`` (``runner.workers``, or ``--workers``) maps
to FnApiRunner only:

==============  =============================================================================
FnApiRunner     0 or 1: ``--direct_num_workers=1 --direct_running_mode=in_memory`` (the shards in
                this process, like the local runner's ``workers: 0``); N >= 2:
                ``--direct_num_workers=N --direct_running_mode=multi_processing``
FlinkRunner     nothing: ``--flink_master=http://HOST:8081 --parallelism=N``, an environment
                (``--environment_type=LOOPBACK`` runs the workers in this process, ``PROCESS`` or
                ``DOCKER`` on the task managers) and ``--flink_job_server_jar=PATH`` offline
SparkRunner     nothing: ``--spark_master_url=spark://HOST:7077`` (or ``local[N]``),
                ``--environment_type`` as for Flink, ``--spark_job_server_jar=PATH`` offline
DataflowRunner  nothing: ``--project=P --region=R --temp_location=gs://B/tmp --num_workers=N
                --max_num_workers=N --sdk_container_image=IMAGE`` (prmforge installed in it)
==============  =============================================================================

Every worker must see the build directory at the same path (a shared POSIX file system): that is where
shards commit. Only FnApiRunner is tested; the default ``DirectRunner`` tries to download Prism.

Faults: unless the runner runs in memory, each Beam worker runs the stages in a spawned subprocess, so
a killed worker process, like an exception from a stage, becomes a dead letter that goes to the next
attempt; after ``beam_worker.MAX_ATTEMPTS`` the shard is recorded as poisoned and runs once more with
its rows quarantined at load (the build commits, and says so in its warnings). FnApiRunner itself
never retries a bundle and waits forever once a Beam SDK harness process dies (measured with 2.77):
the harness holds no stage, only the shard's subprocess does. Ctrl-C or SIGTERM kills the Beam workers
(and cancels a job on a cluster) and raises :class:`BuildInterrupted`; a rerun resumes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from prmforge.pipelines.config import BuildConfig
from prmforge.pipelines.runners.beam_dedup import check_agreement, expand_dedup
from prmforge.pipelines.runners.beam_shards import NAMESPACE, expand_shards
from prmforge.pipelines.runners.beam_worker import (
    TAIL_S,
    EventTail,
    ShardJob,
    SharedWorker,
    process_start,
    this_process,
)
from prmforge.pipelines.runners.interrupt import BuildInterrupted, StopFlag, stop_on_signals
from prmforge.pipelines.runners.plan import BuildPlan, BuildResult, ShardTask, prepare
from prmforge.pipelines.runners.publish import finish
from prmforge.pipelines.runners.shard import EventSink, shard_is_current
from prmforge.schemas.errors import BuildStateError

# mypy: disable-error-code="no-untyped-call"
# (apache_beam 2.77 declares py.typed but leaves most of its API unannotated.)

log = logging.getLogger(__name__)

SIDE_DIR = ".beam"  # OUT/.beam/<run id>/: the workers' event logs and the dedup decision (removed after)
IN_PROCESS_RUNNER = "FnApiRunner"
HARNESS = "apache_beam.runners.worker.sdk_worker_main"
KILL_WAIT_S = 5.0
BEAM_LOGGERS = (  # what Beam logs in the driver about workers it lost (after a signal: dropped)
    "apache_beam.runners.common",
    "apache_beam.runners.worker.data_plane",
    "apache_beam.runners.worker.sdk_worker",
    "apache_beam.runners.portability.local_job_service",
    "apache_beam.runners.portability.fn_api_runner.worker_handlers",
    "apache_beam.runners.portability.fn_api_runner.fn_runner",
)


@dataclass(frozen=True, slots=True)
class BeamReport:
    """What the last run of a BeamRunner did, from Beam's metrics and the build directory."""

    pipeline_args: tuple[str, ...]
    isolated: bool  # shards ran in subprocesses of the Beam workers
    failed_attempts: dict[int, int]  # shard -> attempts that raised or whose process died
    poisoned: dict[int, str]  # shards this run quarantined whole, with the reason
    quarantined: dict[str, int]  # stage -> rows quarantined in the shards this run ran (tagged output)
    dedup: dict[str, int]  # Beam's exact-dedup counts (equal to the manifest's)


def pipeline_args(config: BuildConfig, workers: int | None = None) -> list[str]:
    """``--runner``, what ``workers`` means for FnApiRunner, then ``runner.beam.options`` as written."""
    beam_config = config.runner.beam
    args = [f"--runner={beam_config.runner}"]
    if beam_config.runner == IN_PROCESS_RUNNER:
        n = config.runner.workers if workers is None else workers
        mode = "multi_processing" if n >= 2 else "in_memory"
        args += [f"--direct_num_workers={max(n, 1)}", f"--direct_running_mode={mode}"]
    return [*args, *beam_config.options]


class BeamRunner:
    """Runs a build's shards as an Apache Beam pipeline (FnApiRunner here; Flink, Spark, Dataflow)."""

    name = "beam"

    def __init__(
        self,
        on_event: EventSink | None = None,
        on_plan: Callable[[int], None] | None = None,
    ) -> None:
        self.on_event: EventSink = on_event or (lambda event: None)
        self.on_plan: Callable[[int], None] = on_plan or (lambda num_shards: None)
        self.report: BeamReport | None = None

    def run(
        self, config: Any, output: Path, restart: bool = False, workers: int | None = None
    ) -> BuildResult:
        flag = StopFlag()
        with stop_on_signals(flag, interrupt_main=True):
            plan = prepare(config, output, restart, self.on_event)
            side_root = plan.build.root / SIDE_DIR
            try:
                self.on_plan(len(plan.shards))
                args = pipeline_args(config, workers)
                options = PipelineOptions(args)
                run_id = uuid.uuid4().hex
                pending = plan.pending()
                shutil.rmtree(side_root, ignore_errors=True)  # a killed run's (this build is locked)
                side = side_root / run_id
                before = {t.shard for t in pending if plan.build.poisoned(t.shard) is not None}
                counters, isolated = self._run_pipeline(plan, pending, run_id, options, side, flag)
                total = len(plan.shards)
                try:
                    built = finish(plan, run_id, len(pending))
                except KeyboardInterrupt:
                    raise BuildInterrupted(total, total) from None
                dedup = check_agreement(side / "dedup.json", plan.build, built.manifest)
                poisoned = {
                    t.shard: reason
                    for t in pending
                    if t.shard not in before and (reason := plan.build.poisoned(t.shard)) is not None
                }
                self.report = _report(args, isolated, counters, poisoned, dedup)
                return replace(built, warnings=built.warnings + _warnings(self.report))
            finally:
                shutil.rmtree(side_root, ignore_errors=True)
                plan.build.close()

    def _run_pipeline(
        self,
        plan: BuildPlan,
        tasks: list[ShardTask],
        run_id: str,
        options: PipelineOptions,
        side: Path,
        flag: StopFlag,
    ) -> tuple[dict[str, int], bool]:
        """Every pending shard committed (or poisoned) and the dedup decision written; Beam's counters."""
        runner = options.view_as(StandardOptions).runner
        local = runner == IN_PROCESS_RUNNER
        isolated = not (local and options.view_as(DirectOptions).direct_running_mode == "in_memory")
        driver = this_process() if local else None
        events = side / "events"
        events.mkdir(parents=True, exist_ok=True)
        job = ShardJob(plan.to_json(), str(plan.build.root), run_id, str(events), driver)
        pipeline = beam.Pipeline(options=options)
        done = expand_shards(pipeline, tasks, job, isolated)
        split = plan.config.split
        expand_dedup(
            done,
            str(plan.build.root),
            len(plan.shards),
            plan.graph.hashes["assemble"],
            split.dedup,
            str(side / "dedup.json"),
        )
        tail = EventTail(events, self.on_event)
        stopped = threading.Event()
        killer = threading.Thread(target=_kill_on_signal, args=(flag, stopped, local), daemon=True)
        tail.start()
        killer.start()
        result: Any = None
        try:
            with _quiet_once_stopped(flag):
                result = pipeline.run()
                state = result.wait_until_finish()
        except BaseException as err:
            if flag:
                _cancel(result)  # a job on a cluster (FnApiRunner's run has returned nothing yet)
                raise BuildInterrupted(_committed(plan), len(plan.shards)) from None
            if isinstance(err, KeyboardInterrupt):
                raise
            raise BuildStateError(
                f"{plan.build.root}: the Beam pipeline failed ({_last_line(err)}); committed shards "
                "are kept: rerun to resume"
            ) from None
        finally:
            SharedWorker.discard(run_id)
            stopped.set()
            killer.join()
            tail.stop()
        if flag:  # a signal as the pipeline ended
            raise BuildInterrupted(_committed(plan), len(plan.shards))
        if state != PipelineState.DONE:
            raise BuildStateError(f"{plan.build.root}: the Beam pipeline ended {state}; rerun to resume")
        return _counters(result), isolated


def _kill_on_signal(flag: StopFlag, stopped: threading.Event, local: bool) -> None:
    """At the first SIGINT/SIGTERM, kill the Beam workers at once (their bundles would otherwise run
    to the end of the shard before FnApiRunner lets the driver go)."""
    while not stopped.is_set():
        if flag.event.wait(TAIL_S):
            if local:
                _kill_harnesses()
            return


class _DropOnceStopped(logging.Filter):
    def __init__(self, flag: StopFlag) -> None:
        super().__init__()
        self.flag = flag

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.flag


@contextmanager
def _quiet_once_stopped(flag: StopFlag) -> Iterator[None]:
    """After a signal, what Beam says about the workers the driver killed (a KeyboardInterrupt inside a
    DoFn, "Worker subprocess exited" from its worker threads) is noise: dropped. The block ends when
    those threads have."""
    quiet = _DropOnceStopped(flag)
    loggers = [logging.getLogger(name) for name in BEAM_LOGGERS]
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not flag:
            previous(args)

    threading.excepthook = hook
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        if flag:
            _kill_harnesses()
            for thread in threading.enumerate():
                if thread.name == "run_worker":
                    thread.join(timeout=10)
        threading.excepthook = previous
        for logger in loggers:
            logger.removeFilter(quiet)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(p) for p in children.read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def _kill_harnesses() -> None:
    """SIGKILL this process's Beam SDK harnesses and everything they started (found in /proc)."""
    doomed: set[int] = set()
    for pid in _descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if HARNESS.encode() in cmdline and pid not in doomed:
            doomed.update([pid, *_descendants(pid)])
    killed = []
    for pid in doomed:
        start = process_start(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        killed.append((pid, start))
    deadline = time.monotonic() + KILL_WAIT_S  # gone, so nothing commits after the driver counts shards
    while any(process_start(pid) == start for pid, start in killed) and time.monotonic() < deadline:
        time.sleep(0.01)


def _cancel(result: Any) -> None:
    if result is not None:
        try:
            result.cancel()
        except Exception as err:  # the job may be gone already, or the runner cannot cancel
            log.warning("beam: could not cancel the job: %s", err)


def _committed(plan: BuildPlan) -> int:
    return sum(shard_is_current(plan.graph, plan.build, s.index) is not None for s in plan.shards)


def _last_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    tail = lines[-1] if lines else type(err).__name__
    return tail if len(tail) <= 500 else tail[:497] + "..."


def _counters(result: Any) -> dict[str, int]:
    """This pipeline's counters of our namespace (a runner without metrics gives none)."""
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except Exception:  # metrics are a report, never a reason to fail a committed build
        return {}
    out: dict[str, int] = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def _report(
    args: list[str], isolated: bool, counters: dict[str, int], poisoned: dict[int, str], dedup: dict[str, int]
) -> BeamReport:
    failed = {int(k.split("-")[1]): v for k, v in counters.items() if k.startswith("failed/shard-") and v}
    quarantined = {k.split("/", 1)[1]: v for k, v in counters.items() if k.startswith("quarantined/") and v}
    report = BeamReport(tuple(args), isolated, dict(sorted(failed.items())), poisoned, quarantined, dedup)
    log.info("beam: %s", report)
    return report


def _warnings(report: BeamReport) -> tuple[str, ...]:
    retried = [
        f"shard {shard}: {n} attempt(s) failed on a Beam worker; retried"
        for shard, n in report.failed_attempts.items()
        if shard not in report.poisoned
    ]
    return (*retried, *(f"shard {s} was quarantined whole: {r}" for s, r in report.poisoned.items()))
