"""``prmforge export``: a build's rows as JSONL in an external PRM format, or in the Hugging Face Hub
layout (``--repo-id``), optionally pushed (``--push``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prmforge.pipelines.cli_common import console, err_console, user_errors

__all__ = ["export_app"]

export_app = typer.Typer(add_completion=False, no_args_is_help=True)


def _usage(message: str) -> typer.Exit:
    err_console.print(f"[red]error[/red] {message}")
    return typer.Exit(2)


def _hub(directory: Path, repo_id: str, output: Path, licence: str | None, push: bool, private: bool) -> None:
    from prmforge.reporting.hub_card import export_hub_folder

    with user_errors(1):
        shards = export_hub_folder(directory, repo_id, output, licence)
    rows = sum(s.rows for s in shards)
    console.print(f"wrote the Hub layout of {repo_id} to {output}: {rows} rows in {len(shards)} shard(s)")
    if not push:
        if private:
            err_console.print("[yellow]warning[/yellow] --private applies only with --push; nothing pushed")
        return
    from prmforge.reporting.hub_upload import push_folder

    with user_errors(1):
        result = push_folder(output, repo_id, private=private, log=lambda line: console.print(f"  {line}"))
    console.print(
        f"pushed {output} to dataset {repo_id}: {len(result.sent)} file(s) sent in {result.commits} "
        f"commit(s), {len(result.unchanged)} already there, {len(result.deleted)} stale deleted, "
        f"{result.retries} retried error(s)"
    )


@export_app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="a build directory")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="JSONL file to write; with --repo-id, the folder")
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="trl (prompt/completions/labels), math-shepherd (ки +/-), qwen (<extra_0>); default trl",
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="train, validation or test; default train")] = None,
    repo_id: Annotated[
        str | None,
        typer.Option(
            "--repo-id", help="ORG/NAME: write the Hub dataset layout (every split, Parquet + README.md)"
        ),
    ] = None,
    push: Annotated[
        bool, typer.Option("--push", help="with --repo-id: upload the folder (token from HF_TOKEN)")
    ] = False,
    private: Annotated[
        bool,
        typer.Option("--private", help="with --push: create the repo private (an existing one keeps its)"),
    ] = False,
    licence: Annotated[
        str | None, typer.Option("--license", help="with --repo-id: the card's licence id (default: derived)")
    ] = None,
) -> None:
    """Write a build's rows as JSONL in an external PRM format, or (``--repo-id``) as a Hub dataset folder."""
    if repo_id is not None:
        if fmt not in (None, "trl"):
            raise _usage(f"--format: the Hub layout is TRL stepwise plus prmforge columns (got {fmt!r})")
        if split is not None:
            raise _usage("--split: the Hub layout holds every split; leave --split out with --repo-id")
        _hub(directory, repo_id, output, licence, push, private)
        return
    if push or private or licence is not None:
        raise _usage("--push, --private and --license need --repo-id")
    from prmforge.pipelines.export import export_jsonl

    split = split or "train"
    fmt = fmt or "trl"
    if split not in ("train", "validation", "test"):
        raise _usage(f"--split: must be one of train, validation, test (got {split!r})")
    if fmt not in ("trl", "math-shepherd", "qwen"):
        raise _usage(f"--format: must be one of trl, math-shepherd, qwen (got {fmt!r})")
    with user_errors(1):
        count = export_jsonl(directory, fmt, output, split)  # type: ignore[arg-type]
    console.print(f"wrote {count} {split} rows to {output} ({fmt})")
