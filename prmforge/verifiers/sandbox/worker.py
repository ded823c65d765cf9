"""The host side of one jail: start bubblewrap with the in-jail worker, drive jobs, tear it all down.

The host owns every limit that needs a clock or a counter: it moves the job's processes into a fresh
cgroup before they start, kills that cgroup at the wall-clock deadline or when an output stream goes
over its cap, reads the outputs while they stream (never more than the cap plus one chunk), and reads
the reports. The worker (trusted code inside the jail) only forks, waits, reaps and cleans.

Without cgroups (an unprivileged user with no delegated cgroup v2 subtree) the worker, PID 1 of the
jail's pid namespace, kill(-1)s the namespace at the host's request, and closing a jail SIGKILLs the
worker and bwrap's process group: every process of a jail lives in that namespace and dies with it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import itertools
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Final

from prmforge.verifiers.sandbox import codec
from prmforge.verifiers.sandbox.bwrap import BOX, JAIL_ENV, bwrap_argv
from prmforge.verifiers.sandbox.cgroup import Cgroup, CgroupBackend, CgroupError, JailCgroup
from prmforge.verifiers.sandbox.jobio import (
    START_TIMEOUT_S,
    JailLost,
    Job,
    JobDriver,
    Pipes,
    RawRun,
    make_pipes,
    request_clean,
)
from prmforge.verifiers.sandbox.limits import MiB, SandboxError, SandboxLimits
from prmforge.verifiers.sandbox.probe import nproc_extra
from prmforge.verifiers.sandbox.scratch import JailBox, Scratch

__all__ = ["Jail", "JailConfig", "JailLost", "Job", "RawRun"]

LAUNCH: Final = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; n=$((n - 1)); done; exec "$@"'
)
GATE: Final = 'read -r line || exit 126; exec "$@" </dev/null'
"""cgroup v2: the launcher waits here while the host moves it into the worker cgroup."""
BOOT: Final = (
    "import sys, types\n"
    "sys.path[:] = [p for p in sys.path if p]\n"
    "for n, s in zip(('codec', 'jail_python', 'jail'), sys.argv[2:5]):\n"
    "    m = types.ModuleType(n); sys.modules[n] = m; exec(compile(s, n + '.py', 'exec'), m.__dict__)\n"
    "fd = int(sys.argv[1]); del sys.argv[1:]\n"
    "sys.modules['jail'].main(fd)\n"
)


@dataclass(frozen=True, slots=True)
class JailConfig:
    """How jails are built on this machine (from the isolation probe)."""

    python: str
    bwrap: str | None
    seccomp_bpf: bytes | None
    cgroups: CgroupBackend | None
    uid: int | None
    mount_tmpfs: bool
    label: str
    jail_tmpfs: bool = False  # bubblewrap's own tmpfs for /box, /tmp, /dev/shm (no host tmpfs)
    nproc: bool = False  # set RLIMIT_NPROC (no pids cgroup, or not root)
    nproc_per_userns: bool = True  # the kernel counts RLIMIT_NPROC per user namespace (>= 5.14)


@functools.cache
def _jail_sources() -> tuple[str, str, str]:
    pkg = importlib.resources.files("prmforge.verifiers.sandbox")
    return tuple(pkg.joinpath(f"{n}.py").read_text() for n in ("codec", "jail_python", "jail"))  # type: ignore[return-value]


class Jail:
    """One bwrap jail with one worker. ``oneshot`` jails run a single job; pool jails run many."""

    def __init__(self, config: JailConfig, limits: SandboxLimits, *, oneshot: bool) -> None:
        self.config = config
        self.limits = limits
        self.oneshot = oneshot
        self.healthy = False
        self.problem = ""  # why a warm jail became unhealthy, when it did
        self._jobs = itertools.count()
        self.scratch: Scratch | None = None
        self.jail_box: JailBox | None = None
        self.cgroup: JailCgroup | None = None
        self.worker_cgroup: JailCgroup | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._err_fd = -1
        self.worker_pid = -1

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        cfg, limits = self.config, self.limits
        owner = cfg.uid if cfg.uid is not None else os.geteuid()
        if not cfg.jail_tmpfs:
            self.scratch = Scratch(
                size_bytes=limits.scratch_bytes,
                inodes=limits.scratch_inodes,
                owner_uid=owner,
                mount=cfg.mount_tmpfs,
            )
        launcher: list[str] = []
        gated = False
        if cfg.cgroups is not None:
            self.cgroup = cfg.cgroups.create_jail(owner)
            self.cgroup.set_limits(pids=limits.pids + 8, memory_bytes=limits.memory_bytes + 256 * MiB)
            self.worker_cgroup = self.cgroup.child("worker")
            if isinstance(self.worker_cgroup, Cgroup):  # v1: the launcher joins the cgroup itself
                procs = self.worker_cgroup.procs_files()
                launcher = ["/bin/sh", "-c", LAUNCH, "sh", str(len(procs)), *map(str, procs)]
            else:  # v2: only the host may move it (it needs the common ancestor's cgroup.procs)
                launcher, gated = ["/bin/sh", "-c", GATE, "sh"], True
        host_sock, jail_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = host_sock
        try:
            self.proc = self._spawn(launcher, jail_sock.fileno(), gated=gated)
        finally:
            jail_sock.close()
        if gated and self.proc.stdin is not None and self.worker_cgroup is not None:
            self.worker_cgroup.add(self.proc.pid)
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.close()  # EOF also ends a launcher whose move failed (exit 126)
        pidns = cfg.bwrap is not None
        box = BOX if pidns else str(self._host_scratch().area("box"))
        clean = [BOX, "/tmp", "/dev/shm"] if pidns else [box]
        codec.send_msg(host_sock, {"oneshot": self.oneshot, "pidns": pidns, "box": box, "clean": clean})
        ready = self._recv(time.monotonic() + START_TIMEOUT_S)
        if ready.get("event") != "ready":
            raise JailLost(f"unexpected first message {ready!r}")
        if not pidns:  # no bwrap: the launcher exec'd the worker itself
            self.worker_pid = self.proc.pid
        elif self.worker_cgroup is not None:
            others = self.worker_cgroup.pids() - {self.proc.pid}
            if len(others) != 1:
                raise JailLost(f"expected one worker process, found {sorted(others)}")
            self.worker_pid = others.pop()
        else:
            self.worker_pid = _jail_init(self.proc.pid)
        if cfg.jail_tmpfs:
            self.jail_box = JailBox(self.worker_pid, BOX)
        self.healthy = True

    def _host_scratch(self) -> Scratch:
        if self.scratch is None:
            raise JailLost("this jail has no host scratch directory")
        return self.scratch

    def _spawn(self, launcher: list[str], ctl_fd: int, *, gated: bool) -> subprocess.Popen[bytes]:
        """Start the worker: as the sandbox uid, joined to the worker cgroup, inside bwrap."""
        cfg = self.config
        err_r, err_w = os.pipe()
        self._err_fd = err_r
        os.set_blocking(err_r, False)
        pass_fds = [ctl_fd]
        command = [cfg.python, "-s", "-S", "-B", "-c", BOOT, str(ctl_fd), *_jail_sources()]
        seccomp_fd = -1
        if cfg.bwrap is not None:
            assert cfg.seccomp_bpf is not None
            seccomp_fd = os.memfd_create("prmforge-seccomp", 0)
            os.write(seccomp_fd, cfg.seccomp_bpf)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
            pass_fds.append(seccomp_fd)
            command = bwrap_argv(
                cfg.bwrap,
                fs=None if self.scratch is None else self.scratch.fs,
                seccomp_fd=seccomp_fd,
                command=command,
                tmpfs_bytes=self.limits.scratch_bytes if cfg.jail_tmpfs else None,
            )
        ids: dict[str, Any] = {}
        if cfg.uid is not None and cfg.uid != os.geteuid():
            ids = {"user": cfg.uid, "group": cfg.uid, "extra_groups": []}
        try:
            return subprocess.Popen(
                [*launcher, *command],
                stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err_w,
                pass_fds=pass_fds,
                env=dict(JAIL_ENV),
                cwd="/" if cfg.bwrap else str(self._host_scratch().area("box")),
                start_new_session=True,
                **ids,
            )
        finally:
            os.close(err_w)
            if seccomp_fd >= 0:
                os.close(seccomp_fd)

    def close(self) -> None:
        """Kill everything of this jail and remove its cgroups, tmpfs and directories."""
        self.healthy = False
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.cgroup is not None:
            with contextlib.suppress(CgroupError):
                self.cgroup.kill()
        if self.proc is not None:
            if self.proc.stdin is not None:  # a launcher still at its gate exits on EOF
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            if self.cgroup is None:
                if self.config.bwrap is not None and self.worker_pid > 0:  # still bwrap's unreaped child
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(self.worker_pid, signal.SIGKILL)  # the jail's namespace dies with it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        if self._err_fd >= 0:
            os.close(self._err_fd)
            self._err_fd = -1
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.jail_box is not None:
            self.jail_box.remove()
            self.jail_box = None
        if self.scratch is not None:
            self.scratch.remove()
            self.scratch = None

    def worker_stderr(self) -> str:
        if self._err_fd < 0:
            return ""
        with contextlib.suppress(BlockingIOError, OSError):
            return os.read(self._err_fd, 4096).decode(errors="replace")
        return ""

    # ------------------------------------------------------------ one job

    def run(
        self, job: Job, *, collect: tuple[str, ...] = (), files: dict[str, bytes] | None = None
    ) -> RawRun:
        box = self.jail_box or self.scratch
        if not self.healthy or self.sock is None or box is None:
            raise JailLost("jail is not running")
        if files:
            box.write_files(files, self._uid())
        raw = RawRun(nonce=secrets.token_hex(16))
        job_cg: JailCgroup | None = None
        pipes = make_pipes(job, raw.nonce)
        try:
            if self.cgroup is not None:
                job_cg = self.cgroup.child(f"job-{next(self._jobs)}")
                job_cg.set_limits(pids=job.limits.pids + 1, memory_bytes=job.limits.memory_bytes)
            self._drive(job, raw, job_cg, pipes)
        except (OSError, EOFError, codec.WireError, SandboxError) as err:
            raw.lost = raw.lost or f"{type(err).__name__}: {err}"
        finally:
            pipes.close()
            if job_cg is not None:
                self._finish_cgroup(job_cg, raw)
        if raw.lost:
            self.healthy = False
            extra = self.worker_stderr().strip()
            raw.lost += f" | worker stderr: {extra[-1000:]}" if extra else ""
        else:
            if collect:
                raw.files = box.collect(collect, job.limits.scratch_bytes)
            if not self.oneshot:  # a warm worker empties its scratch areas before the next job
                self._clean(raw)
        return raw

    def _clean(self, raw: RawRun) -> None:
        """After a Python job the worker cleans unasked; after an exec job once its files are collected.
        A worker that cannot is unhealthy (a pool retires it)."""
        assert self.sock is not None
        problem = request_clean(self.sock, ask=not raw.cleaning)
        if problem is not None:
            self.healthy = False
            self.problem = problem

    def _uid(self) -> int:
        """The jail's uid on the host."""
        return self.config.uid if self.config.uid is not None else os.geteuid()

    def _finish_cgroup(self, job_cg: JailCgroup, raw: RawRun) -> None:
        raw.oom_kills = job_cg.oom_kills()
        raw.pids_refused = job_cg.pids_refused()
        left = _settled_pids(job_cg)
        if left and self.config.bwrap is not None:  # kill(-1) + reaping should have left nothing
            raw.leaked = len(left)
            self.healthy = False
        if left:  # weaker isolation: daemons that left the session die here
            job_cg.kill()
        try:
            job_cg.remove()
        except CgroupError as err:
            raw.lost = raw.lost or str(err)
            self.healthy = False

    def _drive(self, job: Job, raw: RawRun, job_cg: JailCgroup | None, pipes: Pipes) -> None:
        assert self.sock is not None
        cfg = self.config
        home = BOX if cfg.bwrap else "/tmp"
        extra = nproc_extra(self._uid(), per_userns=cfg.nproc_per_userns) if cfg.nproc else None
        header = {
            "kind": job.kind,
            "fds": pipes.names,
            "argv": list(job.argv),
            "rlimits": job.limits.rlimits(nproc_extra=extra),
            "env": dict(JAIL_ENV, HOME=home, TMPDIR="/tmp"),
        }
        try:
            codec.send_msg(self.sock, header, pipes.jail_fds)
        finally:
            pipes.close_jail_side()
        JobDriver(
            self.sock, job, raw, pipes, lambda m: self._adopt(m, job_cg), lambda: self._kill_job(job_cg)
        ).run()

    def _kill_job(self, job_cg: JailCgroup | None) -> None:
        """Ask the worker (PID 1 of the jail) to kill(-1) its namespace, then sweep the job cgroup."""
        if self.config.bwrap is not None and self.worker_pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.worker_pid, signal.SIGUSR1)
        if job_cg is not None:
            job_cg.kill()

    def _adopt(self, message: dict[str, Any], job_cg: JailCgroup | None) -> None:
        """Move the freshly forked job processes (still waiting at their gate) into the job cgroup."""
        if job_cg is None or self.worker_cgroup is None:
            return
        expected = len(message.get("pids", {}))
        known = {self.worker_pid, self.proc.pid if self.proc else -1}
        for _ in range(1000):
            new = self.worker_cgroup.pids() - known
            if len(new) >= expected:
                break
            time.sleep(0.001)
        if len(new) != expected:
            raise JailLost(f"expected {expected} new job processes, found {len(new)}")
        for pid in new:
            job_cg.add(pid)

    def _recv(self, deadline: float) -> dict[str, Any]:
        assert self.sock is not None
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            message, _ = codec.recv_msg(self.sock)
        except (OSError, EOFError, codec.WireError) as err:
            raise JailLost(f"worker did not start: {err}; stderr: {self.worker_stderr()[-2000:]}") from None
        finally:
            self.sock.settimeout(None)
        return message  # type: ignore[no-any-return]


def _jail_init(bwrap_pid: int) -> int:
    """bwrap's only child, which must be PID 1 of its own pid namespace: the worker."""
    children: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{bwrap_pid}/task"):
            with open(f"/proc/{bwrap_pid}/task/{tid}/children") as listing:
                children.update(int(x) for x in listing.read().split())
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: scan every process's parent
        children = {pid for pid, ppid in _parents().items() if ppid == bwrap_pid}
    except OSError as err:
        raise JailLost(f"cannot list bwrap's children: {err}") from None
    if len(children) != 1:
        raise JailLost(f"expected one jail init under bwrap, found {sorted(children)}")
    (child,) = children
    try:
        with open(f"/proc/{child}/status") as status:
            nspid = next((line.split()[1:] for line in status if line.startswith("NSpid:")), [])
    except OSError as err:
        raise JailLost(f"jail init {child} is gone: {err}") from None
    if nspid[-1:] != ["1"]:
        raise JailLost(f"bwrap's child {child} is not PID 1 of a pid namespace (NSpid {nspid})")
    return child


def _parents() -> dict[int, int]:
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as stat:
                found[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
    return found


# SIGKILLed processes stay listed in cgroup.procs until the kernel has torn them down, which on a loaded
# machine takes a moment (a fork bomb of hundreds): a process still listed after this is a real leak.
_SETTLE_S = 2.0


def _settled_pids(job_cg: JailCgroup) -> list[int]:
    deadline = time.monotonic() + _SETTLE_S
    left = list(job_cg.pids())
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = list(job_cg.pids())
    return left
