"""``prmforge report`` (a build's HTML report) and ``prmforge quarantine`` (its quarantined rows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from prmforge.pipelines.cli_common import console, err_console, user_errors

__all__ = ["report_app"]

report_app = typer.Typer(add_completion=False, no_args_is_help=True)


@report_app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="a build directory")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file to write (default DIR/report.html)")
    ] = None,
) -> None:
    """Write one self-contained HTML report of a build: label balance, first errors, agreement, cost,
    quality against truth, quarantined rows, dedup (inline SVG, no external URL)."""
    from prmforge.reporting.report import write_report

    with user_errors(1):
        path = write_report(directory, output)
    console.print(f"wrote {path}")


@report_app.command()
def quarantine(
    directory: Annotated[Path, typer.Argument(help="a build directory")],
    stage: Annotated[str | None, typer.Option(help="only this stage's rows (load, generate, ...)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (full stored preview) instead")] = False,
    limit: Annotated[int | None, typer.Option(help="show at most this many rows")] = None,
    excluded: Annotated[
        bool, typer.Option("--excluded", help="list the rows left out by decision instead")
    ] = False,
) -> None:
    """List a build's quarantined rows: stage, source, line, field, reason and a preview of the raw row."""
    from prmforge.reporting.quarantine import escape_preview, list_quarantined

    if limit is not None and limit < 0:
        err_console.print(f"[red]error[/red] --limit: must be >= 0 (got {limit})")
        raise typer.Exit(2)
    with user_errors(2):
        listing = list_quarantined(directory, stage, limit, excluded=excluded)
    if as_json:
        console.print_json(json.dumps(listing.to_json()))
        return
    what = "left out" if excluded else "quarantined"
    if listing.total == 0:
        console.print(f"no rows {what}" + (f" in stage {stage}" if stage else ""))
        return
    table = Table(title=f"{what} rows", caption=f"{len(listing.entries)} of {listing.total} shown")
    for col in ("stage", "source", "line", "field", "reason", "preview"):
        table.add_column(col, overflow="fold", justify="right" if col == "line" else "left")
    for e in listing.entries:
        cells = (e.stage, e.source, str(e.index), e.field, e.reason, escape_preview(e.preview))
        table.add_row(*(Text(c) for c in cells))  # Text: a row's "[...]" is never read as markup
    console.print(table)
