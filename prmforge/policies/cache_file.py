"""The request cache's SQLite file: opened, checked, and set aside when it cannot be used.

:func:`open_cache_file` returns a connection to a file in the current format
(:data:`SCHEMA_VERSION`, stored in ``PRAGMA user_version``), in WAL mode with
the tables created. A cache is only a cache, so a file it cannot use (an older
format, tables of another shape, not a SQLite database at all, or one that fails
``PRAGMA quick_check``, such as a truncated file) is renamed to
``<name>.corrupt-<timestamp>`` beside it, together with its ``-wal`` and
``-shm``, with a :class:`CacheSetAsideWarning` naming both, and a fresh file is
started in its place. Processes that open the file at once take turns on an
``flock`` of ``<name>.lock``, so a file is checked, and if need be set aside,
by one process at a time. Errors that do not say the file is unusable (a lock
held past the timeout, a permission denied) are raised.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "CacheSetAsideWarning", "Transaction", "open_cache_file"]

SCHEMA_VERSION = 2
"""1 (implicit, ``user_version`` 0): hex-text keys and JSON objects; 2: 32-byte keys and zlib'd arrays."""
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS policies (id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS generations "
    "(key BLOB PRIMARY KEY, policy INTEGER NOT NULL REFERENCES policies (id), value BLOB NOT NULL)",
)
_COLUMNS = {"policies": ("id", "fingerprint"), "generations": ("key", "policy", "value")}
# Result codes that say the file itself is unusable; anything else (a busy lock, say) is raised.
_UNUSABLE = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_FORMAT})


class CacheSetAsideWarning(RuntimeWarning):
    """A cache file could not be used and was renamed aside; a fresh cache replaces it."""


class Transaction:
    """``with``: ``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the body raises."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def open_cache_file(path: Path, *, timeout_s: float) -> sqlite3.Connection:
    """A connection (autocommit mode) to the cache at ``path``, created or set aside and recreated as
    needed; waits up to ``timeout_s`` for other processes (the check's lock, SQLite's locks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with _locked(path.with_name(path.name + ".lock"), deadline):
        conn = _connect(path, timeout_s)
        try:
            problem = _problem_with(conn)
            if problem is not None:
                conn.close()
                _set_aside(path, problem)
                conn = _connect(path, timeout_s)
            _initialise(conn, deadline=deadline)
        except BaseException:
            conn.close()
            raise
    return conn


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in Transaction). Any thread may use
    # it: RequestCache serialises its own calls (a worker's shard threads share its connection).
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")  # reads nothing from the file yet
    return conn


@contextmanager
def _locked(path: Path, deadline: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing), waiting until ``deadline``."""
    with path.open("a+b") as handle:
        delay = 0.005
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"timed out waiting for the lock {path}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _problem_with(conn: sqlite3.Connection) -> str | None:
    """Why the connected file cannot serve as the cache, or None (a usable cache, or a new file)."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables:
            return None  # a new (or empty) file: initialised next
        if version != SCHEMA_VERSION:
            return f"format version {version}, this prmforge reads version {SCHEMA_VERSION}"
        for table, expected in _COLUMNS.items():
            columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
            if columns != expected:
                return f"table {table!r} has columns {columns}, expected {expected}"
        check = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF not in _UNUSABLE:
            raise
        return f"{type(exc).__name__}: {exc}"
    if check != ["ok"]:
        return f"integrity check failed: {'; '.join(check[:3])}"
    return None


def _set_aside(path: Path, problem: str) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    attempt = 1
    while target.exists():
        attempt += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{attempt}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):  # a stale log must never be replayed into the fresh file
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    warnings.warn(
        f"request cache {path} could not be used ({problem}); moved it to {target} and started a fresh cache",
        CacheSetAsideWarning,
        stacklevel=2,
    )


def _initialise(conn: sqlite3.Connection, *, deadline: float) -> None:
    """Put the file in WAL mode and create the tables, retrying while another process uses the file.

    Switching a new file to WAL can fail with SQLITE_BUSY without consulting the
    busy handler when several processes open it at once, hence the retry loop.
    """
    # NORMAL loses nothing when a process is killed; only a power cut can drop the last commits.
    conn.execute("PRAGMA synchronous = NORMAL")
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                with Transaction(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
