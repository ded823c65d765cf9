"""``prmforge sandbox run PROGRAM.py [--tests TESTS.py] [--timeout S] [--allow-weaker]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from prmforge.verifiers.sandbox.limits import IsolationUnavailable, SandboxLimits, SandboxResult
from prmforge.verifiers.sandbox.runner import PythonSandbox

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


@sandbox_app.callback()
def _group() -> None:
    """Kernel-sandbox commands."""


@sandbox_app.command("run")
def run(
    program: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Python program to run.")],
    tests: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Tests calling it.")] = None,
    timeout: Annotated[float, typer.Option(help="Wall-clock limit in seconds.")] = 5.0,
    allow_weaker: Annotated[
        bool, typer.Option("--allow-weaker", help="Run with rlimits only if full isolation is missing.")
    ] = False,
) -> None:
    """Run PROGRAM.py (and TESTS.py against it) in a fresh jail; print the verdict as JSON."""
    limits = SandboxLimits(wall_s=timeout)
    try:
        box = PythonSandbox(limits)
    except IsolationUnavailable as err:
        if not allow_weaker:
            typer.echo(str(err), err=True)
            raise typer.Exit(2) from None
        box = PythonSandbox(limits, isolation="rlimits-only", allow_weaker=True)
    result = box.run(
        program.read_text(errors="surrogateescape"),
        tests=None if tests is None else tests.read_text(errors="surrogateescape"),
    )
    typer.echo(json.dumps(result_json(result), indent=2))
