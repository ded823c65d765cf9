"""``prmforge build``: run a build with live per-stage counts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from prmforge.pipelines.cli_common import console, err_console, load_or_exit, user_errors
from prmforge.pipelines.cli_stats import print_summary
from prmforge.pipelines.runners.builddir import GLOBAL
from prmforge.pipelines.runners.shard import StageEvent

if TYPE_CHECKING:
    from prmforge.ops.registry_recorder import BuildRecorder
    from prmforge.pipelines.config import BuildConfig

__all__ = ["StageBoard", "build_app", "print_warning", "run_build"]

build_app = typer.Typer(add_completion=False, no_args_is_help=True)


class StageBoard:
    """Live per-stage counts while a build runs."""

    def __init__(self, num_shards: int, stages: tuple[str, ...]) -> None:
        self.num_shards = num_shards
        self.rows: dict[str, dict[str, float]] = {
            s: {
                "shards": 0,
                "resumed": 0,
                "in": 0,
                "out": 0,
                "quarantined": 0,
                "seconds": 0.0,
                "generate": 0.0,
            }
            for s in stages
        }
        self.started = time.perf_counter()

    def __call__(self, event: StageEvent) -> None:
        row = self.rows.setdefault(
            event.stage,
            {"shards": 0, "resumed": 0, "in": 0, "out": 0, "quarantined": 0, "seconds": 0.0, "generate": 0.0},
        )
        row["shards"] += 1
        row["global"] = float(event.shard == GLOBAL)  # a global stage runs once, over every shard
        row["resumed"] += int(event.resumed)
        row["in"] += event.counts.rows_in
        row["out"] += event.counts.rows_out
        row["quarantined"] += event.counts.quarantined
        row["seconds"] += event.seconds
        row["generate"] += event.generate_seconds

    def render(self) -> Table:
        table = Table(title=f"build progress ({time.perf_counter() - self.started:.1f}s)")
        table.add_column("stage")
        table.add_column("progress", width=24)
        for col in ("shards", "rows in", "rows out", "quarantined", "stage s", "in generate s"):
            table.add_column(col, justify="right")
        for stage, r in self.rows.items():
            total = 1 if r.get("global") else self.num_shards
            done = f"{int(r['shards'])}/{total}" + (f" ({int(r['resumed'])} resumed)" if r["resumed"] else "")
            table.add_row(
                stage,
                ProgressBar(total=total, completed=int(r["shards"]), width=24),
                done,
                str(int(r["in"])),
                str(int(r["out"])),
                str(int(r["quarantined"])),
                f"{r['seconds']:.1f}",
                f"{r['generate']:.1f}",
            )
        return table


@build_app.command()
def build(
    config: Annotated[Path, typer.Argument(help="YAML build configuration")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="build directory (overrides the config)")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (0: in this process)")] = None,
    restart: Annotated[bool, typer.Option(help="discard an existing build in the output directory")] = False,
    runner: Annotated[
        str | None, typer.Option(help="local, beam or ray (overrides runner.kind; same content hash)")
    ] = None,
    beam_runner: Annotated[
        str | None, typer.Option(help="Beam runner: FnApiRunner, FlinkRunner, SparkRunner, DataflowRunner")
    ] = None,
    beam_option: Annotated[
        list[str] | None,
        typer.Option(help="a Beam pipeline option as written (repeatable): --beam-option=--flink_master=H:P"),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="an existing Ray cluster (auto, ray://HOST:10001); default: local Ray")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="build registry (SQLAlchemy URL); default $PRMFORGE_DB, else "
            "$XDG_DATA_HOME/prmforge/registry.sqlite. Given here, it must open or nothing is built",
        ),
    ] = None,
    schedule: Annotated[str | None, typer.Option(hidden=True, help="the schedule that started it")] = None,
    build_id: Annotated[int | None, typer.Option(hidden=True, help="the queued row to claim")] = None,
) -> None:
    """Run a build; rerunning the same build resumes it, skipping committed shards.

    Adding annotators to a finished build's config, or changing its `fuse:` or `split:`, changes it in
    place: only the new sources and what depends on them are computed (no generation again). Ctrl-C
    stops it; rerun to resume. The build is recorded in the build registry (`prmforge builds list`); an
    unreachable registry only warns, unless --db was given.
    """
    from prmforge.ops.registry_recorder import open_recorder
    from prmforge.pipelines.runners.select import with_overrides

    cfg = load_or_exit(config)
    with user_errors(2):
        cfg = with_overrides(cfg, runner, beam_runner, beam_option or (), ray_address)
    out = output or cfg.output
    if out is None:
        err_console.print("[red]error[/red] output: give --output or set `output:` in the configuration")
        raise typer.Exit(2)
    if workers is not None and workers < 0:
        err_console.print(f"[red]error[/red] --workers: must be >= 0 (got {workers})")
        raise typer.Exit(2)
    with user_errors(2, prefix="--db: " if db else ""):
        recorder = open_recorder(db, strict=db is not None or build_id is not None, warn=print_warning)
    run_build(cfg, out, recorder, workers=workers, restart=restart, schedule=schedule, build_id=build_id)


def print_warning(message: str) -> None:
    err_console.print(f"[yellow]warning[/yellow] {message}", highlight=False, soft_wrap=True)


def run_build(
    cfg: BuildConfig,
    out: Path,
    recorder: BuildRecorder,
    *,
    workers: int | None = None,
    restart: bool = False,
    schedule: str | None = None,
    build_id: int | None = None,
    retry_of: int | None = None,
) -> None:
    """Build ``cfg`` into ``out`` with the live board, recorded by ``recorder`` (which it closes); ends
    with typer's exit codes (1: the build failed, 130: interrupted or cancelled)."""
    from prmforge.ops.registry_recorder import CancelledBeforeStart
    from prmforge.pipelines.runners.interrupt import EXIT_INTERRUPTED, BuildInterrupted
    from prmforge.pipelines.runners.select import make_runner

    with user_errors(1):
        board = StageBoard(0, ())  # the runner tells the shard count once it has planned
        try:
            with (
                recorder.recording(cfg, out, schedule=schedule, build_id=build_id, retry_of=retry_of),
                Live(board.render(), console=console, refresh_per_second=4, transient=False) as live,
            ):

                def on_event(event: StageEvent) -> None:
                    board(event)
                    recorder.on_event(event)
                    live.update(board.render())

                def on_plan(num_shards: int) -> None:
                    board.num_shards = num_shards
                    recorder.on_plan(num_shards)
                    live.update(board.render())

                result = make_runner(cfg, on_event, on_plan).run(cfg, out, restart=restart, workers=workers)
                recorder.finished(result)
        except CancelledBeforeStart as err:
            err_console.print(str(err))
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (BuildInterrupted, KeyboardInterrupt) as err:
            message = str(err) if isinstance(err, BuildInterrupted) else "interrupted; rerun to resume"
            err_console.print(message)
            raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print()
    verb = "resumed" if result.resumed else "built"
    grown = f"; grew by {', '.join(result.grown)}" if result.grown else ""
    other = [s for s in result.reconfigured if s != "annotate"]
    grown += f"; changed {', '.join(f'`{s}:`' for s in other)} in place" if other else ""
    console.print(
        f"{verb} {out}: {result.shards_run} shard(s) run, {result.shards_skipped} already committed{grown}",
        soft_wrap=True,
    )
    print_summary(out)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning[/yellow] {warning}")
    if result.problems:
        for problem in result.problems:
            err_console.print(f"[red]error[/red] {problem}")
        raise typer.Exit(1)
