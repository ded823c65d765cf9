"""The registry on a real PostgreSQL 15 server, started by the ``postgres_server`` fixture (conftest.py):
the registry tests of test_registry.py again, each on a new database, and a real build recorded into it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ops_fixtures import PostgresServer, kill_if_running, postgres, wait_for, write_config
from test_registry import (  # the same tests, collected here with the PostgreSQL `registry_url` below
    test_a_build_reads_back_exactly_what_was_recorded,
    test_a_cancel_request_reaches_the_driver_and_a_queued_build_is_cancelled_at_once,
    test_a_database_of_a_newer_prmforge_is_refused,
    test_a_driver_on_another_host_lives_while_its_heartbeat_is_fresh,
    test_a_new_database_is_migrated_to_exactly_the_orm_schema,
    test_a_schedule_gets_one_active_build_at_a_time,
    test_an_active_build_whose_driver_is_gone_is_marked_interrupted,
    test_an_unknown_build_is_named,
    test_list_is_newest_first_and_filters,
    test_opening_again_keeps_the_rows_and_migrates_nothing,
    test_the_schema_check_sees_a_column_the_orm_lacks,
    test_two_processes_hammering_one_database_lose_no_update,
)

from prmforge.ops.registry import Registry
from prmforge.ops.registry_manifest import check_manifest
from prmforge.ops.scheduler import add_schedule, list_schedules, remove_schedule
from prmforge.pipelines.config import load_config
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest

__all__ = [
    "test_a_build_reads_back_exactly_what_was_recorded",
    "test_a_cancel_request_reaches_the_driver_and_a_queued_build_is_cancelled_at_once",
    "test_a_database_of_a_newer_prmforge_is_refused",
    "test_a_driver_on_another_host_lives_while_its_heartbeat_is_fresh",
    "test_a_new_database_is_migrated_to_exactly_the_orm_schema",
    "test_a_schedule_gets_one_active_build_at_a_time",
    "test_an_active_build_whose_driver_is_gone_is_marked_interrupted",
    "test_an_unknown_build_is_named",
    "test_list_is_newest_first_and_filters",
    "test_opening_again_keeps_the_rows_and_migrates_nothing",
    "test_the_schema_check_sees_a_column_the_orm_lacks",
    "test_two_processes_hammering_one_database_lose_no_update",
]

pytestmark = pytest.mark.slow
PRMFORGE = Path(sys.executable).with_name("prmforge")


@pytest.fixture
def registry_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


def test_the_server_is_postgresql(registry: Registry) -> None:
    assert registry.engine.dialect.name == "postgresql"
    with registry.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW server_version").scalar().startswith("15.")


def test_a_build_is_recorded_in_postgresql(registry_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "pg.yaml", count=6, shard_size=3)
    out = tmp_path / "out"
    done = subprocess.run(
        [str(PRMFORGE), "build", str(config), "--output", str(out), "--db", registry_url],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    registry = Registry.open(registry_url)
    try:
        [build] = registry.list()
    finally:
        registry.close()
    assert (build.name, build.status, build.num_shards) == ("pg", "succeeded", 2)
    assert build.content_hash == Manifest.read(out).content_hash
    assert check_manifest(build).agrees


def test_schedules_are_stored_in_postgresql(registry: Registry, tmp_path: Path) -> None:
    config = write_config(tmp_path / "pg.yaml")
    add_schedule(registry, "nightly", config, "0 3 * * *", tmp_path / "out")
    assert [(s.name, s.cron, s.output) for s in list_schedules(registry)] == [
        ("nightly", "0 3 * * *", str(tmp_path / "out"))
    ]
    remove_schedule(registry, "nightly")
    assert list_schedules(registry) == []


def test_a_registry_that_goes_down_mid_build_neither_stops_nor_changes_the_build(tmp_path: Path) -> None:
    """The server dies while a recorded build runs: the build warns, finishes and exits 0 with the content of
    an unrecorded build; its row, once the server is back, is a running build whose driver is gone."""
    # Ten shards of enough work that the build is still running well after the server stops.
    config = write_config(
        tmp_path / "outage.yaml",
        count=40,
        shard_size=4,
        generate={"rollouts_per_problem": 4},
        annotate=[{"kind": "mc", "n": 32, "early_stop": False}],
    )
    out = tmp_path / "out"
    with postgres() as server:
        url = server.create_database()
        proc = subprocess.Popen(
            [str(PRMFORGE), "build", str(config), "--output", str(out), "--db", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            registry = Registry.open(url)

            def running() -> int | None:
                builds = registry.list(limit=1)
                assembled = builds and any(s.name == "assemble" for s in builds[0].stages)
                return builds[0].id if assembled and builds[0].status == "running" else None

            build_id = wait_for(running, "the build running with a committed shard")
            registry.close()
            server.stop("immediate")
            _, stderr = proc.communicate(timeout=300)
        finally:
            kill_if_running(proc)
        assert proc.returncode == 0, stderr
        warnings = " ".join(stderr.split())
        assert "; the build goes on; its registry row lags" in warnings
        assert f"; build {build_id} could not be recorded as succeeded" in warnings
        clean = LocalRunner().run(load_config(config), tmp_path / "clean", workers=0)
        assert Manifest.read(out).content_hash == clean.content_hash
        server.start()  # on the same port, unless another process took it meanwhile (url has the old one)
        registry = Registry.open(server.url(url.rsplit("/", 1)[1]))
        try:
            stale = registry.get(build_id)
        finally:
            registry.close()
        assert (stale.status, Registry.driver_alive(stale)) == ("running", False)
