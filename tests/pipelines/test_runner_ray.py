"""The Ray runner (issue #12): conformance with the local runner, and fault injection on real Ray.

One local Ray serves the module (two CPUs, no dashboard, no usage stats, no token in ``~/.ray``; its
session and logs in a temporary directory, shut down after). The command-line builds start their
own local Ray (or connect to a head started here with ``ray start --head``), with ``HOME`` and
``RAY_TMPDIR`` in temporary directories; every process of such a build carries a tag in its
environment, so a test can tell that none outlives it, and kills leftovers by pid.

Faults are injected for real (SIGKILL of a worker process, SIGKILL or SIGTERM of the driver); the
test-only seam ``PRMFORGE_FAULT_CRASH_SHARD`` of ``runners/ray_worker.py`` holds a shard at a known
point or makes it a poison shard. After each case: every row is accounted for, (example, step) keys
are unique, every committed file reads, and the manifest names files that exist with their sha256.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import committed, init_local_ray, small_config
from test_conformance import conformance_config

from prmforge.pipelines.config import BuildConfig, load_config
from prmforge.pipelines.runners.builddir import BuildDir, file_sha256
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.runners.plan import BuildResult
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.schemas.errors import BuildStateError, ConfigError

ray = pytest.importorskip("ray")

from prmforge.pipelines.runners.ray import RayRunner  # noqa: E402 - only with the ray extra
from prmforge.pipelines.runners.ray_session import STARTUP_TIMEOUT  # noqa: E402
from prmforge.pipelines.runners.ray_worker import FAULT_ENV  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
PRMFORGE = Path(sys.executable).with_name("prmforge")
RAY = Path(sys.executable).with_name("ray")
TAG = "PRMFORGE_RAY_TEST_TAG"
WAIT_S = 180.0  # a bound on a build reaching a point or exiting; never a timing expectation
GONE_S = 30.0  # Ray's processes must be gone this soon after their driver (or head) ends
INPUT_ROWS = 20  # small_config: 12 arith + 8 GSM8K problems


def short_tmp(prefix: str) -> Path:
    """A directory under /tmp with a short name: Ray's socket paths must fit in 107 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[Path]:
    """One local Ray for the in-process builds of this module; its files under a temporary directory."""
    tmp = short_tmp("pfray-")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", str(tmp))
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env.setenv("RAY_AUTH_MODE", "disabled")
        env.delenv(FAULT_ENV, raising=False)
        init_local_ray(num_cpus=2, _temp_dir=str(tmp / "local"))
        try:
            yield tmp
        finally:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], BuildResult]:
    """The in-process local runner's build of a named config (built once)."""
    built: dict[str, BuildResult] = {}

    def get(name: str) -> BuildResult:
        if name not in built:
            out = tmp_path_factory.mktemp(f"reference-{name}") / "b"
            built[name] = LocalRunner().run(CONFIGS[name](), out, workers=0)
        return built[name]

    return get


CONFIGS: dict[str, Callable[[], BuildConfig]] = {
    "quickstart": lambda: load_config(QUICKSTART),
    "conformance": conformance_config,
}


# -- invariants ------------------------------------------------------------------------------------


def assert_invariants(out: Path, input_rows: int = INPUT_ROWS) -> None:
    """Every row accounted for, unique keys, every committed file readable, the manifest consistent."""
    manifest = Manifest.read(out)
    stages = manifest.stages
    assert stages["load"].rows_in == input_rows
    quarantined = sum(f.rows for f in manifest.under("quarantine/load/"))
    assert stages["load"].quarantined == quarantined
    assert stages["load"].accepted == stages["load"].rows_out == input_rows - quarantined
    assert stages["generate"].rows_in == stages["load"].rows_out
    write = stages["write"]
    assert write.rows_in == stages["assemble"].rows_out
    assert write.rows_out + write.excluded + write.quarantined == write.rows_in
    assert sum(manifest.splits.values()) == write.rows_out == sum(f.rows for f in manifest.under("data/"))
    keys = [
        (row["example_id"], step)
        for f in manifest.under("data/")
        for row in pq.read_table(out / f.path, columns=["example_id", "completions"]).to_pylist()
        for step in range(len(row["completions"]))
    ]
    assert len(keys) == len(set(keys))
    for f in manifest.files:
        path = out / f.path
        assert path.is_file(), f.path
        assert file_sha256(path) == f.sha256, f.path
    for path in out.rglob("*.parquet"):
        assert ".tmp-" not in path.name, path
        pq.read_metadata(path)


# -- conformance -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "workers"),
    [
        ("conformance", 1),
        ("conformance", 2),
        pytest.param("quickstart", 1, marks=pytest.mark.slow),
        pytest.param("quickstart", 2, marks=pytest.mark.slow),
    ],
)
def test_the_ray_runner_builds_what_the_local_runner_builds(
    tmp_path: Path, reference: Callable[[str], BuildResult], name: str, workers: int
) -> None:
    expected = reference(name)
    events: list[StageEvent] = []
    result = RayRunner(events.append).run(CONFIGS[name](), tmp_path / "b", workers=workers)
    assert result.content_hash == expected.content_hash
    assert [(f.path, f.rows, f.content_hash) for f in result.manifest.under("data/")] == [
        (f.path, f.rows, f.content_hash) for f in expected.manifest.under("data/")
    ]
    assert result.manifest.splits == expected.manifest.splits
    assert result.manifest.dedup == expected.manifest.dedup
    assert result.manifest.stages == expected.manifest.stages
    assert (result.shards_run, result.problems) == (expected.manifest.num_shards, ())
    # Every stage of every shard reached on_event from the workers, then the two global stages.
    stages = {s for s in result.manifest.stages if s not in ("dedup", "write")}
    shard_events = {(e.shard, e.stage) for e in events if e.shard >= 0 and not e.resumed}
    assert shard_events == {(i, s) for i in range(result.manifest.num_shards) for s in stages}
    assert [e.stage for e in events if e.shard < 0] == ["dedup", "write"]
    assert_invariants(tmp_path / "b", expected.manifest.stages["load"].rows_in)


def test_a_rerun_of_a_committed_build_is_a_no_op_and_a_changed_config_is_refused(
    tmp_path: Path, reference: Callable[[str], BuildResult]
) -> None:
    out = tmp_path / "b"
    first = RayRunner().run(conformance_config(), out, workers=2)
    data = {p: p.stat().st_mtime_ns for p in out.glob("data/*.parquet")}
    events: list[StageEvent] = []
    again = RayRunner(events.append).run(conformance_config(), out, workers=2)
    assert (again.content_hash, again.resumed, again.shards_run) == (first.content_hash, True, 0)
    assert events
    assert all(e.resumed for e in events)
    assert {p: p.stat().st_mtime_ns for p in out.glob("data/*.parquet")} == data
    changed = conformance_config().model_copy(update={"seed": 12})
    with pytest.raises(BuildStateError, match="holds a build of a different configuration"):
        RayRunner().run(changed, out, workers=2)
    assert Manifest.read(out).content_hash == reference("conformance").content_hash
    assert_invariants(out)


# -- faults inside the job -------------------------------------------------------------------------


def test_a_worker_killed_mid_shard_is_retried_and_the_build_equals_a_clean_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: Callable[[str], BuildResult]
) -> None:
    """SIGKILL (from here) of the worker process running shard 1, after its load stage committed."""
    monkeypatch.setenv(FAULT_ENV, "1:hang-once")  # holds shard 1 after load, on its first attempt only
    killed: list[int] = []
    events: list[StageEvent] = []

    def on_event(event: StageEvent) -> None:
        events.append(event)
        if (event.shard, event.stage, event.resumed) == (1, "load", False) and not killed:
            pid = runner.running[1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    runner = RayRunner(on_event)
    result = runner.run(conformance_config(), tmp_path / "b", workers=2)
    assert len(killed) == 1
    assert result.content_hash == reference("conformance").content_hash
    assert runner.poisoned == {}
    # The retry (on the restarted actor) reused shard 1's committed load and ran the rest.
    shard1 = [(e.stage, e.resumed) for e in events if e.shard == 1]
    assert shard1[0] == ("load", False)
    assert ("load", True) in shard1
    assert [s for s, resumed in shard1 if not resumed].count("generate") == 1
    assert_invariants(tmp_path / "b")


@pytest.mark.parametrize(
    ("mode", "attempts", "cause"),
    [
        ("kill", 2, "killed its worker on 2 of 2 attempts (its worker process died mid-shard"),
        ("raise", 3, "failed its worker on 3 of 3 attempts (RuntimeError: fault injected into shard 2"),
    ],
)
def test_a_poison_shard_is_quarantined_with_the_reason_after_max_attempts_and_the_build_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, attempts: int, cause: str
) -> None:
    monkeypatch.setenv(FAULT_ENV, f"2:{mode}")
    config = small_config(
        runner={"workers": 2, "shard_size": 4, "ray": {"max_attempts": attempts}},
        annotate=[{"kind": "mc", "n": 2}, {"kind": "equations"}],
        fuse={"rule": "earliest"},
    )
    out = tmp_path / "b"
    runner = RayRunner()
    result = runner.run(config, out)
    [(shard, reason)] = runner.poisoned.items()
    assert (shard, reason.startswith(f"shard 2 {cause}")) == (2, True), reason
    assert BuildDir(out).poisoned(2) == reason
    assert result.problems == ()
    load = result.manifest.stages["load"]
    assert (load.rows_in, load.quarantined) == (INPUT_ROWS, 4)
    entries = committed(out, "quarantine/load/", "quarantine")
    assert [(q.index, q.field, q.reason) for q in entries] == [(i, "<shard>", reason) for i in range(8, 12)]
    assert_invariants(out)
    # The same data as a local build told of the same poisoned shard.
    monkeypatch.delenv(FAULT_ENV)
    local = tmp_path / "local"
    LocalRunner().run(config, local, workers=0)
    BuildDir(local).record_poison(2, reason)
    expected = LocalRunner().run(config, local, workers=0)
    assert result.content_hash == expected.content_hash


def test_the_builds_own_error_where_a_worker_starts_stops_the_build_as_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An actor whose ``__init__`` raises a ConfigError (here the seam's own, for a malformed value):
    the build ends with that error and its message, not with Ray's wrapper or a hang."""
    monkeypatch.setenv(FAULT_ENV, "two:explode")
    with pytest.raises(ConfigError, match=f"{FAULT_ENV}: expected <shard>:<kill|raise|hang-once>"):
        RayRunner().run(conformance_config(), tmp_path / "b", workers=2)


# -- the command line: killing the driver, an existing cluster ---------------------------------------


def tagged(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment carries ``TAG=tag``."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if needle in environ.split(b"\0") and stat[stat.rindex(")") + 2] not in "ZX":
            found.append(int(entry.name))
    return found


def wait_gone(tag: str) -> None:
    deadline = time.monotonic() + GONE_S
    while left := tagged(tag):
        if time.monotonic() > deadline:
            pytest.fail(f"processes still run {GONE_S:.0f} s after their build or head ended: {left}")
        time.sleep(0.1)


class Cli:
    """Processes started by a test, in their own sessions, all tagged; leftovers are killed by pid."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = uuid.uuid4().hex
        self.home = tmp / "home"
        self.home.mkdir()
        self.ray_tmp = short_tmp("pfcli-")
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", FAULT_ENV, "RAY_ADDRESS")}
        return {**env, TAG: self.tag, "HOME": str(self.home), "RAY_TMPDIR": str(self.ray_tmp), **extra}

    def start(self, args: list[str], name: str, **extra: str) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.out").open("wb") as out, (self.tmp / f"{name}.err").open("wb") as err:
            proc = subprocess.Popen(
                args, stdout=out, stderr=err, env=self.env(**extra), start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def stderr(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in tagged(self.tag):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path)
    yield c
    c.close()


def write_config(path: Path, config: BuildConfig) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def wait_for(proc: subprocess.Popen[bytes], condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"did not reach {what} within {WAIT_S:.0f} s")
        time.sleep(0.02)


def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not exit within {WAIT_S:.0f} s")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGKILL, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigkill-driver", "sigterm-driver", "ctrl-c-group"],
)
def test_a_driver_stopped_mid_build_leaves_no_ray_process_and_a_rerun_resumes_to_the_clean_hash(
    tmp_path: Path, cli: Cli, reference: Callable[[str], BuildResult], signum: int, to_group: bool
) -> None:
    """`prmforge build --runner ray` with its own local Ray; shard 2 is held after its load stage."""
    config, out = write_config(tmp_path / "build.yaml", conformance_config()), tmp_path / "out"
    args = [str(PRMFORGE), "build", str(config), "--output", str(out), "--runner", "ray", "--workers", "2"]
    build = cli.start(args, "build", **{FAULT_ENV: "2:hang-once"})
    # Shard 2 is held after its load stage while the other actor goes on: once one other shard is
    # committed whole, the signal lands mid-build with something to resume (with two shards in
    # flight per actor, shard 2 may be an actor's first and hold before anything is committed).
    wait_for(
        build,
        lambda: (
            (out / "markers" / "load" / "shard-00002.json").exists()
            and any(p.name != "shard-00002.json" for p in out.glob("markers/assemble/shard-*.json"))
        ),
        "shard 2's load marker and another shard committed",
    )
    if to_group:  # a terminal's Ctrl-C: the driver and every process of its group
        os.killpg(build.pid, signum)
    else:  # the driver alone: Ray's processes must follow it
        os.kill(build.pid, signum)
    code = wait_exit(build)
    wait_gone(cli.tag)
    assert not (cli.home / ".ray").exists()  # no token, no state in the user's home
    if signum != signal.SIGKILL:
        assert code == 130, cli.stderr("build")[-3000:]
        [(done, total)] = re.findall(
            r"interrupted after (\d+) of (\d+) shards; rerun to resume", cli.stderr("build")
        )
        assert int(done) <= len(list(out.glob("markers/assemble/shard-*.json")))
        assert (int(done) < 5, total) == (True, "5")
        assert "Traceback" not in cli.stderr("build")
        assert not (out / "manifest.json").exists()
    else:
        assert code == -signal.SIGKILL
    result = RayRunner().run(conformance_config(), out, workers=2)
    assert result.resumed
    assert result.content_hash == reference("conformance").content_hash
    assert 0 < result.shards_run < 5
    assert_invariants(out)


def start_head(cli: Cli) -> tuple[subprocess.Popen[bytes], str]:
    """`ray start --head --block` and the cluster's address; started once more (after what the first
    start left is killed) where its raylet missed Ray's fixed 30 s registration wait."""
    for attempt in (1, 2):
        head_tmp = cli.ray_tmp / f"head-{attempt}"
        head = cli.start(
            [str(RAY), "start", "--head", "--port=0", "--num-cpus=2", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir={head_tmp}", "--block"],
            f"head-{attempt}",
            RAY_AUTH_MODE="disabled",
        )  # fmt: skip
        address_file = head_tmp / "ray_current_cluster"
        deadline = time.monotonic() + WAIT_S
        while not (address_file.exists() and address_file.read_text().strip()):
            if head.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            return head, address_file.read_text().strip()
        if attempt == 2 or head.poll() is None or STARTUP_TIMEOUT not in cli.stderr(f"head-{attempt}"):
            pytest.fail(f"the head did not start ({head.poll()}): {cli.stderr(f'head-{attempt}')[-2000:]}")
        for pid in tagged(cli.tag):
            os.kill(pid, signal.SIGKILL)
        wait_gone(cli.tag)
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_a_build_on_an_existing_cluster_leaves_the_cluster_running(
    tmp_path: Path, cli: Cli, reference: Callable[[str], BuildResult]
) -> None:
    """A head started here (`ray start --head --port=0 --block`); the CLI connects with --ray-address."""
    head, address = start_head(cli)
    config, out = write_config(tmp_path / "build.yaml", conformance_config()), tmp_path / "out"
    args = [
        str(PRMFORGE),
        "build",
        str(config),
        "--output",
        str(out),
        "--runner",
        "ray",
        "--ray-address",
        address,
    ]
    build = cli.start(args, "build", RAY_AUTH_MODE="disabled")
    assert wait_exit(build) == 0, cli.stderr("build")[-3000:]
    assert Manifest.read(out).content_hash == reference("conformance").content_hash
    assert head.poll() is None  # the runner disconnected; it did not stop the cluster
    assert_invariants(out)
    os.killpg(head.pid, signal.SIGKILL)  # the head's session: `ray start` and what it started
    wait_exit(head)
    wait_gone(cli.tag)
