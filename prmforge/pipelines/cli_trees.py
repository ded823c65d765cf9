"""``prmforge relabel`` and ``prmforge pairs``: labels and preference pairs from a build's stored trees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.console import Console

from prmforge.schemas.errors import PrmforgeError

__all__ = ["trees_app"]

trees_app = typer.Typer(add_completion=False, no_args_is_help=True)
console = Console()


def _write(rows: list[dict[str, object]], table: pa.Table | None, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    if output.suffix == ".jsonl":
        temporary.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    elif output.suffix == ".parquet":
        pq.write_table(table if table is not None else pa.Table.from_pylist(rows), temporary)
    else:
        raise typer.BadParameter("must end in .parquet or .jsonl", param_hint="--output")
    temporary.replace(output)


@trees_app.command("relabel")
def relabel_command(
    directory: Annotated[Path, typer.Argument(help="a build directory with a search annotator")],
    rule: Annotated[str, typer.Option(help="mc, rest, hrm, genprm or pav")],
    output: Annotated[Path, typer.Option(help="where to write the labels (.parquet or .jsonl)")],
    stage: Annotated[str, typer.Option(help="the search annotator's stage")] = "annotate-omegaprm",
    epsilon: Annotated[float, typer.Option(help="genprm: the relative-progress threshold")] = 0.8,
) -> None:
    """Write a new label source re-derived from the stored search trees (no generation)."""
    from prmforge.pipelines import tables
    from prmforge.pipelines.trees import RULES, relabel

    if rule not in RULES:
        raise typer.BadParameter(f"choose one of {', '.join(RULES)}", param_hint="--rule")
    try:
        labels = relabel(directory, rule, stage=stage, epsilon=epsilon)
    except (PrmforgeError, ValueError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(code=1) from None
    table = tables.encode("labels", labels)
    _write(table.to_pylist(), table, output)
    decided = sum(1 for lab in labels if lab.first_error is not None)
    console.print(f"wrote {len(labels)} labels ({decided} decided) under rule {rule} to {output}")


@trees_app.command("pairs")
def pairs_command(
    directory: Annotated[Path, typer.Argument(help="a build directory with a search annotator")],
    output: Annotated[Path, typer.Option(help="where to write the pairs (.parquet or .jsonl)")],
    stage: Annotated[str, typer.Option(help="the search annotator's stage")] = "annotate-omegaprm",
    margin: Annotated[float, typer.Option(help="least value margin between chosen and rejected")] = 0.5,
    min_edit_distance: Annotated[int, typer.Option(help="least edit distance between the two steps")] = 1,
) -> None:
    """Write step preference pairs (prompt, chosen, rejected, and their values) mined from the trees."""
    from prmforge.pipelines.trees import mine_pairs

    try:
        rows = mine_pairs(directory, stage=stage, margin=margin, min_edit_distance=min_edit_distance)
    except (PrmforgeError, ValueError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(code=1) from None
    _write(rows, None, output)
    console.print(f"wrote {len(rows)} step preference pairs to {output}")
