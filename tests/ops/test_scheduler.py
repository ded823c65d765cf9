"""Schedules: crontab fields read as crontab means them (real APScheduler cron triggers), and schedules
added, listed and removed in the registry's database, through the API and ``prmforge schedule``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from ops_fixtures import write_config
from typer.testing import CliRunner

from prmforge.ops.registry import Registry
from prmforge.ops.scheduler import (
    MISFIRE_GRACE_S,
    Schedule,
    ScheduleError,
    add_schedule,
    crontab_weekdays,
    list_schedules,
    parse_cron,
    remove_schedule,
)
from prmforge.ops.scheduler_run import fire
from prmforge.pipelines.cli_builds import schedule_app, scheduler_app
from prmforge.schemas.errors import ConfigError

app = typer.Typer()
app.add_typer(schedule_app, name="schedule")
app.add_typer(scheduler_app, name="scheduler")
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("0-6/3", "sun,wed,sat"),
        ("5-7", "fri,sat,sun"),
        ("1,3", "mon,wed"),
        ("mon-fri", "mon-fri"),
    ],
)
def test_crontab_weekdays_become_apscheduler_names(field: str, expected: str) -> None:
    assert crontab_weekdays(field) == expected


@pytest.mark.parametrize(
    ("cron", "now", "expected"),
    [
        ("0 3 * * 1", datetime(2026, 11, 29, 12, 0), datetime(2026, 11, 30, 3, 0)),  # Sunday -> Monday 03:00
        ("0 3 * * 0", datetime(2026, 11, 30, 12, 0), datetime(2026, 12, 6, 3, 0)),  # crontab 0 is Sunday
        ("*/15 * * * * *", datetime(2026, 11, 29, 12, 0, 1), datetime(2026, 11, 29, 12, 0, 15)),
        ("30 0 12 1 * *", datetime(2026, 11, 29, 12, 0, 1), datetime(2026, 12, 1, 12, 0, 30)),
    ],
)
def test_cron_expressions_fire_when_crontab_says(cron: str, now: datetime, expected: datetime) -> None:
    trigger = parse_cron(cron)
    zone = trigger.timezone
    assert trigger.get_next_fire_time(None, now.replace(tzinfo=zone)) == expected.replace(tzinfo=zone)


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        (
            "1 2 3",
            "--cron: '1 2 3' has 3 field(s); give 5 (minute hour day month day-of-week) or 6 (second first)",
        ),
        (
            "61 * * * *",
            "--cron: '61 * * * *': Error validating expression '61': the last value (61) is higher than the "
            "maximum value (59)",
        ),
        ("0 0 * * 8", "--cron: day of week '8' is not within 0-7"),
    ],
)
def test_a_bad_cron_expression_says_why(cron: str, message: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_cron(cron)
    assert str(err.value) == message


def test_schedules_are_added_listed_and_removed(registry: Registry, tmp_path: Path) -> None:
    config = write_config(tmp_path / "nightly.yaml")
    added = add_schedule(registry, "nightly", config, "0 3 * * *", tmp_path / "out")
    assert added.next_run is not None
    assert (added.next_run.hour, added.next_run.minute, added.next_run.second) == (3, 0, 0)
    assert added == Schedule(
        "nightly", "0 3 * * *", str(config), str(tmp_path / "out"), MISFIRE_GRACE_S, added.next_run
    )
    add_schedule(registry, "adhoc", config, "*/5 * * * * *", tmp_path / "adhoc", misfire_grace_s=60)
    assert [(s.name, s.misfire_grace_s) for s in list_schedules(registry)] == [
        ("adhoc", 60),
        ("nightly", 3600),
    ]
    again = Registry.open(registry.url)  # another process's view: the job store is in the database
    try:
        assert [s.name for s in list_schedules(again)] == ["adhoc", "nightly"]
    finally:
        again.close()
    remove_schedule(registry, "adhoc")
    assert [s.name for s in list_schedules(registry)] == ["nightly"]


def test_a_schedule_that_cannot_be_added_says_why(registry: Registry, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    add_schedule(registry, "nightly", config, "0 3 * * *", tmp_path / "out")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "nightly"}, "NAME: a schedule 'nightly' exists; remove it first"),
        ({"name": "two words"}, "NAME: 'two words' must be letters, digits, '.', '_' or '-' (up to 100)"),
        ({"output": None}, "output: give --output or set `output:` in the configuration"),
        ({"misfire_grace_s": 0}, "--misfire-grace: must be >= 1 second (got 0)"),
    ]
    for changes, message in cases:
        arguments: dict[str, Any] = {
            "name": "new",
            "config": config,
            "cron": "0 3 * * *",
            "output": tmp_path / "o",
            **changes,
        }
        with pytest.raises(ScheduleError) as err:
            add_schedule(registry, **arguments)
        assert str(err.value) == message
    with pytest.raises(ConfigError, match=r"no such configuration file$"):
        add_schedule(registry, "new", tmp_path / "missing.yaml", "0 3 * * *", tmp_path / "o")
    with pytest.raises(ScheduleError, match=r"^NAME: no schedule 'missing'$"):
        remove_schedule(registry, "missing")


def test_the_schedule_commands(registry_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    added = invoke(
        "schedule", "add", "nightly", str(config), "--cron", "0 3 * * *", "-o", "out", "--db", registry_url
    )
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("schedule nightly added: '0 3 * * *', next run ")
    listed = json.loads(invoke("schedule", "list", "--json", "--db", registry_url).stdout)
    assert [{k: v for k, v in s.items() if k != "next_run"} for s in listed] == [
        {
            "name": "nightly",
            "cron": "0 3 * * *",
            "config": str(config),
            "output": str(Path("out").absolute()),
            "misfire_grace_s": 3600,
        },
    ]
    bad = invoke("schedule", "add", "x", str(config), "--cron", "* *", "-o", "out", "--db", registry_url)
    assert (bad.exit_code, " ".join(bad.stderr.split())) == (
        2,
        "error --cron: '* *' has 2 field(s); give 5 (minute hour day month day-of-week) or 6 (second first)",
    )
    assert (
        invoke("schedule", "remove", "nightly", "--db", registry_url).stdout == "schedule nightly removed\n"
    )
    gone = invoke("schedule", "remove", "nightly", "--db", registry_url)
    assert (gone.exit_code, gone.stderr.strip()) == (1, "error NAME: no schedule 'nightly'")


def test_the_scheduler_refuses_a_registry_it_cannot_open() -> None:
    result = invoke("scheduler", "run", "--db", "sqlite:////nonexistent-prmforge-dir/r.sqlite")
    assert (result.exit_code, " ".join(result.stderr.split())) == (
        2,
        "error sqlite:////nonexistent-prmforge-dir/r.sqlite: cannot open the build registry (unable to open "
        "database file)",
    )


def test_a_job_runs_only_inside_the_scheduler() -> None:
    with pytest.raises(RuntimeError, match=r"runs inside `prmforge scheduler run` only$"):
        fire("nightly", "/c.yaml")
