"""The bubblewrap command line for one jail. bubblewrap is "not a complete, ready-made sandbox": the
protection is exactly these arguments (and the seccomp filter, rlimits and cgroups around them)."""

from __future__ import annotations

import os
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
JAIL_ENV: Final = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
BOX: Final = "/box"


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


def bwrap_argv(
    bwrap: str,
    *,
    fs: Path,
    seccomp_fd: int,
    command: Sequence[str],
    hostname: str = "sandbox",
) -> list[str]:
    """``bwrap`` arguments that run ``command`` as PID 1 of fresh namespaces.

    ``fs`` is the host tmpfs with ``box``, ``tmp`` and ``shm``; they become ``/box`` (the cwd),
    ``/tmp`` and ``/dev/shm``. Everything else is read-only or absent: no /home, /root, /var, /run,
    /sys, no host /proc, no network but a private loopback.
    """
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
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--bind",
        str(fs / "box"),
        BOX,
        "--bind",
        str(fs / "tmp"),
        "/tmp",
        "--bind",
        str(fs / "shm"),
        "/dev/shm",
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
