"""A warm pool of jails for throughput: each keeps a worker that forks a fresh process per sample."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from prmforge.verifiers.sandbox.limits import Isolation, SandboxLimits, SandboxResult
from prmforge.verifiers.sandbox.runner import infra_result, jail_config, python_job, to_result
from prmforge.verifiers.sandbox.worker import Jail, JailLost

RETRIES = 1


class PythonSandboxPool:
    """``size`` warm jails running :meth:`PythonSandbox.run`-compatible jobs, safe to call from threads.

    Between samples a worker kills every process of its pid namespace and empties the scratch dir,
    /tmp and /dev/shm; each sample gets fresh pipes, a fresh cgroup and a fresh fork of a process
    that never ran sample code. A jail whose worker dies, hangs or leaves a process behind is closed
    and replaced; the sample is retried once on a fresh jail, then reported as INFRA_ERROR.

    The tmpfs size and inode cap are the pool's ``limits``; ``timeout_s`` and the per-run limits of
    :meth:`run` may be changed per call.
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
        # bwrap --die-with-parent ties each jail to the *thread* that spawned it: spawn from one
        # long-lived thread so that a caller's thread ending does not kill a warm jail.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
        self._idle: queue.Queue[Jail] = queue.Queue()
        self._all: set[Jail] = set()
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

    def _spawn(self) -> Jail:
        jail = Jail(self.config, self.limits, oneshot=False)
        jail.start()
        with self._lock:
            self._all.add(jail)
        return jail

    def _retire(self, jail: Jail) -> None:
        with self._lock:
            self._all.discard(jail)
        jail.close()

    def run(
        self, program: str, *, tests: str | None = None, stdin: bytes = b"", timeout_s: float | None = None
    ) -> SandboxResult:
        job = python_job(self.limits, program, tests, stdin, timeout_s)
        reason = ""
        for _ in range(1 + RETRIES):
            if self._closed:
                raise RuntimeError("pool is closed")
            jail = self._idle.get()
            try:
                raw = jail.run(job)
            finally:  # whatever happens, the pool keeps its size
                self._give_back(jail)
            if raw.lost is None or raw.timed_out:
                return to_result(job, raw, self.config.label)
            reason = raw.lost
        return infra_result(f"sandbox worker failed twice: {reason}", self.config.label)

    def _give_back(self, jail: Jail) -> None:
        if jail.healthy:
            self._idle.put(jail)
            return
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
        for jail in jails:
            self._spawner.submit(jail.close).result()
        self._spawner.shutdown(wait=True)

    def __enter__(self) -> PythonSandboxPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
