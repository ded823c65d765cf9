"""What isolation this machine can give; recorded in dataset cards."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Final

from prmforge.verifiers.sandbox import cgroup
from prmforge.verifiers.sandbox.bwrap import system_args
from prmforge.verifiers.sandbox.limits import Isolation, IsolationUnavailable

SANDBOX_UID: Final = 65534  # nobody: owns nothing on the host
JAIL_PYTHON: Final = "/usr/bin/python3"
INSTALL_HINT: Final = "run scripts/install-system-deps.sh (as root) and `pip install pyseccomp`"


@dataclass(frozen=True, slots=True)
class IsolationReport:
    """Each layer the full ``"bwrap"`` isolation needs, and whether it works here."""

    bwrap: str | None
    bwrap_version: str | None
    user_namespaces: bool
    seccomp: str | None
    cgroup_controllers: tuple[str, ...]
    root: bool
    jail_python: str | None
    sandbox_uid: int
    problems: tuple[str, ...]

    @property
    def full(self) -> bool:
        return not self.missing

    @property
    def missing(self) -> tuple[str, ...]:
        gaps = []
        if self.bwrap is None:
            gaps.append("bubblewrap (bwrap) not installed")
        elif not self.user_namespaces:
            gaps.append("bwrap cannot create namespaces as the sandbox uid")
        if self.seccomp is None:
            gaps.append("seccomp (pyseccomp + libseccomp2) unavailable")
        if "pids" not in self.cgroup_controllers:
            gaps.append("cgroup v1 pids controller not writable at /sys/fs/cgroup/pids")
        if not self.root:
            gaps.append("not root (needed for cgroups, the scratch tmpfs and the uid switch)")
        if self.jail_python is None:
            gaps.append(f"{JAIL_PYTHON} (Python >= 3.10) missing")
        return tuple(gaps)

    @property
    def layers(self) -> str:
        """A compact description, e.g. ``bwrap+seccomp+pids+memory+rlimits+tmpfs+uid65534``."""
        if not self.full:
            return "rlimits-only"
        return "+".join(
            ["bwrap", "seccomp", *self.cgroup_controllers, "rlimits", "tmpfs", f"uid{self.sandbox_uid}"]
        )

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "full": self.full, "missing": list(self.missing), "layers": self.layers}


@functools.cache
def probe_isolation() -> IsolationReport:
    """Check each layer for real (bwrap is run once as the sandbox uid). Cached per process."""
    problems: list[str] = []
    root = os.geteuid() == 0
    bwrap = shutil.which("bwrap")
    version = None
    userns = False
    if bwrap is not None:
        try:
            version = subprocess.run(
                [bwrap, "--version"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            userns = _bwrap_works(bwrap, root)
        except (OSError, subprocess.SubprocessError) as err:
            problems.append(f"bwrap: {err}")
    seccomp = None
    try:
        from prmforge.verifiers.sandbox.seccomp import compile_filter

        seccomp = f"libseccomp BPF, {len(compile_filter()) // 8} instructions"
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        problems.append(f"seccomp: {err}")
    python = JAIL_PYTHON if _python_ok(JAIL_PYTHON) else None
    return IsolationReport(
        bwrap=bwrap,
        bwrap_version=version,
        user_namespaces=userns,
        seccomp=seccomp,
        cgroup_controllers=cgroup.available_controllers() if root else (),
        root=root,
        jail_python=python,
        sandbox_uid=SANDBOX_UID,
        problems=tuple(problems),
    )


def _bwrap_works(bwrap: str, root: bool) -> bool:
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        *system_args(),
        "--",
        "/usr/bin/true",
    ]
    done = subprocess.run(
        argv,
        capture_output=True,
        timeout=20,
        check=False,
        cwd="/",
        user=SANDBOX_UID if root else None,
        group=SANDBOX_UID if root else None,
        extra_groups=[] if root else None,
    )
    return done.returncode == 0


def _python_ok(path: str) -> bool:
    try:
        done = subprocess.run(
            [path, "-I", "-c", "import sys, resource, ctypes; print(sys.version_info >= (3, 10))"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except OSError:
        return False
    return bool(done.stdout.strip() == "True")


def require(isolation: Isolation, *, allow_weaker: bool) -> IsolationReport:
    """The report, or IsolationUnavailable naming what is missing (fail closed)."""
    report = probe_isolation()
    if isolation == "bwrap":
        if not report.full:
            raise IsolationUnavailable(
                "full sandbox isolation unavailable: "
                + "; ".join(report.missing)
                + f". Fix: {INSTALL_HINT}; or pass isolation='rlimits-only', allow_weaker=True "
                "to run hostile code with rlimits only"
            )
        return report
    if not allow_weaker:
        raise IsolationUnavailable(
            f"isolation={isolation!r} is weaker than 'bwrap' (no namespaces, no seccomp): "
            "pass allow_weaker=True to accept it"
        )
    return report
