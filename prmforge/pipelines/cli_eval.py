"""``prmforge eval-annotator``: score a tool annotator on ProcessBench-format data.

The lead mounts :data:`eval_app` on the main app (``app.add_typer(eval_app)``
adds its one command), or registers :func:`eval_annotator_command` directly.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from prmforge.schemas.errors import RowError

__all__ = ["eval_annotator_command", "eval_app"]

eval_app = typer.Typer(add_completion=False, no_args_is_help=True)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


@eval_app.command("eval-annotator")
def eval_annotator_command(
    input_path: Annotated[
        Path, typer.Option("--input", help="ProcessBench-format JSON (id, problem, steps, label, ...)")
    ],
    annotator: Annotated[str, typer.Option("--annotator", help="equations or z3")],
    limit: Annotated[int | None, typer.Option(help="score only the first N items", min=1)] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="also write the full report here")
    ] = None,
) -> None:
    """Run a tool annotator on labelled steps and print ProcessBench F1, flag precision and coverage."""
    from prmforge.pipelines.eval_annotator import build_annotator, evaluate_annotator

    console = Console(width=None if sys.stdout.isatty() else 120)
    if not input_path.is_file():
        raise typer.BadParameter(f"{input_path} is not a file", param_hint="--input")
    try:
        built = build_annotator(annotator)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--annotator") from None
    try:
        report = evaluate_annotator(input_path, built, limit=limit)
    except (RowError, json.JSONDecodeError) as err:
        console.print(f"[red]cannot read {input_path}: {err}[/red]")
        raise typer.Exit(code=1) from None
    table = Table(
        title=f"{report.annotator} on {input_path.name} ({report.items} items, {report.steps} steps)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, score in (("first_error", report.score), ("first flagged step", report.flag_score)):
        table.add_row(f"ProcessBench F1 ({name})", _pct(score.f1))
        table.add_row(
            f"  error acc / correct acc ({name})", f"{_pct(score.error_acc)} / {_pct(score.correct_acc)}"
        )
    table.add_row("first_error unknown (counted as -1)", str(report.unknown_first_error))
    flags = report.flags
    table.add_row(
        "rollouts whose predicted first error is a step",
        f"{flags.flagged}, {flags.exact} of them the labelled one ({_pct(flags.precision)})",
    )
    table.add_row("steps flagged", str(report.steps_flagged))
    table.add_row("  at the labelled first error", str(report.flagged_exact))
    table.add_row(
        "  after it / before it / in correct solutions",
        f"{report.flagged_after} / {report.flagged_before} / {report.flagged_in_correct}",
    )
    flagged, exact = report.steps_flagged, report.flagged_exact
    table.add_row(
        "step flag precision: exact / at or after the first error",
        f"{_ratio(exact, flagged)} / {_ratio(exact + report.flagged_after, flagged)}",
    )
    table.add_row("coverage (steps checked)", f"{_pct(report.coverage)}")
    table.add_row("tool calls / seconds", f"{report.cost.tool_calls} / {report.cost.seconds:.2f}")
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")


def _ratio(hits: int, total: int) -> str:
    """``hits/total = share``, or ``0/0`` when nothing was flagged."""
    return f"{hits}/{total} = {hits / total:.3f}" if total else "0/0"
