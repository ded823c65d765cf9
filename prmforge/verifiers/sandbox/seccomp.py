"""The jail's seccomp policy, compiled to classic BPF with libseccomp (``pyseccomp``) on the host and
handed to bubblewrap with ``--seccomp FD``, so it covers the harness and every sample process.

Default allow, with a deny list: what a sample never needs and what opens a channel to the kernel,
to other jails or to later samples. Non-native ABIs (i386 ``int 0x80``, x32) kill the process.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Final

# Syscalls refused with EPERM. Grouped by what they would give a sample.
DENIED: Final = (
    # debugging / reading other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    # kernel keyrings: shared across jails of one uid, persist after the process (isolate blocks them)
    "keyctl",
    "add_key",
    "request_key",
    # io_uring: large attack surface, bypasses seccomp for the operations it performs
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # namespaces and mounts: the jail's layout is final
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    # kernel-wide
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "vhangup",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    # watching shared read-only files is a channel between concurrent jails
    "fanotify_init",
    "inotify_init",
    "inotify_init1",
    # file locks on shared inodes (a read lock on /usr/bin/python3 is visible to every jail)
    "flock",
    # System V IPC and POSIX message queues outlive the process inside a warm worker's ipc namespace
    "shmget",
    "shmat",
    "shmctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semctl",
    "semtimedop",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
)

# clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone.
ENOSYS_CALLS: Final = ("clone3",)

# clone() flags that would create namespaces.
CLONE_NAMESPACE_FLAGS: Final = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)

# Socket families a sample may open: Unix, IPv4, IPv6 (inside a network namespace with only loopback).
ALLOWED_FAMILIES: Final = frozenset({socket.AF_UNIX, socket.AF_INET, socket.AF_INET6})
_MAX_FAMILY: Final = 64
_LOW32: Final = 0xFFFFFFFF

# fcntl lock commands: F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW.
FCNTL_LOCKS: Final = (5, 6, 7, 36, 37, 38)

# fcntl commands that watch or lease shared inodes: F_NOTIFY (dnotify on a shared read-only directory
# would let one jail see another's reads, like inotify) and F_SETLEASE.
FCNTL_DENIED: Final = (1026, 1024)  # F_NOTIFY, F_SETLEASE

# Calls that change another process. Inside a warm jail the only other processes a sample can name
# are its own and the worker (same uid, PID 1): lowering the worker's hard limits, nice value,
# scheduling class, CPU set or I/O priority would carry over to every later sample forked from it.
# Each is allowed only on the caller itself (pid 0).
SELF_ONLY_ARG0: Final = (
    "prlimit64",  # glibc's setrlimit/getrlimit pass pid 0
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
    "sched_setaffinity",
    "migrate_pages",
    "move_pages",
)
# setpriority(which, who, prio) and ioprio_set(which, who, ioprio): only (PRIO_PROCESS, 0) and
# (IOPRIO_WHO_PROCESS, 0); PRIO_USER with who 0 would reach every process of the uid, the worker too.
SELF_ONLY_WHICH_WHO: Final = (("setpriority", 0), ("ioprio_set", 1))

# ioctls that push input into a terminal or talk to the console.
DENIED_IOCTLS: Final = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX


def compile_filter() -> bytes:
    """The policy as a BPF program (raw ``struct sock_filter`` array) for ``bwrap --seccomp``."""
    import pyseccomp as sc  # type: ignore[import-untyped]  # lazy: checked by probe_isolation()

    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        flt.add_rule(eperm, name)
    for name in ENOSYS_CALLS:
        flt.add_rule(sc.ERRNO(errno.ENOSYS), name)
    for flag in CLONE_NAMESPACE_FLAGS:
        flt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    no_family = sc.ERRNO(errno.EAFNOSUPPORT)
    for family in range(_MAX_FAMILY):
        if family not in ALLOWED_FAMILIES:
            flt.add_rule(no_family, "socket", sc.Arg(0, sc.EQ, family))
            flt.add_rule(no_family, "socketpair", sc.Arg(0, sc.EQ, family))
    flt.add_rule(no_family, "socket", sc.Arg(0, sc.GE, _MAX_FAMILY))
    flt.add_rule(no_family, "socketpair", sc.Arg(0, sc.GE, _MAX_FAMILY))
    # fcntl's cmd is an unsigned int: compare the low 32 bits only, or a raw syscall with high bits
    # set would slip past an exact 64-bit comparison.
    for cmd in FCNTL_LOCKS:
        flt.add_rule(sc.ERRNO(errno.ENOLCK), "fcntl", sc.Arg(1, sc.MASKED_EQ, _LOW32, cmd))
    for cmd in FCNTL_DENIED:
        flt.add_rule(eperm, "fcntl", sc.Arg(1, sc.MASKED_EQ, _LOW32, cmd))
    # "not 0" over all 64 bits errs towards refusing: a pid or selector with high bits set is refused
    # even where the kernel would truncate it to 0.
    for name in SELF_ONLY_ARG0:
        flt.add_rule(eperm, name, sc.Arg(0, sc.NE, 0))
    for name, which in SELF_ONLY_WHICH_WHO:
        flt.add_rule(eperm, name, sc.Arg(0, sc.NE, which))
        flt.add_rule(eperm, name, sc.Arg(1, sc.NE, 0))
    for request in DENIED_IOCTLS:
        flt.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, _LOW32, request))
    fd = os.memfd_create("prmforge-seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as sink:
        flt.export_bpf(sink)
        sink.seek(0)
        return sink.read()
