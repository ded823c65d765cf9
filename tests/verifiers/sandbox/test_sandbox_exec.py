"""``Sandbox.exec``: arbitrary commands (the C pipeline: compile, then run the binary passed back in)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import pytest

from prmforge.verifiers.sandbox import Sandbox, SandboxInputError
from prmforge.verifiers.verdict import Verdict

from .conftest import LIMITS, Host, assert_no_leftovers, descendants

HELLO_C = b'#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'


@pytest.fixture
def sandbox(host: Host) -> Iterator[Sandbox]:
    before = descendants(os.getpid())
    yield Sandbox(replace(LIMITS, wall_s=10.0))
    host.assert_untouched()
    assert_no_leftovers(before)


def test_compile_then_run(sandbox: Sandbox) -> None:
    """gcc in one jail, the binary collected and run in a second jail."""
    built = sandbox.exec(["gcc", "-O0", "prog.c", "-o", "prog"], files={"prog.c": HELLO_C}, collect=["prog"])
    assert built.verdict is Verdict.PASS, built.stderr
    assert built.files is not None
    assert built.files["prog"].startswith(b"\x7fELF")
    ran = sandbox.exec(["./prog"], files={"prog": built.files["prog"]}, limits=replace(LIMITS, wall_s=2.0))
    assert (ran.verdict, ran.stdout, ran.exit_code) == (Verdict.PASS, b"hi\n", 0)


def test_compile_error_is_fail_with_capped_log(sandbox: Sandbox) -> None:
    result = sandbox.exec(["gcc", "bad.c"], files={"bad.c": b"int main( {"})
    assert result.verdict is Verdict.FAIL
    assert b"error" in result.stderr


def test_huge_static_array_hits_file_limit(sandbox: Sandbox) -> None:
    """I32 with the compile limits: an object file bigger than RLIMIT_FSIZE."""
    source = b"char big[1L << 26] = {1};\nint main(void) { return big[0]; }\n"
    result = sandbox.exec(["gcc", "-c", "big.c", "-o", "big.o"], files={"big.c": source})
    assert result.verdict is Verdict.FILE_LIMIT, (result.reason, result.stderr[-400:])


def test_segfault_is_crash(sandbox: Sandbox) -> None:
    source = b"int main(void) { volatile int *p = 0; return *p; }\n"
    built = sandbox.exec(["gcc", "s.c", "-o", "s"], files={"s.c": source}, collect=["s"])
    assert built.files is not None
    result = sandbox.exec(["./s"], files={"s": built.files["s"]})
    assert result.verdict is Verdict.CRASH
    assert result.signal == 11


def test_cpu_limit_is_timeout(sandbox: Sandbox) -> None:
    """RLIMIT_CPU's SIGXCPU before the wall clock (roomy: a loaded machine gives the loop less than
    a core, and its second of CPU must still come first)."""
    result = sandbox.exec(
        ["python3", "-c", "while True: pass"], limits=replace(LIMITS, wall_s=30.0, cpu_s=1.0)
    )
    assert result.verdict is Verdict.TIMEOUT
    assert "CPU" in result.reason
    assert result.seconds < 30.0


def test_missing_command_is_infra_error(sandbox: Sandbox) -> None:
    result = sandbox.exec(["no-such-compiler", "x.c"])
    assert result.verdict is Verdict.INFRA_ERROR
    assert "no-such-compiler" in result.reason


def test_stdin_and_exit_code(sandbox: Sandbox) -> None:
    result = sandbox.exec(["sh", "-c", "read x; echo got $x; exit 3"], stdin=b"42\n")
    assert (result.verdict, result.stdout, result.exit_code) == (Verdict.FAIL, b"got 42\n", 3)


def test_collect_refuses_symlinks_and_special_files(sandbox: Sandbox) -> None:
    """D16: links to /etc/shadow or /proc/1/environ, a linked directory, a fifo: nothing is followed."""
    script = (
        "import os\nos.symlink('/etc/shadow', 'out.txt')\nos.symlink('/proc/1/environ', 'env.txt')\n"
        "os.symlink('/etc', 'd')\nos.mkfifo('fifo')\nos.mkdir('real')\n"
        "open('real/ok.txt', 'w').write('fine')\n"
    )
    result = sandbox.exec(
        ["python3", "-c", script], collect=["out.txt", "env.txt", "d/passwd", "fifo", "real/ok.txt", "absent"]
    )
    assert result.verdict is Verdict.PASS, result.stderr
    assert result.files == {"real/ok.txt": b"fine"}


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape", "a/../../b", "a\0b", "", "./x", "a//b"])
def test_bad_file_names_are_rejected(sandbox: Sandbox, name: str) -> None:
    """D17: absolute names, `..`, NUL and empty parts are refused before anything runs."""
    with pytest.raises(SandboxInputError):
        sandbox.exec(["true"], files={name: b"x"})
    with pytest.raises(SandboxInputError):
        sandbox.exec(["true"], collect=[name])


def test_raise_with_empty_output_is_fail(sandbox: Sandbox) -> None:
    """F25 for commands: an exception with no output is FAIL, never PASS."""
    result = sandbox.exec(["python3", "-c", "raise SystemExit(None) if False else exec('raise ValueError')"])
    assert result.verdict is Verdict.FAIL
    assert result.stdout == b""
