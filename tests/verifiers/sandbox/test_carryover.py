"""Issue 7 §2: one sample never changes what the next one on the same warm worker sees or gets.

The pool has one jail, so every sample below runs on the same worker unless the pool retired it. Each
finding: the hostile sample's exact verdict (Python, and C compiled with gcc in the pool), then a
correct sample on the same pool that PASSes (with tests) and sees exactly what a fresh worker shows
(scratch areas, /dev, free blocks and inodes, sockets, the worker's limits and scheduling, memory and
disk headroom, a port to bind), and whether the pool had to retire the worker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from prmforge.verifiers.sandbox import codec, health, jobio, worker
from prmforge.verifiers.sandbox.jobio import Job, JobDriver, RawRun, make_pipes
from prmforge.verifiers.sandbox.limits import SandboxResult
from prmforge.verifiers.sandbox.pool import PythonSandboxPool, SandboxPool
from prmforge.verifiers.sandbox.probe import SANDBOX_UID
from prmforge.verifiers.sandbox.worker import Jail
from prmforge.verifiers.verdict import Verdict

from .conftest import LIMITS, LIVE_POOLS, Host, MiB

POOL_LIMITS = replace(
    LIMITS, wall_s=20.0, file_size_bytes=8 * MiB, scratch_inodes=8192, address_space_bytes=320 * MiB
)
PORT = 5555
TESTS_PASSED = "all tests completed"  # the reason goes on to count the calls
EROFS = 30
EPERM = 1

# A correct program whose stdout is the state a fresh worker shows it; its test makes it a PASS.
CLEAN = """
import json, os, socket

def used():
    pairs = {}
    for line in open('/proc/net/sockstat').read().splitlines():
        words = line.split()
        pairs.update({words[0] + k: v for k, v in zip(words[1::2], words[2::2])})
    return [pairs['sockets:used'], pairs['TCP:inuse'], pairs['TCP:tw'], pairs['UDP:inuse']]

state = {}
for path in ('/box', '/tmp', '/dev/shm', '/dev'):
    st = os.statvfs(path)
    info = os.lstat(path)
    times = info.st_mtime if path != '/dev' else 'new with each worker'
    state[path] = [sorted(os.listdir(path)), st.f_bfree, st.f_ffree, oct(info.st_mode), times,
                   os.listxattr(path)]
state['sockets'] = used()
state['limits'] = open('/proc/1/limits').read()
state['worker'] = [os.getpriority(os.PRIO_PROCESS, 1), sorted(os.sched_getaffinity(1)),
                   os.sched_getscheduler(1)]
s = socket.socket()
s.bind(('127.0.0.1', {port}))  # no SO_REUSEADDR: fails while anything holds the port
s.close()
headroom = bytearray(150 << 20)  # memory nobody parked
for i in range(0, len(headroom), 4096):
    headroom[i] = 1
del headroom
for name in ('/box/headroom', '/tmp/headroom'):  # scratch space nobody pinned (16 MiB in all)
    with open(name, 'wb') as sink:
        sink.write(b'x' * (6 << 20))
for name in ('/box/headroom', '/tmp/headroom'):
    os.unlink(name)
print(json.dumps(state, sort_keys=True))

def ok():
    return 1
""".replace("{port}", str(PORT))


@pytest.fixture(scope="module")
def pool(host: Host) -> Iterator[SandboxPool]:
    with SandboxPool(size=1, limits=POOL_LIMITS) as warm:
        LIVE_POOLS.append(warm)
        yield warm
        LIVE_POOLS.remove(warm)


@pytest.fixture(scope="module")
def fresh_state(pool: SandboxPool) -> dict[str, object]:
    return _state(pool)


def _state(pool: SandboxPool) -> dict[str, object]:
    result = pool.run(CLEAN, tests="assert ok() == 1\n")
    assert result.verdict is Verdict.PASS, (result.reason, result.stderr[-800:])
    assert result.reason.startswith(TESTS_PASSED)
    state: dict[str, object] = json.loads(result.stdout)
    return state


def assert_clean_next(
    pool: SandboxPool, fresh_state: dict[str, object], retired_before: int, retired: int
) -> None:
    """The next correct sample PASSes and sees exactly a fresh worker; ``retired`` workers were replaced."""
    assert _state(pool) == fresh_state
    assert pool.retired - retired_before == retired, list(pool.retire_reasons)


def build(pool: SandboxPool, source: str) -> bytes:
    built = pool.exec(
        ["gcc", "-O1", "-Wall", "-o", "h", "h.c"], files={"h.c": source.encode()}, collect=["h"]
    )
    assert built.verdict is Verdict.PASS, built.stderr[-2000:]
    assert built.files is not None
    return built.files["h"]


def run_c(pool: SandboxPool, source: str) -> SandboxResult:
    return pool.exec(["./h"], files={"h": build(pool, source)})


def expect(result: SandboxResult, verdict: Verdict, stdout: bytes, reason: str | None = None) -> None:
    assert (result.verdict, result.stdout) == (verdict, stdout), (result.reason, result.stderr[-800:])
    if reason is not None:
        assert result.reason.startswith(reason) if reason == TESTS_PASSED else result.reason == reason


C_SEND = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void send_fds(int sock, const int *fds, int n) {
    char byte = 'x', control[CMSG_SPACE(sizeof(int) * 16)];
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {0};
    memset(control, 0, sizeof control);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    if (sendmsg(sock, &msg, 0) < 0) { perror("sendmsg"); exit(2); }
}

/* A cycle only the kernel's garbage collector can free: each end holds the other in flight. */
static void cycle(const int *fds, int n) {
    int sv[2], all[16];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) { perror("socketpair"); exit(2); }
    memcpy(all, fds, sizeof(int) * n);
    all[n] = sv[0];
    send_fds(sv[0], all, n + 1);
    send_fds(sv[1], &sv[1], 1);
}

static int filled(int fd, int mib) {
    static char block[1 << 20];
    memset(block, 'x', sizeof block);
    for (int i = 0; i < mib; i++)
        if (write(fd, block, sizeof block) != sizeof block) { perror("write"); exit(2); }
    return fd;
}

static int pinned(const char *path, int mib) {
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) { perror(path); exit(2); }
    unlink(path);
    return filled(fd, mib);
}
"""


# ---------------------------------------------------------------- /dev is read-only

DEV_PY = """
import errno, os
def attempt(name, action):
    try:
        action()
        print(name, 0)
    except OSError as err:
        print(name, err.errno)
attempt('file', lambda: open('/dev/parked', 'wb').write(b'x' * (240 << 20)))
attempt('mkdir', lambda: os.mkdir('/dev/d'))
attempt('symlink', lambda: os.symlink('/box', '/dev/l'))
attempt('fifo', lambda: os.mkfifo('/dev/f'))
attempt('chmod', lambda: os.chmod('/dev', 0o777))
attempt('rename', lambda: os.rename('/dev/zero', '/dev/z'))
attempt('null', lambda: open('/dev/null', 'wb').write(b'kept usable'))
print(len(open('/dev/urandom', 'rb').read(16)), open('/dev/zero', 'rb').read(2))
"""
DEV_STDOUT = b"file 30\nmkdir 30\nsymlink 30\nfifo 30\nchmod 30\nrename 30\nnull 0\n16 b'\\x00\\x00'\n"

DEV_C = (
    C_SEND
    + r"""
#define TRY(name, call) printf("%s %d\n", name, (call) < 0 ? errno : 0)
int main(void) {
    TRY("file", open("/dev/parked", O_WRONLY | O_CREAT, 0600));
    TRY("mkdir", mkdir("/dev/d", 0700));
    TRY("symlink", symlink("/box", "/dev/l"));
    TRY("fifo", mkfifo("/dev/f", 0600));
    TRY("mknod", mknod("/dev/n", S_IFREG | 0600, 0));
    TRY("null", write(open("/dev/null", O_WRONLY), "x", 1));
    return 0;
}
"""
)


def test_dev_is_read_only_but_usable(pool: SandboxPool, fresh_state: dict[str, object]) -> None:
    before = pool.retired
    expect(pool.run(DEV_PY), Verdict.PASS, DEV_STDOUT, "program ran to completion")
    assert_clean_next(pool, fresh_state, before, 0)
    expect(run_c(pool, DEV_C), Verdict.PASS, b"file 30\nmkdir 30\nsymlink 30\nfifo 30\nmknod 30\nnull 0\n")
    assert_clean_next(pool, fresh_state, before, 0)


def test_dev_write_that_does_not_catch_is_fail(pool: SandboxPool, fresh_state: dict[str, object]) -> None:
    before = pool.retired
    result = pool.run("open('/dev/parked', 'wb').write(b'x' * (240 << 20))\n")
    assert result.verdict is Verdict.FAIL
    assert result.reason == "program raised OSError: [Errno 30] Read-only file system: '/dev/parked'"
    assert_clean_next(pool, fresh_state, before, 0)


def test_dev_shm_is_the_capped_scratch(pool: SandboxPool, fresh_state: dict[str, object]) -> None:
    """/dev/shm stays writable, inside the scratch cap, and is emptied after the sample."""
    before = pool.retired
    program = "f = open('/dev/shm/big', 'wb')\nfor _ in range(30):\n    f.write(b'x' * (1 << 20))\n"
    result = pool.run(program)
    assert result.verdict is Verdict.FILE_LIMIT, result.reason
    assert_clean_next(pool, fresh_state, before, 0)


# ---------------------------------------------------------------- SCM_RIGHTS cycles

PIN_PY = """
import array, os, socket
def send(sock, fds, flags=0, *address):  # socket.send_fds drops its flags and address (3.11)
    sock.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))], flags, *address)
def pinned(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(path)
    os.write(fd, b'x' * (3 << 20))
    return fd
def memfds(count):
    fds = []
    for i in range(count):
        fd = os.memfd_create(f'park{i}')
        os.write(fd, b'y' * (8 << 20))
        fds.append(fd)
    return fds
files = [pinned('/box/p'), pinned('/tmp/p'), pinned('/dev/shm/p')]
parked = memfds(%(memfds)d)
"""
CYCLES = {
    "stream-mutual": "a, b = socket.socketpair()\n"
    "send(a, files + parked + [a.fileno()])\nsend(b, [b.fileno()])\n",
    "dgram-self": "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "send(a, files + parked + [a.fileno(), b.fileno()])\n",
    "listener-embryo": "l = socket.socket(socket.AF_UNIX)\nl.bind('/tmp/listener')\nl.listen()\n"
    "c = socket.socket(socket.AF_UNIX)\nc.connect('/tmp/listener')\n"
    "send(c, files + parked + [l.fileno(), c.fileno()])\n",
    "oob": "a, b = socket.socketpair()\nsend(a, files + parked + [a.fileno(), b.fileno()], socket.MSG_OOB)\n",
    "peeked": "a, b = socket.socketpair()\n"
    "send(a, files + parked + [a.fileno(), b.fileno()])\nb.recv(1, socket.MSG_PEEK)\n",
    "nested": "a, b = socket.socketpair()\nc, d = socket.socketpair()\n"
    "send(c, files + parked + [c.fileno(), d.fileno()])\n"
    "send(a, [c.fileno(), d.fileno(), a.fileno(), b.fileno()])\n",
    "many-cycles": "for i in range(40):\n"
    "    a, b = socket.socketpair()\n"
    "    send(a, files + [a.fileno()])\n    send(b, [b.fileno()])\n"
    "send(a, parked)\n",
    "abstract-bound": "a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\na.bind(b'\\0parked')\n"
    "send(a, files + parked + [a.fileno()], 0, b'\\0parked')\n",
}


@pytest.mark.parametrize("variant", sorted(CYCLES))
def test_fd_cycle_pins_nothing_for_the_next_sample(
    pool: SandboxPool, fresh_state: dict[str, object], variant: str
) -> None:
    """Unlinked scratch files and memfds (three times 200 MiB: more than the jail's memory headroom
    for the next sample's 150 MiB) hidden in an unreachable SCM_RIGHTS cycle: freed when the job
    ends, the worker kept."""
    before = pool.retired
    for _ in range(3):
        result = pool.run(PIN_PY % {"memfds": 25} + CYCLES[variant] + "print('parked')\n")
        expect(result, Verdict.PASS, b"parked\n", "program ran to completion")
    assert_clean_next(pool, fresh_state, before, 0)


PIN_C = (
    C_SEND
    + r"""
int main(void) {
    int fds[12], n = 0;
    fds[n++] = pinned("/box/p", 3);
    fds[n++] = pinned("/tmp/p", 3);
    fds[n++] = pinned("/dev/shm/p", 3);
    for (int i = 0; i < 8; i++) fds[n++] = filled(memfd_create("park", 0), 8);
    cycle(fds, n);
    for (int i = 0; i < n; i++) close(fds[i]);
    puts("parked");
    return 0;
}
"""
)


def test_fd_cycle_from_c(pool: SandboxPool, fresh_state: dict[str, object]) -> None:
    before = pool.retired
    binary = build(pool, PIN_C)
    for _ in range(3):
        expect(pool.exec(["./h"], files={"h": binary}), Verdict.PASS, b"parked\n", "exit code 0")
    assert_clean_next(pool, fresh_state, before, 0)


# ---------------------------------------------------------------- the worker's limits and scheduling

PRLIMIT_PY = """
import ctypes, os, resource
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, action):
    try:
        result = action()
        print(name, 'ok' if result in (None, 0) else ctypes.get_errno())
    except OSError as err:
        print(name, err.errno)
for which in ('RLIMIT_NOFILE', 'RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_STACK', 'RLIMIT_NPROC'):
    attempt(which, lambda: resource.prlimit(1, getattr(resource, which), (1, 1)))
new = (ctypes.c_ulong * 2)(1, 1)
attempt('raw-high-bits', lambda: libc.syscall(302, (1 << 32) | 1, 7, new, None))
attempt('nice-worker', lambda: os.setpriority(os.PRIO_PROCESS, 1, 19))
attempt('nice-user', lambda: os.setpriority(os.PRIO_USER, 0, 19))
attempt('nice-group', lambda: os.setpriority(os.PRIO_PGRP, 1, 19))
attempt('affinity', lambda: os.sched_setaffinity(1, {0}))
attempt('scheduler', lambda: os.sched_setscheduler(1, os.SCHED_IDLE, os.sched_param(0)))
attempt('ioprio', lambda: libc.syscall(251, 1, 1, (3 << 13) | 7))
attempt('ioprio-user', lambda: libc.syscall(251, 3, 0, 3 << 13))
attempt('own-nice', lambda: os.setpriority(os.PRIO_PROCESS, 0, 5))
attempt('own-limit', lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
"""
PRLIMIT_STDOUT = (
    b"RLIMIT_NOFILE 1\nRLIMIT_AS 1\nRLIMIT_CPU 1\nRLIMIT_STACK 1\nRLIMIT_NPROC 1\nraw-high-bits 1\n"
    b"nice-worker 1\nnice-user 1\nnice-group 1\naffinity 1\nscheduler 1\nioprio 1\nioprio-user 1\n"
    b"own-nice ok\nown-limit ok\n"
)

PRLIMIT_C = (
    C_SEND
    + r"""
#define TRY(name, call) printf("%s %d\n", name, (call) < 0 ? errno : 0)
int main(void) {
    struct rlimit one = {1, 1};
    cpu_set_t set;
    struct sched_param param = {0};
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    TRY("prlimit", prlimit(1, RLIMIT_NOFILE, &one, NULL));
    TRY("prlimit-high-bits", syscall(SYS_prlimit64, (1L << 32) | 1, RLIMIT_AS, &one, NULL));
    TRY("nice-worker", setpriority(PRIO_PROCESS, 1, 19));
    TRY("nice-user", setpriority(PRIO_USER, 0, 19));
    TRY("affinity", sched_setaffinity(1, sizeof set, &set));
    TRY("scheduler", sched_setscheduler(1, SCHED_IDLE, &param));
    TRY("ioprio", syscall(SYS_ioprio_set, 1, 1, (3 << 13) | 7));
    TRY("own-nice", setpriority(PRIO_PROCESS, 0, 5));
    return 0;
}
"""
)


def test_worker_limits_and_scheduling_cannot_be_changed(
    pool: SandboxPool, fresh_state: dict[str, object]
) -> None:
    before = pool.retired
    expect(pool.run(PRLIMIT_PY), Verdict.PASS, PRLIMIT_STDOUT, "program ran to completion")
    assert_clean_next(pool, fresh_state, before, 0)
    expected = b"prlimit 1\nprlimit-high-bits 1\nnice-worker 1\nnice-user 1\naffinity 1\nscheduler 1\n"
    expect(run_c(pool, PRLIMIT_C), Verdict.PASS, expected + b"ioprio 1\nown-nice 0\n", "exit code 0")
    assert_clean_next(pool, fresh_state, before, 0)


def _only_jail(pool: SandboxPool) -> Jail:
    (jail,) = pool._all
    return jail


def _lower_limit_as_the_jail_uid(pid: int) -> None:
    """What a sample did before seccomp refused it: prlimit on the worker as the same uid."""
    done = subprocess.run(
        ["prlimit", f"--pid={pid}", "--sigpending=64:64"], user=SANDBOX_UID, group=SANDBOX_UID, check=False
    )
    assert done.returncode == 0


def _pin_to_cpu0(pid: int) -> None:
    os.sched_setaffinity(pid, {0})


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_lower_limit_as_the_jail_uid, id="limits"),
        pytest.param(lambda pid: os.setpriority(os.PRIO_PROCESS, pid, 7), id="nice"),
        pytest.param(_pin_to_cpu0, id="affinity"),
    ],
)
def test_health_check_retires_a_changed_worker(
    pool: SandboxPool, fresh_state: dict[str, object], damage: Callable[[int], None]
) -> None:
    """Were a sample to get past seccomp: the host changes the idle worker itself. The next sample
    keeps its own verdict; the check after it retires the worker; the one after runs on a new one."""
    jail = _only_jail(pool)
    if damage is _pin_to_cpu0 and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: pinning the worker to CPU 0 changes nothing")
    damage(jail.worker_pid)
    before = pool.retired
    expect(pool.run("print('mine')\n"), Verdict.PASS, b"mine\n", "program ran to completion")
    assert pool.retired == before + 1, list(pool.retire_reasons)
    assert _only_jail(pool) is not jail
    assert_clean_next(pool, fresh_state, before + 1, 0)


def test_health_check_retires_a_worker_that_did_not_clean(
    pool: SandboxPool, fresh_state: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file left in the scratch dir after the worker's clean (planted by the host from outside)
    is found by the statvfs comparison: that worker is not reused."""
    real = jobio.request_clean

    def clean_then_plant(sock: socket.socket, *, ask: bool) -> str | None:
        problem = real(sock, ask=ask)
        jail = _only_jail(pool)
        with open(f"/proc/{jail.worker_pid}/root/box/left", "wb") as sink:
            sink.write(b"x" * 8192)
        return problem

    monkeypatch.setattr(worker, "request_clean", clean_then_plant)  # where Jail.run calls it
    before = pool.retired
    expect(pool.exec(["true"]), Verdict.PASS, b"", "exit code 0")
    assert pool.retired == before + 1, list(pool.retire_reasons)
    assert "space" in pool.last_retire_reason
    monkeypatch.undo()
    assert_clean_next(pool, fresh_state, before + 1, 0)


def test_a_ready_worker_holds_exactly_what_it_keeps(pool: SandboxPool) -> None:
    """The host reads a worker's baseline the moment it says "ready", so the worker lists its own
    descriptors, and waits until its network namespace holds no socket, before saying so. It once
    did neither: a baseline read meanwhile held the listing's directory, or counted bwrap's netlink
    socket (freed only after an RCU grace period), and the next check retired a clean worker (CI,
    under load). The races cannot be forced; read at once after start, ten workers hold exactly their
    two /dev/null, stderr pipe and control socket, and their namespaces no socket at all."""
    if os.geteuid() != 0:
        pytest.skip("/proc/<worker>/fd of a non-dumpable worker is root's")
    config = _only_jail(pool).config
    for _ in range(10):
        jail = Jail(config, POOL_LIMITS, oneshot=False)
        jail.start()
        try:
            state = health.snapshot(jail)
        finally:
            jail.close()
        assert [target.partition(":")[0] for _, target in state.fds] == [
            "/dev/null",
            "/dev/null",
            "pipe",
            "socket",
        ]
        assert [(name, count) for name, count in state.sockets if count] == []


# ---------------------------------------------------------------- cleanup that cannot recurse

DEEP_PY = """
import os
def tree(base, depth, name):
    os.chdir(base)
    for _ in range(depth):
        os.mkdir(name)
        os.chdir(name)
    open('leaf', 'w').write('x')
    os.chmod('leaf', 0)
    for _ in range(depth):  # every level mode 000 on the way up
        os.chdir('..')
        os.chmod(name, 0)
tree('/box', 1500, 'd')
tree('/tmp', 40, 'n' * 255)  # a path of 10 KiB: longer than PATH_MAX
os.mkdir('/dev/shm/many')
for i in range(3000):
    open(f'/dev/shm/many/{i:0200d}', 'w').close()
os.chmod('/dev/shm/many', 0)
os.symlink('/box', '/box/loop')
os.symlink('loop2', '/tmp/loop2')
os.mkfifo('/tmp/fifo')
import socket
socket.socket(socket.AF_UNIX).bind('/dev/shm/sock')
os.setxattr('/box', 'user.mark', b'x' * 1000)
os.chmod('/box', 0)
os.chmod('/tmp', 0o1777)
os.utime('/dev/shm', (1, 1))
print('planted')
"""

DEEP_C = (
    C_SEND
    + r"""
int main(void) {
    if (chdir("/box")) return 2;
    for (int i = 0; i < 2000; i++) {
        if (mkdir("d", 0700) || chdir("d")) { perror("mkdir"); return 2; }
    }
    for (int i = 0; i < 2000; i++) {
        if (chdir("..") || chmod("d", 0)) { perror("chmod"); return 2; }
    }
    puts("planted");
    return 0;
}
"""
)


def test_deep_odd_and_many_entries_are_cleaned(pool: SandboxPool, fresh_state: dict[str, object]) -> None:
    before = pool.retired
    expect(pool.run(DEEP_PY), Verdict.PASS, b"planted\n", "program ran to completion")
    assert_clean_next(pool, fresh_state, before, 0)
    expect(run_c(pool, DEEP_C), Verdict.PASS, b"planted\n", "exit code 0")
    assert_clean_next(pool, fresh_state, before, 0)


# ---------------------------------------------------------------- loopback ports

TIME_WAIT_PY = """
import socket
server = socket.socket()
server.bind(('127.0.0.1', {port}))
server.listen()
for closes_first in ('server', 'client', 'neither'):
    client = socket.create_connection(('127.0.0.1', {port}))
    peer, _ = server.accept()
    if closes_first == 'server':
        peer.close(); client.recv(1); client.close()
    elif closes_first == 'client':
        client.close(); peer.recv(1); peer.close()
    else:
        kept = (peer, client)  # both die with the process (FIN_WAIT / LAST_ACK on the way out)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(('127.0.0.1', {port}))
print('closed')
""".replace("{port}", str(PORT))

TIME_WAIT_C = (
    C_SEND
    + r"""
#include <arpa/inet.h>
#include <netinet/in.h>
int main(void) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons({port})};
    char byte;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int server = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(server, (struct sockaddr *)&addr, sizeof addr) || listen(server, 4)) return 2;
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(client, (struct sockaddr *)&addr, sizeof addr)) { perror("connect"); return 2; }
    int peer = accept(server, NULL, NULL);
    close(peer);  /* the server side closes first: its end of PORT goes to TIME_WAIT */
    if (read(client, &byte, 1) != 0) return 3;
    close(client);
    close(server);
    puts("closed");
    return 0;
}
""".replace("{port}", str(PORT))
)


def test_time_wait_does_not_hold_a_port(pool: SandboxPool, fresh_state: dict[str, object]) -> None:
    """The next sample binds the same port without SO_REUSEADDR (the check sample does)."""
    before = pool.retired
    expect(pool.run(TIME_WAIT_PY), Verdict.PASS, b"closed\n", "program ran to completion")
    assert_clean_next(pool, fresh_state, before, 0)
    expect(run_c(pool, TIME_WAIT_C), Verdict.PASS, b"closed\n", "exit code 0")
    assert_clean_next(pool, fresh_state, before, 0)


def test_time_wait_retires_the_worker_where_it_cannot_be_turned_off(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without CAP_SYS_ADMIN on the host (unprivileged) TIME_WAIT stays on in the jail: the socket
    count then differs and the worker is replaced, so the next sample can still bind the port."""
    monkeypatch.setattr(health, "quiet_time_wait", lambda jail: False)
    with SandboxPool(size=1, limits=POOL_LIMITS) as own:
        LIVE_POOLS.append(own)
        try:
            reference = _state(own)
            expect(own.run(TIME_WAIT_PY), Verdict.PASS, b"closed\n", "program ran to completion")
            assert own.retired == 1, list(own.retire_reasons)
            assert "TCP:tw" in own.last_retire_reason
            assert_clean_next(own, reference, 1, 0)
        finally:
            LIVE_POOLS.remove(own)


# ---------------------------------------------------------------- output pipes only a dead cycle holds

STDOUT_PY = """
import os, socket
print('hello', flush=True)
os.write(2, b'err\\n')
a, b = socket.socketpair()
socket.send_fds(a, [b'x'], [0, 1, 2, 3, a.fileno()])
socket.send_fds(b, [b'x'], [b.fileno()])
def ok():
    return 1
"""

STDOUT_C = (
    C_SEND
    + r"""
int main(void) {
    int fds[3] = {0, 1, 2};
    puts("hello");
    fflush(stdout);
    cycle(fds, 3);
    return 0;
}
"""
)


def test_output_held_by_a_dead_cycle(pool: SandboxPool, fresh_state: dict[str, object]) -> None:
    before = pool.retired
    result = pool.run(STDOUT_PY, tests="assert ok() == 1\n")
    expect(result, Verdict.PASS, b"hello\n", TESTS_PASSED)
    assert result.stderr == b"err\n"
    expect(run_c(pool, STDOUT_C), Verdict.PASS, b"hello\n", "exit code 0")
    assert_clean_next(pool, fresh_state, before, 0)


def test_driver_does_not_wait_for_pipes_once_every_process_is_dead() -> None:
    """The host side alone, with real pipes: the "worker" reports every process reaped while a
    descriptor of stdout is still held open (as a dead cycle would hold it). The driver returns at
    once with what the pipe held, instead of waiting and calling the job lost."""
    job = Job(kind="exec", limits=LIMITS, argv=("x",))
    raw = RawRun(nonce="n")
    pipes = make_pipes(job, raw.nonce)
    host_sock, worker_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    held = os.dup(pipes.jail_fds[pipes.names.index("stdout")])
    pipes.close_jail_side()

    def worker() -> None:
        codec.send_msg(worker_sock, {"event": "forked", "pids": {"s": 2}})
        codec.recv_msg(worker_sock)
        os.write(held, b"written before the end")
        status = {"s": {"code": 0, "signal": None, "harness_killed": False, "cpu_s": 0.0}}
        done = {"event": "done", "status": status, "scratch_full": False, "reaped": True, "sockets": 0}
        codec.send_msg(worker_sock, done)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        JobDriver(host_sock, job, raw, pipes, lambda message: None, lambda: None).run()
    finally:
        worker_sock.shutdown(socket.SHUT_RDWR)  # a driver that gave up must not leave the thread waiting
        thread.join(timeout=10)
        os.close(held)
        pipes.close()
        host_sock.close()
        worker_sock.close()
    assert raw.stdout == b"written before the end"
    assert raw.held_open == ("stdout",)
    assert raw.lost is None
    assert raw.statuses["s"]["code"] == 0


# ---------------------------------------------------------------- files in and out


def test_files_in_and_collected_out_never_reach_the_next_job(
    pool: SandboxPool, fresh_state: dict[str, object]
) -> None:
    before = pool.retired
    files = {"in/secret.txt": b"for this job only", "tool.sh": b"#!/bin/sh\necho made > out.txt\n"}
    made = pool.exec(
        ["sh", "-c", "./tool.sh && cat in/secret.txt && cp in/secret.txt /tmp/copy"],
        files=files,
        collect=["out.txt", "in/secret.txt"],
    )
    expect(made, Verdict.PASS, b"for this job only", "exit code 0")
    assert made.files == {"out.txt": b"made\n", "in/secret.txt": b"for this job only"}
    after = pool.exec(["sh", "-c", "ls -A /box /tmp /dev/shm"], collect=["out.txt", "in/secret.txt"])
    expect(after, Verdict.PASS, b"/box:\n\n/dev/shm:\n\n/tmp:\n", "exit code 0")
    assert after.files == {}
    assert_clean_next(pool, fresh_state, before, 0)


def test_old_name_is_the_same_pool() -> None:
    assert PythonSandboxPool is SandboxPool
