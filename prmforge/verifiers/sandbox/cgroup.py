"""Per-jail and per-job cgroups behind one small protocol: :class:`CgroupBackend` makes a jail's
:class:`JailCgroup`. This module is the cgroup v1 backend (``pids`` and, when mounted, ``memory``);
``cgroup_v2.py`` is the v2 one (a delegated subtree).

Layout, per controller::

    /sys/fs/cgroup/<ctrl>/prmforge-sandbox/<owner-pid>-<id>/          limits for the whole jail
    /sys/fs/cgroup/<ctrl>/prmforge-sandbox/<owner-pid>-<id>/worker/   bwrap's monitor and the worker
    /sys/fs/cgroup/<ctrl>/prmforge-sandbox/<owner-pid>-<id>/job-<n>/  one job's processes, then removed

The owner pid in the name lets :func:`sweep_stale` remove what a dead host process left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from prmforge.verifiers.sandbox.limits import SandboxError

ROOT: Final = Path("/sys/fs/cgroup")
PREFIX: Final = "prmforge-sandbox"
KILL_ROUNDS: Final = 200


class CgroupError(SandboxError, OSError):
    """A cgroup could not be created, filled, emptied or removed."""


class JailCgroup(Protocol):
    """One cgroup of a jail (the jail itself, its ``worker`` leaf or a ``job-<n>`` leaf)."""

    @property
    def paths(self) -> dict[str, Path]:
        """Its directories by controller (v1: one each; v2: the same one, also under ``"cgroup2"``)."""
        ...

    def child(self, name: str) -> JailCgroup: ...

    def set_limits(self, *, pids: int | None = None, memory_bytes: int | None = None) -> None: ...

    def pids(self) -> set[int]: ...

    def add(self, pid: int) -> None: ...

    def oom_kills(self) -> int: ...

    def pids_refused(self) -> int: ...

    def kill(self) -> None: ...

    def remove(self) -> None: ...


class CgroupBackend(Protocol):
    """Where and how jail cgroups are made on this machine (chosen by the isolation probe)."""

    @property
    def version(self) -> int: ...

    @property
    def controllers(self) -> tuple[str, ...]: ...

    def create_jail(self, owner_uid: int) -> JailCgroup: ...

    def sweep_stale(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class V1Backend:
    """cgroup v1: one hierarchy per controller under :data:`ROOT`. The launcher, already the sandbox
    uid, joins the ``worker`` cgroup itself (its ``cgroup.procs`` files are chowned to that uid)."""

    controllers: tuple[str, ...]
    version: int = 1

    def create_jail(self, owner_uid: int) -> Cgroup:
        return Cgroup.create_jail(self.controllers, owner_uid)

    def sweep_stale(self) -> list[str]:
        return sweep_stale()


def available_controllers() -> tuple[str, ...]:
    """The v1 controllers we use that are mounted and writable here (``pids`` first)."""
    found = []
    for ctrl in ("pids", "memory"):
        base = ROOT / ctrl
        if (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
            found.append(ctrl)
    return tuple(found)


class Cgroup:
    """One directory per controller, created together, killed and removed together."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    @classmethod
    def create_jail(cls, controllers: Iterable[str], owner_uid: int) -> Cgroup:
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        paths = {c: ROOT / c / PREFIX / name for c in controllers}
        try:
            for path in paths.values():
                path.mkdir(parents=True)
        except OSError as err:
            cls(paths).remove()
            raise CgroupError(f"cannot create cgroup: {err}") from err
        group = cls(paths)
        worker = group.child("worker")
        for path in worker.paths.values():  # the launcher, already the sandbox uid, joins it itself
            os.chown(path / "cgroup.procs", owner_uid, -1)
        return group

    def child(self, name: str) -> Cgroup:
        paths = {c: p / name for c, p in self.paths.items()}
        try:
            for path in paths.values():
                path.mkdir(exist_ok=True)
        except OSError as err:
            raise CgroupError(f"cannot create cgroup {name}: {err}") from err
        return Cgroup(paths)

    def set_limits(self, *, pids: int | None = None, memory_bytes: int | None = None) -> None:
        try:
            if pids is not None and "pids" in self.paths:
                (self.paths["pids"] / "pids.max").write_text(str(pids))
            if memory_bytes is not None and "memory" in self.paths:
                (self.paths["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    (self.paths["memory"] / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        except OSError as err:
            raise CgroupError(f"cannot set cgroup limits: {err}") from err

    def procs_files(self) -> list[Path]:
        return [p / "cgroup.procs" for p in self.paths.values()]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths.values():
            with contextlib.suppress(FileNotFoundError):
                found.update(int(x) for x in (path / "cgroup.procs").read_text().split())
        return found

    def add(self, pid: int) -> None:
        try:
            for path in self.paths.values():
                (path / "cgroup.procs").write_text(str(pid))
        except OSError as err:
            raise CgroupError(f"cannot move pid {pid} into {path}: {err}") from err

    def oom_kills(self) -> int:
        """OOM kills inside this memory cgroup (0 without the memory controller)."""
        path = self.paths.get("memory")
        if path is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            for line in (path / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def pids_refused(self) -> int:
        """How many forks the pids limit refused (``pids.events``)."""
        path = self.paths.get("pids")
        if path is None:
            return 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((path / "pids.events").read_text().split()[-1])
        return 0

    def kill(self) -> None:
        """SIGKILL every process until none is left (new forks are killed on the next round)."""
        for _ in range(KILL_ROUNDS):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)
        raise CgroupError(f"processes survive SIGKILL in {self.paths}")

    def remove(self) -> None:
        """Kill what is left, then remove the directories (children first). Retries while the kernel
        finishes tearing down exiting tasks."""
        for path in self.paths.values():
            try:  # the common case, a job's leaf cgroup: one rmdir, no walk over its control files
                path.rmdir()
                continue
            except FileNotFoundError:
                continue
            except OSError:
                pass
            for sub in sorted(subdirs(path), key=lambda p: -len(p.parts)):
                _rmdir(sub)
            _rmdir(path)


def subdirs(path: Path) -> list[Path]:
    """Every cgroup below ``path`` (directory entries by type, without a stat of each control file)."""
    found: list[Path] = []
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                subs = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            continue
        found += subs
        stack += subs
    return found


def _rmdir(path: Path) -> None:
    group = Cgroup({"x": path})
    for attempt in range(400):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if attempt == 399:
                raise CgroupError(f"cannot remove cgroup {path}: {err}") from err
            group.kill()
            time.sleep(0.0025)


def owner_alive(name: str) -> bool:
    """Whether the host process named by ``<pid>-<id>`` still runs (a zombie counts as gone)."""
    owner = name.split("-", 1)[0]
    if not owner.isdigit():
        return True  # not ours to remove
    try:
        state = Path(f"/proc/{owner}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def sweep_stale() -> list[str]:
    """Remove jail cgroups whose owner process is gone (a host that crashed). Returns what was removed."""
    removed = []
    for ctrl in available_controllers():
        base = ROOT / ctrl / PREFIX
        if not base.is_dir():
            continue
        for entry in base.iterdir():
            if entry.is_dir() and not owner_alive(entry.name):
                with contextlib.suppress(OSError):  # another host may be sweeping the same entry
                    Cgroup({ctrl: entry}).remove()
                    removed.append(str(entry))
    return removed
