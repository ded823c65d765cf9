"""``prmforge sandbox run``: every bad argument is one stderr line naming it, exit 2, no traceback.

None of these cases reaches a jail (arguments are checked first), so they need no isolation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prmforge.verifiers.sandbox.cli import sandbox_app
from prmforge.verifiers.sandbox.runner import MAX_INPUT


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(sandbox_app, ["run", *args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text("def f():\n    return 1\n")
    return path


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("-1", "--timeout: must be > 0 (got -1)"),
        ("0", "--timeout: must be > 0 (got 0)"),
        ("-0.5", "--timeout: must be > 0 (got -0.5)"),
        ("5000", "--timeout: must be <= 3600 (got 5000)"),
        ("abc", "--timeout: must be a number of seconds (got 'abc')"),
        ("", "--timeout: must be a number of seconds (got '')"),
        ("inf", "--timeout: must be a finite number of seconds (got inf)"),
        ("nan", "--timeout: must be a finite number of seconds (got nan)"),
    ],
)
def test_bad_timeout_names_the_flag(program: Path, value: str, line: str) -> None:
    assert _run(str(program), "--timeout", value) == (2, "", line + "\n")
    assert _run(str(program), f"--timeout={value}") == (2, "", line + "\n")


def test_missing_files(tmp_path: Path, program: Path) -> None:
    absent = tmp_path / "absent.py"
    assert _run(str(absent)) == (2, "", f"PROGRAM: {absent} does not exist\n")
    assert _run(str(program), "--tests", str(absent)) == (2, "", f"--tests: {absent} does not exist\n")
    link = tmp_path / "dangling.py"
    link.symlink_to(tmp_path / "gone.py")
    assert _run(str(link)) == (2, "", f"PROGRAM: {link} is a broken symbolic link\n")
    inside = program / "x.py"
    assert _run(str(inside)) == (2, "", f"PROGRAM: {inside} is unreadable (Not a directory)\n")


def test_files_that_are_not_regular(tmp_path: Path, program: Path) -> None:
    assert _run(str(tmp_path)) == (2, "", f"PROGRAM: {tmp_path} is a directory, not a file\n")
    assert _run(str(program), "--tests", str(tmp_path)) == (
        2,
        "",
        f"--tests: {tmp_path} is a directory, not a file\n",
    )
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    assert _run(str(fifo)) == (2, "", f"PROGRAM: {fifo} is a FIFO (named pipe), not a regular file\n")
    assert _run(str(program), "--tests", str(fifo)) == (
        2,
        "",
        f"--tests: {fifo} is a FIFO (named pipe), not a regular file\n",
    )
    assert _run("/dev/null") == (2, "", "PROGRAM: /dev/null is a character device, not a regular file\n")


def test_unreadable_file(tmp_path: Path, program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.py"
    secret.write_text("x = 1\n")
    secret.chmod(0)
    if os.geteuid() == 0:  # root reads anything: refuse this one path the way the kernel would
        real_open = os.open

        def refusing_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
            if Path(path) == secret:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, mode)

        monkeypatch.setattr(os, "open", refusing_open)
    assert _run(str(secret)) == (2, "", f"PROGRAM: {secret} is unreadable (Permission denied)\n")
    assert _run(str(program), "--tests", str(secret)) == (
        2,
        "",
        f"--tests: {secret} is unreadable (Permission denied)\n",
    )


def test_file_over_the_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * (MAX_INPUT + 1))
    assert _run(str(big)) == (2, "", f"PROGRAM: {big} is larger than the sandbox's {MAX_INPUT}-byte cap\n")


def test_the_timeout_is_checked_before_the_files(tmp_path: Path) -> None:
    assert _run(str(tmp_path / "absent.py"), "--timeout", "-1") == (
        2,
        "",
        "--timeout: must be > 0 (got -1)\n",
    )


def test_a_real_process_prints_no_traceback(tmp_path: Path, program: Path) -> None:
    """In a process of its own: the exit status and stderr a shell sees."""
    command = [sys.executable, "-c", "from prmforge.verifiers.sandbox.cli import sandbox_app; sandbox_app()"]
    done = subprocess.run(
        [*command, "run", str(program), "--timeout", "-1"], capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "--timeout: must be > 0 (got -1)\n")
    done = subprocess.run([*command, "run", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        f"PROGRAM: {tmp_path} is a directory, not a file\n",
    )
