"""``prmforge sandbox run PROGRAM.py [--tests TESTS.py] [--timeout S] [--allow-weaker]``.

A bad argument is reported on one stderr line that names it (``--timeout: must be > 0 (got -1)``,
``PROGRAM: x.py is a directory, not a file``), with exit status 2 and no traceback.

Otherwise the result is printed as JSON and the exit status says the verdict (:data:`EXIT_CODES`):
0 PASS, 1 FAIL, 2 bad usage (or isolation missing), 3 TIMEOUT, 4 MEMORY_LIMIT, 5 OUTPUT_LIMIT,
6 FILE_LIMIT, 7 CRASH, 8 INFRA_ERROR, 9 any other verdict.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Final, NoReturn

import typer

from prmforge.verifiers.sandbox.limits import (
    IsolationUnavailable,
    SandboxInputError,
    SandboxLimits,
    SandboxResult,
)
from prmforge.verifiers.sandbox.runner import MAX_INPUT, PythonSandbox
from prmforge.verifiers.verdict import Verdict

EXIT_CODES: Final[Mapping[Verdict, int]] = MappingProxyType(
    {
        Verdict.PASS: 0,
        Verdict.FAIL: 1,
        Verdict.TIMEOUT: 3,
        Verdict.MEMORY_LIMIT: 4,
        Verdict.OUTPUT_LIMIT: 5,
        Verdict.FILE_LIMIT: 6,
        Verdict.CRASH: 7,
        Verdict.INFRA_ERROR: 8,
    }
)
"""The exit status of ``sandbox run`` for each verdict; 2 is bad usage, 9 any verdict not listed."""
OTHER_VERDICT_EXIT = 9

MAX_TIMEOUT_S = 3600.0
"""The largest ``--timeout``: SandboxLimits refuses a longer wall-clock budget."""

sandbox_app = typer.Typer(help="Run code in the kernel sandbox.", no_args_is_help=True, add_completion=False)


def _text(data: bytes) -> str:
    """Bytes as text: printable ASCII kept, everything else escaped (``\\xff``, ``\\x00``, ``\\n``)."""
    return data.decode("latin-1").encode("unicode_escape").decode("ascii").replace("\\\\", "\\\\")


def result_json(result: SandboxResult) -> dict[str, object]:
    return {
        "verdict": result.verdict.value,
        "reason": result.reason,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "seconds": result.seconds,
        "isolation": result.isolation,
        "stdout": _text(result.stdout),
        "stderr": _text(result.stderr),
        "stdout_truncated": result.stdout_truncated,
        "stderr_truncated": result.stderr_truncated,
        "output_digest": result.output_digest,
    }


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def parse_timeout(text: str) -> float:
    """``--timeout`` in seconds: a finite number in (0, MAX_TIMEOUT_S]."""
    try:
        seconds = float(text)
    except ValueError:
        _fail(f"--timeout: must be a number of seconds (got {text!r})")
    if not math.isfinite(seconds):
        _fail(f"--timeout: must be a finite number of seconds (got {text})")
    if seconds <= 0:
        _fail(f"--timeout: must be > 0 (got {text})")
    if seconds > MAX_TIMEOUT_S:
        _fail(f"--timeout: must be <= {MAX_TIMEOUT_S:g} (got {text})")
    return seconds


_KINDS = (
    (stat.S_ISDIR, "a directory, not a file"),
    (stat.S_ISFIFO, "a FIFO (named pipe), not a regular file"),
    (stat.S_ISSOCK, "a socket, not a regular file"),
    (stat.S_ISCHR, "a character device, not a regular file"),
    (stat.S_ISBLK, "a block device, not a regular file"),
)


def _not_regular(mode: int) -> str | None:
    for test, words in _KINDS:
        if test(mode):
            return words
    return None if stat.S_ISREG(mode) else "not a regular file"


def read_source(name: str, text: str) -> str:
    """The text of the file ``text`` given as argument ``name`` (``PROGRAM``, ``--tests``).

    Never blocks on a FIFO or a device: the file is opened non-blocking and checked to be regular.
    """
    path = Path(text)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        _fail(
            f"{name}: {path} is a broken symbolic link"
            if os.path.lexists(path)
            else f"{name}: {path} does not exist"
        )
    except OSError as err:
        _fail(f"{name}: {path} is unreadable ({err.strerror})")
    if (kind := _not_regular(mode)) is not None:
        _fail(f"{name}: {path} is {kind}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        _fail(f"{name}: {path} is unreadable ({err.strerror})")
    with os.fdopen(fd, "rb") as handle:
        try:
            if (kind := _not_regular(os.fstat(handle.fileno()).st_mode)) is not None:
                _fail(f"{name}: {path} is {kind}")
            data = handle.read(MAX_INPUT + 1)
        except OSError as err:
            _fail(f"{name}: {path} is unreadable ({err.strerror})")
    if len(data) > MAX_INPUT:
        _fail(f"{name}: {path} is larger than the sandbox's {MAX_INPUT}-byte cap")
    return data.decode("utf-8", errors="surrogateescape")


@sandbox_app.callback()
def _group() -> None:
    """Kernel-sandbox commands."""


@sandbox_app.command("run")
def run(
    program: Annotated[str, typer.Argument(metavar="PROGRAM.py", help="Python program to run.")],
    tests: Annotated[
        str | None, typer.Option("--tests", metavar="TESTS.py", help="Tests calling it.")
    ] = None,
    timeout: Annotated[
        str,
        typer.Option("--timeout", metavar="SECONDS", help=f"Wall-clock limit, at most {MAX_TIMEOUT_S:g}."),
    ] = "5",
    allow_weaker: Annotated[
        bool, typer.Option("--allow-weaker", help="Run with rlimits only if full isolation is missing.")
    ] = False,
) -> None:
    """Run PROGRAM.py (and TESTS.py against it) in a fresh jail; print the verdict as JSON.

    Exit status: 0 PASS, 1 FAIL, 2 bad usage, 3 TIMEOUT, 4 MEMORY_LIMIT, 5 OUTPUT_LIMIT, 6 FILE_LIMIT,
    7 CRASH, 8 INFRA_ERROR.
    """
    wall_s = parse_timeout(timeout)
    source = read_source("PROGRAM", program)
    test_source = None if tests is None else read_source("--tests", tests)
    try:
        limits = SandboxLimits(wall_s=wall_s)
    except SandboxInputError as err:  # parse_timeout checks the same bounds; this is a backstop
        _fail(f"--timeout: {err}".replace("wall_s ", ""))
    try:
        try:
            box = PythonSandbox(limits)
        except IsolationUnavailable:
            if not allow_weaker:
                raise
            box = PythonSandbox(limits, isolation="rlimits-only", allow_weaker=True)
        result = box.run(source, tests=test_source)
    except (IsolationUnavailable, SandboxInputError) as err:
        _fail(str(err))
    typer.echo(json.dumps(result_json(result), indent=2))
    raise typer.Exit(EXIT_CODES.get(result.verdict, OTHER_VERDICT_EXIT))
