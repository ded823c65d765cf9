"""``prmforge sandbox run`` exits with a documented status per verdict (real jails)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prmforge.verifiers.sandbox.cli import EXIT_CODES, OTHER_VERDICT_EXIT, sandbox_app
from prmforge.verifiers.verdict import Verdict

from .conftest import Host

CASES = {
    "pass": ("def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3\n", Verdict.PASS, 0),
    "fail": ("def add(a, b):\n    return a - b\n", "assert add(1, 2) == 3\n", Verdict.FAIL, 1),
    "exit-1": ("import sys\nsys.exit(1)\n", None, Verdict.FAIL, 1),
    "timeout": ("while True:\n    pass\n", None, Verdict.TIMEOUT, 3),
    "memory": ("x = bytearray(1 << 34)\n", None, Verdict.MEMORY_LIMIT, 4),
    "output": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", None, Verdict.OUTPUT_LIMIT, 5),
    "file": (
        "with open('big', 'wb') as f:\n    for _ in range(4096):\n        f.write(b'x' * (1 << 20))\n",
        None,
        Verdict.FILE_LIMIT,
        6,
    ),
    "crash": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", None, Verdict.CRASH, 7),
}


def test_every_exit_code_is_distinct_and_documented() -> None:
    codes = list(EXIT_CODES.values())
    assert len(set(codes)) == len(codes)
    assert 2 not in codes  # bad usage
    assert OTHER_VERDICT_EXIT not in codes
    assert EXIT_CODES[Verdict.PASS] == 0
    assert all(code != 0 for verdict, code in EXIT_CODES.items() if verdict is not Verdict.PASS)
    doc = (sandbox_app.registered_commands[0].callback.__doc__ or "").replace("\n", " ")
    for verdict, code in EXIT_CODES.items():
        assert f"{code} {verdict.value}" in doc


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_exit_status_names_the_verdict(name: str, tmp_path: Path, host: Host) -> None:
    program, tests, verdict, code = CASES[name]
    path = tmp_path / "prog.py"
    path.write_text(program)
    args = ["run", str(path), "--timeout", "1.5"]
    if tests is not None:
        (tmp_path / "tests.py").write_text(tests)
        args += ["--tests", str(tmp_path / "tests.py")]
    result = CliRunner().invoke(sandbox_app, args)
    shown = json.loads(result.stdout)
    assert (shown["verdict"], result.exit_code) == (verdict.value, code), shown["reason"]
