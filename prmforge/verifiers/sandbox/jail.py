"""The in-jail worker: trusted harness code that runs inside the jail, standard library only.

Started by the host as ``python3 -I -S -B -c BOOT`` (see ``worker.py``), it is PID 1 of the jail's pid
namespace, non-dumpable, under the jail's seccomp filter. A sample cannot signal it (the kernel drops
signals to a namespace's init that it has no handler for), read its memory or steal its descriptors
(non-dumpable: ``/proc/1/*`` belongs to root). It never reads a program, a test or an output: those
travel in per-job pipes that the host hands over with SCM_RIGHTS and the worker passes on unread, so
no later sample forked from it can find an earlier one's data in its own heap.

Per job it forks the program process (and the tests process), reports their pids, waits for "go"
(the host has moved them into the job's cgroups by then), waits for the main process, SIGKILLs every
other process in the namespace, reaps them all, lets the kernel collect what only unreachable
SCM_RIGHTS cycles still hold (files, memfds, pipes, sockets) and reports the exit statuses ("done").
A pool worker then empties the scratch dir, /tmp and /dev/shm without recursion, restores their
mode, times and xattrs, checks its own descriptors and reports "cleaned": at once after a Python job,
after the host's "clean" after an exec job (the host collects its output files first). Cleaning
after "done" keeps its time off the sample's clock. Time and output limits are enforced by the host,
which kills the job's cgroup; the worker only ever waits.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import signal
import socket
import stat
import sys
import time
from typing import Any

try:
    from prmforge.verifiers.sandbox import codec, jail_python
except ImportError:  # inside the jail the bootstrap loads these modules under their bare names
    import codec  # type: ignore[no-redef, import-not-found]
    import jail_python  # type: ignore[no-redef, import-not-found]

CTL_FD = 3
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
_PREFIX_FD = 100  # job descriptors are first moved above this so dup2 onto 0..n cannot clobber them
_GATE_FD = 7
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# After a job every process is dead, so a socket left in the jail's network namespace is held by an
# SCM_RIGHTS cycle or lingers in a TCP state (TIME_WAIT, FIN_WAIT...); settle() waits this long.
SETTLE_S = 0.25
START_SETTLE_S = 2.0  # a new warm worker waits this long at most for its namespace to hold no socket


def main(ctl_fd: int = CTL_FD) -> None:
    sock = socket.socket(fileno=ctl_fd)
    cfg, _ = codec.recv_msg(sock)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # The kernel drops signals to a namespace's init only where it has no handler; Python installs
    # one for SIGINT, so a sample's kill(1, SIGINT) would raise KeyboardInterrupt here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    modes = {path: stat.S_IMODE(os.lstat(path).st_mode) for path in cfg["clean"]}
    if not cfg["oneshot"]:  # the first sample sees the areas exactly as every later one does
        for path in cfg["clean"]:
            empty(path, modes[path])
    if cfg["pidns"]:
        # The host's kill request (deadline, output cap): kill(-1) from the namespace's init reaches
        # every other process atomically with respect to fork, which a per-pid loop cannot.
        signal.signal(signal.SIGUSR1, lambda signum, frame: _kill_all(cfg, {}))
    else:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.set_blocking(2, False)  # a harness traceback must never block on a full pipe
    # What a clean worker holds (the host cannot list it when not root). Listed before "ready": the
    # host's baseline is read once "ready" arrives, and must not see the listing's own descriptor.
    cfg["fds"] = open_fds()
    if cfg["pidns"] and not cfg["oneshot"]:
        # Nor a socket on its way out: bwrap's netlink socket (it set up loopback in this namespace)
        # leaves the namespace's count only after an RCU grace period, which a loaded host delays.
        settle(START_SETTLE_S)
    codec.send_msg(sock, {"event": "ready", "pid": os.getpid()})
    while True:
        try:
            job, fds = codec.recv_msg(sock, max_fds=8)
        except EOFError:
            return
        kind = run_job(sock, cfg, job, fds)
        if cfg["oneshot"]:
            return
        if kind == "python":  # never has files collected: clean now, while the host reads the result
            codec.send_msg(sock, {"event": "cleaned", **clean_all(cfg, modes)})
        elif not clean_on_request(sock, cfg, modes):
            return


def run_job(sock: socket.socket, cfg: dict[str, Any], job: dict[str, Any], fds: list[int]) -> str:
    """Run one job and report "done"; returns the job's kind."""
    fd = dict(zip(job["fds"], fds, strict=True))
    gate_r, gate_w = os.pipe()
    pids: dict[str, int] = {}
    rpc: tuple[int, int] | None = None
    if "tests" in fd:
        req_r, req_w = os.pipe()  # tests -> program
        rep_r, rep_w = os.pipe()  # program -> tests
        pids["t"] = _fork(
            cfg,
            job,
            {3: fd["tests"], 4: fd["treport"], 5: req_w, 6: rep_r, 7: gate_r},
            "/",
            lambda: jail_python.run_tests(3, 4, 5, 6),
        )
        for n in (fd.pop("tests"), fd.pop("treport"), req_w, rep_r):
            os.close(n)
        rpc = (req_r, rep_w)
    s_fds = {0: fd["stdin"], 1: fd["stdout"], 2: fd["stderr"], 3: fd["sreport"], 7: gate_r}
    if job["kind"] == "exec":
        pids["s"] = _fork(cfg, job, s_fds, cfg["box"], lambda: _exec(job, 3))
    else:
        s_fds[4] = fd["prog"]
        if rpc:
            s_fds.update({5: rpc[0], 6: rpc[1]})
        pids["s"] = _fork(
            cfg, job, s_fds, cfg["box"], lambda: jail_python.run_program(4, 3, 5 if rpc else None, 6)
        )
    for n in [*fd.values(), gate_r, *(rpc or ())]:
        os.close(n)
    codec.send_msg(sock, {"event": "forked", "pids": pids})
    try:
        go, _ = codec.recv_msg(sock)
    except EOFError:
        go = {"cmd": "abort"}
    if go.get("cmd") != "go":
        _kill_all(cfg, pids)
    os.close(gate_w)
    statuses = _wait(cfg, pids)
    full = any(_scratch_full(path) for path in cfg["clean"])
    left = settle() if cfg["pidns"] else -1
    # "reaped": every process of the namespace is dead, so no one can write to the output pipes any
    # more (a dead SCM_RIGHTS cycle may still hold them open).
    done = {
        "event": "done",
        "status": statuses,
        "scratch_full": full,
        "reaped": cfg["pidns"],
        "sockets": left,
        "cleaning": not cfg["oneshot"] and job["kind"] == "python",  # "cleaned" follows unasked
    }
    codec.send_msg(sock, done)
    return str(job["kind"])


def clean_on_request(sock: socket.socket, cfg: dict[str, Any], modes: dict[str, int]) -> bool:
    """Wait for the host's "clean" (sent once it has collected the job's files), empty the scratch
    areas and answer "cleaned" with what went wrong, if anything. False: stop serving."""
    try:
        request, _ = codec.recv_msg(sock)
    except EOFError:
        return False
    if request.get("cmd") != "clean":
        return False
    codec.send_msg(sock, {"event": "cleaned", **clean_all(cfg, modes)})
    return True


def clean_all(cfg: dict[str, Any], modes: dict[str, int]) -> dict[str, Any]:
    """Empty every scratch area and check that the worker holds the descriptors it started with;
    ``ok`` False (and why) otherwise: the host then retires this worker."""
    errors = []
    for path in cfg["clean"]:
        try:
            empty(path, modes[path])
        except OSError as err:
            errors.append(f"{path}: {type(err).__name__}: {err}")
    fds = open_fds()
    if fds != cfg["fds"]:
        errors.append(f"worker descriptors changed: {cfg['fds']} -> {fds}")
    return {"ok": not errors, "error": "; ".join(errors)[:2000]}


def open_fds() -> list[tuple[int, str]]:
    """This process's descriptors and what they refer to (the one listing the directory excluded)."""
    fd = os.open("/proc/self/fd", _DIR_FLAGS)
    try:
        found = []
        for name in os.listdir(fd):
            if int(name) != fd:
                with contextlib.suppress(OSError):
                    found.append((int(name), os.readlink(name, dir_fd=fd)))
        return sorted(found)
    finally:
        os.close(fd)


def _fork(cfg: dict[str, Any], job: dict[str, Any], fds: dict[int, int], cwd: str, body: object) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:
        _enter_child(cfg, job, fds, cwd)
        body()  # type: ignore[operator]
    finally:
        os._exit(125)
    return 0  # unreachable


def _enter_child(cfg: dict[str, Any], job: dict[str, Any], fds: dict[int, int], cwd: str) -> None:
    """Arrange descriptors, wait at the gate, then drop into the job's limits. Runs in the child."""
    high = {target: fcntl.fcntl(src, fcntl.F_DUPFD_CLOEXEC, _PREFIX_FD) for target, src in fds.items()}
    os.closerange(0, _PREFIX_FD)
    for target in range(3):
        if target not in high:
            null = os.open(os.devnull, os.O_RDWR)
            if null != target:
                os.dup2(null, target)
                os.close(null)
    for target, src in high.items():
        os.dup2(src, target, inheritable=target <= 2)
    os.closerange(max(high) + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    while os.read(_GATE_FD, 1):
        pass
    os.close(_GATE_FD)
    for sig in (
        signal.SIGPIPE,
        signal.SIGXFSZ,
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGCHLD,
        signal.SIGUSR1,
    ):
        signal.signal(sig, signal.SIG_DFL)
    if job["kind"] == "python":  # as in any CPython process: EPIPE raises BrokenPipeError
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.setsid()
    os.umask(0o022)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(job["env"])
    for name, soft in job["rlimits"].items():
        which = getattr(resource, name)
        hard = soft + 1 if name == "RLIMIT_CPU" else soft
        resource.setrlimit(which, (soft, hard))


def _exec(job: dict[str, Any], status_fd: int) -> None:
    """Replace the child with ``argv``; on failure tell the host why through the close-on-exec pipe."""
    os.set_inheritable(status_fd, False)
    argv = job["argv"]
    try:
        os.execvpe(argv[0], argv, dict(os.environ))
    except OSError as err:
        codec.write_frame(
            status_fd, {"exec_error": errno.errorcode.get(err.errno or 0, "?"), "message": str(err)}
        )
        os._exit(127)


def _wait(cfg: dict[str, Any], pids: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Wait for the main process (tests if any, else program), then kill and reap everything."""
    by_pid = {pid: role for role, pid in pids.items()}
    main_role = "t" if "t" in pids else "s"
    status: dict[str, dict[str, Any]] = {}
    while main_role not in status:
        pid, raw, usage = os.wait4(-1, 0)
        if pid in by_pid:
            status[by_pid[pid]] = _describe(raw, usage, harness_killed=False)
    _kill_all(cfg, pids)
    if not cfg["pidns"]:  # only our own children can be waited for; the host kills the rest
        for pid, role in by_pid.items():
            if role not in status:
                _, raw, usage = os.wait4(pid, 0)
                status[role] = _describe(raw, usage, harness_killed=True)
    while True:
        try:
            pid, raw, usage = os.wait4(-1, 0 if cfg["pidns"] else os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid in by_pid and by_pid[pid] not in status:
            status[by_pid[pid]] = _describe(raw, usage, harness_killed=True)
    return status


def _kill_all(cfg: dict[str, Any], pids: dict[str, int]) -> None:
    if cfg["pidns"]:
        with contextlib.suppress(ProcessLookupError):  # every process of the namespace but PID 1 (us)
            os.kill(-1, signal.SIGKILL)
        return
    for pid in pids.values():  # weaker isolation: the sessions we created (the host kills the cgroup)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _describe(raw: int, usage: resource.struct_rusage, *, harness_killed: bool) -> dict[str, Any]:
    cpu = round(usage.ru_utime + usage.ru_stime, 3)
    if os.WIFSIGNALED(raw):
        return {"code": None, "signal": os.WTERMSIG(raw), "harness_killed": harness_killed, "cpu_s": cpu}
    return {
        "code": os.waitstatus_to_exitcode(raw),
        "signal": None,
        "harness_killed": harness_killed,
        "cpu_s": cpu,
    }


def _scratch_full(path: str) -> bool:
    st = os.statvfs(path)
    return st.f_bavail == 0 or st.f_favail == 0


def net_sockets() -> tuple[int, int]:
    """Sockets of this network namespace in any state but TIME_WAIT (``sockets: used`` counts every
    family, in flight or not), and TCP TIME_WAIT sockets (those stay for a minute unless the host
    turned TIME_WAIT off in this namespace). Read from the per-namespace counters of ``sockstat``:
    the ``tcp`` tables would walk the kernel's global hash table (milliseconds)."""
    used = time_wait = 0
    with open("/proc/self/net/sockstat", "rb") as source:
        for line in source.read().splitlines():
            words = line.split()
            if words[:2] == [b"sockets:", b"used"]:
                used = int(words[2])
            elif words[:1] == [b"TCP:"] and b"tw" in words:
                time_wait = int(words[words.index(b"tw") + 1])
    return used, time_wait


def settle(timeout_s: float = SETTLE_S) -> int:
    """Once every job process is dead: make the kernel run its garbage collector for unreachable
    SCM_RIGHTS cycles (files, memfds and pipes they hold are released with them), then wait until the
    namespace holds no socket (or only TIME_WAIT ones, which no wait would end). Returns how many are
    left (0 = clean; -1: could not tell, the host's check decides)."""
    deadline = time.monotonic() + timeout_s
    try:
        # Closing a Unix socket while descriptors are in flight schedules the collector; this pair's
        # own in-flight descriptor guarantees that (and is freed with it).
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            socket.send_fds(a, [b"\0"], [a.fileno()])
        b.close()
        a.close()
        while True:
            used, time_wait = net_sockets()
            if used == 0 or time.monotonic() >= deadline:
                return used + time_wait
            time.sleep(0.001)
    except (OSError, ValueError, IndexError):
        return -1


def empty(path: str, mode: int) -> None:
    """Remove everything under ``path`` and reset the directory itself (mode, times, xattrs).

    Iterative and by directory descriptor (``*at`` calls), so depth, name length and entry count are
    bounded only by the tmpfs; modes are fixed on the way down (a 000 directory is opened after a
    chmod). Nothing runs concurrently: every job process is dead, so ".." is the parent just left."""
    os.chmod(path, stat.S_IRWXU)  # by path: a mode-000 area cannot be opened; a mount root is no link
    fd = os.open(path, _DIR_FLAGS)
    try:
        _clear(fd)
        for name in os.listxattr(fd):
            os.removexattr(fd, name)
        os.chmod(fd, mode)
        os.utime(fd, (0, 0))
    finally:
        os.close(fd)


def _clear(root_fd: int) -> None:
    fd = os.dup(root_fd)
    stack: list[tuple[str, list[str]]] = [("", _unlink_files(fd))]
    try:
        while stack:
            name, pending = stack[-1]
            if pending:
                child = pending.pop()
                os.chmod(child, stat.S_IRWXU, dir_fd=fd)  # a directory (lstat), so no link is followed
                inner = os.open(child, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
                stack.append((child, _unlink_files(fd)))
                continue
            stack.pop()
            if not stack:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)


def _unlink_files(fd: int) -> list[str]:
    """Unlink every non-directory in the directory ``fd``; return its subdirectories."""
    with os.scandir(fd) as entries:
        found = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    subdirs = []
    for name, is_dir in found:
        if is_dir:
            subdirs.append(name)
        else:
            os.unlink(name, dir_fd=fd)
    return subdirs


if __name__ == "__main__":
    main()
    sys.exit(0)
