"""The build registry on a real database (SQLite here; test_postgres.py runs these on PostgreSQL):
migrations equal the ORM, every write reads back exactly, the schedule check-and-insert is atomic, and
two processes hammering one database lose no update."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text, update

from prmforge.ops.db import HEAD, MIGRATIONS, current_revision, default_url, resolve_url, schema_differences
from prmforge.ops.registry import STALE_S, BuildStart, Registry, RegistryError, UnknownBuild, this_host, who
from prmforge.ops.registry_schema import BuildRow, StageInfo, utcnow

TABLES = {"prmforge_alembic_version", "prmforge_builds", "prmforge_build_stages"}
TIMES = ("queued_at", "started_at", "finished_at", "heartbeat_at")


def start(name: str = "b", **changes: object) -> BuildStart:
    fields: dict[str, object] = {
        "name": name,
        "config_hash": "c" * 64,
        "config_json": {"name": name, "seed": 1},
        "output": f"/builds/{name}",
        "runner": "local",
        "started_by": "ana@box",
        "pid": os.getpid(),
        "host": this_host(),
    }
    fields.update(changes)
    return BuildStart(**fields)  # type: ignore[arg-type]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def without_times(data: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in data.items() if k not in TIMES}


# -- schema and migrations -----------------------------------------------------------------------


def test_a_new_database_is_migrated_to_exactly_the_orm_schema(registry: Registry) -> None:
    assert schema_differences(registry.engine) == []
    assert set(inspect(registry.engine).get_table_names()) >= TABLES
    with registry.engine.connect() as connection:
        assert current_revision(connection) == HEAD


def test_the_schema_check_sees_a_column_the_orm_lacks(registry: Registry) -> None:
    """The comparison is not vacuous: a column added behind the ORM's back is reported."""
    with registry.engine.begin() as connection:
        connection.execute(text("ALTER TABLE prmforge_builds ADD COLUMN extra INTEGER"))
    found = [(d[0], d[2], d[3].name) for d in schema_differences(registry.engine)]
    assert found == [("remove_column", "prmforge_builds", "extra")]


def test_head_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


def test_opening_again_keeps_the_rows_and_migrates_nothing(registry_url: str) -> None:
    first = Registry.open(registry_url)
    build_id = first.start_build(start())
    first.close()
    again = Registry.open(registry_url)
    try:
        assert [b.id for b in again.list()] == [build_id]
        assert schema_differences(again.engine) == []
    finally:
        again.close()


def test_a_database_of_a_newer_prmforge_is_refused(registry: Registry) -> None:
    with registry.engine.begin() as connection:
        connection.execute(text("UPDATE prmforge_alembic_version SET version_num = '0099'"))
    with pytest.raises(RegistryError, match=r"was it created by a newer prmforge\?$"):
        Registry.open(registry.url)


# -- writes read back exactly ----------------------------------------------------------------------


def test_a_build_reads_back_exactly_what_was_recorded(registry: Registry) -> None:
    build_id = registry.start_build(start("quick", schedule="nightly"))
    load = StageInfo("load", 2, 1, 10, 10, 0, 0.25)
    assert registry.record_progress(build_id, [load], 3) is False
    final = [StageInfo("load", 3, 1, 15, 15, 0, 0.5), StageInfo("write", 1, 0, 40, 38, 2, 0.0)]
    registry.finish(build_id, "succeeded", content_hash="a" * 64, cost={"completions": 7}, stages=final)
    info = registry.get(build_id)
    assert without_times(info.to_json(config=True)) == {
        "id": build_id,
        "name": "quick",
        "status": "succeeded",
        "config_hash": "c" * 64,
        "output": "/builds/quick",
        "runner": "local",
        "started_by": "ana@box",
        "schedule": "nightly",
        "retry_of": None,
        "pid": os.getpid(),
        "host": this_host(),
        "num_shards": 3,
        "content_hash": "a" * 64,
        "cost": {"completions": 7},
        "error": None,
        "cancel_requested": False,
        "stages": [
            {
                "name": "load",
                "shards": 3,
                "resumed": 1,
                "rows_in": 15,
                "rows_out": 15,
                "quarantined": 0,
                "seconds": 0.5,
            },
            {
                "name": "write",
                "shards": 1,
                "resumed": 0,
                "rows_in": 40,
                "rows_out": 38,
                "quarantined": 2,
                "seconds": 0.0,
            },
        ],
        "config": {"name": "quick", "seed": 1},
    }
    assert info.queued_at == info.started_at
    assert info.started_at is not None
    assert info.heartbeat_at is not None
    assert info.finished_at is not None
    assert info.started_at <= info.heartbeat_at <= info.finished_at
    assert info.finished_at.tzinfo == UTC


def test_list_is_newest_first_and_filters(registry: Registry) -> None:
    a = registry.start_build(start("a"))
    b = registry.start_build(start("b", schedule="s"))
    c = registry.start_build(start("c"))
    registry.finish(b, "failed", error="boom")
    registry.finish(c, "succeeded")
    assert [x.id for x in registry.list()] == [c, b, a]
    assert [x.id for x in registry.list("failed")] == [b]
    assert [x.id for x in registry.list("running")] == [a]
    assert [x.id for x in registry.list(limit=1)] == [c]
    assert [x.id for x in registry.list(schedule="s")] == [b]
    assert registry.get(b).error == "boom"


def test_an_unknown_build_is_named(registry: Registry) -> None:
    with pytest.raises(UnknownBuild, match=r": no build 99$"):
        registry.get(99)
    with pytest.raises(ValueError, match=r"^finish: running is not a final status$"):
        registry.finish(registry.start_build(start()), "running")


def test_a_cancel_request_reaches_the_driver_and_a_queued_build_is_cancelled_at_once(
    registry: Registry,
) -> None:
    running = registry.start_build(start())
    assert registry.request_cancel(running).status == "running"
    assert registry.record_progress(running, [], None) is True
    assert registry.cancel_requested(running) is True
    queued = registry.reserve("nightly", who(), os.getpid(), this_host()).build_id
    assert queued is not None
    info = registry.request_cancel(queued)
    assert (info.status, info.error, info.cancel_requested) == (
        "cancelled",
        "cancelled before it started",
        True,
    )
    assert registry.claim(queued, start()) is False
    finished = registry.start_build(start())
    registry.finish(finished, "succeeded")
    assert registry.request_cancel(finished).cancel_requested is False


# -- schedules: reserve, claim, stale drivers ------------------------------------------------------


def test_a_schedule_gets_one_active_build_at_a_time(registry: Registry) -> None:
    first = registry.reserve("nightly", "sched@box", os.getpid(), this_host())
    assert first.build_id is not None
    assert (first.blocking, first.stale) == (None, ())
    queued = registry.get(first.build_id)
    assert (queued.status, queued.name, queued.schedule, queued.config_hash) == (
        "queued",
        "nightly",
        "nightly",
        None,
    )
    blocked = registry.reserve("nightly", "sched@box", os.getpid(), this_host())
    assert blocked.build_id is None
    assert blocked.blocking is not None
    assert blocked.blocking.id == first.build_id
    assert registry.reserve("other", "sched@box", os.getpid(), this_host()).build_id is not None
    assert registry.claim(first.build_id, start("real", pid=12345)) is True
    claimed = registry.get(first.build_id)
    assert (claimed.status, claimed.name, claimed.pid, claimed.schedule) == (
        "running",
        "real",
        12345,
        "nightly",
    )
    with pytest.raises(RegistryError, match=rf"^build {first.build_id} is running, not queued"):
        registry.claim(first.build_id, start())
    registry.finish(first.build_id, "succeeded")
    assert registry.reserve("nightly", "sched@box", os.getpid(), this_host()).build_id is not None


def test_an_active_build_whose_driver_is_gone_is_marked_interrupted(registry: Registry) -> None:
    pid = dead_pid()
    gone = registry.start_build(start("gone", schedule="nightly", pid=pid))
    got = registry.reserve("nightly", "sched@box", os.getpid(), this_host())
    assert got.build_id is not None
    assert got.stale == (gone,)
    info = registry.get(gone)
    assert info.status == "interrupted"
    assert info.error is not None
    assert info.error.startswith(f"the driver (pid {pid} on {this_host()}) is gone (last heartbeat ")


def test_a_driver_on_another_host_lives_while_its_heartbeat_is_fresh(registry: Registry) -> None:
    remote = registry.start_build(start("remote", schedule="nightly", host="elsewhere", pid=1))
    assert registry.reserve("nightly", "sched@box", os.getpid(), this_host()).build_id is None
    old = utcnow() - timedelta(seconds=STALE_S + 5)
    with registry.engine.begin() as connection:
        connection.execute(update(BuildRow).where(BuildRow.id == remote).values(heartbeat_at=old))
    assert Registry.driver_alive(registry.get(remote)) is False
    got = registry.reserve("nightly", "sched@box", os.getpid(), this_host())
    assert got.stale == (remote,)
    assert registry.get(remote).status == "interrupted"


# -- two processes at once -------------------------------------------------------------------------

HAMMER = """
import os, sys, time
from pathlib import Path
from prmforge.ops.registry import BuildStart, Registry, this_host, who
from prmforge.ops.registry_schema import StageInfo

url, tag, go, rounds = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
registry = Registry.open(url)  # both processes migrate a new database at once

def start(name):
    pid, host = os.getpid(), this_host()
    return BuildStart(name, "h" * 64, {"name": name}, "/out/" + name, "local", who(), pid, host)

own = registry.start_build(start(tag))
shared = 0
for i in range(rounds):
    registry.record_progress(own, [StageInfo("load", i + 1, 0, i + 1, i + 1, 0, 0.0)], rounds)
    got = registry.reserve("shared", who(), os.getpid(), this_host())
    if got.build_id is None:
        continue
    assert registry.claim(got.build_id, start("shared-" + tag))
    active = [b.id for b in registry.list(limit=None, schedule="shared") if b.active]
    assert active == [got.build_id], active
    registry.record_progress(got.build_id, [StageInfo("load", 1, 0, 1, 1, 0, 0.0)], 1)
    registry.finish(got.build_id, "succeeded")
    shared += 1
registry.finish(own, "succeeded", stages=[StageInfo("load", rounds, 0, rounds, rounds, 0, 0.0)])
print(shared)
"""


@pytest.mark.slow
def test_two_processes_hammering_one_database_lose_no_update(registry_url: str, tmp_path: Path) -> None:
    rounds = 40
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, registry_url, tag, str(go), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    shared_runs = sum(int(out) for out, _ in results)
    registry = Registry.open(registry_url)
    try:
        builds = sorted(registry.list(limit=None), key=lambda b: b.id)
    finally:
        registry.close()
    own = [b for b in builds if b.schedule is None]
    assert sorted((b.name, b.status, b.stages[0].rows_in) for b in own) == [
        ("p1", "succeeded", rounds),
        ("p2", "succeeded", rounds),
    ]
    shared = [b for b in builds if b.schedule == "shared"]
    assert len(shared) == shared_runs
    assert {b.status for b in shared} == {"succeeded"}
    for before, after in itertools.pairwise(shared):
        assert before.finished_at is not None
        assert before.finished_at <= after.queued_at, "two builds of one schedule were active at once"


# -- where the registry lives ----------------------------------------------------------------------


def test_the_default_registry_follows_xdg_data_home_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_url() == f"sqlite:///{tmp_path}/data/prmforge/registry.sqlite"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{tmp_path}/home/.local/share/prmforge/registry.sqlite"
    monkeypatch.setenv("PRMFORGE_DB", "postgresql+psycopg://team@db/prmforge")
    assert default_url() == "postgresql+psycopg://team@db/prmforge"
    assert resolve_url("sqlite:///x.sqlite") == "sqlite:///x.sqlite"


def test_the_default_sqlite_file_is_created_with_its_folder(tmp_path: Path) -> None:
    registry = Registry.open(resolve_url(None))
    try:
        assert registry.shown == f"sqlite:///{tmp_path}/xdg-data/prmforge/registry.sqlite"
        with registry.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
    finally:
        registry.close()
    assert (tmp_path / "xdg-data" / "prmforge" / "registry.sqlite").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite:////nonexistent-prmforge-dir/r.sqlite",
            "sqlite:////nonexistent-prmforge-dir/r.sqlite: cannot open the build registry "
            "(unable to open database file)",
        ),
        (
            "nosuchdb://x",
            "nosuchdb://x: cannot use this database (Can't load plugin: sqlalchemy.dialects:nosuchdb)",
        ),
        (
            "::not a url::",
            "<malformed URL>: not a database URL (Could not parse SQLAlchemy URL from given URL string)",
        ),
    ],
)
def test_an_unusable_database_says_why(url: str, message: str) -> None:
    with pytest.raises(RegistryError) as err:
        Registry.open(url)
    assert str(err.value) == message


def test_a_file_that_is_no_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(RegistryError, match=r"cannot open the build registry \(file is not a database\)$"):
        Registry.open(f"sqlite:///{path}")


def test_a_password_never_appears_in_an_error() -> None:
    with pytest.raises(RegistryError) as err:
        Registry.open("postgresql+psycopg://ana:s3cret@127.0.0.1:1/prmforge")
    assert str(err.value).startswith(
        "postgresql+psycopg://ana:***@127.0.0.1:1/prmforge: cannot open the build"
    )
    assert "s3cret" not in str(err.value)
