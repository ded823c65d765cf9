"""What isolation this machine can give, which mode the sandbox runs in, and its label (dataset cards).

Modes, strongest first (chosen automatically; ``IsolationReport.layers`` names what was reached):

* ``root`` + cgroup v1 ``pids``: ``bwrap+seccomp+pids+memory+rlimits+tmpfs+uid65534``;
* ``root`` + a cgroup v2 subtree with ``pids``: ``bwrap+seccomp+cgroup2+pids+memory+rlimits+tmpfs+uid65534``
  (root without any pids controller adds ``nproc``: RLIMIT_NPROC against fork bombs);
* not root (``userns``): bubblewrap in an unprivileged user namespace, bubblewrap's own size-capped
  tmpfs mounts, no uid switch, RLIMIT_NPROC, and a delegated cgroup v2 subtree where one is writable:
  ``bwrap-userns+seccomp+[cgroup2+pids+memory+]rlimits+nproc+tmpfs``.

Without bubblewrap in a user namespace, seccomp or the jail's Python there is no mode: the sandbox
fails closed unless weaker isolation (``rlimits-only``) is allowed.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal

from prmforge.verifiers.sandbox import cgroup, cgroup_v2
from prmforge.verifiers.sandbox.bwrap import system_args
from prmforge.verifiers.sandbox.cgroup import CgroupBackend, V1Backend
from prmforge.verifiers.sandbox.limits import Isolation, IsolationUnavailable

SANDBOX_UID: Final = 65534  # nobody: owns nothing on the host
JAIL_PYTHON: Final = "/usr/bin/python3"
INSTALL_HINT: Final = "run scripts/install-system-deps.sh (as root) and `pip install pyseccomp`"
USERNS_HINT: Final = (
    "unprivileged user namespaces must be allowed (sysctl user.max_user_namespaces > 0, "
    "kernel.unprivileged_userns_clone=1 where it exists, and on Ubuntu >= 23.10 AppArmor's bwrap profile)"
)
DELEGATION_HINT: Final = (
    f"set ${cgroup_v2.ENV_BASE} to a cgroup v2 directory delegated to this user, or start prmforge "
    "inside `systemd-run --user --scope -p Delegate=yes`"
)
Mode = Literal["root", "userns"]


@dataclass(frozen=True, slots=True)
class IsolationReport:
    """Each layer, whether it works here, and the mode and label that follow from them."""

    bwrap: str | None
    bwrap_version: str | None
    user_namespaces: bool
    seccomp: str | None
    cgroup_controllers: tuple[str, ...]
    root: bool
    jail_python: str | None
    sandbox_uid: int
    problems: tuple[str, ...]
    cgroup_v2: str | None = None
    cgroup_v2_controllers: tuple[str, ...] = ()
    cgroup_v2_problem: str = ""
    nproc_per_userns: bool = True

    @property
    def mode(self) -> Mode | None:
        """The strongest bubblewrap mode, or None when even ``bwrap-userns+seccomp+rlimits`` fails."""
        if self.minimum_missing:
            return None
        return "root" if self.root else "userns"

    @property
    def minimum_missing(self) -> tuple[str, ...]:
        """What keeps every bubblewrap mode from running here."""
        gaps = []
        if self.bwrap is None:
            gaps.append("bubblewrap (bwrap) not installed")
        elif not self.user_namespaces:
            who = f"uid {self.sandbox_uid}" if self.root else f"this user (uid {os.geteuid()})"
            gaps.append(f"bwrap cannot create namespaces as {who}: {USERNS_HINT}")
        if self.seccomp is None:
            gaps.append("seccomp (pyseccomp + libseccomp2) unavailable")
        if self.jail_python is None:
            gaps.append(f"{JAIL_PYTHON} (Python >= 3.10) missing")
        return tuple(gaps)

    @property
    def cgroup_version(self) -> int | None:
        """Which cgroup backend the mode uses: v1 (root, pids mounted), else v2 if delegated."""
        if self.root and "pids" in self.cgroup_controllers:
            return 1
        if self.cgroup_v2 is not None:
            return 2
        if self.root and self.cgroup_controllers:
            return 1
        return None

    @property
    def controllers(self) -> tuple[str, ...]:
        version = self.cgroup_version
        return self.cgroup_controllers if version == 1 else self.cgroup_v2_controllers if version else ()

    @property
    def nproc(self) -> bool:
        """Whether RLIMIT_NPROC is set: always without root, and without a pids controller."""
        return not (self.root and "pids" in self.controllers)

    def cgroup_backend(self) -> CgroupBackend | None:
        version = self.cgroup_version
        if version == 1:
            return V1Backend(self.cgroup_controllers)
        if version == 2 and self.cgroup_v2 is not None:
            return cgroup_v2.V2Backend(Path(self.cgroup_v2), self.cgroup_v2_controllers)
        return None

    @property
    def full(self) -> bool:
        """The root mode with every layer (a pids controller included)."""
        return not self.missing

    @property
    def missing(self) -> tuple[str, ...]:
        """What the full (root) mode lacks here."""
        gaps = list(self.minimum_missing)
        if "pids" not in self.controllers:
            gaps.append(
                "no writable cgroup pids controller (v1 at /sys/fs/cgroup/pids, or a cgroup v2 subtree: "
                + (self.cgroup_v2_problem or "pids not offered")
                + ")"
            )
        if not self.root:
            gaps.append("not root (needed for the host tmpfs with an inode cap and the uid switch)")
        return tuple(gaps)

    @property
    def layers(self) -> str:
        """A compact description of the mode, e.g. ``bwrap+seccomp+pids+memory+rlimits+tmpfs+uid65534``."""
        if self.mode is None:
            return "rlimits-only"
        parts = ["bwrap" if self.root else "bwrap-userns", "seccomp"]
        if self.cgroup_version == 2:
            parts.append("cgroup2")
        parts += [*self.controllers, "rlimits"]
        if self.nproc:
            parts.append("nproc")
        parts.append("tmpfs")
        if self.root:
            parts.append(f"uid{self.sandbox_uid}")
        return "+".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "mode": self.mode,
            "full": self.full,
            "missing": list(self.missing),
            "layers": self.layers,
        }


@functools.cache
def probe_isolation() -> IsolationReport:
    """Check each layer for real (bwrap runs once as the jail's uid; a delegated cgroup v2 subtree gets
    a trial process moved in and killed). Cached per process."""
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
            userns, why = _bwrap_works(bwrap, root)
            if why:
                problems.append(f"bwrap: {why}")
        except (OSError, subprocess.SubprocessError) as err:
            problems.append(f"bwrap: {err}")
    seccomp = None
    try:
        from prmforge.verifiers.sandbox.seccomp import compile_filter

        seccomp = f"libseccomp BPF, {len(compile_filter()) // 8} instructions"
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        problems.append(f"seccomp: {err}")
    v1 = cgroup.available_controllers() if root else ()
    v2_base: str | None = None
    v2_controllers: tuple[str, ...] = ()
    v2_problem = ""
    if root and "pids" in v1:
        v2_problem = "not probed: cgroup v1 pids in use"
    else:
        backend, v2_problem = cgroup_v2.find_backend(root=root)
        if backend is not None:
            v2_base, v2_controllers = str(backend.base), backend.controllers
        elif not root:
            v2_problem += f"; {DELEGATION_HINT}"
    return IsolationReport(
        bwrap=bwrap,
        bwrap_version=version,
        user_namespaces=userns,
        seccomp=seccomp,
        cgroup_controllers=v1,
        root=root,
        jail_python=JAIL_PYTHON if _python_ok(JAIL_PYTHON) else None,
        sandbox_uid=SANDBOX_UID,
        problems=tuple(problems),
        cgroup_v2=v2_base,
        cgroup_v2_controllers=v2_controllers,
        cgroup_v2_problem=v2_problem,
        nproc_per_userns=_kernel_at_least(5, 14),
    )


def _bwrap_works(bwrap: str, root: bool) -> tuple[bool, str]:
    """Run bwrap with the options jails use, as the uid jails run as (65534 for root, else us)."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--cap-drop",
        "ALL",
        *system_args(),
    ]
    if not root:  # no host tmpfs without root: bubblewrap's own, size-capped
        argv += ["--perms", "1777", "--size", str(1 << 20), "--tmpfs", "/tmp"]
    done = subprocess.run(
        [*argv, "--", "/usr/bin/true"],
        capture_output=True,
        timeout=20,
        check=False,
        cwd="/",
        user=SANDBOX_UID if root else None,
        group=SANDBOX_UID if root else None,
        extra_groups=[] if root else None,
    )
    return done.returncode == 0, done.stderr.decode(errors="replace").strip()[-500:]


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


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        found = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return found >= (major, minor)


def nproc_extra(uid: int, *, per_userns: bool) -> int:
    """What RLIMIT_NPROC must allow beyond the job's ``pids``: the worker and the other job process,
    and on kernels before 5.14 (a count per uid on the whole host) every process the uid already has."""
    if per_userns:
        return 2
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))  # threads count too
            except OSError:
                continue
    return count + 2


def require(isolation: Isolation, *, allow_weaker: bool) -> IsolationReport:
    """The report, or IsolationUnavailable naming what is missing (fail closed).

    ``"bwrap"`` accepts every mode from ``bwrap-userns+seccomp+rlimits`` up; with none available it
    fails unless ``allow_weaker`` (then the caller runs ``rlimits-only`` and labels it so).
    """
    report = probe_isolation()
    if isolation == "bwrap":
        if report.mode is None and not allow_weaker:
            raise IsolationUnavailable(
                "sandbox isolation unavailable (not even bwrap-userns+seccomp+rlimits): "
                + "; ".join(report.minimum_missing)
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
