"""The host's proof, after every sample, that a warm-pool worker is as clean as when it started.

A pool worker is reused only if, read from the host through ``/proc/<worker>``, it still has

* the same resource limits (``limits``) and scheduling (nice value, policy, CPU set, threads);
* the same mounts (``mountinfo`` but for superblock options: the jail cannot mount, so any change
  is an escape);
* the same descriptors (numbers and what they point to; read by the worker itself when it cleans,
  and by the host where it is root);
* no process but itself (no child of any of its threads: in its pid namespace every process of the
  jail descends from it);
* the same free blocks and inodes in ``/box``, ``/tmp``, ``/dev/shm`` and ``/dev``;
* no socket in any state in its network namespace (TCP, UDP, raw, Unix, TIME_WAIT, fragments:
  the namespace's own counters in ``net/sockstat`` and ``net/sockstat6``).

:func:`snapshot` records that state once the worker is ready; :func:`check` compares and names the
first difference. A worker that differs is retired by the pool, never reused; the verdict of the
sample that ran before the check is not changed by it. :func:`quiet_time_wait` turns TCP TIME_WAIT
off inside a jail's network namespace so that a correct sample that used loopback TCP does not cost
a new worker; :func:`collect_unix_garbage` runs the kernel's collector for unreachable SCM_RIGHTS
cycles on the host (after a retired jail is gone).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from dataclasses import dataclass
from typing import Final

from prmforge.verifiers.sandbox.worker import Jail

# Per-namespace socket counters. The tcp/udp tables would walk the kernel's global hash tables
# (about 2 ms a read); ``sockets: used`` counts sockets of every family (Unix ones too, in flight or
# not), the rest count by protocol and TIME_WAIT. Fields that are global (TCP orphan, alloc, mem;
# UDP mem) are left out.
SOCKSTATS: Final = ("sockstat", "sockstat6")
_GLOBAL_FIELDS: Final = frozenset(
    {(b"TCP:", b"orphan"), (b"TCP:", b"alloc"), (b"TCP:", b"mem"), (b"UDP:", b"mem")}
)
JAIL_AREAS: Final = ("box", "tmp", "dev/shm", "dev")
CLONE_NEWNET: Final = 0x40000000
TIME_WAIT_SYSCTL: Final = "/proc/sys/net/ipv4/tcp_max_tw_buckets"
# /proc/<pid>/stat fields (1-based) that a sample could change from outside the worker:
# 18 priority, 19 nice, 40 rt_priority, 41 policy.
_STAT_FIELDS: Final = (18, 19, 40, 41)
_STATUS_KEYS: Final = (b"Threads:", b"Cpus_allowed_list:", b"Mems_allowed_list:", b"NoNewPrivs:", b"Seccomp:")


class HealthError(OSError):
    """The worker's state could not be read (it is gone or /proc refuses): retire it."""


@dataclass(frozen=True, slots=True)
class WorkerState:
    """What must not change between samples. ``space`` and ``sockets`` are empty where the worker
    has no namespaces of its own (rlimits-only isolation: they would be the host's)."""

    limits: bytes
    sched: tuple[bytes, ...]
    mountinfo: bytes
    fds: tuple[tuple[str, str], ...]
    space: tuple[tuple[str, int, int], ...]
    sockets: tuple[tuple[str, int], ...]  # e.g. ("sockets:used", 0), ("TCP:tw", 0)
    others: tuple[int, ...]


def snapshot(jail: Jail) -> WorkerState:
    """The worker's state now (the baseline when taken right after start)."""
    pid = jail.worker_pid
    if pid <= 0:
        raise HealthError(f"no worker pid ({pid})")
    proc = f"/proc/{pid}"
    jailed = jail.config.bwrap is not None
    try:
        return WorkerState(
            limits=_read(f"{proc}/limits"),
            sched=_sched(proc),
            mountinfo=_mounts(_read(f"{proc}/mountinfo")) if jailed else b"",
            fds=_fds(proc),
            space=_space(proc) if jailed else (),
            sockets=_sockets(proc) if jailed else (),
            others=_others(jail),
        )
    except OSError as err:
        raise HealthError(f"cannot read the worker's state: {err}") from err


def check(jail: Jail, baseline: WorkerState) -> str | None:
    """None if the worker is as clean as ``baseline``; otherwise the first difference, in words."""
    try:
        now = snapshot(jail)
    except HealthError as err:
        return str(err)
    for name in WorkerState.__slots__:
        before, after = getattr(baseline, name), getattr(now, name)
        if before != after:
            return f"worker {name} changed: {_difference(before, after)}"
    return None


def _difference(before: object, after: object) -> str:
    """The lines that went away and came (texts), else both values; at most about 600 characters."""
    if isinstance(before, bytes) and isinstance(after, bytes):
        old, new = before.splitlines(), after.splitlines()
        gone = [line for line in old if line not in new]
        came = [line for line in new if line not in old]
        text = f"-{gone!r} +{came!r}"
    else:
        text = f"{before!r} -> {after!r}"
    return text if len(text) <= 600 else text[:600] + "..."


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 1 << 16)]
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _mounts(mountinfo: bytes) -> bytes:
    """Each mount as the jail set it up: ids, device, root, mount point, per-mount options, type and
    source. The superblock options after those are left out: they are the filesystem's, changed by
    whoever remounts it on the host (a host-wide ext4 or devtmpfs option), not by the jail."""
    kept = []
    for line in mountinfo.splitlines():
        mount, _, fs = line.partition(b" - ")
        kept.append(mount + b" - " + b" ".join(fs.split()[:2]))
    return b"\n".join(kept)


def _sched(proc: str) -> tuple[bytes, ...]:
    fields = _read(f"{proc}/stat").rsplit(b")", 1)[1].split()
    picked = [fields[i - 3] for i in _STAT_FIELDS]  # fields[0] is field 3 (state)
    status = _read(f"{proc}/status").splitlines()
    picked += [line for line in status if line.startswith(_STATUS_KEYS)]
    return tuple(picked)


def _space(proc: str) -> tuple[tuple[str, int, int], ...]:
    found = []
    for area in JAIL_AREAS:
        st = os.statvfs(f"{proc}/root/{area}")
        found.append((area, st.f_bfree, st.f_ffree))
    return tuple(found)


def _fds(proc: str) -> tuple[tuple[str, str], ...]:
    """The worker's descriptors. /proc/<worker>/fd of a non-dumpable process is root's: a host that
    is not root cannot list it, and relies on the worker's own check when it cleans."""
    try:
        names = sorted(os.listdir(f"{proc}/fd"), key=int)
    except PermissionError:
        return (("?", "not readable without root"),)
    return tuple((n, os.readlink(f"{proc}/fd/{n}")) for n in names)


def _sockets(proc: str) -> tuple[tuple[str, int], ...]:
    counts = []
    for table in SOCKSTATS:
        for line in _read(f"{proc}/net/{table}").splitlines():
            words = line.split()
            for key, value in zip(words[1::2], words[2::2], strict=False):
                if (words[0], key) not in _GLOBAL_FIELDS:
                    counts.append((f"{words[0].decode()}{key.decode()}", int(value)))
    return tuple(counts)


def _others(jail: Jail) -> tuple[int, ...]:
    """Processes besides the worker: the children of each of its threads. That covers every process
    of the jail: in its own pid namespace the worker is init, so an orphan (a double-forked daemon,
    the children of a dead subreaper) is reparented to it; without one it is a child subreaper."""
    pid = jail.worker_pid
    found: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        found.update(int(x) for x in _read(f"/proc/{pid}/task/{tid}/children").split())
    return tuple(sorted(found))


def quiet_time_wait(jail: Jail) -> bool:
    """Set ``tcp_max_tw_buckets`` to 0 in the jail's network namespace: a closed loopback connection
    is then destroyed at once instead of holding its port in TIME_WAIT for a minute (a later sample's
    ``bind`` of that port would fail). Needs CAP_SYS_ADMIN on the host (setns); False where that is
    refused, and the health check then retires a worker that is left with TIME_WAIT sockets."""
    if jail.config.bwrap is None or jail.worker_pid <= 0:
        return False
    done: list[bool] = []

    def enter_and_write() -> None:  # setns moves only this short-lived thread
        try:
            ns = os.open(f"/proc/{jail.worker_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(ns, CLONE_NEWNET) != 0:
                return
            with open(TIME_WAIT_SYSCTL, "w") as sink:
                sink.write("0")
            done.append(True)
        except OSError:
            return
        finally:
            os.close(ns)

    thread = threading.Thread(target=enter_and_write, name="sandbox-netns")
    thread.start()
    thread.join()
    return bool(done)


def collect_unix_garbage() -> None:
    """Make the kernel collect unreachable SCM_RIGHTS cycles now (as the worker does after each job;
    this covers a jail retired before its worker could): closing a Unix socket while descriptors are
    in flight schedules the collector."""
    with contextlib.suppress(OSError):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with a, b:
            socket.send_fds(a, [b"\0"], [a.fileno()])
