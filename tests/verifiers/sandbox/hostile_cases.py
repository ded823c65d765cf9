"""The hostile programs of RELIABILITY.md §5.1 groups A-H and J (Python), with their exact verdicts.

``{dir}`` is replaced by a host directory holding a sentinel file, ``{port}`` by a host port that
must never receive a connection.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from prmforge.verifiers.sandbox import SandboxResult
from prmforge.verifiers.verdict import Verdict

from .conftest import LIMITS, SECRET_ENV


@dataclass(frozen=True)
class Case:
    program: str
    expect: Verdict
    tests: str | None = None
    stdout: bytes | None = None
    check: Callable[[SandboxResult], None] | None = None
    slow: bool = False
    also: frozenset[Verdict] = frozenset()  # other acceptable verdicts, where the interpreter decides
    timeout_s: float | None = None

    @property
    def budget_s(self) -> float:
        """The wall-clock limit to run the case under.

        A case that must end in TIMEOUT runs under the suite's short limit. Every other case gets
        ``ROOMY_S``: the limit it tests (memory, pids, files, output...) is reached long before, so a
        machine loaded by other jobs cannot turn its verdict into TIMEOUT, and the verdict asserted
        stays exactly the same.
        """
        if self.timeout_s is not None:
            return self.timeout_s
        if Verdict.TIMEOUT in {self.expect, *self.also}:
            return LIMITS.wall_s
        return ROOMY_S


ROOMY_S = 20.0


def _reason_has(result: SandboxResult, text: str) -> None:
    assert text in result.reason, result.reason


def _truncated(result: SandboxResult, stream: str) -> None:
    data = getattr(result, stream)
    assert getattr(result, f"{stream}_truncated") is True
    assert len(data) == LIMITS.output_bytes


def _no_secret(result: SandboxResult) -> None:
    for key, value in SECRET_ENV.items():
        assert key.encode() not in result.stdout
        assert value.encode() not in result.stdout


def py(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


SPIN = "while True:\n    pass\n"
ADD_WRONG = "def add(a, b):\n    return a - b\n"
ADD_TEST = "assert add(1, 2) == 3\n"

CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- A. time
    "A1-infinite-loop": Case(SPIN, Verdict.TIMEOUT, slow=True),
    "A2-timer-and-signal-defeat": Case(
        py("""
        import signal
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGXCPU, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        """)
        + SPIN,
        Verdict.TIMEOUT,
        slow=True,
    ),
    "A2-catch-base-exception": Case(
        py("""
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
        """),
        Verdict.TIMEOUT,
        slow=True,
    ),
    "A3-sleep": Case("import time\ntime.sleep(1e6)\n", Verdict.TIMEOUT, slow=True),
    "A4-huge-power": Case("x = 10**10**8\n", Verdict.TIMEOUT, slow=True),
    "A4-catastrophic-regex": Case(
        "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')\n", Verdict.TIMEOUT, slow=True
    ),
    "A4-str-of-huge-int": Case("s = str(10**100000)\n", Verdict.FAIL),  # int_max_str_digits
    "A5-thousand-threads": Case(
        py("""
        import threading
        def spin():
            while True:
                pass
        for _ in range(1000):
            try:
                threading.Thread(target=spin, daemon=True).start()
            except RuntimeError:  # the pids cgroup refuses the thread
                break
        """)
        + SPIN,
        Verdict.TIMEOUT,
        slow=True,
    ),
    # ---------------------------------------------------------------- B. memory
    "B6-huge-allocation": Case("b = bytearray(1 << 40)\n", Verdict.MEMORY_LIMIT),
    "B7-slow-leak": Case(
        "keep = []\nwhile True:\n    keep.append(bytearray(1 << 20))\n", Verdict.MEMORY_LIMIT
    ),
    "B7-cgroup-oom": Case(  # each process stays under RLIMIT_AS; together they pass the memory cgroup
        py("""
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                break
        x = bytearray(200 << 20)
        for i in range(0, len(x), 4096):
            x[i] = 1
        time.sleep(30)
        """),
        Verdict.MEMORY_LIMIT,
        check=lambda r: _reason_has(r, "OOM"),
        slow=True,
    ),
    "B8-c-stack-overflow": Case(
        py("""
        import sys
        sys.setrecursionlimit(10**6)
        class A:
            def __getattr__(self, name):
                return getattr(self, name)
        A().x
        """),
        Verdict.CRASH,
        check=lambda r: _reason_has(r, "SIGSEGV"),
    ),
    "B8-python-recursion": Case(  # CPython 3.11 keeps Python frames off the C stack: an error, never PASS
        py("""
        import sys
        sys.setrecursionlimit(10**6)
        def f(n):
            return f(n + 1)
        f(0)
        """),
        Verdict.FAIL,
        also=frozenset({Verdict.MEMORY_LIMIT, Verdict.CRASH}),
        slow=True,
    ),
    # ---------------------------------------------------------------- C. processes
    "C9-posix-fork-bomb": Case(
        py("""
        import posix
        while True:
            try:
                posix.fork()
            except OSError:
                pass
        """),
        Verdict.TIMEOUT,
        slow=True,
    ),
    "C9-multiprocessing-bomb": Case(
        py("""
        import multiprocessing as mp
        def bomb():
            while True:
                try:
                    mp.Process(target=bomb).start()
                except OSError:
                    pass
        if __name__ == '__main__':
            bomb()
        """),
        Verdict.TIMEOUT,
        slow=True,
    ),
    "C9-bash-bomb": Case(
        "import subprocess\nsubprocess.run(['bash', '-c', ':(){ :|:& };:; sleep 100'])\n",
        Verdict.TIMEOUT,
        slow=True,
    ),
    "C10-double-fork-daemon": Case(
        py("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    open('/tmp/daemon-was-here', 'a').write('x')
                    time.sleep(0.05)
            os._exit(0)
        time.sleep(0.2)
        print('parent done')
        """),
        Verdict.PASS,
        stdout=b"parent done\n",
    ),
    "C11-system-spawn-exec": Case(
        py("""
        import os, posix, ctypes, subprocess
        t = '{dir}/pwned'
        posix.system('touch ' + t)
        ctypes.CDLL(None).system(('touch ' + t + '2').encode())
        os.posix_spawn('/usr/bin/touch', ['touch', t + '3'], {})
        subprocess.run(['/bin/sh', '-c', 'echo x > ' + t + '4; rm -f {dir}/sentinel.txt'])
        if os.fork() == 0:
            os.execv('/usr/bin/rm', ['rm', '-f', '{dir}/sentinel.txt'])
        os.wait()
        print('ran')
        """),
        Verdict.PASS,
        stdout=b"ran\n",
    ),
    "C12-kill-parent-and-all": Case(
        py("""
        import os, signal
        for pid in (os.getppid(), 1, -1):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        print('alive')
        """),
        Verdict.PASS,
        stdout=b"alive\n",
    ),
    # ---------------------------------------------------------------- D. filesystem
    "D13-write-everywhere": Case(
        py("""
        import os
        ok = []
        home = os.path.expanduser('~/x')
        for path in ('/etc/x', home, '/tmp/x', '/dev/shm/x', '/usr/x', '/x', '{dir}/x'):
            try:
                open(path, 'w').write('planted')
                ok.append(path)
            except OSError:
                pass
        os.makedirs('/tmp/d/e')
        os.chmod('/tmp/d', 0)
        os.setxattr('/tmp', 'user.x', b'1')
        os.utime('/tmp', (1, 1))
        print(sorted(ok))
        """),
        Verdict.PASS,
        stdout=b"['/box/x', '/dev/shm/x', '/tmp/x']\n",
    ),
    "D14-one-huge-file": Case(
        py("""
        with open('big', 'wb') as f:
            for _ in range(10 * 1024):
                f.write(b'x' * (1 << 20))
        """),
        Verdict.FILE_LIMIT,
    ),
    "D14-many-small-files": Case(
        "for i in range(1_000_000):\n    open(f'/tmp/f{i}', 'w').close()\n", Verdict.FILE_LIMIT
    ),
    "D14-fill-scratch": Case(
        py("""
        i = 0
        while True:
            with open(f'chunk{i}', 'wb') as f:
                f.write(b'x' * (3 << 20))
            i += 1
        """),
        Verdict.FILE_LIMIT,
    ),
    "D15-overwrite-system": Case(
        py("""
        hit = []
        for path in ('/usr/bin/bash', '/bin/sh', '/usr/bin/python3', '/proc/1/mem', '/proc/1/cmdline',
                     '/etc/passwd'):
            try:
                open(path, 'r+b').write(b'#')
                hit.append(path)
            except OSError:
                pass
        print(hit)
        """),
        Verdict.PASS,
        stdout=b"[]\n",
    ),
    # ---------------------------------------------------------------- E. secrets
    "E18-environment": Case("import os\nprint(sorted(os.environ))\n", Verdict.PASS, check=_no_secret),
    "E19-host-files": Case(
        py("""
        import os
        seen = []
        for path in ('/proc/1/environ', '/root/.aws', '/root', '/home', '{dir}/sentinel.txt', '/var', '/run',
                     '/sys', '/etc/shadow'):
            try:
                os.stat(path)
                if os.path.isfile(path):
                    open(path, 'rb').read()
                seen.append(path)
            except OSError:
                pass
        print(seen)
        """),
        Verdict.PASS,
        stdout=b"[]\n",
    ),
    # ---------------------------------------------------------------- F. verdict forgery
    "F21-frame-walk-exit": Case(
        ADD_WRONG
        + py("""
        import os, sys
        f = sys._getframe()
        while f is not None:
            for k in ('result', 'status', 'report', 'passed'):
                if k in f.f_locals:
                    try:
                        f.f_locals[k] = 'ok'
                    except Exception:
                        pass
            f = f.f_back
        os._exit(0)
        """),
        Verdict.FAIL,
        tests=ADD_TEST,
    ),
    "F22-exit-before-tests": Case(ADD_WRONG + "exit(0)\n", Verdict.FAIL, tests=ADD_TEST),
    "F23-always-equal": Case(
        py("""
        class Eq:
            def __eq__(self, other):
                return True
            __hash__ = None
            def __bool__(self):
                return True
        def add(a, b):
            return Eq()
        """),
        Verdict.FAIL,
        tests=ADD_TEST,
    ),
    "F23-int-subclass": Case(
        py("""
        class Int(int):
            def __eq__(self, other):
                return True
        def add(a, b):
            return Int(0)
        """),
        Verdict.FAIL,
        tests=ADD_TEST,
    ),
    "F23-printed-pass-and-patched-assert": Case(
        ADD_WRONG
        + py("""
        import builtins
        builtins.AssertionError = type('Nope', (Exception,), {})
        print('PASSED: all tests passed')
        print('{"status": "ok"}')
        """),
        Verdict.FAIL,
        tests=ADD_TEST,
    ),
    "F24-forge-result-channels": Case(
        ADD_WRONG
        + py("""
        import json, os, struct
        for path in ('result.json', '/tmp/result.json'):
            open(path, 'w').write(json.dumps({'status': 'ok'}))
        frame = json.dumps({'nonce': '0' * 32, 'status': 'ok'}).encode()
        for fd in range(3, 128):
            try:
                os.write(fd, struct.pack('>I', len(frame)) + frame)
            except OSError:
                pass
        """),
        Verdict.FAIL,
        tests=ADD_TEST,
    ),
    "F25-raise-with-empty-output": Case("raise RuntimeError()\n", Verdict.FAIL, stdout=b""),
    "F25-raise-none-in-test": Case(
        "def solve():\n    raise ValueError\n", Verdict.FAIL, tests="assert solve() is None\n"
    ),
    # ---------------------------------------------------------------- G. output
    "G26-infinite-print": Case(
        "while True:\n    print('spam')\n", Verdict.OUTPUT_LIMIT, check=lambda r: _truncated(r, "stdout")
    ),
    "G26-stderr-flood": Case(
        "import sys\nwhile True:\n    sys.stderr.write('x' * 65536)\n",
        Verdict.OUTPUT_LIMIT,
        check=lambda r: _truncated(r, "stderr"),
    ),
    "G26-raw-write": Case(
        "import os\nwhile True:\n    os.write(1, b'y' * 65536)\n",
        Verdict.OUTPUT_LIMIT,
        check=lambda r: _truncated(r, "stdout"),
    ),
    "G27-hundred-mb-line": Case(
        "import sys\nsys.stdout.write('z' * (100 << 20))\n",
        Verdict.OUTPUT_LIMIT,
        check=lambda r: _truncated(r, "stdout"),
    ),
    "G27-odd-bytes": Case(
        "import os\nos.write(1, b'nul\\x00 bad\\xff\\xfe \\x1b[31mred\\x1b[0m \\xed\\xa0\\x80 end')\n",
        Verdict.PASS,
        stdout=b"nul\x00 bad\xff\xfe \x1b[31mred\x1b[0m \xed\xa0\x80 end",
    ),
    "G28-tiocsti-and-closed-stdout": Case(
        py("""
        import fcntl, os, termios
        for fd in (0, 1, 2):
            try:
                fcntl.ioctl(fd, termios.TIOCSTI, b'x')
            except OSError:
                pass
        os.close(1)
        os.close(2)
        """),
        Verdict.PASS,
    ),
    # ---------------------------------------------------------------- H. network
    "H29-internet-and-metadata": Case(
        py("""
        import socket
        out = []
        for host in ('1.1.1.1', '169.254.169.254', '8.8.8.8'):
            try:
                socket.create_connection((host, 80), timeout=0.5)
                out.append(host)
            except OSError:
                pass
        try:
            socket.getaddrinfo('example.com', 80)
            out.append('dns')
        except OSError:
            pass
        print(out)
        """),
        Verdict.PASS,
        stdout=b"[]\n",
    ),
    "H30-host-localhost-and-bind": Case(
        py("""
        import socket
        reached = []
        for port in ({port}, 22, 5432, 6379, 8080):
            try:
                socket.create_connection(('127.0.0.1', port), timeout=0.5)
                reached.append(port)
            except OSError:
                pass
        s = socket.socket()
        s.bind(('127.0.0.1', {port}))
        s.listen()
        print(reached)
        """),
        Verdict.PASS,
        stdout=b"[]\n",
    ),
    # ---------------------------------------------------------------- J. cross-sample channels
    "J35-keyring-locks-ipc-watch": Case(
        py("""
        import ctypes, fcntl, os, socket, time
        libc = ctypes.CDLL(None, use_errno=True)
        usable = []
        def probe(name, fn):
            try:
                if fn() != -1:
                    usable.append(name)
            except OSError:
                pass
        probe('keyctl', lambda: libc.syscall(250, 0, -3))
        probe('add_key', lambda: libc.syscall(248, b'user', b'k', b'v', 1, -3))
        probe('shmget', lambda: libc.shmget(0, 4096, 0o1666))
        probe('msgget', lambda: libc.msgget(0, 0o1666))
        probe('inotify', lambda: libc.inotify_init())
        fd = os.open('/usr/bin/python3', os.O_RDONLY)
        probe('flock', lambda: fcntl.flock(fd, fcntl.LOCK_SH))
        probe('fcntl-lock', lambda: fcntl.lockf(fd, fcntl.LOCK_SH))
        s = socket.socket(socket.AF_UNIX)
        s.bind('\\0prmforge-leak')
        s.listen()
        if os.fork() == 0:
            os.setsid()
            time.sleep(60)
        print(usable)
        """),
        Verdict.PASS,
        stdout=b"[]\n",
    ),
}
