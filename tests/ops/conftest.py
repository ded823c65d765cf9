"""Fixtures of the registry and scheduler tests: no test touches the home directory, and a real
PostgreSQL server (started here, in a temporary folder) stands behind the PostgreSQL runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_fixtures import PostgresServer, postgres

from prmforge.ops.registry import Registry


@pytest.fixture(autouse=True)
def _registry_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default registry (and the scheduler's logs) live under this test's temporary folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("PRMFORGE_DB", raising=False)


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    """The database the registry tests run against: a SQLite file (test_postgres.py overrides it)."""
    return f"sqlite:///{tmp_path / 'registry.sqlite'}"


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    opened = Registry.open(registry_url)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the session (each test makes its own database in it)."""
    with postgres() as server:
        yield server
