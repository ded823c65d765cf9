"""``prmforge eval-annotator``: score an annotator on ProcessBench-format data.

``--annotator equations|z3`` runs a tool annotator; ``--annotator judge --config FILE`` an LLM judge
(the file: one ``{kind: judge, engine: {...}, votes: 3}`` config, or a build configuration whose
``annotate:`` list holds one judge; see :func:`~prmforge.pipelines.eval_annotator.load_judge_config`).
``--unknown-as miss`` scores a rollout the annotator could not decide (a judge whose votes were all
unreadable) as wrong in both classes, as ProcessBench scores an unparseable critic; the default
counts it as "no error found" (-1).

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

from prmforge.schemas.errors import ConfigError, RowError

__all__ = ["eval_annotator_command", "eval_app"]

eval_app = typer.Typer(add_completion=False, no_args_is_help=True)
_UNKNOWN_AS: dict[str, int | None] = {"no-error": -1, "miss": None}


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


@eval_app.command("eval-annotator")
def eval_annotator_command(
    input_path: Annotated[
        Path, typer.Option("--input", help="ProcessBench-format JSON (id, problem, steps, label, ...)")
    ],
    annotator: Annotated[str, typer.Option("--annotator", help="equations, z3 or judge")],
    limit: Annotated[int | None, typer.Option(help="score only the first N items", min=1)] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="also write the full report here")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="the judge's YAML/JSON config: {kind: judge, engine: {...}} or a build config"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="the judge's seed (its votes are sampled from it)")] = 0,
    unknown_as: Annotated[
        str, typer.Option("--unknown-as", help="an undecided first error counts as: no-error (-1) or miss")
    ] = "no-error",
) -> None:
    """Run an annotator on labelled steps and print ProcessBench F1, flag precision and coverage."""
    from prmforge.pipelines.eval_annotator import build_annotator, evaluate_annotator

    console = Console(width=None if sys.stdout.isatty() else 120)
    if not input_path.is_file():
        raise typer.BadParameter(f"{input_path} is not a file", param_hint="--input")
    if unknown_as not in _UNKNOWN_AS:
        raise typer.BadParameter(f"{unknown_as!r}: choose no-error or miss", param_hint="--unknown-as")
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"{config} is not a file", param_hint="--config")
    try:
        built = build_annotator(annotator, config=config, seed=seed)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from None
    except ValueError as err:
        hint = "--config" if annotator in ("equations", "z3", "judge") else "--annotator"
        raise typer.BadParameter(str(err), param_hint=hint) from None
    except (OSError, ImportError) as err:  # the judge's engine: a missing model, a missing extra
        console.print(f"[red]cannot build the {annotator} annotator: {err}[/red]")
        raise typer.Exit(code=1) from None
    try:
        report = evaluate_annotator(input_path, built, limit=limit, none_as=_UNKNOWN_AS[unknown_as])
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
    counted = "counted as -1" if unknown_as == "no-error" else "counted as a miss"
    table.add_row(f"first_error unknown ({counted})", str(report.unknown_first_error))
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
    if report.cost.completions:
        cost = report.cost
        table.add_row(
            "completions / generated tokens / cached",
            f"{cost.completions} / {cost.generated_tokens} / {cost.cached_completions}",
        )
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")


def _ratio(hits: int, total: int) -> str:
    """``hits/total = share``, or ``0/0`` when nothing was flagged."""
    return f"{hits}/{total} = {hits / total:.3f}" if total else "0/0"
