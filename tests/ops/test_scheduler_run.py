"""``prmforge scheduler run`` as real processes, with real APScheduler cron triggers (6-field, seconds
first) and real builds: schedules survive a restart, overlapping fires never run twice, a fire missed
while no scheduler ran starts once, a failed build is recorded and the scheduler goes on, and SIGTERM
stops it cleanly (exit 0, its running build interrupted). Every wait polls with a generous bound."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from ops_fixtures import WAIT_S, builds_of, kill_if_running, wait_for, write_config

from prmforge.ops.registry import BuildStart, Registry, pid_alive, this_host
from prmforge.ops.registry_schema import BuildInfo
from prmforge.ops.scheduler import add_schedule, list_schedules

pytestmark = pytest.mark.slow
SCHEDULER = (
    "from prmforge.pipelines.cli_builds import scheduler_app; scheduler_app(prog_name='prmforge scheduler')"
)
EVERY_SECOND = "* * * * * *"
Starter = Callable[[], "Scheduler"]


class Scheduler:
    """One `prmforge scheduler run` process, its log in a file."""

    _count = itertools.count()

    def __init__(self, url: str, logs: Path) -> None:
        self.log = logs / f"scheduler-{next(self._count)}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SCHEDULER, "run", "--db", url, "--log-dir", str(logs)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the scheduler did not stop within {WAIT_S:.0f} s:\n{self.text[-3000:]}")


@pytest.fixture
def start(registry_url: str, tmp_path: Path) -> Iterator[Callable[[], Scheduler]]:
    """Starts schedulers; afterwards kills any still running, and any build a failed test left running."""
    logs = tmp_path / "logs"
    logs.mkdir()
    schedulers: list[Scheduler] = []

    def begin() -> Scheduler:
        scheduler = Scheduler(registry_url, logs)
        schedulers.append(scheduler)
        return scheduler

    yield begin
    for scheduler in schedulers:
        kill_if_running(scheduler.proc)
    registry = Registry.open(registry_url)
    try:
        for build in registry.list(limit=None):
            if build.active and build.pid is not None and build.pid != os.getpid() and pid_alive(build.pid):
                os.kill(build.pid, signal.SIGKILL)
    finally:
        registry.close()


def finished(registry: Registry, schedule: str, status: str = "succeeded") -> list[BuildInfo]:
    return [b for b in builds_of(registry, schedule) if b.status == status]


def assert_one_at_a_time(builds: list[BuildInfo]) -> None:
    for before, after in itertools.pairwise(builds):
        assert before.finished_at is not None
        assert before.finished_at <= after.queued_at, f"builds {before.id} and {after.id} overlapped"


def test_schedules_survive_a_scheduler_restart(registry: Registry, tmp_path: Path, start: Starter) -> None:
    add_schedule(registry, "often", write_config(tmp_path / "often.yaml"), "*/2 * * * * *", tmp_path / "out")
    first = start()
    wait_for(lambda: finished(registry, "often"), "a build of the first scheduler")
    assert first.stop() == 0
    before = {b.id for b in builds_of(registry, "often")}
    second = start()  # a new process: it knows the schedule only from the database
    wait_for(lambda: {b.id for b in finished(registry, "often")} - before, "a build of the second scheduler")
    assert second.stop() == 0
    builds = builds_of(registry, "often")
    assert {b.status for b in builds} <= {"succeeded", "interrupted"}  # a stop may land mid-build
    assert {(b.name, b.schedule, b.output) for b in builds} == {("often", "often", str(tmp_path / "out"))}
    assert [s.name for s in list_schedules(registry)] == ["often"]


def test_overlapping_fires_of_a_schedule_never_run_twice(
    registry: Registry, tmp_path: Path, start: Starter
) -> None:
    """Fires every second; a build takes longer: APScheduler skips the fires while it runs."""
    config = write_config(tmp_path / "busy.yaml", count=24, shard_size=4)
    add_schedule(registry, "busy", config, EVERY_SECOND, tmp_path / "out")
    scheduler = start()
    wait_for(lambda: len(finished(registry, "busy")) >= 2, "two builds")
    assert scheduler.stop() == 0
    assert_one_at_a_time(builds_of(registry, "busy"))
    assert "skipped: maximum number of running instances reached (1)" in scheduler.text


def test_a_running_build_in_the_registry_blocks_the_schedule(
    registry: Registry, tmp_path: Path, start: Starter
) -> None:
    """Another scheduler's build (or one whose scheduler died) is still running: fires are skipped until
    its driver is gone; then it is marked interrupted and the schedule builds again."""
    add_schedule(registry, "shared", write_config(tmp_path / "shared.yaml"), EVERY_SECOND, tmp_path / "out")
    driver = subprocess.Popen(["sleep", "600"])
    try:
        blocking = registry.start_build(
            BuildStart(
                "shared",
                "h" * 64,
                {},
                str(tmp_path / "out"),
                "local",
                "ana@box",
                driver.pid,
                this_host(),
                schedule="shared",
            )
        )
        scheduler = start()
        skipped = f"schedule shared: skipped, build {blocking} of it is still running"
        wait_for(lambda: scheduler.text.count(skipped) >= 2, "two skipped fires")
        assert [b.id for b in builds_of(registry, "shared")] == [blocking]
    finally:
        driver.kill()
        driver.wait()
    wait_for(lambda: finished(registry, "shared"), "a build once the driver is gone")
    assert scheduler.stop() == 0
    gone = registry.get(blocking)
    assert gone.status == "interrupted"
    assert gone.error is not None
    assert gone.error.startswith(f"the driver (pid {driver.pid} on {this_host()}) is gone")
    assert f"schedule shared: build {blocking} had lost its driver; marked interrupted" in scheduler.text


def _window() -> tuple[datetime, datetime]:
    """Four seconds, 8 to 11 seconds from now, within one minute (local time, as cron fields are)."""
    while True:
        now = datetime.now().astimezone()
        first, last = now + timedelta(seconds=8), now + timedelta(seconds=11)
        if first.minute == last.minute:
            return first.replace(microsecond=0), last.replace(microsecond=0)
        time.sleep(1)


def _next_year_with(day: datetime) -> datetime:
    """``day``'s month, day and time of day in the first later year that has that date: the next fire of a
    cron rule that names its second(s), minute, hour, day and month (29 February: the next leap year)."""
    for year in itertools.count(day.year + 1):
        with contextlib.suppress(ValueError):  # 29 February of a common year
            return day.replace(year=year)
    raise AssertionError("unreachable")


def test_a_fire_missed_while_no_scheduler_ran_starts_once(
    registry: Registry, tmp_path: Path, start: Starter
) -> None:
    first, last = _window()
    cron = f"{first.second}-{last.second} {first.minute} {first.hour} {first.day} {first.month} *"
    config = write_config(tmp_path / "missed.yaml")
    added = add_schedule(registry, "missed", config, cron, tmp_path / "out")  # grace 1 hour
    add_schedule(registry, "too-late", config, cron, tmp_path / "late", misfire_grace_s=1)
    assert added.next_run is not None
    assert first <= added.next_run <= last, "the test machine is too slow to add a schedule in 8 s"
    while datetime.now().astimezone() < last + timedelta(seconds=3):  # four fires pass, no scheduler runs
        time.sleep(0.2)
    scheduler = start()
    wait_for(lambda: finished(registry, "missed"), "the missed fire's build")
    wait_for(lambda: 'Run time of job "too-late' in scheduler.text, "the fire missed beyond its grace")
    assert scheduler.stop() == 0
    assert [b.status for b in builds_of(registry, "missed")] == ["succeeded"]
    assert builds_of(registry, "too-late") == []
    [again] = [s for s in list_schedules(registry) if s.name == "missed"]
    assert again.next_run is not None
    assert again.next_run.astimezone().replace(tzinfo=None) == _next_year_with(first.replace(tzinfo=None))


def test_failed_builds_are_recorded_and_the_scheduler_goes_on(
    registry: Registry, tmp_path: Path, start: Starter
) -> None:
    vanishing = write_config(tmp_path / "vanishing.yaml")
    add_schedule(registry, "vanishing", vanishing, "*/2 * * * * *", tmp_path / "out")
    vanishing.unlink()  # read again at each fire: the build fails before it can record anything
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    add_schedule(registry, "blocked", write_config(tmp_path / "blocked.yaml"), "*/2 * * * * *", blocked)
    scheduler = start()
    wait_for(lambda: len(finished(registry, "vanishing", "failed")) >= 2, "two failed fires of one schedule")
    wait_for(lambda: finished(registry, "blocked", "failed"), "a build that fails by itself")
    assert scheduler.proc.poll() is None
    assert scheduler.stop() == 0
    for build in finished(registry, "vanishing", "failed"):
        assert build.error is not None
        assert build.error.startswith("the build exited with code 2 before recording its end: ")
        assert f"{vanishing}: no such configuration file" in " ".join(build.error.split())
    [failed, *_] = finished(registry, "blocked", "failed")
    assert (failed.name, failed.error) == ("blocked", f"{blocked}: exists and is not a directory")


def test_sigterm_stops_the_scheduler_cleanly_and_interrupts_its_build(
    registry: Registry, tmp_path: Path, start: Starter
) -> None:
    config = write_config(tmp_path / "long.yaml", count=240, shard_size=4)
    add_schedule(registry, "long", config, EVERY_SECOND, tmp_path / "out")
    scheduler = start()

    def running() -> BuildInfo | None:
        builds = builds_of(registry, "long")
        live = [b for b in builds if b.status == "running" and any(s.name == "assemble" for s in b.stages)]
        return live[0] if live else None

    build = wait_for(running, "the scheduled build running")
    assert scheduler.stop() == 0
    [stopped] = builds_of(registry, "long")
    assert (stopped.id, stopped.status) == (build.id, "interrupted")
    assert stopped.error is not None
    assert stopped.error.startswith("interrupted after ")
    assert stopped.error.endswith(" of 60 shards; rerun to resume")
    assert build.pid is not None
    assert not pid_alive(build.pid)
    assert scheduler.text.splitlines()[-1].endswith("prmforge.scheduler: scheduler stopped")
    assert f"build {build.id}: sending SIGINT (pid {build.pid})" in scheduler.text
