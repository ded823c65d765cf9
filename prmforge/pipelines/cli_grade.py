"""``prmforge grade``: grade a file of ``{"prediction": ..., "gold": ...}`` lines, to audit grading.

The lead mounts :data:`grade_app` on the main app (``app.add_typer(grade_app)`` in ``cli.py``).
Each input line is written back, with its fields in order, plus ``correct`` (true, false, or null
when the grader cannot decide or the prediction states no answer) and ``extracted`` (the answer
read from the prediction, or null). Blank lines are skipped. A line that is not a JSON object, or
lacks a string ``prediction`` or ``gold``, stops the run with exit status 2 and names the line.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from prmforge.verifiers.answer import DEFAULT_EXTRACTION, EXTRACTION_MODES, AnswerGrader

grade_app = typer.Typer(add_completion=False)


class _BadLine(Exception):
    pass


def _case(number: int, line: str) -> dict[str, Any]:
    try:
        case = json.loads(line)
    except json.JSONDecodeError as error:
        raise _BadLine(f"line {number}: not a JSON object ({error.msg})") from None
    if not isinstance(case, dict):
        raise _BadLine(f"line {number}: not a JSON object")
    for name in ("prediction", "gold"):
        if name not in case:
            raise _BadLine(f"line {number}: field {name!r} is missing")
        if not isinstance(case[name], str):
            raise _BadLine(f"line {number}: field {name!r} must be a string, got {type(case[name]).__name__}")
    return case


def _grade_lines(lines: TextIO, out: TextIO, grader: AnswerGrader) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        case = _case(number, line)
        extracted = grader.extract(case["prediction"])
        correct = None if extracted is None else grader.grade(case["prediction"], case["gold"])
        case.pop("correct", None)
        case.pop("extracted", None)
        out.write(json.dumps({**case, "correct": correct, "extracted": extracted}, ensure_ascii=False) + "\n")


@grade_app.command("grade")
def grade(
    input: Annotated[Path, typer.Option("--input", help="JSONL of {prediction, gold} lines.")],
    output: Annotated[
        Path | None, typer.Option("--output", help="Where to write the graded lines (default: stdout).")
    ] = None,
    extraction: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated extraction modes, tried in order; of {', '.join(EXTRACTION_MODES)}."
        ),
    ] = ",".join(DEFAULT_EXTRACTION),
    tolerance: Annotated[float, typer.Option(help="Relative numeric tolerance (0: exact).")] = 0.0,
    timeout: Annotated[float, typer.Option(help="Seconds allowed for one comparison.")] = 5.0,
) -> None:
    """Grade each prediction against its gold answer and write each line back with the verdict."""
    try:
        grader = AnswerGrader(
            extraction=tuple(m.strip() for m in extraction.split(",") if m.strip()),
            tolerance=tolerance,
            timeout_s=timeout,
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    try:
        source = input.open(encoding="utf-8")
    except OSError as error:
        typer.echo(f"error: cannot read {input}: {error.strerror}", err=True)
        raise typer.Exit(2) from None
    buffer = io.StringIO()
    try:
        with source:
            _grade_lines(source, buffer, grader)
    except _BadLine as error:
        typer.echo(f"error: {input}: {error}", err=True)
        raise typer.Exit(2) from None
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        output.write_text(buffer.getvalue(), encoding="utf-8")
