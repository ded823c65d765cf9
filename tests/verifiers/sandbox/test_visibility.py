"""Issue 7 §3: what a sample may see and watch, in a fresh jail and in a warm pool.

dnotify is refused like inotify; /proc holds only the sample's own processes and the few system-wide
files programs size themselves by; /usr/local is empty; gcc, g++ and /usr/bin/python3 still work;
/proc/self/mountinfo lists exactly the jail's mounts, and names the host's block device only as the
source of the read-only system binds (``bwrap.MOUNTINFO_VISIBLE``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

import pytest

from prmforge.verifiers.sandbox import PythonSandbox, Sandbox, SandboxLimits
from prmforge.verifiers.sandbox.bwrap import PROC_KEEP, RO_BINDS_IF_PRESENT
from prmforge.verifiers.sandbox.limits import SandboxResult
from prmforge.verifiers.sandbox.pool import SandboxPool
from prmforge.verifiers.verdict import Verdict

from .conftest import LIMITS, LIVE_POOLS, Host

BOX_LIMITS = replace(LIMITS, wall_s=20.0)
DEVICE_NODES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}
# Sensitive entries a kernel may or may not have; each must be absent, unreadable or empty.
KNOWN_SENSITIVE = ("cmdline", "kallsyms", "kcore", "keys", "key-users", "timer_list", "sched_debug",
                   "sysrq-trigger", "modules", "config.gz", "sys", "kmsg", "partitions", "diskstats",
                   "locks", "interrupts", "iomem", "ioports", "vmallocinfo", "slabinfo", "mtrr",
                   "latency_stats", "timer_stats", "acpi", "scsi", "asound", "bus", "fs", "irq",
                   "driver", "sysvipc", "tty", "pressure", "swaps", "devices", "cgroups")  # fmt: skip


class Box(Protocol):
    def run(
        self, program: str, *, tests: str | None = None, stdin: bytes = b"", timeout_s: float | None = None
    ) -> SandboxResult: ...

    def exec(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, bytes] | None = None,
        limits: SandboxLimits | None = None,
        stdin: bytes = b"",
        collect: Sequence[str] = (),
    ) -> SandboxResult: ...


class Fresh(Sandbox):
    """A fresh jail per call for both kinds of job."""

    def __init__(self, limits: SandboxLimits) -> None:
        super().__init__(limits)
        self._python = PythonSandbox(limits)

    def run(
        self, program: str, *, tests: str | None = None, stdin: bytes = b"", timeout_s: float | None = None
    ) -> SandboxResult:
        return self._python.run(program, tests=tests, stdin=stdin, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def warm(host: Host) -> Iterator[SandboxPool]:
    with SandboxPool(size=1, limits=BOX_LIMITS) as pool:
        LIVE_POOLS.append(pool)
        yield pool
        LIVE_POOLS.remove(pool)


@pytest.fixture(params=["fresh", "pool"])
def box(request: pytest.FixtureRequest, host: Host) -> Box:
    if request.param == "pool":
        pool: SandboxPool = request.getfixturevalue("warm")
        return pool
    return Fresh(BOX_LIMITS)


def ran(result: SandboxResult, stdout: bytes | None = None) -> bytes:
    assert result.verdict is Verdict.PASS, (result.reason, result.stderr[-1500:])
    if stdout is not None:
        assert result.stdout == stdout
    return result.stdout


# ---------------------------------------------------------------- dnotify and leases

NOTIFY_PY = """
import ctypes, fcntl, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, action):
    try:
        value = action()
        print(name, 'ok' if value != -1 else ctypes.get_errno())
    except OSError as err:
        print(name, err.errno)
watch = fcntl.DN_ACCESS | fcntl.DN_MODIFY | fcntl.DN_MULTISHOT
for path in ('/usr/bin', '/usr/lib/python3.11', '/etc', '/box', '/tmp'):
    fd = os.open(path, os.O_RDONLY)
    attempt(path, lambda: fcntl.fcntl(fd, fcntl.F_NOTIFY, watch))
    attempt(path + ' raw', lambda: libc.syscall(72, fd, (1 << 32) | fcntl.F_NOTIFY, watch))
own = os.open('/box/own', os.O_RDONLY | os.O_CREAT, 0o600)
attempt('lease', lambda: fcntl.fcntl(own, fcntl.F_SETLEASE, fcntl.F_RDLCK))
attempt('inotify', lambda: libc.inotify_init())
"""
NOTIFY_STDOUT = (
    b"".join(
        f"{path} 1\n{path} raw 1\n".encode()
        for path in ("/usr/bin", "/usr/lib/python3.11", "/etc", "/box", "/tmp")
    )
    + b"lease 1\ninotify 1\n"
)

NOTIFY_C = rb"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
int main(void) {
    int fd = open("/usr/include", O_RDONLY | O_DIRECTORY);
    int r = fcntl(fd, F_NOTIFY, DN_ACCESS | DN_MULTISHOT);
    printf("%d %d\n", r, r < 0 ? errno : 0);
    return 0;
}
"""


def test_dnotify_and_leases_are_denied(box: Box) -> None:
    ran(box.run(NOTIFY_PY), NOTIFY_STDOUT)
    built = box.exec(["gcc", "n.c", "-o", "n"], files={"n.c": NOTIFY_C}, collect=["n"])
    assert built.files is not None, built.stderr
    ran(box.exec(["./n"], files={"n": built.files["n"]}), b"-1 1\n")


# ---------------------------------------------------------------- /proc

PROC_PY = """
import json, os
def seen(name):
    path = '/proc/' + name
    if not os.path.lexists(path):
        return 'absent'
    try:
        if os.path.isdir(path):
            return 'empty dir' if not os.listdir(path) else 'listed'
        with open(path, 'rb') as source:
            return 'empty' if not source.read(1) else 'read'
    except PermissionError:
        return 'denied'
def write(path):
    try:
        open(path, 'w').write('1')
        return 'written'
    except OSError as err:
        return err.errno
kept = ('self/status', 'meminfo', 'cpuinfo', 'stat', 'uptime')
keep = [len(open('/proc/' + n, 'rb').read()) > 0 for n in kept]
writes = [write('/proc/sys/kernel/x'), write('/proc/sys/new'), write('/proc/sysrq-trigger')]
print(json.dumps({'seen': {n: seen(n) for n in NAMES}, 'kept': keep, 'writes': writes}))
"""


def test_proc_is_masked(box: Box) -> None:
    names = sorted({n for n in os.listdir("/proc") if not n.isdigit()} - PROC_KEEP | set(KNOWN_SENSITIVE))
    with open("/proc/cmdline", "rb") as source:
        assert source.read(), "the host's /proc/cmdline is readable: the test can fail"
    data = json.loads(ran(box.run(f"NAMES = {names!r}\n" + PROC_PY)))
    readable = {n: how for n, how in data["seen"].items() if how not in ("absent", "denied", "empty dir")}
    assert readable == {}
    assert data["seen"]["cmdline"] == "denied"
    assert data["seen"]["sys"] == "empty dir"
    assert data["kept"] == [True] * 5
    assert data["writes"][:2] == [2, 30]  # ENOENT in the empty /proc/sys, EROFS for a new file
    assert data["writes"][2] in (2, 13, 30)


# ---------------------------------------------------------------- /usr/local and the toolchain


def test_usr_local_is_empty_and_read_only(box: Box) -> None:
    assert os.listdir("/usr/local"), "the host's /usr/local has entries: the test can fail"
    program = (
        "import os\nprint(os.listdir('/usr/local'), os.environ['PATH'])\n"
        "try:\n    os.mkdir('/usr/local/x')\nexcept OSError as err:\n    print(err.errno)\n"
    )
    ran(box.run(program), b"[] /usr/bin:/bin\n30\n")


TOOLCHAIN_C = b"""
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void *twice(void *arg) { *(double *)arg *= 2; return NULL; }
int main(void) {
    double x = sqrt(2.0);
    pthread_t t;
    pthread_create(&t, NULL, twice, &x);
    pthread_join(t, NULL);
    printf("%.3f\\n", x);
    return 0;
}
"""
TOOLCHAIN_CC = b"""
#include <algorithm>
#include <iostream>
#include <vector>
int main() { std::vector<int> v{3, 1, 2}; std::sort(v.begin(), v.end()); std::cout << v[0] << v[2] << "\\n"; }
"""


def test_gcc_gxx_and_python_work(box: Box) -> None:
    built = box.exec(
        ["gcc", "-O2", "-Wall", "-Werror", "t.c", "-o", "t", "-lm", "-lpthread"],
        files={"t.c": TOOLCHAIN_C},
        collect=["t"],
    )
    assert built.files is not None, built.stderr
    ran(box.exec(["./t"], files={"t": built.files["t"]}), b"2.828\n")
    built = box.exec(["g++", "-O1", "t.cc", "-o", "t"], files={"t.cc": TOOLCHAIN_CC}, collect=["t"])
    assert built.files is not None, built.stderr
    ran(box.exec(["./t"], files={"t": built.files["t"]}), b"13\n")
    script = (
        "import ctypes, decimal, json, sqlite3, ssl, sys; print(any('/usr/local' in p for p in sys.path))"
    )
    ran(box.exec(["python3", "-c", script]), b"False\n")


# ---------------------------------------------------------------- mountinfo

MOUNTS_PY = """
import json
mounts = []
for line in open('/proc/self/mountinfo'):
    left, _, right = line.partition(' - ')
    fields, fs = left.split(), right.split()
    mounts.append({'root': fields[3], 'at': fields[4], 'ro': 'ro' in fields[5].split(','),
                   'type': fs[0], 'source': fs[1]})
print(json.dumps(mounts))
"""


def _host_source(path: str) -> str:
    """The mount source the host shows for the filesystem holding ``path``."""
    best = ("", "")
    with open("/proc/self/mountinfo") as source:
        lines = source.read().splitlines()
    for line in lines:
        left, _, right = line.partition(" - ")
        point = left.split()[4]
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
            best = (point, right.split()[1])
    return best[1]


def test_mountinfo_lists_only_the_jail(box: Box) -> None:
    mounts = json.loads(ran(box.run(MOUNTS_PY)))
    points = [m["at"] for m in mounts]
    assert len(points) == len(set(points))
    masked_proc = {f"/proc/{n}" for n in os.listdir("/proc") if not n.isdigit()} - {
        f"/proc/{n}" for n in PROC_KEEP
    }
    loader_files = {p for p in RO_BINDS_IF_PRESENT if os.path.exists(p)}
    scratch = {"/box", "/tmp", "/dev/shm"}
    system = {"/", "/usr", "/usr/local", "/proc", "/dev", "/dev/pts"}
    assert set(points) == system | scratch | DEVICE_NODES | loader_files | masked_proc
    writable = {m["at"] for m in mounts if not m["ro"]}
    assert writable == scratch | DEVICE_NODES | {"/proc", "/dev/pts"}
    for m in mounts:
        assert "prmforge-sandbox" not in m["root"] + m["at"]
    # What stays visible (bwrap.MOUNTINFO_VISIBLE): the host device behind the system binds.
    binds = {m["at"]: m["source"] for m in mounts if m["at"] == "/usr" or m["at"] in loader_files}
    assert set(binds.values()) == {_host_source("/usr")}
    virtual = {m["source"] for m in mounts if m["at"] not in binds}
    assert virtual <= {"tmpfs", "proc", "devpts", "devtmpfs"}
