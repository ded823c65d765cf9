"""``prmforge build`` records into the registry, and ``prmforge builds list|show|cancel|retry`` (through a
local app holding the sub-apps, as cli.py will): Ctrl-C and cancel end a real build cleanly, a retry
resumes it, and an unreachable registry never stops a build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from ops_fixtures import builds_of, kill_if_running, wait_for, write_config
from test_registry import dead_pid
from typer.testing import CliRunner

from prmforge.ops.registry import BuildStart, Registry, this_host
from prmforge.pipelines.cli_build import build_app
from prmforge.pipelines.cli_builds import builds_app, schedule_app, scheduler_app
from prmforge.pipelines.config import load_config
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest

PRMFORGE = Path(sys.executable).with_name("prmforge")
app = typer.Typer()
app.add_typer(build_app)
app.add_typer(builds_app, name="builds")
app.add_typer(schedule_app, name="schedule")
app.add_typer(scheduler_app, name="scheduler")
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def url(registry_url: str) -> str:
    return registry_url


@pytest.fixture
def slow_config(tmp_path: Path) -> Path:
    """Ten shards of real work: a build that is still running when the test signals it."""
    return write_config(
        tmp_path / "slow.yaml",
        count=40,
        shard_size=4,
        generate={"rollouts_per_problem": 4},
        annotate=[{"kind": "mc", "n": 32, "early_stop": False}],
    )


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        kill_if_running(proc)


def start_build(
    procs: list[subprocess.Popen[str]], config: Path, out: Path, url: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(PRMFORGE), "build", str(config), "--output", str(out), "--db", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def running_with_a_shard(registry: Registry, proc: subprocess.Popen[str]) -> int:
    """Once the build's row is running and one shard is assembled: its id."""

    def ready() -> int | None:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        builds = registry.list(limit=1)
        if builds and builds[0].status == "running":
            assembled = [s for s in builds[0].stages if s.name == "assemble" and s.shards >= 1]
            return builds[0].id if assembled else None
        return None

    build_id: int = wait_for(ready, "the build running with a committed shard")
    return build_id


def test_a_build_is_recorded_and_the_manifest_agrees(tmp_path: Path, url: str, registry: Registry) -> None:
    config = write_config(tmp_path / "small.yaml", count=8, shard_size=4)
    out = tmp_path / "out"
    result = invoke("build", str(config), "--output", str(out), "--db", url)
    assert result.exit_code == 0, result.output
    [listed] = json.loads(invoke("builds", "list", "--json", "--db", url).stdout)
    manifest = Manifest.read(out)
    assert {k: listed[k] for k in ("id", "name", "status", "output", "runner", "schedule", "retry_of")} == {
        "id": 1,
        "name": "small",
        "status": "succeeded",
        "output": str(out),
        "runner": "local",
        "schedule": None,
        "retry_of": None,
    }
    assert (listed["pid"], listed["num_shards"], listed["content_hash"]) == (
        os.getpid(),
        2,
        manifest.content_hash,
    )
    assert listed["config_hash"] == load_config(config).content_hash()
    shown = json.loads(invoke("builds", "show", "1", "--json", "--db", url).stdout)
    assert shown["manifest"] == {"compared": True, "agrees": True, "differences": [], "note": ""}
    assert shown["build"]["config"] == load_config(config).model_dump(mode="json")
    text = invoke("builds", "show", "1", "--db", url).stdout
    assert f"the manifest in {out} agrees" in text


def test_show_says_when_the_manifest_on_disk_disagrees(tmp_path: Path, url: str) -> None:
    out = tmp_path / "out"
    assert (
        invoke(
            "build", str(write_config(tmp_path / "a.yaml", count=8)), "-o", str(out), "--db", url
        ).exit_code
        == 0
    )
    recorded = Manifest.read(out)
    other = write_config(tmp_path / "b.yaml", count=4)
    elsewhere = f"sqlite:///{tmp_path / 'other.sqlite'}"
    assert invoke("build", str(other), "-o", str(out), "--restart", "--db", elsewhere).exit_code == 0
    now = Manifest.read(out)
    result = invoke("builds", "show", "1", "--db", url)
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert lines[0] == f"warning the manifest in {out} disagrees (it is the truth):"
    lines = lines[1:]
    assert (
        lines[0] == f"content hash: registry {recorded.content_hash[:16]}, manifest {now.content_hash[:16]}"
    )
    before, after = recorded.stages["load"].rows_in, now.stages["load"].rows_in
    assert f"stage load rows in: registry {before}, manifest {after}" in lines


def test_an_unreachable_default_registry_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))
    config = write_config(tmp_path / "small.yaml", count=8, shard_size=4)
    result = invoke("build", str(config), "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    where = blocker / "prmforge"
    assert flat(result.stderr).startswith(
        f"warning sqlite:///{where}/registry.sqlite: cannot create its folder ([Errno 20] Not a directory: "
        f"'{where}'); this build is not recorded in the registry"
    )
    clean = LocalRunner().run(load_config(config), tmp_path / "clean", workers=0)
    assert Manifest.read(tmp_path / "out").content_hash == clean.content_hash


def test_an_explicit_db_that_fails_stops_before_building(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = "sqlite:////nonexistent-prmforge-dir/r.sqlite"
    result = invoke("build", str(write_config(tmp_path / "small.yaml")), "--output", str(out), "--db", bad)
    assert result.exit_code == 2
    assert flat(result.stderr) == (
        f"error --db: {bad}: cannot open the build registry (unable to open database file)"
    )
    assert not out.exists()


def test_bad_options_and_builds_that_are_not_running(tmp_path: Path, url: str) -> None:
    result = invoke("builds", "list", "--status", "done", "--db", url)
    assert (result.exit_code, flat(result.stderr)) == (
        2,
        "error --status: must be one of queued, running, succeeded, failed, cancelled, interrupted "
        "(got 'done')",
    )
    assert flat(invoke("builds", "show", "7", "--db", url).stderr) == f"error {url}: no build 7"
    assert (
        invoke(
            "build", str(write_config(tmp_path / "s.yaml")), "-o", str(tmp_path / "o"), "--db", url
        ).exit_code
        == 0
    )
    cancel = invoke("builds", "cancel", "1", "--db", url)
    assert (cancel.exit_code, flat(cancel.stderr)) == (1, "error build 1 is not running (it is succeeded)")


@pytest.mark.slow
def test_ctrl_c_records_interrupted_and_a_rerun_resumes(
    tmp_path: Path, url: str, registry: Registry, slow_config: Path, started: list[subprocess.Popen[str]]
) -> None:
    out = tmp_path / "out"
    proc = start_build(started, slow_config, out, url)
    build_id = running_with_a_shard(registry, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    info = registry.get(build_id)
    assert info.status == "interrupted"
    assert info.error is not None
    assert info.error.startswith("interrupted after ")
    assert info.error.endswith(" of 10 shards; rerun to resume")
    rerun = invoke("build", str(slow_config), "--output", str(out), "--db", url)
    assert rerun.exit_code == 0, rerun.output
    assert "already committed" in rerun.stdout
    assert [b.status for b in builds_of(registry)] == ["interrupted", "succeeded"]


@pytest.mark.slow
def test_cancel_stops_a_build_on_this_host_and_retry_resumes_it(
    tmp_path: Path, url: str, registry: Registry, slow_config: Path, started: list[subprocess.Popen[str]]
) -> None:
    out = tmp_path / "out"
    proc = start_build(started, slow_config, out, url)
    build_id = running_with_a_shard(registry, proc)
    result = invoke("builds", "cancel", str(build_id), "--db", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"build {build_id}: sent SIGINT to its driver (pid {proc.pid})",
        f"build {build_id} cancelled",
    ]
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    retried = invoke("builds", "retry", str(build_id), "--db", url)
    assert retried.exit_code == 0, retried.output
    assert retried.stdout.splitlines()[0] == f"retrying build {build_id} (slow) into {out}"
    assert "already committed" in retried.stdout
    [old, new] = builds_of(registry)
    assert (old.id, old.status, new.status, new.retry_of, new.config_json) == (
        build_id, "cancelled", "succeeded", build_id, old.config_json,
    )  # fmt: skip
    clean = LocalRunner().run(load_config(slow_config), tmp_path / "clean", workers=0)
    assert new.content_hash == clean.content_hash == Manifest.read(out).content_hash
    refused = invoke("builds", "retry", "99", "--db", url)
    assert (refused.exit_code, flat(refused.stderr)) == (1, f"error {url}: no build 99")


@pytest.mark.slow
def test_a_cancel_from_another_host_is_polled_by_the_driver(
    tmp_path: Path, url: str, registry: Registry, slow_config: Path, started: list[subprocess.Popen[str]]
) -> None:
    """What `builds cancel` does for a build on another host: only the registry's flag; the driver sees it."""
    proc = start_build(started, slow_config, tmp_path / "out", url)
    build_id = running_with_a_shard(registry, proc)
    registry.request_cancel(build_id)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"build {build_id}: cancel requested in the registry; stopping (a rerun resumes)" in flat(stderr)
    assert registry.get(build_id).status == "cancelled"


def test_cancel_of_a_queued_a_remote_and_a_gone_build(registry: Registry, url: str) -> None:
    queued = registry.reserve("nightly", "sched@box", os.getpid(), this_host()).build_id
    assert (
        invoke("builds", "cancel", str(queued), "--db", url).stdout
        == f"build {queued} was queued: cancelled\n"
    )
    remote = registry.start_build(BuildStart("r", "h" * 64, {}, "/o", "local", "ana@far", 4242, "far-away"))
    result = invoke("builds", "cancel", str(remote), "--no-wait", "--db", url)
    assert (
        flat(result.stdout) == f"build {remote} runs on far-away: cancel requested; its driver stops itself"
    )
    assert registry.get(remote).cancel_requested is True
    gone = registry.start_build(
        BuildStart("g", "h" * 64, {}, "/o", "local", "ana@box", dead_pid(), this_host())
    )
    listed = invoke("builds", "list", "--db", url).stdout
    assert "running (driver gone)" in listed
    assert "running (cancel requested)" in listed
    result = invoke("builds", "cancel", str(gone), "--db", url)
    assert result.stdout == f"build {gone}: its driver is gone; marked interrupted\n"
    retry = invoke("builds", "retry", str(queued), "--db", url)
    assert (retry.exit_code, flat(retry.stderr)) == (
        1,
        f"error build {queued} never started: no configuration was recorded (cancelled before it started)",
    )
    retry = invoke("builds", "retry", str(remote), "--db", url)
    assert (retry.exit_code, flat(retry.stderr)) == (
        1,
        f"error build {remote} is still running: cancel it first (`prmforge builds cancel {remote}`)",
    )
