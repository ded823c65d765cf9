"""Schedules: cron triggers that start builds, kept in APScheduler 3's ``SQLAlchemyJobStore`` in the
registry's own database (table :data:`JOBS_TABLE`, created by APScheduler), so they survive any
scheduler process and every scheduler on that database sees the same ones.

A schedule is one job: its id is the schedule's name, its function :data:`FIRE` (run by
``prmforge scheduler run``, see :mod:`prmforge.ops.scheduler_run`), its arguments the schedule's name, the
configuration file (absolute, read at each fire: edit it to change later builds) and the output folder
(or none: the configuration's ``output:``). Every job has ``coalesce=True`` (fires missed together run
once), ``max_instances=1`` and a misfire grace (default :data:`MISFIRE_GRACE_S`): a fire missed while no
scheduler ran starts once when one starts, if it is at most that late, else it is skipped.

``--cron``: five crontab fields (minute hour day month day-of-week) or six (second first). Days of the
week mean what they mean in crontab (0 and 7 are Sunday; APScheduler 3 alone would read 0 as Monday).
As in APScheduler, a day of the month and a day of the week both given must both match (crontab would
run on either). Times are in the local time zone of the machine that added the schedule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.jobstores.base import ConflictingIdError, JobLookupError  # type: ignore[import-untyped]
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

from prmforge.ops.registry import Registry
from prmforge.schemas.errors import PrmforgeError

__all__ = [
    "FIRE",
    "JOBS_TABLE",
    "MISFIRE_GRACE_S",
    "Schedule",
    "ScheduleError",
    "add_schedule",
    "crontab_weekdays",
    "job_store",
    "list_schedules",
    "parse_cron",
    "remove_schedule",
]

JOBS_TABLE = "prmforge_schedule_jobs"
FIRE = "prmforge.ops.scheduler_run:fire"
MISFIRE_GRACE_S = 3600  # one hour
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")  # crontab numbering, 7 = Sunday too
_NUMERIC_DOW = re.compile(r"(\*|\d)(?:-(\d))?(?:/(\d+))?")


class ScheduleError(PrmforgeError):
    """A schedule that cannot be added, found or removed; the message names the option."""


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    cron: str
    config: str
    output: str | None
    misfire_grace_s: int | None
    next_run: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "config": self.config,
            "output": self.output,
            "misfire_grace_s": self.misfire_grace_s,
            "next_run": None if self.next_run is None else self.next_run.isoformat(),
        }


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field in APScheduler's terms: numbers become names (``1-5`` -> ``mon,tue,
    wed,thu,fri``, ``0`` and ``7`` -> ``sun``, ``*/2`` -> ``sun,tue,thu,sat``); names pass as written."""
    if field in ("*", "?"):
        return "*"
    out: list[str] = []
    for token in field.split(","):
        match = _NUMERIC_DOW.fullmatch(token)
        if match is None:
            out.append(token)  # names (mon-fri) mean the same to both
            continue
        first, last, step = match.groups()
        if first == "*":
            low, high = 0, 6
        else:
            low = int(first)
            high = int(last) if last is not None else (6 if step else low)
        if not 0 <= low <= high <= 7:
            raise ScheduleError(f"--cron: day of week {token!r} is not within 0-7")
        for day in range(low, high + 1, int(step or 1)):
            name = WEEKDAYS[day]
            if name not in out:
                out.append(name)
    return ",".join(out)


def parse_cron(expr: str) -> Any:
    """A ``CronTrigger`` of 5 crontab fields, or of 6 with seconds first; :class:`ScheduleError` if not."""
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"--cron: {expr!r} has {len(fields)} field(s); give 5 (minute hour day month day-of-week) "
            "or 6 (second first)"
        )
    if len(fields) == 5:
        fields = ["0", *fields]
    second, minute, hour, day, month, dow = fields
    try:
        return CronTrigger(
            second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=crontab_weekdays(dow)
        )
    except ValueError as err:
        raise ScheduleError(f"--cron: {expr!r}: {err}") from None


def job_store(registry: Registry) -> Any:
    return SQLAlchemyJobStore(engine=registry.engine, tablename=JOBS_TABLE)


@contextmanager
def stored_jobs(registry: Registry) -> Iterator[Any]:
    """A scheduler that runs nothing (started paused), to read and change the stored jobs."""
    scheduler = BackgroundScheduler(jobstores={"default": job_store(registry)})
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def schedule_of(job: Any) -> Schedule:
    kwargs = dict(job.kwargs)
    grace = job.misfire_grace_time
    return Schedule(
        name=str(job.id),
        cron=str(kwargs.get("cron", "")),
        config=str(kwargs["config"]),
        output=None if kwargs.get("output") is None else str(kwargs["output"]),
        misfire_grace_s=None if grace is None else int(grace),
        next_run=getattr(job, "next_run_time", None),
    )


def add_schedule(
    registry: Registry,
    name: str,
    config: Path,
    cron: str,
    output: Path | None = None,
    misfire_grace_s: int = MISFIRE_GRACE_S,
) -> Schedule:
    """Store a new schedule (the configuration must load now; it is read again at every fire)."""
    from prmforge.pipelines.config import load_config

    if NAME.fullmatch(name) is None:
        raise ScheduleError(f"NAME: {name!r} must be letters, digits, '.', '_' or '-' (up to 100)")
    if misfire_grace_s < 1:
        raise ScheduleError(f"--misfire-grace: must be >= 1 second (got {misfire_grace_s})")
    trigger = parse_cron(cron)
    cfg = load_config(config)
    if output is None and cfg.output is None:
        raise ScheduleError("output: give --output or set `output:` in the configuration")
    kwargs = {
        "name": name,
        "config": str(config.absolute()),
        "output": None if output is None else str(output.absolute()),
        "cron": cron,
    }
    with stored_jobs(registry) as scheduler:
        try:
            job = scheduler.add_job(
                FIRE, trigger, id=name, name=name, kwargs=kwargs, coalesce=True, max_instances=1,
                misfire_grace_time=misfire_grace_s, replace_existing=False,
            )  # fmt: skip
        except ConflictingIdError:
            raise ScheduleError(f"NAME: a schedule {name!r} exists; remove it first") from None
        return schedule_of(job)


def list_schedules(registry: Registry) -> list[Schedule]:
    with stored_jobs(registry) as scheduler:
        return sorted((schedule_of(job) for job in scheduler.get_jobs()), key=lambda s: s.name)


def remove_schedule(registry: Registry, name: str) -> None:
    with stored_jobs(registry) as scheduler:
        try:
            scheduler.remove_job(name)
        except JobLookupError:
            raise ScheduleError(f"NAME: no schedule {name!r}") from None
