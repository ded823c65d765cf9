"""Python tests that cannot be forged (issue 7 §1, §6): each attack with its exact verdict and reason,
in a fresh jail and in the warm pool (where the next correct sample must still PASS).

The program side of the RPC runs in the untrusted interpreter, so the attacker model is "the program
controls its server completely": ``evil()`` replaces ``jail_python._serve`` with a server that sends
whatever ``answer(request)`` returns. The ``backend`` fixture also checks the host, leftovers and a
canary run after each case.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from prmforge.verifiers.sandbox import PythonSandboxPool
from prmforge.verifiers.verdict import Verdict

from .conftest import Runner

FAIL, PASS = Verdict.FAIL, Verdict.PASS
BUDGET_S = 20.0  # no case here expects TIMEOUT: a loaded machine must not turn a verdict into one
ADD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"
T1 = "assert add(1, 2) == 3\n"
T2 = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"
RAN = "program ran to completion"
EVIL = """
import json, os, struct, sys
def _frames(fd):
    buf = b''
    while True:
        while len(buf) < 4 or len(buf) < 4 + struct.unpack('>I', buf[:4])[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            buf += chunk
        n = struct.unpack('>I', buf[:4])[0]
        yield json.loads(buf[4:4 + n])
        buf = buf[4 + n:]
def _evil_serve(namespace, req_fd, rep_fd):
    for request in _frames(req_fd):
        reply = answer(request)
        data = reply if type(reply) is bytes else json.dumps(reply).encode()
        os.write(rep_fd, struct.pack('>I', len(data)) + data)
sys.modules['jail_python']._serve = _evil_serve
"""
UNIT = """import unittest
class T(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 2), 4)
    def test_neg(self):
        self.assertEqual(add(-1, 1), 0)
"""
UNIT_FAILS = "tests failed: T.test_add: line 4: self.assertEqual(add(2, 2), 4) (AssertionError: 0 != 4)"
NAMES = 'if request["op"] == "names":\n    return {"n": %s}\n'
NAMES_ADD = NAMES % '{"add": 0}'
MALFORMED = "SampleGone: the program sent a malformed reply"


def evil(answer: str) -> str:
    """A program whose server answers with ``answer`` (the body of ``def answer(request)``)."""
    return EVIL + "def answer(request):\n" + textwrap.indent(answer, "    ")


def forged_report(report: dict[str, object]) -> str:
    """A program that writes its own report frame and closes the pipe (the harness's write fails)."""
    return (
        f"import json, os, struct\nframe = json.dumps({report!r}).encode()\n"
        "os.write(3, struct.pack('>I', len(frame)) + frame)\nos.close(3)\n"
    )


def at(n: int, statement: str, error: str) -> str:
    return f"tests failed: line {n}: {statement} ({error})"


def calls(n: int, unit: int | None = None) -> str:
    ran = "" if unit is None else f"{unit} unittest test(s), "
    return f"all tests completed ({ran}{n} call{'' if n == 1 else 's'} into the program)"


@dataclass(frozen=True)
class A:
    program: str
    tests: str | None
    verdict: Verdict
    reason: str  # the exact reason (a prefix of it where the rest quotes a library's message)
    stderr: bytes | None = None


ATTACKS: dict[str, A] = {
    # ------------------------------------------------------------ the program shadows builtins
    "builtin-abs": A(
        WRONG + "def abs(x):\n    return 0\n", "assert abs(add(2, 2) - 4) < 1e-9\n", FAIL,
        at(1, "assert abs(add(2, 2) - 4) < 1e-9", "AssertionError"),
    ),
    "builtin-sorted": A(
        "def f():\n    return [3, 1]\ndef sorted(x):\n    return [1, 2, 3]\n",
        "assert sorted(f()) == [1, 2, 3]\n", FAIL, at(1, "assert sorted(f()) == [1, 2, 3]", "AssertionError"),
    ),
    "builtin-all-any": A(
        "def f(i):\n    return -i\ndef all(x):\n    return True\ndef any(x):\n    return False\n",
        "assert all([f(i) == i for i in range(1, 4)])\nassert not any([f(i) != i for i in range(1, 4)])\n",
        FAIL, at(1, "assert all([f(i) == i for i in range(1, 4)])", "AssertionError"),
    ),
    "builtin-len-isinstance": A(
        "def f():\n    return 'x'\ndef len(x):\n    return 3\ndef isinstance(x, t):\n    return True\n",
        "r = f()\nassert isinstance(r, list) and len(r) == 3\n",
        FAIL, at(2, "assert isinstance(r, list) and len(r) == 3", "AssertionError"),
    ),
    "builtin-int-round": A(
        WRONG + "def int(x):\n    return 4\ndef round(x, n=0):\n    return 4\n",
        "assert int(add(2, 2)) == 4\n", FAIL, at(1, "assert int(add(2, 2)) == 4", "AssertionError"),
    ),
    "builtin-print-exits": A(
        WRONG + "def print(*args):\n    import os\n    os._exit(0)\n", "print('checking')\n" + T1,
        FAIL, at(2, "assert add(1, 2) == 3", "AssertionError"),
    ),
    "builtins-module-patched": A(
        "import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG, "assert abs(add(2, 2) - 4) == 0\n",
        FAIL, at(1, "assert abs(add(2, 2) - 4) == 0", "AssertionError"),
    ),
    # ------------------------------------------------------------ standard-library modules
    "stdlib-isclose-patched": A(
        "import math\nmath.isclose = lambda *a, **k: True\ndef area(r):\n    return 3 * r * r\n",
        "assert math.isclose(area(1), 3.14159, rel_tol=1e-4)\n",
        FAIL, at(1, "assert math.isclose(area(1), 3.14159, rel_tol=1e-4)", "AssertionError"),
    ),
    "stdlib-isclose-patched-tests-import": A(
        "import math\nmath.isclose = lambda *a, **k: True\ndef area(r):\n    return 3 * r * r\n",
        "import math\nassert math.isclose(area(1), 3.14159, rel_tol=1e-4)\n",
        FAIL, at(2, "assert math.isclose(area(1), 3.14159, rel_tol=1e-4)", "AssertionError"),
    ),
    "stdlib-fake-math-class": A(
        "class math:\n    @staticmethod\n    def isclose(*a, **k):\n        return True\n"
        "def area(r):\n    return 3\n",
        "assert math.isclose(area(1), 3.14159, rel_tol=1e-4)\n",
        FAIL, at(1, "assert math.isclose(area(1), 3.14159, rel_tol=1e-4)", "AssertionError"),
    ),
    "stdlib-fake-sys-exit": A(
        "class sys:\n    @staticmethod\n    def exit(code=0):\n        return None\n" + WRONG,
        "if add(1, 2) != 3:\n    sys.exit(1)\n",
        FAIL, at(2, "sys.exit(1)", "SystemExit: the tests exited with status 1"),
    ),
    "stdlib-re-patched": A(
        "import re\nre.fullmatch = lambda *a, **k: True\ndef digits():\n    return 'abc'\n",
        "assert re.fullmatch(r'[0-9]+', digits())\n",
        FAIL, at(1, "assert re.fullmatch(r'[0-9]+', digits())", "AssertionError"),
    ),
    "stdlib-unittest-patched": A(
        "import unittest\nunittest.TestCase.run = lambda self, result=None: None\n" + WRONG,
        UNIT.replace("import unittest\n", "") + "unittest.main()\n",
        FAIL, UNIT_FAILS.replace("line 4", "line 3"),
    ),
    # ------------------------------------------------------------ the RPC server and the codec, patched
    "server-apply-constant": A(
        WRONG + "import sys\nsys.modules['jail_python']._apply = lambda request, from_handle: 3\n",
        T2, FAIL, at(2, "assert add(2, 2) == 4", "AssertionError"),
    ),
    "codec-encode-constant": A(
        WRONG + "import sys\nsys.modules['codec'].encode_value = lambda value, to_handle, depth=0: 3\n",
        T2, FAIL, at(2, "assert add(2, 2) == 4", "AssertionError"),
    ),
    "names-inject-dunders": A(
        evil(NAMES % '{"__name__": 0, "__builtins__": 0, "__spec__": 0, "add": 0}' + 'return {"v": 3}\n'),
        "def check(candidate):\n    assert candidate(2, 2) == 4\n"
        "if __name__ == '__main__':\n    check(add)\n",
        FAIL, at(2, "assert candidate(2, 2) == 4", "AssertionError"),
    ),
    "names-old-style-dunder": A(
        evil('if request["op"] == "names":\n    return {"v": {"d": [["__name__", "x"], ["add", {"h": 0}]]}}\n'
             'return {"v": 3}\n'),
        "if __name__ == '__main__':\n    assert add(2, 2) == 4\n",
        FAIL, at(2, "assert add(2, 2) == 4", "NameError: name 'add' is not defined"),
    ),
    "names-builtins-and-modules": A(
        evil(NAMES % '{"abs": 1, "math": 1, "len": 1, "add": 0}'
             + 'return {"v": 3 if request["h"] == 0 else 0}\n'),
        "assert abs(add(2, 2) - 4) == 0\n", FAIL, at(1, "assert abs(add(2, 2) - 4) == 0", "AssertionError"),
    ),
    "names-malformed-entries": A(
        evil(NAMES % '{"add x": 0, "None": 0, "add": True, "sub": -1, "mul": "0", "div": 1.0}'
             + 'return {"v": 3}\n'),
        T1, FAIL, at(1, "assert add(1, 2) == 3", "NameError: name 'add' is not defined"),
    ),
    "names-not-an-object": A(
        evil(NAMES % '[["add", 0]]' + 'return {"v": 3}\n'),
        T1, FAIL, at(1, "assert add(1, 2) == 3", "NameError: name 'add' is not defined"),
    ),
    "names-too-many": A(
        evil(NAMES % '{**{f"n{i}": 0 for i in range(10001)}, "add": 0}' + 'return {"v": 3}\n'),
        T1, FAIL, at(1, "assert add(1, 2) == 3", "NameError: name 'add' is not defined"),
    ),
    "names-tests-bind-conditionally": A(
        evil(NAMES % '{"check": 0, "add": 1}' + 'return {"v": None}\n'),
        "if 'check' not in globals():\n    def check(c):\n        assert c(2, 2) == 4\ncheck(add)\n",
        FAIL, at(3, "assert c(2, 2) == 4", "AssertionError"),
    ),
    "error-errno-list": A(
        evil(NAMES_ADD
             + 'return {"e": {"error": "OSError", "builtin": "OSError", "message": "", "errno": [28]}}\n'),
        T1, FAIL, at(1, "assert add(1, 2) == 3", MALFORMED),
    ),
    "error-builtin-dict": A(
        evil(NAMES_ADD
             + 'return {"e": {"error": "E", "builtin": {"x": 1}, "message": "m", "errno": None}}\n'),
        T1, FAIL, at(1, "assert add(1, 2) == 3", MALFORMED),
    ),
    "error-errno-bool-and-extra-key": A(
        evil(NAMES_ADD + 'return {"e": {"error": "E", "builtin": "OSError", "errno": True, "calls": 9}}\n'),
        T1, FAIL, at(1, "assert add(1, 2) == 3", MALFORMED),
    ),
    "error-systemexit-is-not-raised": A(
        evil(NAMES_ADD + 'return {"e": {"error": "SystemExit", "builtin": "SystemExit", "message": "0"}}\n'),
        T1, FAIL, at(1, "assert add(1, 2) == 3", "RuntimeError: SystemExit: 0"),
    ),
    "reply-two-keys": A(evil(NAMES_ADD + 'return {"v": 3, "e": {}}\n'), T1, FAIL, at(1, T1[:-1], MALFORMED)),
    "reply-too-deep": A(
        evil(NAMES_ADD + "v = 3\nfor _ in range(100):\n    v = [v]\nreturn {'v': v}\n"),
        T1, FAIL, at(1, T1[:-1], "SampleGone: the program sent a malformed value (value nested too deeply)"),
    ),
    "reply-not-json": A(
        evil(NAMES_ADD + "return b'{not json'\n"), T1, FAIL,
        at(1, T1[:-1], "SampleGone: the program's interpreter is gone (WireError: malformed frame")[:-1],
    ),
    # ------------------------------------------------------------ the program's own report, forged
    "report-brief-example": A(
        forged_report({"errno": [1], "builtin": {"x": 1}}), None, FAIL,
        "the program's report is malformed: program report: unknown outcome in "
        "{'errno': [1], 'builtin': {'x': 1}}",
    ),
    "report-errno-list-builtin-dict": A(
        forged_report({"phase": "program", "outcome": "exception", "error": "E", "builtin": {"x": 1},
                       "message": "m", "errno": [1]}),
        None, FAIL,
        "the program's report is malformed: program report.builtin: expected a string of at most 200 "
        "characters, got {'x': 1}",
    ),
    "report-exit-code-bool": A(
        forged_report({"phase": "program", "outcome": "exit", "code": True}), None, FAIL,
        "the program's report is malformed: program report.code: expected an int in [0, 255], got True",
    ),
    "report-extra-key-with-tests": A(
        forged_report({"phase": "program", "outcome": "completed", "calls": 5}) + ADD, T2, FAIL,
        "the program's report is malformed: program report: unknown keys ['calls'], missing keys []",
    ),
    # ------------------------------------------------------------ SystemExit, in the program and in the tests
    "exit-false": A("import sys\nsys.exit(False)\n", None, PASS, RAN),
    "exit-true": A("import sys\nsys.exit(True)\n", None, FAIL, "program exited with status 1"),
    "systemexit-0": A("raise SystemExit(0)\n", None, PASS, RAN),
    "exit-none": A("import sys\nsys.exit()\n", None, PASS, RAN),
    "exit-256": A("import sys\nsys.exit(256)\n", None, PASS, RAN),
    "exit-minus-1": A("import sys\nsys.exit(-1)\n", None, FAIL, "program exited with status 255"),
    "exit-text": A("import sys\nsys.exit('bye')\n", None, FAIL, "program exited with status 1", b"bye\n"),
    "exit-int-subclass": A(
        "import sys\nclass Code(int):\n    def __int__(self):\n        return 1\nsys.exit(Code(0))\n",
        None, PASS, RAN,
    ),
    "exit-forged-class": A(
        "import sys\nclass Fake:\n    __class__ = int\nsys.exit(Fake())\n",
        None, FAIL, "program exited with status 1",
    ),
    "site-exit": A("exit(0)\n", None, PASS, RAN),
    "site-quit-3": A("quit(3)\n", None, FAIL, "program exited with status 3"),
    "program-exit-0-then-tests": A(ADD + "import sys\nsys.exit(0)\n", T2, PASS, calls(2)),
    "program-exit-false-then-tests": A(ADD + "import sys\nsys.exit(False)\n", T2, PASS, calls(2)),
    "program-exit-true-with-tests": A(
        ADD + "import sys\nsys.exit(True)\n", T2, FAIL, "program exited with status 1"
    ),
    "wrong-program-exit-0": A(WRONG + "exit(0)\n", T2, FAIL, at(1, T1[:-1], "AssertionError")),
    "tests-exit-false": A(ADD, T2 + "import sys\nsys.exit(False)\n", PASS, calls(2)),
    "tests-systemexit-0": A(ADD, T2 + "raise SystemExit(0)\n", PASS, calls(2)),
    "tests-exit-true": A(
        ADD, T2 + "import sys\nsys.exit(True)\n",
        FAIL, at(4, "sys.exit(True)", "SystemExit: the tests exited with status 1"),
    ),
    "call-exits": A(
        "import sys\ndef add(a, b):\n    sys.exit(0)\n", T1, FAIL,
        at(1, T1[:-1], "SampleGone: the program's interpreter is gone (EOFError: pipe closed)"),
    ),
    # ------------------------------------------------------------ unittest
    "unittest-main-pass": A(ADD, UNIT + "unittest.main()\n", PASS, calls(2, unit=2)),
    "unittest-no-main-pass": A(ADD, UNIT, PASS, calls(2, unit=2)),
    "unittest-main-fail": A(WRONG, UNIT + "unittest.main()\n", FAIL, UNIT_FAILS),
    "unittest-no-main-fail": A(WRONG, UNIT, FAIL, UNIT_FAILS),
    "unittest-main-exit-false-fail": A(WRONG, UNIT + "unittest.main(exit=False)\n", FAIL, UNIT_FAILS),
    "unittest-none-ran": A(
        WRONG, UNIT.replace("def test_", "def check_") + "unittest.main()\n", FAIL,
        "tests failed: NoTestsRan: 1 unittest TestCase class(es) but no test ran (0 skipped)",
    ),
    "unittest-all-skipped": A(
        WRONG, UNIT.replace("class T", "@unittest.skip('later')\nclass T"), FAIL,
        "tests failed: NoTestsRan: 1 unittest TestCase class(es) but no test ran (2 skipped)",
    ),
    "unittest-subtest": A(
        WRONG,
        "import unittest\nclass T(unittest.TestCase):\n    def test_many(self):\n        for i in range(3):\n"
        "            with self.subTest(i=i):\n                self.assertEqual(add(i, i), 2 * i)\n",
        FAIL,
        "tests failed: T.test_many (i=1): line 6: self.assertEqual(add(i, i), 2 * i) "
        "(AssertionError: 0 != 2)",
    ),
    "unittest-setupclass-error": A(
        ADD,
        "import unittest\nclass T(unittest.TestCase):\n    @classmethod\n    def setUpClass(cls):\n"
        "        cls.v = add(1, 'x')\n    def test_a(self):\n        pass\n",
        FAIL,
        "tests failed: setUpClass (T): line 5: cls.v = add(1, 'x') (TypeError: unsupported operand type(s)",
    ),
    "unittest-unexpected-success": A(
        ADD,
        "import unittest\nclass T(unittest.TestCase):\n    @unittest.expectedFailure\n    def test_x(self):\n"
        "        self.assertEqual(add(1, 1), 2)\n",
        FAIL, "tests failed: T.test_x: UnexpectedSuccess",
    ),
    "unittest-assert-raises": A(
        "def root(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x ** 0.5\n",
        "import unittest\nclass T(unittest.TestCase):\n    def test_neg(self):\n"
        "        with self.assertRaises(ValueError):\n            root(-1)\n"
        "    def test_pos(self):\n        self.assertEqual(root(4), 2.0)\nunittest.main()\n",
        PASS, calls(2, unit=2),
    ),
    # ------------------------------------------------------------ the reason of a failure
    "reason-line-and-statement": A(
        WRONG, "x = 2\n\nassert add(x, 2) == 4\n", FAIL, at(3, "assert add(x, 2) == 4", "AssertionError")
    ),
    "reason-message": A(
        WRONG, "assert add(1, 2) == 3, 'add is wrong'\n", FAIL,
        at(1, "assert add(1, 2) == 3, 'add is wrong'", "AssertionError: add is wrong"),
    ),
    "reason-multiline-assert": A(
        WRONG, "assert add(\n    2, 2\n) == 4\n", FAIL, at(1, "assert add( 2, 2 ) == 4", "AssertionError")
    ),
    "reason-inside-check": A(
        WRONG,
        "def check(candidate):\n    assert candidate(0, 0) == 0\n"
        "    assert candidate(1, 1) == 2\ncheck(add)\n",
        FAIL, at(3, "assert candidate(1, 1) == 2", "AssertionError"),
    ),
    "reason-program-exception": A(
        "def inv(x):\n    return 1 / x\n", "assert inv(2) == 0.5\nassert inv(0) == 0\n",
        FAIL, at(2, "assert inv(0) == 0", "ZeroDivisionError: division by zero"),
    ),
    "reason-custom-exception": A(
        "class MyErr(ValueError):\n    pass\ndef f():\n    raise MyErr('bad')\n", "assert f() == 1\n",
        FAIL, at(1, "assert f() == 1", "ValueError: bad, raised by the program as MyErr"),
    ),
    # ------------------------------------------------------------ correct programs still PASS
    "correct-humaneval": A(
        "from typing import List\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n",
        "METADATA = {'author': 'jt', 'dataset': 'test'}\ndef check(candidate):\n"
        "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
        "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n"
        "    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True\ncheck(has_close_elements)\n",
        PASS, calls(3),
    ),
    "correct-classes-handles-exceptions": A(
        "class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n"
        "        self.items.append(x)\n    def pop(self):\n        if not self.items:\n"
        "            raise IndexError('empty')\n        return self.items.pop()\n",
        "s = Stack()\ns.push({'k': (1, 2.5, None, b'x')})\nassert s.pop() == {'k': (1, 2.5, None, b'x')}\n"
        "try:\n    s.pop()\nexcept IndexError as err:\n    assert str(err) == 'empty'\n"
        "else:\n    raise AssertionError('no IndexError')\n",
        PASS, calls(4),
    ),
    "correct-math-without-import": A(
        "import math\ndef area(r):\n    return math.pi * r * r\n",
        "assert math.isclose(area(1), 3.14159, rel_tol=1e-4)\n", PASS, calls(1),
    ),
    "correct-main-guard-and-pickle": A(
        "import pickle\nfrom dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n"
        "def roundtrip(v):\n    return pickle.loads(pickle.dumps(P(v))).x\n"
        "if __name__ == '__main__':\n    print(roundtrip(2))\n",
        "assert roundtrip(3) == 3\n", PASS, calls(1),
    ),
    "correct-exact-values": A(
        "def f():\n"
        "    return (0.1, 10**30, float('nan'), float('inf'), -0.0, True, 7, 2**70, {1: (2,)}, b'x')\n",
        "r = f()\nassert type(r[0]) is float and r[0] == 0.1 and type(r[1]) is int and r[1] == 10**30\n"
        "assert math.isnan(r[2]) and r[3] == math.inf and math.copysign(1, r[4]) == -1\n"
        "assert r[5] is True and type(r[6]) is int and r[7] == 2**70\n"
        "assert r[8] == {1: (2,)} and r[9] == b'x'\n",
        PASS, calls(1),
    ),
    "entry-point-named-like-a-builtin": A(
        "def sorted(xs):\n    out = list(xs)\n    out.sort()\n    return out\n",
        "# prmforge: entry_points = sorted\nassert sorted([3, 1, 2]) == [1, 2, 3]\n", PASS, calls(1),
    ),
    "entry-point-named-like-a-builtin-wrong": A(
        "def sorted(xs):\n    return list(xs)\n",
        "# prmforge: entry_points = sorted\nassert sorted([3, 1, 2]) == [1, 2, 3]\n",
        FAIL, at(2, "assert sorted([3, 1, 2]) == [1, 2, 3]", "AssertionError"),
    ),
    "entry-points-narrow-the-names": A(
        ADD + "def helper():\n    return 1\n", T1 + "assert helper() == 1\n# prmforge: entry_points = add\n",
        FAIL, at(2, "assert helper() == 1", "NameError: name 'helper' is not defined"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack(name: str, backend: Runner) -> None:
    """The exact verdict and reason; on the pool, the next correct sample still passes."""
    attack = ATTACKS[name]
    result = backend.run(attack.program, tests=attack.tests, timeout_s=BUDGET_S)
    got = (result.verdict, result.reason[: len(attack.reason)])
    assert got == (attack.verdict, attack.reason), (result.reason, result.stderr[-800:])
    if attack.stderr is not None:
        assert result.stderr == attack.stderr
    if attack.tests is None and attack.verdict is PASS:
        assert result.exit_code == 0
    if attack.tests is None and attack.reason.startswith("program exited with status"):
        assert result.exit_code == int(attack.reason.split()[-1])
    if isinstance(backend, PythonSandboxPool):
        after = backend.run(ADD, tests=T2, timeout_s=BUDGET_S)
        assert (after.verdict, after.reason) == (PASS, calls(2))
