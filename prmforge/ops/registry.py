"""The build registry: every build's row, read and written in short transactions.

The build directory's manifest stays the truth; the registry is an index of builds (who, when, where,
how it ended) that ``prmforge builds`` lists and the scheduler consults. Every method is one transaction
and returns frozen snapshots (:class:`BuildInfo`); database errors become :class:`RegistryError`.

Whether an active build's driver still lives (:meth:`Registry.driver_alive`): on this host, its pid
exists; on another host, its heartbeat (written every few seconds by the recorder) is younger than
:data:`STALE_S`.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from prmforge.ops.db import RegistryError, advisory_lock, display, make_registry_engine, migrate
from prmforge.ops.registry_schema import (
    ACTIVE,
    BuildInfo,
    BuildRow,
    StageInfo,
    StageRow,
    Status,
    utcnow,
)

__all__ = ["STALE_S", "BuildStart", "Registry", "Reservation", "UnknownBuild", "this_host", "who"]

STALE_S = 60.0  # a heartbeat older than this (30 missed beats) means the driver on another host is gone


class UnknownBuild(RegistryError):
    """No build has this id."""


def this_host() -> str:
    return socket.gethostname()


def who() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = str(os.getuid())
    return f"{user}@{this_host()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True


@dataclass(frozen=True, slots=True)
class BuildStart:
    """What a build's driver records when it starts."""

    name: str
    config_hash: str
    config_json: dict[str, Any]
    output: str
    runner: str
    started_by: str
    pid: int
    host: str
    schedule: str | None = None
    retry_of: int | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A scheduled fire's claim on its schedule: a queued build, or the active build that blocks it."""

    build_id: int | None
    blocking: BuildInfo | None = None
    stale: tuple[int, ...] = ()  # active builds found dead and marked interrupted


class Registry:
    """One registry database (see :mod:`prmforge.ops.db` for where it lives and how it is opened)."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url  # with its password: handed to the builds the scheduler starts (in their environment)

    @classmethod
    def open(cls, url: str) -> Registry:
        """Connect and migrate; raises :class:`RegistryError` saying why it cannot."""
        engine = make_registry_engine(url)
        try:
            migrate(engine)
        except SQLAlchemyError as err:
            engine.dispose()
            raise RegistryError(f"{display(url)}: cannot open the build registry ({_reason(err)})") from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, url)

    @property
    def shown(self) -> str:
        return display(self.url)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except SQLAlchemyError as err:
            raise RegistryError(f"{self.shown}: {_reason(err)}") from None

    # -- writing ---------------------------------------------------------------------------------
    def start_build(self, start: BuildStart) -> int:
        """A new row for a build starting now (``running``); returns its id."""
        now = utcnow()
        with self._tx() as s:
            row = BuildRow(status="running", queued_at=now, started_at=now, heartbeat_at=now)
            _fill(row, start)
            s.add(row)
            s.flush()
            return row.id

    def reserve(self, schedule: str, started_by: str, pid: int, host: str) -> Reservation:
        """For a fire of ``schedule``: a queued row, unless a build of it is still active (then nothing).

        The check and the insert are one transaction under the database's lock, so two schedulers on one
        database never both start a build of one schedule. An active build whose driver is gone is
        marked ``interrupted`` first.
        """
        with self._tx() as s:
            advisory_lock(s.connection(), f"schedule:{schedule}")
            active = s.scalars(
                select(BuildRow)
                .where(BuildRow.schedule == schedule, BuildRow.status.in_(ACTIVE))
                .options(selectinload(BuildRow.stages))
            ).all()
            # Read after the query: a build it saw end wrote its end time before committing, and the
            # query saw the commit (under READ COMMITTED a clock read before the query could precede it).
            now = utcnow()
            stale = []
            for row in active:
                info = BuildInfo.of(row)
                if self.driver_alive(info, now):
                    return Reservation(None, info)
                _mark_gone(row, now)
                stale.append(row.id)
            row = BuildRow(
                name=schedule, status="queued", started_by=started_by, schedule=schedule, pid=pid,
                host=host, queued_at=now, heartbeat_at=now,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return Reservation(row.id, None, tuple(stale))

    def claim(self, build_id: int, start: BuildStart) -> bool:
        """The build of a queued row starts: True, or False when the row was cancelled meanwhile."""
        now = utcnow()
        with self._tx() as s:
            row = s.get(BuildRow, build_id)
            if row is None:
                raise UnknownBuild(f"{self.shown}: no build {build_id}")
            if row.status == "cancelled":
                return False
            if row.status != "queued":
                raise RegistryError(f"build {build_id} is {row.status}, not queued: it cannot be started")
            _fill(row, start)
            row.status, row.started_at, row.heartbeat_at = "running", now, now
            return True

    def record_progress(self, build_id: int, stages: Sequence[StageInfo], num_shards: int | None) -> bool:
        """Stage counts and a heartbeat; returns whether a cancel was requested."""
        with self._tx() as s:
            row = s.get(BuildRow, build_id, options=[selectinload(BuildRow.stages)])
            if row is None:
                raise UnknownBuild(f"{self.shown}: no build {build_id}")
            row.heartbeat_at = utcnow()
            if num_shards is not None:
                row.num_shards = num_shards
            _set_stages(row, stages)
            return bool(row.cancel_requested)

    def finish(
        self,
        build_id: int,
        status: Status,
        *,
        error: str | None = None,
        content_hash: str | None = None,
        cost: dict[str, Any] | None = None,
        stages: Sequence[StageInfo] | None = None,
        num_shards: int | None = None,
    ) -> None:
        if status in ACTIVE:
            raise ValueError(f"finish: {status} is not a final status")
        with self._tx() as s:
            row = s.get(BuildRow, build_id, options=[selectinload(BuildRow.stages)])
            if row is None:
                raise UnknownBuild(f"{self.shown}: no build {build_id}")
            row.status, row.error, row.finished_at = status, error, utcnow()
            if content_hash is not None:
                row.content_hash = content_hash
            if cost is not None:
                row.cost = cost
            if num_shards is not None:
                row.num_shards = num_shards
            if stages is not None:
                _set_stages(row, stages)

    def request_cancel(self, build_id: int) -> BuildInfo:
        """Mark a cancel requested (its driver polls for it); a queued build is cancelled at once.

        Returns the build as it stands after; a build that is not active is left as it is.
        """
        with self._tx() as s:
            row = s.get(BuildRow, build_id, options=[selectinload(BuildRow.stages)])
            if row is None:
                raise UnknownBuild(f"{self.shown}: no build {build_id}")
            if row.status in ACTIVE:
                row.cancel_requested = True
            if row.status == "queued":
                row.status, row.finished_at, row.error = "cancelled", utcnow(), "cancelled before it started"
            return BuildInfo.of(row)

    def mark_gone(self, build_id: int) -> BuildInfo:
        """An active build whose driver is gone becomes ``interrupted`` (saying so in its error)."""
        with self._tx() as s:
            row = s.get(BuildRow, build_id, options=[selectinload(BuildRow.stages)])
            if row is None:
                raise UnknownBuild(f"{self.shown}: no build {build_id}")
            if row.status in ACTIVE:
                _mark_gone(row, utcnow())
            return BuildInfo.of(row)

    # -- reading ---------------------------------------------------------------------------------
    def get(self, build_id: int) -> BuildInfo:
        with self._tx() as s:
            row = s.get(BuildRow, build_id, options=[selectinload(BuildRow.stages)])
            if row is None:
                raise UnknownBuild(f"{self.shown}: no build {build_id}")
            return BuildInfo.of(row)

    def list(
        self, status: Status | None = None, limit: int | None = 20, schedule: str | None = None
    ) -> list[BuildInfo]:
        """Newest first."""
        query = select(BuildRow).options(selectinload(BuildRow.stages)).order_by(BuildRow.id.desc())
        if status is not None:
            query = query.where(BuildRow.status == status)
        if schedule is not None:
            query = query.where(BuildRow.schedule == schedule)
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as s:
            return [BuildInfo.of(r) for r in s.scalars(query).all()]

    def cancel_requested(self, build_id: int) -> bool:
        with self._tx() as s:
            flag = s.scalar(select(BuildRow.cancel_requested).where(BuildRow.id == build_id))
            return bool(flag)

    @staticmethod
    def driver_alive(info: BuildInfo, now: datetime | None = None) -> bool:
        """Whether the process that should finish this active build still exists (see the module doc)."""
        if info.host == this_host() and info.pid is not None:
            return pid_alive(info.pid)
        beat = info.heartbeat_at or info.started_at or info.queued_at
        return (now or utcnow()) - beat < timedelta(seconds=STALE_S)

    def touch(self, build_id: int) -> None:
        """A heartbeat alone (the scheduler's, for a queued build whose process is starting)."""
        with self._tx() as s:
            s.execute(update(BuildRow).where(BuildRow.id == build_id).values(heartbeat_at=utcnow()))


def _fill(row: BuildRow, start: BuildStart) -> None:
    row.name, row.config_hash, row.config_json = start.name, start.config_hash, start.config_json
    row.output, row.runner, row.started_by = start.output, start.runner, start.started_by
    row.pid, row.host = start.pid, start.host
    row.schedule = start.schedule if start.schedule is not None else row.schedule
    row.retry_of = start.retry_of if start.retry_of is not None else row.retry_of


def _set_stages(row: BuildRow, stages: Sequence[StageInfo]) -> None:
    existing = {s.name: s for s in row.stages}
    keep = []
    for position, info in enumerate(stages):
        stage = existing.get(info.name) or StageRow(name=info.name)
        stage.position, stage.shards, stage.resumed = position, info.shards, info.resumed
        stage.rows_in, stage.rows_out, stage.quarantined = info.rows_in, info.rows_out, info.quarantined
        stage.seconds = info.seconds
        keep.append(stage)
    row.stages = keep


def _mark_gone(row: BuildRow, now: datetime) -> None:
    beat = row.heartbeat_at or row.queued_at
    where = f"pid {row.pid} on {row.host}" if row.pid is not None else "its driver"
    row.status, row.finished_at = "interrupted", now
    row.error = f"the driver ({where}) is gone (last heartbeat {beat.isoformat(timespec='seconds')})"


def _reason(err: SQLAlchemyError) -> str:
    """The driver's message, without SQLAlchemy's statement and documentation link."""
    orig = getattr(err, "orig", None)
    return " ".join(str(orig if orig is not None else err).split())
