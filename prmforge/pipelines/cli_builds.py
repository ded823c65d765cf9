"""``prmforge builds``, ``prmforge schedule`` and ``prmforge scheduler``: the build registry and scheduled
builds (:mod:`prmforge.ops`).

Every command takes ``--db URL``; without it, ``$PRMFORGE_DB``, else the SQLite file
``$XDG_DATA_HOME/prmforge/registry.sqlite``. A registry that cannot be opened ends the command with
exit code 2.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from prmforge.pipelines.cli_common import console, err_console, user_errors

if TYPE_CHECKING:
    from prmforge.ops.registry import Registry
    from prmforge.ops.registry_schema import BuildInfo

__all__ = ["builds_app", "schedule_app", "scheduler_app"]

builds_app = typer.Typer(
    help="The build registry: list, show, cancel and retry builds.",
    add_completion=False,
    no_args_is_help=True,
)
schedule_app = typer.Typer(help="Cron schedules of builds.", add_completion=False, no_args_is_help=True)
scheduler_app = typer.Typer(help="Run scheduled builds.", add_completion=False, no_args_is_help=True)

Db = Annotated[
    str | None,
    typer.Option(
        "--db", help="registry URL; default $PRMFORGE_DB, else $XDG_DATA_HOME/prmforge/registry.sqlite"
    ),
]
CANCEL_WAIT_S = 120.0


def _open(db: str | None) -> Registry:
    from prmforge.ops.db import resolve_url
    from prmforge.ops.registry import Registry

    with user_errors(2):
        return Registry.open(resolve_url(db))


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _took(build: BuildInfo) -> str:
    if build.started_at is None:
        return "-"
    end = build.finished_at or datetime.now(build.started_at.tzinfo)
    seconds = (end - build.started_at).total_seconds()
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _rows(build: BuildInfo) -> str:
    written = next((s for s in build.stages if s.name == "write"), None)
    return "-" if written is None else str(written.rows_out)


def _status(build: BuildInfo) -> str:
    from prmforge.ops.registry import Registry

    if build.active and not Registry.driver_alive(build):
        return f"{build.status} (driver gone)"
    return build.status + (" (cancel requested)" if build.active and build.cancel_requested else "")


@builds_app.command("list")
def list_builds(
    status: Annotated[
        str | None, typer.Option(help="only builds with this status (queued, running, succeeded, ...)")
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    db: Db = None,
) -> None:
    """The newest builds in the registry."""
    from prmforge.ops.registry_schema import STATUSES

    if status is not None and status not in STATUSES:
        err_console.print(f"[red]error[/red] --status: must be one of {', '.join(STATUSES)} (got {status!r})")
        raise typer.Exit(2)
    if limit < 1:
        err_console.print(f"[red]error[/red] --limit: must be >= 1 (got {limit})")
        raise typer.Exit(2)
    registry = _open(db)
    try:
        with user_errors(1):
            builds = registry.list(status, limit)
    finally:
        registry.close()
    if as_json:
        print(json.dumps([b.to_json() for b in builds], indent=2))
        return
    table = Table(title=f"builds in {registry.shown}")
    for col in ("id", "status", "name", "schedule", "started", "took", "rows", "content", "output"):
        table.add_column(col, justify="right" if col in ("id", "rows") else "left")
    for b in builds:
        table.add_row(
            str(b.id), _status(b), b.name, b.schedule or "-", _when(b.started_at), _took(b), _rows(b),
            (b.content_hash or "-")[:12], b.output or "-",
        )  # fmt: skip
    console.print(table)


@builds_app.command("show")
def show_build(
    build_id: Annotated[int, typer.Argument(metavar="ID", help="the build's id")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    db: Db = None,
) -> None:
    """One build: its row, its stage counts, and whether the manifest on disk agrees with them."""
    from prmforge.ops.registry_manifest import check_manifest

    registry = _open(db)
    try:
        with user_errors(1):
            build = registry.get(build_id)
    finally:
        registry.close()
    check = check_manifest(build)
    if as_json:
        data = {
            "build": build.to_json(config=True),
            "manifest": {
                "compared": check.compared, "agrees": check.agrees,
                "differences": list(check.differences), "note": check.note,
            },
        }  # fmt: skip
        print(json.dumps(data, indent=2))
        return
    table = Table(title=f"build {build.id}: {build.name}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    fields = [
        ("status", _status(build)),
        ("config hash", build.config_hash or "-"),
        ("output", build.output or "-"),
        ("runner", build.runner or "-"),
        ("started by", build.started_by),
        ("schedule", build.schedule or "-"),
        ("retry of", "-" if build.retry_of is None else str(build.retry_of)),
        ("driver", f"pid {build.pid} on {build.host}" if build.pid is not None else "-"),
        ("queued", _when(build.queued_at)),
        ("started", _when(build.started_at)),
        ("finished", _when(build.finished_at)),
        ("shards", "-" if build.num_shards is None else str(build.num_shards)),
        ("content hash", build.content_hash or "-"),
        ("cost", json.dumps(build.cost) if build.cost else "-"),
        ("error", build.error or "-"),
    ]
    for name, value in fields:
        table.add_row(name, value)
    console.print(table)
    stages = Table(title="stages (registry)")
    for col in ("stage", "shards", "resumed", "rows in", "rows out", "quarantined", "seconds"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for s in build.stages:
        stages.add_row(s.name, str(s.shards), str(s.resumed), str(s.rows_in), str(s.rows_out),
                       str(s.quarantined), f"{s.seconds:.1f}")  # fmt: skip
    console.print(stages)
    if not check.compared:
        console.print(check.note)
    elif check.agrees:
        console.print(f"the manifest in {build.output} agrees")
    else:
        where = f"the manifest in {build.output} disagrees (it is the truth):"
        err_console.print(f"[yellow]warning[/yellow] {where}", soft_wrap=True)
        for line in check.differences:
            err_console.print(f"  {line}", highlight=False, soft_wrap=True)


@builds_app.command("cancel")
def cancel_build(
    build_id: Annotated[int, typer.Argument(metavar="ID", help="the build's id")],
    wait: Annotated[bool, typer.Option(help="wait until the build has stopped")] = True,
    db: Db = None,
) -> None:
    """Stop a running build cleanly, as Ctrl-C does (a rerun or `builds retry` resumes it).

    On this host its driver gets SIGINT; on another, the cancel is recorded and the driver, which polls
    the registry every few seconds, stops itself. A queued build is cancelled at once.
    """
    from prmforge.ops.registry import STALE_S, pid_alive, this_host

    registry = _open(db)
    try:
        with user_errors(1):
            build = registry.get(build_id)
            if not build.active:
                err_console.print(f"[red]error[/red] build {build_id} is not running (it is {build.status})")
                raise typer.Exit(1)
            build = registry.request_cancel(build_id)
            if build.status == "cancelled":
                console.print(f"build {build_id} was queued: cancelled")
                return
            pid = build.pid
            if build.host == this_host() and pid is not None:
                if not pid_alive(pid):
                    gone = registry.mark_gone(build_id)
                    console.print(f"build {build_id}: its driver is gone; marked {gone.status}")
                    return
                if not _beating(build):  # pid reused by another process? never signal that one
                    console.print(
                        f"build {build_id}: pid {pid} shows no heartbeat for over {STALE_S:.0f} s; not "
                        "signalled (cancel requested: a live driver stops itself when it reads it)"
                    )
                    return
                os.kill(pid, signal.SIGINT)
                console.print(f"build {build_id}: sent SIGINT to its driver (pid {pid})")
            else:
                console.print(
                    f"build {build_id} runs on {build.host}: cancel requested; its driver stops itself"
                )
            if wait:
                _wait_stopped(registry, build_id)
    finally:
        registry.close()


def _beating(build: BuildInfo) -> bool:
    from prmforge.ops.registry import STALE_S
    from prmforge.ops.registry_schema import utcnow

    beat = build.heartbeat_at or build.started_at or build.queued_at
    return (utcnow() - beat).total_seconds() < STALE_S


def _wait_stopped(registry: Registry, build_id: int) -> None:
    deadline = time.monotonic() + CANCEL_WAIT_S
    while (build := registry.get(build_id)).active:
        if time.monotonic() > deadline:
            err_console.print(
                f"[red]error[/red] build {build_id} is still {build.status} after {CANCEL_WAIT_S:.0f} s"
            )
            raise typer.Exit(1)
        time.sleep(0.2)
    console.print(f"build {build_id} {build.status}")


@builds_app.command("retry")
def retry_build(
    build_id: Annotated[int, typer.Argument(metavar="ID", help="the build's id")],
    workers: Annotated[int | None, typer.Option(help="worker processes (default: as recorded)")] = None,
    db: Db = None,
) -> None:
    """Rerun a build's recorded configuration into its output, resuming its committed shards.

    The rerun is recorded as a new build whose `retry of` is ID.
    """
    from pydantic import ValidationError

    from prmforge.ops.registry_recorder import BuildRecorder
    from prmforge.pipelines.cli_build import print_warning, run_build
    from prmforge.pipelines.config import BuildConfig

    registry = _open(db)
    with user_errors(1):
        try:
            build = registry.get(build_id)
        except BaseException:
            registry.close()
            raise
    problem = None
    if build.active:
        problem = (
            f"build {build_id} is still {build.status}: cancel it first (`prmforge builds cancel {build_id}`)"
        )
    elif build.config_json is None or build.output is None:
        problem = (
            f"build {build_id} never started: no configuration was recorded ({build.error or 'no error'})"
        )
    if problem is not None:
        registry.close()
        err_console.print(f"[red]error[/red] {problem}")
        raise typer.Exit(1)
    assert build.config_json is not None and build.output is not None  # noqa: PT018 - narrowed just above
    try:
        cfg = BuildConfig.model_validate(build.config_json)
    except ValidationError as err:
        registry.close()
        err_console.print(
            f"[red]error[/red] build {build_id}: its recorded configuration is not valid here: {err}"
        )
        raise typer.Exit(2) from None
    console.print(f"retrying build {build_id} ({build.name}) into {build.output}")
    recorder = BuildRecorder(registry, print_warning)
    run_build(cfg, Path(build.output), recorder, workers=workers, schedule=build.schedule, retry_of=build_id)


# -- schedules --------------------------------------------------------------------------------------


@schedule_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the schedule's name (letters, digits, . _ -)")],
    config: Annotated[Path, typer.Argument(help="YAML build configuration (read again at every fire)")],
    cron: Annotated[
        str, typer.Option(help='crontab fields: "MIN HOUR DAY MONTH DOW", or 6 with seconds first')
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="build directory")] = None,
    misfire_grace: Annotated[
        int, typer.Option(help="seconds a fire missed while no scheduler ran may still start late")
    ] = 3600,
    db: Db = None,
) -> None:
    """Add a schedule; `prmforge scheduler run` starts its builds."""
    from prmforge.ops.scheduler import add_schedule

    registry = _open(db)
    try:
        with user_errors(2):
            added = add_schedule(registry, name, config, cron, output, misfire_grace)
    finally:
        registry.close()
    console.print(f"schedule {added.name} added: {added.cron!r}, next run {_when(added.next_run)}")


@schedule_app.command("list")
def list_schedules(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False, db: Db = None
) -> None:
    """Every schedule, with its next run."""
    from prmforge.ops import scheduler

    registry = _open(db)
    try:
        schedules = scheduler.list_schedules(registry)
    finally:
        registry.close()
    if as_json:
        print(json.dumps([s.to_json() for s in schedules], indent=2))
        return
    table = Table(title="schedules")
    for col in ("name", "cron", "next run", "misfire grace", "config", "output"):
        table.add_column(col)
    for s in schedules:
        grace = "-" if s.misfire_grace_s is None else f"{s.misfire_grace_s}s"
        table.add_row(s.name, s.cron, _when(s.next_run), grace, s.config, s.output or "(config's)")
    console.print(table)


@schedule_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="the schedule's name")], db: Db = None) -> None:
    """Remove a schedule (its builds stay in the registry)."""
    from prmforge.ops.scheduler import remove_schedule

    registry = _open(db)
    try:
        with user_errors(1):
            remove_schedule(registry, name)
    finally:
        registry.close()
    console.print(f"schedule {name} removed")


@scheduler_app.callback()
def scheduler_group() -> None:
    """Run scheduled builds."""


@scheduler_app.command("run")
def run_scheduler(
    db: Db = None,
    log_dir: Annotated[
        Path | None, typer.Option(help="build logs (default $XDG_DATA_HOME/prmforge/logs)")
    ] = None,
    max_builds: Annotated[int, typer.Option(help="builds of different schedules at once")] = 4,
    stop_timeout: Annotated[
        float, typer.Option(help="on SIGTERM, seconds a build may take to stop before it is killed")
    ] = 120.0,
) -> None:
    """Start each schedule's builds until SIGTERM or Ctrl-C (then running builds are interrupted, a
    rerun resumes them, and it exits 0)."""
    from prmforge.ops.db import data_dir
    from prmforge.ops.scheduler_run import ScheduledBuilds

    if max_builds < 1:
        err_console.print(f"[red]error[/red] --max-builds: must be >= 1 (got {max_builds})")
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = _open(db)
    service = ScheduledBuilds(
        registry, log_dir or data_dir() / "logs", max_builds=max_builds, stop_timeout_s=stop_timeout
    )
    try:
        code = service.run()
    finally:
        registry.close()
    raise typer.Exit(code)
