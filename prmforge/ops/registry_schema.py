"""The registry's tables (SQLAlchemy 2 typed ORM) and the frozen snapshots the rest of the code reads.

``prmforge_builds``: one row per build attempt (a rerun or a retry is a new row; ``retry_of`` links a
retry to the build it retries). ``prmforge_build_stages``: per build, per stage, the shards seen and the
rows in/out and quarantined (from the build's stage events while it runs; from the manifest once it has
one), and the seconds the stage ran in this attempt. The migrations in ``prmforge/ops/migrations``
create exactly these tables (a test compares them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ACTIVE",
    "STATUSES",
    "VERSION_TABLE",
    "Base",
    "BuildInfo",
    "BuildRow",
    "StageInfo",
    "StageRow",
    "Status",
    "utcnow",
]

Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
STATUSES: tuple[Status, ...] = get_args(Status)
ACTIVE: tuple[Status, ...] = ("queued", "running")  # a driver is (or should be) working on it
VERSION_TABLE = "prmforge_alembic_version"  # not `alembic_version`: a team database may hold another app's

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("registry times must be timezone-aware")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class BuildRow(Base):
    __tablename__ = "prmforge_builds"
    __table_args__ = (Index("ix_prmforge_builds_schedule_status", "schedule", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[Status] = mapped_column(
        Enum(*STATUSES, name="status", native_enum=False, create_constraint=True, length=16), index=True
    )
    # Unknown while a scheduled build is queued: the build fills them in when it starts.
    config_hash: Mapped[str | None] = mapped_column(String(64))
    config_json: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    output: Mapped[str | None] = mapped_column(Text)
    runner: Mapped[str | None] = mapped_column(String(16))
    started_by: Mapped[str] = mapped_column(String(255))  # user@host
    schedule: Mapped[str | None] = mapped_column(String(200))
    retry_of: Mapped[int | None] = mapped_column(ForeignKey("prmforge_builds.id", ondelete="SET NULL"))
    pid: Mapped[int | None] = mapped_column(Integer)  # the driver (the scheduler's while queued)
    host: Mapped[str | None] = mapped_column(String(255))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    num_shards: Mapped[int | None] = mapped_column(Integer)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    cost: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    stages: Mapped[list[StageRow]] = relationship(
        back_populates="build", cascade="all, delete-orphan", order_by="StageRow.position"
    )


class StageRow(Base):
    __tablename__ = "prmforge_build_stages"

    build_id: Mapped[int] = mapped_column(
        ForeignKey("prmforge_builds.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # the order stages were first seen in
    shards: Mapped[int] = mapped_column(Integer)
    resumed: Mapped[int] = mapped_column(Integer)  # of those, reused from a previous run
    rows_in: Mapped[int] = mapped_column(BigInteger)
    rows_out: Mapped[int] = mapped_column(BigInteger)
    quarantined: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)

    build: Mapped[BuildRow] = relationship(back_populates="stages")


@dataclass(frozen=True, slots=True)
class StageInfo:
    name: str
    shards: int = 0
    resumed: int = 0
    rows_in: int = 0
    rows_out: int = 0
    quarantined: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, row: StageRow) -> StageInfo:
        return cls(row.name, row.shards, row.resumed, row.rows_in, row.rows_out, row.quarantined, row.seconds)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """A build's row as read, detached from any session."""

    id: int
    name: str
    status: Status
    config_hash: str | None
    config_json: dict[str, Any] | None
    output: str | None
    runner: str | None
    started_by: str
    schedule: str | None
    retry_of: int | None
    pid: int | None
    host: str | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    num_shards: int | None
    content_hash: str | None
    cost: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    stages: tuple[StageInfo, ...] = field(default=())

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @classmethod
    def of(cls, row: BuildRow) -> BuildInfo:
        return cls(
            id=row.id,
            name=row.name,
            status=row.status,
            config_hash=row.config_hash,
            config_json=row.config_json,
            output=row.output,
            runner=row.runner,
            started_by=row.started_by,
            schedule=row.schedule,
            retry_of=row.retry_of,
            pid=row.pid,
            host=row.host,
            queued_at=row.queued_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            heartbeat_at=row.heartbeat_at,
            num_shards=row.num_shards,
            content_hash=row.content_hash,
            cost=row.cost,
            error=row.error,
            cancel_requested=bool(row.cancel_requested),
            stages=tuple(StageInfo.of(s) for s in row.stages),
        )

    def to_json(self, *, config: bool = False) -> dict[str, Any]:
        """Plain JSON (times in ISO 8601, UTC); the configuration only when asked for."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "config_hash": self.config_hash,
            "output": self.output,
            "runner": self.runner,
            "started_by": self.started_by,
            "schedule": self.schedule,
            "retry_of": self.retry_of,
            "pid": self.pid,
            "host": self.host,
            "queued_at": _iso(self.queued_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "heartbeat_at": _iso(self.heartbeat_at),
            "num_shards": self.num_shards,
            "content_hash": self.content_hash,
            "cost": self.cost,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "stages": [
                {
                    "name": s.name,
                    "shards": s.shards,
                    "resumed": s.resumed,
                    "rows_in": s.rows_in,
                    "rows_out": s.rows_out,
                    "quarantined": s.quarantined,
                    "seconds": s.seconds,
                }
                for s in self.stages
            ],
        }
        if config:
            data["config"] = self.config_json
        return data
