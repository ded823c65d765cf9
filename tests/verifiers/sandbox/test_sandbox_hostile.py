"""RELIABILITY.md §5.1 groups A-H and J, for Python, through the fresh jail and the warm pool.

Each case asserts the exact verdict; the ``backend`` fixture then asserts that the host is untouched
(sentinel file, environment, listening port), that nothing of the run is left (processes, cgroups,
mounts, run directories) and that a canary run next on the same backend passes with a clean jail.
"""

from __future__ import annotations

import pytest

from prmforge.verifiers.verdict import Verdict

from .conftest import FULL_ROOT_MODE, Host, Runner
from .hostile_cases import ADD_WRONG, CASES, py


def _params() -> list[object]:
    return [
        pytest.param(name, marks=[pytest.mark.slow] if case.slow else [], id=name)
        for name, case in CASES.items()
    ]


@pytest.mark.parametrize("name", _params())
def test_hostile(name: str, backend: Runner, host: Host) -> None:
    """Each hostile program gets its exact verdict; the fixture checks host, leftovers and the next run."""
    case = CASES[name]
    program = case.program.replace("{dir}", str(host.directory)).replace("{port}", str(host.port))
    result = backend.run(program, tests=case.tests, timeout_s=case.budget_s)
    assert result.verdict in {case.expect, *case.also}, (
        result.reason,
        result.stdout[-300:],
        result.stderr[-600:],
    )
    if case.stdout is not None:
        assert result.stdout == case.stdout, result.stderr[-600:]
    if case.check is not None:
        case.check(result)
    assert FULL_ROOT_MODE.match(result.isolation), result.isolation


def test_abstract_socket_does_not_carry_over(backend: Runner) -> None:
    """J35: a later sample cannot reach an abstract socket a previous one bound (and daemonised)."""
    first = py("""
        import os, socket, time
        s = socket.socket(socket.AF_UNIX)
        s.bind('\\0prmforge-carry')
        s.listen()
        if os.fork() == 0:
            os.setsid()
            time.sleep(60)
        """)
    assert backend.run(first).verdict is Verdict.PASS
    second = "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('\\0prmforge-carry')\n"
    second += "    print('reached')\nexcept OSError:\n    print('isolated')\n"
    result = backend.run(second)
    assert result.stdout == b"isolated\n"


MARKER = "hidden-tests-marker-7f3a9c"
SCANNER = f"""
import ctypes, gc, os, sys
NEEDLE = bytes(reversed({MARKER[::-1].encode()!r}))  # the only copy of the marker in this program

def add(a, b):
    return a + b

def memory_hits():
    # every anonymous writable mapping, read without creating new copies of what is found
    buf = bytearray(1 << 22)
    base = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    hits = 0
    for line in open('/proc/self/maps').read().splitlines():
        fields = line.split()
        path = fields[5] if len(fields) > 5 else ''
        if not fields[1].startswith('rw') or (path and path not in ('[heap]', '[stack]')):
            continue
        lo, hi = (int(x, 16) for x in fields[0].split('-'))
        for pos in range(lo, hi, len(buf)):
            n = min(len(buf), hi - pos)
            if base - n < pos < base + len(buf):
                continue
            ctypes.memmove(base, pos, n)
            hits += buf.count(NEEDLE, 0, n)
    return hits

def scan():
    found = []
    if memory_hits() != 1:
        found.append('memory')
    text = NEEDLE.decode()
    for obj in gc.get_objects():
        if isinstance(obj, dict) and any(
            isinstance(v, str) and v is not text and text in v for v in obj.values()
        ):
            found.append('gc')
    frame = sys._getframe()
    while frame is not None:
        if any(isinstance(v, str) and v is not text and text in v for v in frame.f_locals.values()):
            found.append('frame')
        frame = frame.f_back
    for root in ('/box', '/tmp', '/dev/shm'):
        for base, _, files in os.walk(root):
            for name in files:
                if NEEDLE in open(os.path.join(base, name), 'rb').read():
                    found.append('file')
    return found
"""


def test_hidden_tests_never_in_program_memory(backend: Runner) -> None:
    """E20: the tests (and an earlier job's tests) are not in the program's memory, frames or files."""
    tests = f"SECRET = {MARKER!r}\nassert add(1, 2) == 3\nassert scan() == []\n"
    earlier = backend.run("def add(a, b):\n    return a + b\ndef scan():\n    return []\n", tests=tests)
    assert earlier.verdict is Verdict.PASS
    result = backend.run(SCANNER, tests=tests)
    assert result.verdict is Verdict.PASS, (result.reason, result.stderr[-800:])
    control = backend.run(SCANNER + f"LEAK = {MARKER!r}\nprint(memory_hits() > 1)\n")
    assert control.stdout == b"True\n", "the scanner must see a marker that is in memory"


def test_flaky_detection(backend: Runner) -> None:
    """J36: a program that depends on randomness disagrees with itself across two runs."""
    from prmforge.verifiers.sandbox import flaky

    noisy = "import random\nprint(random.random())\n"
    a, b = backend.run(noisy), backend.run(noisy)
    assert flaky(a.output_digest, a.verdict, b.output_digest, b.verdict)
    stable = "print(sorted({'b', 'a', 'c'}), hash('x') == hash('x'))\n"
    c, d = backend.run(stable), backend.run(stable)
    assert not flaky(c.output_digest, c.verdict, d.output_digest, d.verdict)


def test_stdin_and_tests_pass(backend: Runner) -> None:
    """A correct program reads stdin, prints, and passes call-based tests over plain data and handles."""
    program = py("""
        import sys
        line = sys.stdin.readline().split()
        print(sum(map(int, line)))
        def add(a, b):
            return a + b
        class Stack:
            def __init__(self):
                self.items = []
            def push(self, x):
                self.items.append(x)
            def pop(self):
                return self.items.pop()
        """)
    tests = py("""
        def check(candidate):
            assert candidate(2, 3) == 5
            assert candidate('a', 'b') == 'ab'
            assert candidate([1], [2]) == [1, 2]
        check(add)
        s = Stack()
        s.push({'k': (1, 2.5, None, b'x')})
        assert s.pop() == {'k': (1, 2.5, None, b'x')}
        assert s.items == []
        try:
            add(1, 'x')
        except TypeError:
            pass
        else:
            raise AssertionError
        """)
    result = backend.run(program, tests=tests, stdin=b"1 2 3\n")
    assert result.verdict is Verdict.PASS, (result.reason, result.stderr)
    assert result.stdout == b"6\n"


def test_failed_assert_is_fail(backend: Runner) -> None:
    result = backend.run(ADD_WRONG, tests="assert add(1, 2) == 3, 'add is wrong'\n")
    assert result.verdict is Verdict.FAIL
    assert "add is wrong" in result.reason
