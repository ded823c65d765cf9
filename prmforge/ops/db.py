"""Where the build registry lives, and opening it: engine settings, migrations, the schema check.

The database, first found wins:

1. ``--db URL`` on the command line (any SQLAlchemy URL, e.g. ``postgresql+psycopg://u@host/db``);
2. ``$PRMFORGE_DB``;
3. ``sqlite:///$XDG_DATA_HOME/prmforge/registry.sqlite`` (``XDG_DATA_HOME`` defaults to
   ``~/.local/share``); its folder is created when missing.

SQLite is opened in WAL mode (readers never block the writer), with a busy timeout of
:data:`BUSY_TIMEOUT_S`, foreign keys on, and every transaction begun with ``BEGIN IMMEDIATE``: a writer
takes the write lock up front and waits for it, instead of failing when another process committed
between its read and its write (so two builds, or two schedulers, on one file lose no update).
PostgreSQL connections time out after :data:`CONNECT_TIMEOUT_S`.

Opening runs the Alembic migrations shipped in ``prmforge/ops/migrations`` (``alembic.command.upgrade``,
inside one transaction holding the database's lock, so two processes opening a new database at once
migrate it once). A database already at :data:`HEAD` is not migrated again (Alembic is not even loaded).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from prmforge.ops.registry_schema import VERSION_TABLE, Base
from prmforge.schemas.errors import PrmforgeError

__all__ = [
    "BUSY_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "HEAD",
    "MIGRATIONS",
    "RegistryError",
    "advisory_lock",
    "current_revision",
    "default_url",
    "display",
    "include_name",
    "make_registry_engine",
    "migrate",
    "resolve_url",
    "schema_differences",
]

BUSY_TIMEOUT_S = 15.0  # a registry write holds the lock for milliseconds; this is for a loaded disk
CONNECT_TIMEOUT_S = 10  # PostgreSQL: an unreachable server fails the open in this time, not the TCP default
HEAD = "0001"  # the newest revision in migrations/versions (a test checks it against Alembic's head)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ENV_VAR = "PRMFORGE_DB"
_MIGRATION_LOCK = 0x70726D66  # "prmf": PostgreSQL advisory lock around migrating


class RegistryError(PrmforgeError):
    """The registry cannot be opened, read or written; the message names the database (no password)."""


def data_dir() -> Path:
    """``$XDG_DATA_HOME/prmforge`` (``~/.local/share/prmforge`` when unset or not absolute, per XDG)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "prmforge"


def default_url() -> str:
    """``$PRMFORGE_DB`` if set, else the SQLite file in :func:`data_dir`."""
    return os.environ.get(ENV_VAR) or f"sqlite:///{data_dir() / 'registry.sqlite'}"


def resolve_url(explicit: str | None) -> str:
    return explicit or default_url()


def display(url: str) -> str:
    """The URL as it may be printed: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<malformed URL>"


def make_registry_engine(url: str) -> Engine:
    """An engine with the settings above; raises :class:`RegistryError` for a malformed or unusable URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise RegistryError(f"{display(url)}: not a database URL ({err})") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(url, parsed.database)
        args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            args["connect_timeout"] = CONNECT_TIMEOUT_S
        return create_engine(url, connect_args=args, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError) as err:
        raise RegistryError(f"{display(url)}: cannot use this database ({err})") from None


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:" and url == f"sqlite:///{data_dir() / 'registry.sqlite'}":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RegistryError(f"{display(url)}: cannot create its folder ({err})") from None
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # the driver begins nothing: "begin" below does
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def advisory_lock(connection: Connection, key: str | int) -> None:
    """Serialise transactions that check, then insert (PostgreSQL's transaction-scoped advisory lock).

    SQLite needs nothing: every transaction here holds its write lock from ``BEGIN IMMEDIATE``.
    """
    if connection.dialect.name == "postgresql":
        number = key if isinstance(key, int) else zlib.crc32(f"prmforge:{key}".encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": number})


def current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    row = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


def migrate(engine: Engine) -> None:
    """Bring the database to :data:`HEAD` (creating the tables in a new one)."""
    with engine.begin() as connection:
        advisory_lock(connection, _MIGRATION_LOCK)
        if current_revision(connection) == HEAD:
            return
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except CommandError as err:  # most likely: migrated by a newer prmforge, to a revision unknown here
            where = engine.url.render_as_string(hide_password=True)
            raise RegistryError(
                f"{where}: cannot migrate the build registry to revision {HEAD} ({err}); was it created by a "
                "newer prmforge?"
            ) from None


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Only our own tables are compared and migrated: a team database may hold others (APScheduler's job
    table is created by APScheduler itself)."""
    return type_ != "table" or name in Base.metadata.tables


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate finds between the database and the ORM metadata ([] when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "include_name": include_name, "version_table": VERSION_TABLE},
        )
        return list(compare_metadata(context, Base.metadata))
