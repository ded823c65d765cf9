"""``prmforge export``: a build's rows in an external PRM training format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prmforge.pipelines.cli_common import console, err_console, user_errors

__all__ = ["export_app"]

export_app = typer.Typer(add_completion=False, no_args_is_help=True)


@export_app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="a build directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="trl (prompt/completions/labels), math-shepherd (ки +/-), qwen (<extra_0>)"
        ),
    ] = "trl",
    split: Annotated[str, typer.Option(help="train, validation or test")] = "train",
) -> None:
    """Write a build's rows as JSONL in an external PRM training format."""
    from prmforge.pipelines.export import export_jsonl

    if split not in ("train", "validation", "test"):
        err_console.print(f"[red]error[/red] --split: must be one of train, validation, test (got {split!r})")
        raise typer.Exit(2)
    if fmt not in ("trl", "math-shepherd", "qwen"):
        err_console.print(f"[red]error[/red] --format: must be one of trl, math-shepherd, qwen (got {fmt!r})")
        raise typer.Exit(2)
    with user_errors(1):
        count = export_jsonl(directory, fmt, output, split)  # type: ignore[arg-type]
    console.print(f"wrote {count} {split} rows to {output} ({fmt})")
