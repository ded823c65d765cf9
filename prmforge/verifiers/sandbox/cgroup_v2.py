"""The cgroup v2 backend: jail and job cgroups in a delegated subtree (a cgroup this process may write).

Layout::

    <base>/                               a cgroup we may write (see :func:`find_backend`)
    <base>/prmforge-host-<pid>/           only when we had to leave <base> to enable its controllers
    <base>/prmforge-sandbox/              controllers enabled in cgroup.subtree_control, no processes
    <base>/prmforge-sandbox/<pid>-<id>/   one jail: pids.max, memory.max, memory.swap.max
    <base>/prmforge-sandbox/<pid>-<id>/worker/   leaf: bwrap's monitor and the worker
    <base>/prmforge-sandbox/<pid>-<id>/job-<n>/  leaf: one job's processes, then removed

cgroup v2 allows processes only in leaves once controllers are enabled below a cgroup ("no internal
processes"), so processes only ever live in ``worker``, ``job-<n>`` and ``prmforge-host-<pid>``.
Moving a process needs write access to ``cgroup.procs`` of the common ancestor of its old and new
cgroup, so the host moves the launcher into ``worker`` itself (the launcher waits at a gate) and the
job processes into ``job-<n>``. ``cgroup.kill`` kills a whole subtree at once, atomically with
respect to fork (kernel >= 5.14; older kernels get a SIGKILL loop over ``cgroup.procs``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prmforge.verifiers.sandbox.cgroup import PREFIX, CgroupError, owner_alive, subdirs

WANTED: Final = ("pids", "memory")
ENV_BASE: Final = "PRMFORGE_SANDBOX_CGROUP"
"""A delegated cgroup v2 directory to use instead of discovering one."""
HOST_LEAF: Final = "prmforge-host-"
KILL_WAIT_S: Final = 5.0
MOUNTINFO: Final = Path("/proc/self/mountinfo")
SELF_CGROUP: Final = Path("/proc/self/cgroup")


def _read(path: Path) -> str:
    return path.read_text()


def _words(path: Path) -> list[str]:
    """The names in ``cgroup.controllers`` / ``cgroup.subtree_control`` (``+x`` read back as ``x``;
    a file not there yet reads as empty)."""
    with contextlib.suppress(FileNotFoundError):
        return [w.lstrip("+") for w in _read(path).split()]
    return []


def _keyed(path: Path, key: str) -> int:
    """The value of ``key`` in a flat-keyed file such as ``memory.events`` (0 when absent)."""
    with contextlib.suppress(OSError, ValueError):
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


def mount_point(mountinfo: Path = MOUNTINFO) -> tuple[Path, str] | None:
    """The first cgroup2 mount: (mount point, the cgroup path it shows as its root)."""
    with contextlib.suppress(OSError):
        for line in _read(mountinfo).splitlines():
            left, _, right = line.partition(" - ")
            fields = left.split()
            if right.split()[:1] == ["cgroup2"] and len(fields) >= 5:
                decode = fields[4].encode().decode("unicode_escape")
                return Path(decode), fields[3]
    return None


def own_cgroup(mount: tuple[Path, str], cgroup_file: Path = SELF_CGROUP) -> Path | None:
    """This process's cgroup v2 directory (the ``0::`` line of /proc/self/cgroup) under ``mount``."""
    point, root = mount
    with contextlib.suppress(OSError):
        for line in _read(cgroup_file).splitlines():
            if line.startswith("0::"):
                rel = line[3:].removesuffix(" (deleted)")
                if root != "/" and (rel == root or rel.startswith(root + "/")):
                    rel = rel[len(root) :]
                elif root != "/":
                    return None
                return point / rel.lstrip("/")
    return None


def _writable(path: Path) -> str | None:
    """None when we may create cgroups in ``path`` and move processes in and out; else why not."""
    if not (path / "cgroup.controllers").is_file():
        return f"{path} is not a cgroup v2 directory"
    for item in (path, path / "cgroup.procs", path / "cgroup.subtree_control"):
        if not os.access(item, os.W_OK):
            return f"{item} is not writable by uid {os.geteuid()}"
    return None


def _enable(path: Path, wanted: tuple[str, ...], *, may_leave: bool) -> tuple[str, ...]:
    """Enable ``wanted`` controllers for the children of ``path``; returns those now enabled.

    EBUSY means ``path`` holds processes; when they are only this process (a delegated scope started
    for it) it moves itself into a ``prmforge-host-<pid>`` leaf and tries again.
    """
    need = [c for c in wanted if c not in _words(path / "cgroup.subtree_control")]
    if need:
        try:
            (path / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in need))
        except OSError as err:
            if err.errno == errno.EBUSY and may_leave and _leave(path):
                return _enable(path, wanted, may_leave=False)
    enabled = set(_words(path / "cgroup.subtree_control"))
    return tuple(c for c in wanted if c in enabled)


def _leave(path: Path) -> bool:
    """Move this process out of ``path`` into a leaf of its own, if it is the only process there."""
    with contextlib.suppress(OSError, ValueError):
        if {int(x) for x in _read(path / "cgroup.procs").split()} == {os.getpid()}:
            leaf = path / f"{HOST_LEAF}{os.getpid()}"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            return True
    return False


@dataclass(frozen=True, slots=True)
class V2Backend:
    """Jails under ``base/prmforge-sandbox`` with ``controllers`` enabled for them."""

    base: Path
    controllers: tuple[str, ...]
    version: int = 2

    @property
    def sandbox(self) -> Path:
        return self.base / PREFIX

    def create_jail(self, owner_uid: int) -> Cgroup2:
        """A new jail cgroup with the controllers enabled for its leaves. ``owner_uid`` is unused:
        in v2 the host itself moves every process."""
        del owner_uid
        path = self.sandbox / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            if self.controllers:
                (path / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in self.controllers))
        except OSError as err:
            Cgroup2(path, ()).remove()
            raise CgroupError(f"cannot create cgroup {path}: {err}") from err
        return Cgroup2(path, self.controllers)

    def sweep_stale(self) -> list[str]:
        return sweep_stale(self.base)


def prepare(base: Path) -> V2Backend:
    """Set up ``base/prmforge-sandbox`` with every wanted controller that ``base`` offers."""
    problem = _writable(base)
    if problem:
        raise CgroupError(problem)
    try:
        offered = tuple(c for c in WANTED if c in _words(base / "cgroup.controllers"))
        enabled = _enable(base, offered, may_leave=True)
        sandbox = base / PREFIX
        sandbox.mkdir(exist_ok=True)
        enabled = _enable(sandbox, enabled, may_leave=False)
    except OSError as err:
        raise CgroupError(f"cannot prepare cgroup v2 subtree {base}: {err}") from err
    return V2Backend(base, enabled)


def trial(backend: V2Backend) -> None:
    """Create a jail cgroup, move a process in, kill it with ``cgroup.kill``, remove: for real."""
    jail = backend.create_jail(os.geteuid())
    proc: subprocess.Popen[bytes] | None = None
    try:
        leaf = jail.child("worker")
        proc = subprocess.Popen([shutil.which("sleep") or "/bin/sleep", "60"], stdin=subprocess.DEVNULL)
        leaf.add(proc.pid)
        if leaf.pids() != {proc.pid}:
            raise CgroupError(f"process {proc.pid} did not arrive in {leaf.path}")
        jail.kill()
        if proc.wait(timeout=KILL_WAIT_S) != -signal.SIGKILL:
            raise CgroupError("cgroup kill did not SIGKILL the process")
    except (OSError, subprocess.SubprocessError) as err:
        raise CgroupError(f"cgroup v2 trial in {backend.sandbox} failed: {err}") from err
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        jail.remove()


def candidates(*, root: bool) -> list[Path]:
    """Where a delegated subtree may be: ``$PRMFORGE_SANDBOX_CGROUP``, else (root) the hierarchy's
    root (exempt from the no-internal-processes rule), else this process's own cgroup."""
    configured = os.environ.get(ENV_BASE)
    if configured:
        return [Path(configured)]
    mount = mount_point()
    if mount is None:
        return []
    found = [mount[0]] if root and mount[1] == "/" else []
    own = own_cgroup(mount)
    if own is not None and own not in found:
        found.append(own)
    return found


def find_backend(*, root: bool) -> tuple[V2Backend | None, str]:
    """The first candidate that works (checked by :func:`trial`), or None and why not."""
    reasons = []
    places = candidates(root=root)
    if not places:
        return None, "no cgroup v2 hierarchy mounted"
    for place in places:
        try:
            backend = prepare(place)
            trial(backend)
        except CgroupError as err:
            reasons.append(str(err))
            continue
        return backend, ""
    return None, "; ".join(reasons)


class Cgroup2:
    """One cgroup v2 directory. ``controllers``: those whose limit files this cgroup has."""

    def __init__(self, path: Path, controllers: tuple[str, ...]) -> None:
        self.path = path
        self.controllers = controllers

    @property
    def paths(self) -> dict[str, Path]:
        """The one directory, under ``"cgroup2"`` and under each controller it has."""
        return {"cgroup2": self.path, **dict.fromkeys(self.controllers, self.path)}

    def child(self, name: str) -> Cgroup2:
        path = self.path / name
        try:
            path.mkdir(exist_ok=True)
        except OSError as err:
            raise CgroupError(f"cannot create cgroup {path}: {err}") from err
        return Cgroup2(path, self.controllers)

    def set_limits(self, *, pids: int | None = None, memory_bytes: int | None = None) -> None:
        try:
            if pids is not None and "pids" in self.controllers:
                (self.path / "pids.max").write_text(str(pids))
            if memory_bytes is not None and "memory" in self.controllers:
                (self.path / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    (self.path / "memory.swap.max").write_text("0")
        except OSError as err:
            raise CgroupError(f"cannot set cgroup limits in {self.path}: {err}") from err

    def pids(self) -> set[int]:
        with contextlib.suppress(FileNotFoundError):
            return {int(x) for x in _read(self.path / "cgroup.procs").split()}
        return set()

    def add(self, pid: int) -> None:
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError as err:
            raise CgroupError(f"cannot move pid {pid} into {self.path}: {err}") from err

    def oom_kills(self) -> int:
        """OOM kills in this cgroup and below (``memory.events``; 0 without the memory controller)."""
        return _keyed(self.path / "memory.events", "oom_kill") if "memory" in self.controllers else 0

    def pids_refused(self) -> int:
        """How many forks ``pids.max`` refused here and below (``pids.events``)."""
        return _keyed(self.path / "pids.events", "max") if "pids" in self.controllers else 0

    def populated(self) -> bool:
        """Whether any process lives here or below (``cgroup.events``)."""
        if not self.path.is_dir():
            return False
        with contextlib.suppress(FileNotFoundError):
            return _keyed(self.path / "cgroup.events", "populated") != 0
        return False

    def _subtree(self) -> list[Path]:
        """This cgroup and every cgroup below it, deepest first."""
        found = subdirs(self.path)
        return [*sorted(found, key=lambda p: -len(p.parts)), self.path]

    def kill(self) -> None:
        """SIGKILL every process here and below, then wait until none is left."""
        try:
            (self.path / "cgroup.kill").write_text("1")
        except FileNotFoundError:
            if not self.path.is_dir():
                return
            self._kill_loop()  # kernel < 5.14: no cgroup.kill
        except OSError as err:
            raise CgroupError(f"cannot kill cgroup {self.path}: {err}") from err
        deadline = time.monotonic() + KILL_WAIT_S
        while self.populated():
            if time.monotonic() > deadline:
                raise CgroupError(f"processes survive SIGKILL in {self.path}")
            time.sleep(0.001)

    def _kill_loop(self) -> None:
        for _ in range(200):
            pids = {pid for p in self._subtree() for pid in Cgroup2(p, ()).pids()}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)

    def remove(self) -> None:
        """Kill what is left, then remove the directories (children first)."""
        try:  # the common case, a job's leaf cgroup: one rmdir, no walk over its control files
            self.path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            pass
        for path in self._subtree():
            for attempt in range(400):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if attempt == 399:
                        raise CgroupError(f"cannot remove cgroup {path}: {err}") from err
                    Cgroup2(path, ()).kill()
                    time.sleep(0.0025)


def sweep_stale(base: Path) -> list[str]:
    """Remove jail cgroups under ``base`` whose owner process is gone (killing what is left in them),
    and empty ``prmforge-host-<pid>`` leaves of dead hosts (never killing: other programs the dead
    host started live there)."""
    removed: list[str] = []
    sandbox = base / PREFIX
    with contextlib.suppress(OSError):
        for entry in sandbox.iterdir() if sandbox.is_dir() else ():
            if entry.is_dir() and not owner_alive(entry.name):
                with contextlib.suppress(OSError):  # another host may be sweeping the same entry
                    Cgroup2(entry, ()).remove()
                    removed.append(str(entry))
        for entry in base.iterdir():
            owner = entry.name.removeprefix(HOST_LEAF)
            if entry.name.startswith(HOST_LEAF) and entry.is_dir() and not owner_alive(f"{owner}-host"):
                with contextlib.suppress(OSError):
                    entry.rmdir()
                    removed.append(str(entry))
    return removed
