"""What ``prmforge build`` records in the registry while it runs: :class:`BuildRecorder`.

Recorded: a row when the build starts (``running``, the driver's pid and host, ``user@host``, the config
and its hash, the output, the runner, the schedule), the stage counts from the build's stage events, and
at the end the status, content hash, cost summary and error. Events only update counts in memory; a
background thread writes them at most every :data:`FLUSH_S` (2 writes a second), and at least every
:data:`POLL_S` writes a heartbeat and reads whether a cancel was requested: then it sends SIGINT to
this process, which stops the build exactly as Ctrl-C does (the row ends ``cancelled``; a rerun resumes).

When the registry cannot be reached, exactly this happens:

- it cannot be opened: with an explicit ``--db`` (or the scheduler's ``--build-id``),
  :func:`open_recorder` raises :class:`RegistryError` and the command fails before building (exit 2);
  otherwise (the default file, ``$PRMFORGE_DB``) the command prints one warning, ``... this build is not
  recorded in the registry``, and builds unrecorded;
- the start row cannot be written: one warning, and the build runs unrecorded;
- a later write fails: one warning, ``... the build goes on; its registry row lags``; the build is neither
  stopped nor slowed (the writes are on the background thread), progress is written again at the next
  tick, and the final status is tried :data:`FINAL_ATTEMPTS` times. If it never lands, the row stays
  ``running`` with an old heartbeat: ``builds show`` says its driver is gone, and the scheduler marks it
  ``interrupted`` before starting that schedule again;
- in every case the recorder writes nothing into the build directory (its manifest stays the truth) and
  never changes the build's exit code.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from prmforge.ops.db import RegistryError, resolve_url
from prmforge.ops.registry import BuildStart, Registry, this_host, who
from prmforge.ops.registry_manifest import stages_from_manifest
from prmforge.ops.registry_schema import StageInfo, Status
from prmforge.pipelines.config import BuildConfig
from prmforge.pipelines.runners.builddir import GLOBAL
from prmforge.pipelines.runners.interrupt import BuildInterrupted
from prmforge.pipelines.runners.plan import BuildResult
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.schemas.errors import PrmforgeError

__all__ = ["FINAL_ATTEMPTS", "FLUSH_S", "POLL_S", "BuildRecorder", "CancelledBeforeStart", "open_recorder"]

FLUSH_S = 0.5  # stage counts are written at most this often
POLL_S = 2.0  # heartbeat and cancel poll, even when no event arrives
FINAL_ATTEMPTS = 3


class CancelledBeforeStart(PrmforgeError):
    """The queued build this process was to claim was cancelled meanwhile."""


def interrupt_this_process() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def open_recorder(db: str | None, *, strict: bool, warn: Callable[[str], None]) -> BuildRecorder:
    """A recorder for the registry at ``db`` (else the default); see the module doc for ``strict``."""
    try:
        registry = Registry.open(resolve_url(db))
    except RegistryError as err:
        if strict:
            raise
        warn(f"{err}; this build is not recorded in the registry")
        return BuildRecorder(None, warn)
    return BuildRecorder(registry, warn)


@dataclass(slots=True)
class _Totals:
    shards: int = 0
    resumed: int = 0
    rows_in: int = 0
    rows_out: int = 0
    quarantined: int = 0
    seconds: float = 0.0


class BuildRecorder:
    """Records one build; with ``registry=None`` it records nothing (and costs nothing)."""

    def __init__(
        self,
        registry: Registry | None,
        warn: Callable[[str], None],
        *,
        flush_s: float = FLUSH_S,
        poll_s: float = POLL_S,
        on_cancel: Callable[[], None] = interrupt_this_process,
    ) -> None:
        self.registry = registry
        self._owned = registry  # closed by close(), even once recording stopped
        self.warn = warn
        self.flush_s = flush_s
        self.poll_s = poll_s
        self.on_cancel = on_cancel
        self.build_id: int | None = None
        self.writes = 0  # registry writes made (start, progress, final)
        self._lock = threading.Lock()
        self._stages: dict[str, _Totals] = {}
        self._global: set[str] = set()
        self._num_shards: int | None = None
        self._dirty = False
        self._finishing = False
        self._cancel_seen = False
        self._done = False
        self._warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._target() is not None

    def _target(self) -> tuple[Registry, int] | None:
        if self.registry is None or self.build_id is None:
            return None
        return self.registry, self.build_id

    # -- the build's life ------------------------------------------------------------------------
    def start(
        self,
        config: BuildConfig,
        output: Path,
        *,
        schedule: str | None = None,
        build_id: int | None = None,
        retry_of: int | None = None,
    ) -> None:
        """Record the start (claiming the queued row ``build_id`` if given: that must succeed)."""
        if self.registry is None:
            return
        start = BuildStart(
            name=config.name,
            config_hash=config.content_hash(),
            config_json=config.model_dump(mode="json"),
            output=str(output.absolute()),
            runner=config.runner.kind,
            started_by=who(),
            pid=os.getpid(),
            host=this_host(),
            schedule=schedule,
            retry_of=retry_of,
        )
        if build_id is not None:
            if not self.registry.claim(build_id, start):
                raise CancelledBeforeStart(f"build {build_id} was cancelled before it started")
            self.build_id = build_id
        else:
            try:
                self.build_id = self.registry.start_build(start)
            except RegistryError as err:
                self.warn(f"{err}; this build is not recorded in the registry")
                self.registry = None
                return
        self.writes += 1
        self._thread = threading.Thread(target=self._loop, name="prmforge-registry", daemon=True)
        self._thread.start()

    def on_plan(self, num_shards: int) -> None:
        with self._lock:
            self._num_shards = num_shards
            self._dirty = True

    def on_event(self, event: StageEvent) -> None:
        """Counts only, in memory: called for every stage of every shard (from any thread)."""
        with self._lock:
            t = self._stages.setdefault(event.stage, _Totals())
            t.shards += 1
            t.resumed += int(event.resumed)
            t.rows_in += event.counts.rows_in
            t.rows_out += event.counts.rows_out
            t.quarantined += event.counts.quarantined
            t.seconds += event.seconds
            if event.shard == GLOBAL:
                self._global.add(event.stage)
            self._dirty = True

    def finished(self, result: BuildResult) -> None:
        """The runner returned: ``succeeded``, or ``failed`` with the gates' problems; the counts are the
        manifest's (the truth), the cost its summary's."""
        self._halt()
        if not self.active:
            self._done = True
            return
        problems = "; ".join(result.problems)
        self._final(
            "failed" if result.problems else "succeeded",
            error=problems or None,
            content_hash=result.content_hash,
            cost=self._cost(result.root),
            stages=stages_from_manifest(result.manifest, self._seen(), set(self._global)),
            num_shards=result.manifest.num_shards,
        )

    def interrupted(self, message: str) -> None:
        """Stopped by a signal: ``cancelled`` when a cancel was requested, else ``interrupted``."""
        self._halt()
        cancelled = self._cancel_seen
        target = self._target()
        if target is not None and not cancelled:
            with suppress(RegistryError):
                cancelled = target[0].cancel_requested(target[1])
        self._final("cancelled" if cancelled else "interrupted", error=message)

    def failed(self, message: str) -> None:
        self._halt()
        self._final("failed", error=message)

    def close(self) -> None:
        self._halt()
        if self._owned is not None:
            self._owned.close()

    @contextmanager
    def recording(
        self,
        config: BuildConfig,
        output: Path,
        *,
        schedule: str | None = None,
        build_id: int | None = None,
        retry_of: int | None = None,
    ) -> Iterator[BuildRecorder]:
        """:meth:`start`, then the block runs the build and calls :meth:`finished`; an exception out of
        it is recorded (interrupted, cancelled or failed, with its message) and re-raised."""
        try:
            self.start(config, output, schedule=schedule, build_id=build_id, retry_of=retry_of)
        except BaseException:
            self.close()
            raise
        try:
            yield self
        except (BuildInterrupted, KeyboardInterrupt) as err:
            self.interrupted(str(err) if isinstance(err, BuildInterrupted) else "interrupted")
            raise
        except BaseException as err:
            self.failed(str(err) if isinstance(err, PrmforgeError) else f"{type(err).__name__}: {err}")
            raise
        else:
            if not self._done:
                self.failed("the build ended without a result")
        finally:
            self.close()

    # -- writing -----------------------------------------------------------------------------------
    def _seen(self) -> dict[str, StageInfo]:
        with self._lock:
            return {
                name: StageInfo(name, t.shards, t.resumed, t.rows_in, t.rows_out, t.quarantined, t.seconds)
                for name, t in self._stages.items()
            }

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.flush_s):
            with self._lock:
                due = self._dirty or time.monotonic() - last >= self.poll_s
            if due:
                self._progress()
                last = time.monotonic()

    def _progress(self) -> None:
        target = self._target()
        if target is None:
            return
        registry, build_id = target
        with self._lock:
            stages = [StageInfo(n, t.shards, t.resumed, t.rows_in, t.rows_out, t.quarantined, t.seconds)
                      for n, t in self._stages.items()]  # fmt: skip
            shards, self._dirty = self._num_shards, False
        try:
            cancel = registry.record_progress(build_id, stages, shards)
            self.writes += 1
        except RegistryError as err:
            with self._lock:
                self._dirty = True
            self._warn_once(f"{err}; the build goes on; its registry row lags")
            return
        with self._lock:
            signal_now = cancel and not self._cancel_seen and not self._finishing
            self._cancel_seen = self._cancel_seen or cancel
        if signal_now:
            self.warn(f"build {build_id}: cancel requested in the registry; stopping (a rerun resumes)")
            self.on_cancel()

    def _halt(self) -> None:
        with self._lock:
            self._finishing = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None

    def _final(
        self,
        status: Status,
        *,
        error: str | None,
        content_hash: str | None = None,
        cost: dict[str, object] | None = None,
        stages: list[StageInfo] | None = None,
        num_shards: int | None = None,
    ) -> None:
        self._done = True
        target = self._target()
        if target is None:
            return
        registry, build_id = target
        if stages is None:
            stages = list(self._seen().values())
        if num_shards is None:
            num_shards = self._num_shards
        for attempt in range(FINAL_ATTEMPTS):
            try:
                registry.finish(
                    build_id, status, error=error, content_hash=content_hash, cost=cost,
                    stages=stages, num_shards=num_shards,
                )  # fmt: skip
                self.writes += 1
                return
            except RegistryError as err:
                if attempt == FINAL_ATTEMPTS - 1:
                    self.warn(f"{err}; build {build_id} could not be recorded as {status}")
                else:
                    time.sleep(0.5 * (attempt + 1))

    def _cost(self, root: Path) -> dict[str, object] | None:
        from prmforge.pipelines.stats import summarize

        try:
            cost: dict[str, object] = dict(summarize(root)["cost"])
        except (PrmforgeError, OSError, KeyError, ValueError) as err:
            self.warn(f"build {self.build_id}: no cost summary for the registry ({err})")
            return None
        return cost

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self.warn(message)
