"""``prmforge scheduler run``: the long-running process that starts each schedule's builds.

An APScheduler 3 ``BackgroundScheduler`` over the schedules' job store (:mod:`prmforge.ops.scheduler`),
whose thread pool (:data:`MAX_BUILDS` threads) runs :func:`fire`. The main thread waits for SIGTERM or
SIGINT and wakes the scheduler every :data:`POLL_S` so that schedules added or removed by other
processes are seen.

Each fire starts the build as a subprocess, ``python -m prmforge.pipelines.cli build CONFIG --schedule
NAME --build-id ID [--output DIR]``, with the registry's URL in its environment (``PRMFORGE_DB``, not
on its command line, where other users could read a password), its output appended to
``LOG_DIR/build-ID.log``, in its own session (a Ctrl-C in the scheduler's terminal reaches the
scheduler alone, which forwards one SIGINT to each build). A subprocess and not this process: a build
installs its own SIGINT/SIGTERM handling (which works only in a main thread, and APScheduler runs jobs
in pool threads), starts worker pools, loads models and may die of a signal or of memory; in its own
process none of that can stop or wedge the scheduler, and ``builds cancel`` signals it like any build.
(It also keeps the import layers: nothing outside the command line imports the command line.)

Overlapping fires of one schedule never run twice: APScheduler's ``max_instances=1`` and ``coalesce`` in
this process, and :meth:`Registry.reserve` across processes (a fire first inserts a ``queued`` row, in
one locked transaction with the check that no build of that schedule is active and alive). A fire that
finds one is skipped and logged.

A build that fails is recorded ``failed`` with its error: by the build itself, or, when it never got to
record anything (its configuration is gone, it was killed), here, with the end of its log. Nothing a
build does stops the scheduler.

SIGTERM (or SIGINT): no new fire starts; every running build is sent SIGINT, so it stops as on Ctrl-C and
records itself ``interrupted`` (a rerun resumes it); the scheduler waits for each up to the stop timeout
(:data:`STOP_TIMEOUT_S`), kills one that is still running and marks it ``interrupted``, and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from prmforge.ops.db import RegistryError
from prmforge.ops.registry import Registry, this_host, who
from prmforge.ops.registry_schema import ACTIVE
from prmforge.ops.scheduler import MISFIRE_GRACE_S, job_store

__all__ = ["MAX_BUILDS", "POLL_S", "STOP_TIMEOUT_S", "ScheduledBuilds", "fire"]

MAX_BUILDS = 4  # builds of different schedules running at once
POLL_S = 5.0  # schedules changed by another process are seen within this
STOP_TIMEOUT_S = 120.0  # on SIGTERM, how long a build may take to stop after its SIGINT
WAIT_TICK_S = 0.5
TOUCH_S = 5.0  # the heartbeat of a queued build while its process starts
TAIL_LINES = 6

log = logging.getLogger("prmforge.scheduler")

# The running scheduler of this process. APScheduler stores a job's function by its import path, so the
# function it calls finds the scheduler that called it here.
_service: ScheduledBuilds | None = None


def fire(name: str, config: str, output: str | None = None, cron: str = "") -> None:
    """A schedule's job: start its build (in ``prmforge scheduler run`` only)."""
    service = _service
    if service is None:
        raise RuntimeError("prmforge.ops.scheduler_run.fire runs inside `prmforge scheduler run` only")
    service.fire(name, config, output)


class ScheduledBuilds:
    """One scheduler process over one registry."""

    def __init__(
        self,
        registry: Registry,
        log_dir: Path,
        *,
        max_builds: int = MAX_BUILDS,
        poll_s: float = POLL_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.registry = registry
        self.log_dir = log_dir
        self.max_builds = max_builds
        self.poll_s = poll_s
        self.stop_timeout_s = stop_timeout_s
        self.stop = threading.Event()

    def run(self) -> int:
        """Until SIGTERM or SIGINT; returns the exit code (0)."""
        global _service  # noqa: PLW0603 - see _service
        from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
        from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]

        self.log_dir.mkdir(parents=True, exist_ok=True)
        scheduler = BackgroundScheduler(
            jobstores={"default": job_store(self.registry)},
            executors={"default": ThreadPoolExecutor(self.max_builds)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S},
        )
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        _service = self
        try:
            scheduler.start()
            names = ", ".join(job.id for job in scheduler.get_jobs()) or "none yet"
            log.info(
                "scheduler started on %s (pid %d); schedules: %s", self.registry.shown, os.getpid(), names
            )
            while not self.stop.wait(self.poll_s):
                scheduler.wakeup()
        finally:
            log.info("stopping: no new builds; running builds get SIGINT")
            self.stop.set()
            if scheduler.running:
                scheduler.shutdown(wait=True)  # waits for every fire, each stopping its build
            _service = None
            for s, handler in previous.items():
                signal.signal(s, handler)
        log.info("scheduler stopped")
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()

    def fire(self, name: str, config: str, output: str | None) -> None:
        """Start one build of schedule ``name`` and wait for it; never raises."""
        if self.stop.is_set():
            log.info("schedule %s: not started, the scheduler is stopping", name)
            return
        try:
            reservation = self.registry.reserve(name, who(), os.getpid(), this_host())
        except RegistryError as err:
            log.error("schedule %s: not started, the registry cannot be written: %s", name, err)
            return
        for stale in reservation.stale:
            log.warning("schedule %s: build %d had lost its driver; marked interrupted", name, stale)
        if reservation.build_id is None:
            blocking = reservation.blocking
            log.warning(
                "schedule %s: skipped, build %s of it is still %s",
                name, blocking.id if blocking else "?", blocking.status if blocking else "active",
            )  # fmt: skip
            return
        build_id = reservation.build_id
        try:
            self._run(name, build_id, config, output)
        except (RegistryError, OSError) as err:
            log.error("schedule %s: build %d: %s", name, build_id, err)

    def _run(self, name: str, build_id: int, config: str, output: str | None) -> None:
        log_path = self.log_dir / f"build-{build_id}.log"
        argv = [sys.executable, "-m", "prmforge.pipelines.cli", "build", config,
                "--schedule", name, "--build-id", str(build_id)]  # fmt: skip
        if output is not None:
            argv += ["--output", output]
        env = {**os.environ, "PRMFORGE_DB": self.registry.url}
        with log_path.open("ab") as out:
            # In its own session: a Ctrl-C in the scheduler's terminal reaches the scheduler alone.
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        log.info("schedule %s: build %d started (pid %d, log %s)", name, build_id, proc.pid, log_path)
        code, stopped = self._wait(proc, build_id)
        info = self.registry.get(build_id)
        if info.status in ACTIVE:
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            tail = _tail(log_path)
            error = f"the build {how} before recording its end" + (f": {tail}" if tail else "")
            self.registry.finish(build_id, "interrupted" if stopped else "failed", error=error)
            info = self.registry.get(build_id)
        ending = f" ({info.error})" if info.error else ""
        log.info("schedule %s: build %d %s%s", name, build_id, info.status, ending)

    def _wait(self, proc: subprocess.Popen[bytes], build_id: int) -> tuple[int, bool]:
        """The build's exit code, and whether this scheduler stopped it."""
        stopped_at: float | None = None
        touched = time.monotonic()
        while True:
            try:
                return proc.wait(timeout=WAIT_TICK_S), stopped_at is not None
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self.stop.is_set() and stopped_at is None:
                log.info("build %d: sending SIGINT (pid %d)", build_id, proc.pid)
                proc.send_signal(signal.SIGINT)
                stopped_at = now
            elif stopped_at is not None and now - stopped_at > self.stop_timeout_s:
                log.warning(
                    "build %d: still running %.0f s after SIGINT; killing it", build_id, self.stop_timeout_s
                )
                proc.kill()
                return proc.wait(), True
            if now - touched >= TOUCH_S:
                touched = now
                try:
                    self.registry.touch(build_id)
                except RegistryError as err:
                    log.warning("build %d: heartbeat not written: %s", build_id, err)


def _tail(path: Path) -> str:
    """The last lines of a build's log, on one line."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-TAIL_LINES:])[-1500:]
