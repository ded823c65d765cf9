"""A warm pool of jails for throughput: each keeps a worker that forks a fresh process per sample."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from prmforge.verifiers.sandbox import health
from prmforge.verifiers.sandbox.jobio import RawRun
from prmforge.verifiers.sandbox.limits import (
    Isolation,
    SandboxLimits,
    SandboxResult,
)
from prmforge.verifiers.sandbox.runner import exec_job, infra_result, jail_config, python_job, to_result
from prmforge.verifiers.sandbox.worker import Jail, JailLost, Job

RETRIES = 1


class SandboxPool:
    """``size`` warm jails running :meth:`PythonSandbox.run`- and :meth:`Sandbox.exec`-compatible
    jobs, safe to call from threads.

    After each sample the worker kills every process of its pid namespace, has the kernel collect
    what dead SCM_RIGHTS cycles held, and (once the host has collected the requested files) empties
    the scratch dir, /tmp and /dev/shm. The host then checks the worker against the state it had when
    it started (:mod:`health`: limits, scheduling, mounts, descriptors, processes, free space in the
    scratch areas and /dev, sockets in its network namespace). A worker that fails the check, dies,
    hangs or leaves a process behind is retired (``retired`` counts them) and replaced; the sample's
    verdict stays what the sample earned. A sample whose worker was lost is retried once on a fresh
    jail, then reported as INFRA_ERROR. Each sample gets fresh pipes, a fresh cgroup and a fresh fork
    of a process that never ran sample code.

    The tmpfs size and inode cap are the pool's ``limits``; ``timeout_s`` and the per-run limits of
    :meth:`run` and :meth:`exec` may be changed per call.
    """

    def __init__(
        self,
        size: int = 2,
        limits: SandboxLimits | None = None,
        *,
        isolation: Isolation = "bwrap",
        allow_weaker: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.limits = limits or SandboxLimits()
        self.config = jail_config(isolation, allow_weaker=allow_weaker)
        self.retired = 0
        self.retire_reasons: deque[str] = deque(maxlen=32)  # why, most recent last
        # bwrap --die-with-parent ties each jail to the *thread* that spawned it: spawn from one
        # long-lived thread so that a caller's thread ending does not kill a warm jail.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
        self._idle: queue.Queue[Jail] = queue.Queue()
        self._all: set[Jail] = set()
        self._baseline: dict[Jail, health.WorkerState] = {}
        self._lock = threading.Lock()
        self._closed = False
        try:
            for jail in self._spawner.map(lambda _: self._spawn(), range(size)):
                self._idle.put(jail)
        except BaseException:
            self.close()
            raise

    @property
    def isolation(self) -> str:
        return self.config.label

    @property
    def last_retire_reason(self) -> str:
        return self.retire_reasons[-1] if self.retire_reasons else ""

    def _spawn(self) -> Jail:
        jail = Jail(self.config, self.limits, oneshot=False)
        jail.start()
        try:
            health.quiet_time_wait(jail)
            baseline = health.snapshot(jail)
        except health.HealthError as err:
            jail.close()
            raise JailLost(str(err)) from err
        with self._lock:
            self._all.add(jail)
            self._baseline[jail] = baseline
        return jail

    def _retire(self, jail: Jail) -> None:
        with self._lock:
            self._all.discard(jail)
            self._baseline.pop(jail, None)
        jail.close()
        health.collect_unix_garbage()

    def run(
        self,
        program: str,
        *,
        tests: str | None = None,
        stdin: bytes = b"",
        timeout_s: float | None = None,
        entry_points: Sequence[str] = (),
    ) -> SandboxResult:
        """:meth:`PythonSandbox.run` in a warm jail."""
        job = python_job(self.limits, program, tests, stdin, timeout_s, entry_points)
        return self._submit(job, {}, ())

    def exec(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, bytes] | None = None,
        limits: SandboxLimits | None = None,
        stdin: bytes = b"",
        collect: Sequence[str] = (),
    ) -> SandboxResult:
        """:meth:`Sandbox.exec` in a warm jail: ``argv`` runs with cwd = the (empty) scratch dir holding
        ``files``; ``result.files`` has the regular files named in ``collect``. Nothing written in or
        left by the job is there for the next one."""
        files = dict(files or {})
        job = exec_job(argv, files, collect, stdin, limits or self.limits)
        return self._submit(job, files, tuple(collect))

    def _submit(self, job: Job, files: dict[str, bytes], collect: tuple[str, ...]) -> SandboxResult:
        reason = ""
        for _ in range(1 + RETRIES):
            if self._closed:
                raise RuntimeError("pool is closed")
            jail = self._idle.get()
            raw: RawRun | None = None
            try:
                raw = jail.run(job, files=files, collect=collect)
            finally:  # whatever happens, the pool keeps its size
                self._give_back(jail, raw)
            if raw.lost is None or raw.timed_out:
                return to_result(job, raw, self.config.label)
            reason = raw.lost
        return infra_result(f"sandbox worker failed twice: {reason}", self.config.label)

    def _give_back(self, jail: Jail, raw: RawRun | None) -> None:
        """Back to the idle queue if the worker proves clean; otherwise retire and replace it."""
        if not jail.healthy or jail.sock is None:  # Jail.run has the worker clean; it failed or died
            problem: str | None = jail.problem or "worker lost"
        elif raw is None:  # the job raised (input files that did not fit...): state unknown
            problem = "the job did not complete"
        else:
            problem = None
        if problem is None:
            with self._lock:
                baseline = self._baseline.get(jail)
            problem = "no baseline" if baseline is None else health.check(jail, baseline)
        if problem is None:
            self._idle.put(jail)
            return
        with self._lock:
            self.retired += 1
            self.retire_reasons.append(problem)
        self._spawner.submit(self._retire, jail).result()
        try:
            self._idle.put(self._spawner.submit(self._spawn).result())
        except (OSError, JailLost) as err:  # the next run() would wait forever: make it visible
            raise JailLost(f"cannot replace a failed sandbox jail: {err}") from err

    def close(self) -> None:
        self._closed = True
        with self._lock:
            jails = list(self._all)
            self._all.clear()
            self._baseline.clear()
        for jail in jails:
            self._spawner.submit(jail.close).result()
        self._spawner.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


PythonSandboxPool = SandboxPool
"""The pool's earlier name (it ran Python only); the same class."""
