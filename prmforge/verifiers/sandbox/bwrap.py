"""The bubblewrap command line for one jail. bubblewrap is "not a complete, ready-made sandbox": the
protection is exactly these arguments (and the seccomp filter, rlimits and cgroups around them).

What a sample sees: read-only ``/usr`` without ``/usr/local``, a few loader files of ``/etc``, a masked
``/proc`` of its own pid namespace, a read-only ``/dev`` with the usual device nodes, and the three
writable scratch areas ``/box``, ``/tmp`` and ``/dev/shm``. ``/proc/self/mountinfo`` still names
what each mount is (see :data:`MOUNTINFO_VISIBLE`).
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final

# Read-only from the host. /usr holds the interpreters and compilers; /etc only what loaders need.
RO_BINDS: Final = ("/usr",)
RO_BINDS_IF_PRESENT: Final = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
)
# Merged-/usr top-level links (Debian 12: /bin -> usr/bin, ...); real directories are bound read-only.
TOP_LEVEL: Final = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Hidden under an empty read-only tmpfs: locally installed software (toolkits, services, their
# configuration) that neither Debian's python3 nor gcc needs; gcc only probes /usr/local/include.
MASKED_SYSTEM_DIRS: Final = ("/usr/local",)
JAIL_ENV: Final = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
BOX: Final = "/box"
SCRATCH_AREAS: Final = (("box", BOX), ("tmp", "/tmp"), ("shm", "/dev/shm"))

# Top-level /proc entries a sample keeps: its own processes (the pid directories, self, thread-self
# and the links into them) and the few system-wide files programs read to size themselves. Every
# other entry (cmdline, kallsyms, modules, keys, timer_list, sched_debug, sysrq-trigger, config.gz,
# sys/, fs/, bus/, irq/, driver/, pressure/, locks, partitions, diskstats, interrupts...) that the
# jail's uid could reach is covered: files by the host's /dev/null on a nodev mount (opening
# it fails with EACCES), directories by an empty read-only tmpfs.
PROC_KEEP: Final = frozenset(
    {"self", "thread-self", "mounts", "net", "cpuinfo", "meminfo", "stat", "uptime", "loadavg", "version"}
)
_EMPTY_DIR: Final = ("--perms", "0555", "--size", "4096", "--tmpfs")
MOUNTINFO_VISIBLE: Final = (
    "/proc/self/mountinfo lists every mount of the jail. bubblewrap copies a bind mount's source name "
    "from the host mount it binds, so the read-only system binds (/usr, /etc/*) show the host's block "
    "device (e.g. /dev/vda, its major:minor and the ext4 mount options) and each bind's path inside "
    "that filesystem; /dev's nodes show the host's devtmpfs and its size; the scratch areas show "
    "tmpfs with their size (and, when bound from the host tmpfs, its root paths /box, /tmp, /shm). "
    "A bind mount cannot rename its source and the jail cannot mount, so hiding the device would "
    "take a non-bind mount of the system on the host (an overlay of /usr), which is not done."
)


def system_args() -> list[str]:
    """Read-only binds of the system (interpreters, compilers, loader config) and the /usr links."""
    argv: list[str] = []
    for path in RO_BINDS:
        argv += ["--ro-bind", path, path]
    for path in RO_BINDS_IF_PRESENT:
        argv += ["--ro-bind-try", path, path]
    for path in TOP_LEVEL:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    return argv


def mask_args() -> list[str]:
    """Empty read-only directories over :data:`MASKED_SYSTEM_DIRS` (after the /usr bind)."""
    argv: list[str] = []
    for path in MASKED_SYSTEM_DIRS:
        if os.path.isdir(path):
            argv += [*_EMPTY_DIR, path, "--remount-ro", path]
    return argv


@functools.cache
def proc_mask_args() -> tuple[str, ...]:
    """Masks for every top-level /proc entry outside :data:`PROC_KEEP`. The jail's procfs comes from
    the same kernel as the host's, so the host's /proc lists the same entries (a host /proc mounted
    with ``subset=pid`` would list fewer: what it hides stays unmasked in the jail)."""
    argv: list[str] = []
    for name in sorted(os.listdir("/proc")):
        if name.isdigit() or name in PROC_KEEP:
            continue
        path = f"/proc/{name}"
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            argv += [*_EMPTY_DIR, path, "--remount-ro", path]
        elif stat.S_ISREG(info.st_mode):
            argv += ["--ro-bind", "/dev/null", path]
    return tuple(argv)


def scratch_args(fs: Path | None, tmpfs_bytes: int | None) -> list[str]:
    """``/box``, ``/tmp`` and ``/dev/shm``: binds of the host tmpfs ``fs`` (its ``box``, ``tmp`` and
    ``shm``), or, with ``tmpfs_bytes``, three tmpfs mounts of bubblewrap's own, each capped at that
    many bytes, mode 1777 and owned by the jail's uid (for hosts that cannot mount a tmpfs)."""
    argv: list[str] = []
    for area, target in SCRATCH_AREAS:
        if tmpfs_bytes is not None:
            argv += ["--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", target]
        elif fs is None:
            raise ValueError("bwrap_argv needs the host tmpfs `fs` or `tmpfs_bytes`")
        else:
            argv += ["--bind", str(fs / area), target]
    return argv


def bwrap_argv(
    bwrap: str,
    *,
    fs: Path | None,
    seccomp_fd: int,
    command: Sequence[str],
    hostname: str = "sandbox",
    tmpfs_bytes: int | None = None,
) -> list[str]:
    """``bwrap`` arguments that run ``command`` as PID 1 of fresh namespaces.

    ``fs`` is the host tmpfs with ``box``, ``tmp`` and ``shm``; they become ``/box`` (the cwd),
    ``/tmp`` and ``/dev/shm``. With ``tmpfs_bytes`` they are bubblewrap's own tmpfs mounts of that
    size instead and ``fs`` may be None. Everything else is read-only or absent: no /home, /root,
    /var, /run, /sys, no host /proc, no network but a private loopback.
    """
    if tmpfs_bytes is not None and tmpfs_bytes <= 0:
        raise ValueError(f"tmpfs_bytes must be > 0, got {tmpfs_bytes}")
    argv = [
        bwrap,
        "--unshare-all",  # user, ipc, pid, net, uts, cgroup namespaces
        "--unshare-user",
        "--disable-userns",  # no nested user namespaces inside
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into the host's terminal (CVE-2017-5226)
        "--as-pid-1",  # the harness is init: a sample cannot signal it and its exit ends the namespace
        "--cap-drop",
        "ALL",
        "--clearenv",
        "--hostname",
        hostname,
    ]
    for key, value in JAIL_ENV.items():
        argv += ["--setenv", key, value]
    argv += system_args()
    argv += mask_args()
    argv += [
        "--proc",
        "/proc",
        *proc_mask_args(),
        "--dev",
        "/dev",
        *scratch_args(fs, tmpfs_bytes),
        "--remount-ro",  # device nodes stay usable; nothing can be created or parked in /dev
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        BOX,
        "--seccomp",
        str(seccomp_fd),
        "--",
        *command,
    ]
    return argv
