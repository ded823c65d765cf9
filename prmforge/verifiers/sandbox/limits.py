"""Resource limits, isolation levels, the result record and the sandbox's own errors."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from prmforge.schemas.errors import PrmforgeError
from prmforge.verifiers.verdict import Verdict

Isolation = Literal["bwrap", "rlimits-only"]
"""How a sample is confined.

``"bwrap"``: the strongest bubblewrap mode this machine allows, chosen by ``probe.py`` and recorded
in ``SandboxResult.isolation`` (see docs/sandbox.md):

* root: namespaces (user, mount, pid, network, ipc, uts, cgroup), a seccomp filter, rlimits, a pids
  (and memory) cgroup per run (cgroup v1, else a cgroup v2 subtree), a size- and inode-capped
  host tmpfs for the scratch dir, /tmp and /dev/shm, and the unprivileged uid 65534;
* not root: the same namespaces in an unprivileged user namespace, seccomp, rlimits including
  RLIMIT_NPROC, bubblewrap's own size-capped tmpfs mounts, and a delegated cgroup v2 subtree where
  one is writable (else the wall-clock kill is the pid namespace's).

``"rlimits-only"``: rlimits and a new session only; the sample sees the host's files, network and
environment-free process tree. Only with ``allow_weaker=True``.
"""

MiB = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*")


class SandboxError(PrmforgeError):
    """Base of the sandbox's errors."""


class IsolationUnavailable(SandboxError, RuntimeError):
    """The requested isolation cannot be had on this machine; the message names what is missing."""


class SandboxInputError(SandboxError, ValueError):
    """A request the sandbox refuses before running anything (bad file name, input over a cap)."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Limits for one run. Every limit applies to the whole run (all of the sample's processes).

    wall_s: wall-clock budget from the moment the sample starts; then its cgroup is killed -> TIMEOUT.
    cpu_s: RLIMIT_CPU per process (soft; SIGKILL one second later). Defaults to ``ceil(wall_s)``.
    address_space_bytes: RLIMIT_AS per process -> MemoryError / MEMORY_LIMIT.
    memory_bytes: memory cgroup limit for all processes of the run together (incl. their tmpfs pages).
    file_size_bytes: RLIMIT_FSIZE -> SIGXFSZ / EFBIG -> FILE_LIMIT.
    scratch_bytes / scratch_inodes: size and inode cap of the tmpfs that holds the scratch dir,
        /tmp and /dev/shm -> ENOSPC -> FILE_LIMIT.
    output_bytes: bytes captured per stream (stdout, stderr); one more byte kills the run -> OUTPUT_LIMIT.
    pids: pids cgroup limit (processes and threads) of the run; without a pids cgroup also the base of
        RLIMIT_NPROC (see :meth:`rlimits`).
    nofile: RLIMIT_NOFILE.
    stack_bytes: RLIMIT_STACK (deep recursion ends in SIGSEGV -> CRASH).
    """

    wall_s: float = 5.0
    cpu_s: float | None = None
    address_space_bytes: int = 512 * MiB
    memory_bytes: int = 1024 * MiB
    file_size_bytes: int = 16 * MiB
    scratch_bytes: int = 64 * MiB
    scratch_inodes: int = 4096
    output_bytes: int = 64 * 1024
    pids: int = 64
    nofile: int = 256
    stack_bytes: int = 8 * MiB

    def __post_init__(self) -> None:
        if not (0 < self.wall_s <= 3600):
            raise SandboxInputError(f"wall_s must be in (0, 3600], got {self.wall_s}")
        if self.cpu_s is not None and self.cpu_s <= 0:
            raise SandboxInputError(f"cpu_s must be > 0, got {self.cpu_s}")
        for name in (
            "address_space_bytes",
            "memory_bytes",
            "file_size_bytes",
            "scratch_bytes",
            "scratch_inodes",
            "output_bytes",
            "pids",
            "nofile",
            "stack_bytes",
        ):
            if getattr(self, name) <= 0:
                raise SandboxInputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.pids < 4:
            raise SandboxInputError("pids must be >= 4 (the harness needs a few)")

    @property
    def cpu_seconds(self) -> int:
        """The RLIMIT_CPU soft limit actually set (whole seconds)."""
        return max(1, math.ceil(self.cpu_s if self.cpu_s is not None else self.wall_s))

    def rlimits(self, *, nproc_extra: int | None = None) -> dict[str, int]:
        """Soft limits by ``resource`` constant name, as the in-jail harness sets them (hard = soft,
        except RLIMIT_CPU whose hard limit is one second later so that SIGXCPU comes first).

        ``nproc_extra``: also set RLIMIT_NPROC to ``pids + nproc_extra`` (modes without a pids
        cgroup). The kernel counts every task of the uid against it: on Linux >= 5.14 those of the
        jail's own user namespace (the worker and the other job process: extra 2), before that
        every process of the uid on the host (extra: the uid's current count + 2).
        """
        limits = {
            "RLIMIT_AS": self.address_space_bytes,
            "RLIMIT_CPU": self.cpu_seconds,
            "RLIMIT_FSIZE": self.file_size_bytes,
            "RLIMIT_NOFILE": self.nofile,
            "RLIMIT_STACK": self.stack_bytes,
            "RLIMIT_CORE": 0,
            "RLIMIT_MEMLOCK": 0,
            "RLIMIT_MSGQUEUE": 0,
        }
        if nproc_extra is not None:
            limits["RLIMIT_NPROC"] = self.pids + max(nproc_extra, 0)
        return limits


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """What one run produced. ``verdict`` is derived outside the sample (see ``outcome.py``)."""

    verdict: Verdict
    reason: str
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    seconds: float
    isolation: str
    output_digest: str
    files: dict[str, bytes] | None = None


def validate_name(name: str) -> str:
    """A file name relative to the scratch dir: no absolute path, no ``..``, no NUL, no empty part.

    Only ``[A-Za-z0-9._+-]`` and ``/`` separators are accepted; ``.`` and ``..`` parts are refused.
    """
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 200
        or _NAME.fullmatch(name) is None
        or any(part in (".", "..") for part in name.split("/"))
    ):
        raise SandboxInputError(f"refused file name {name!r}: relative names of [A-Za-z0-9._+-/] only")
    return name
