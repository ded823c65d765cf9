"""Interrupting a real `prmforge build` (issue #6, items 5 and 7): Ctrl-C, SIGTERM and SIGKILL.

Each test runs the CLI in its own session (process group) and signals it once the build has reached
a given point (a marker file exists, the workers are up). The worker processes are identified twice:
as the driver's descendants recorded from /proc before the signal (pid plus start time, so a reused
pid never counts), and by an environment variable every process of the build inherits. After each
interruption no committed file may be torn, and a rerun must give the content hash of a build that
was never interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from prmforge.pipelines.config import BuildConfig, parse_config
from prmforge.pipelines.graph import compose
from prmforge.pipelines.runners import local
from prmforge.pipelines.runners.builddir import GLOBAL, BuildDir, Marker
from prmforge.pipelines.runners.interrupt import BuildInterrupted
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.sources import open_inputs, parsers_of

PRMFORGE = Path(sys.executable).with_name("prmforge")
TAG = "PRMFORGE_FAULT_TEST_TAG"
SHARDS = 10  # 40 problems, 4 per shard
SHARD_STAGES = ("load", "generate", "annotate-mc", "fuse", "assemble")
INTERRUPTED = re.compile(r"interrupted after (\d+) of (\d+) shards; rerun to resume")
WAIT_S = 120.0  # a bound on waiting for a build to reach a point or to exit; never a timing expectation
GONE_S = (
    30.0  # workers must die this soon after their driver (one still importing arms its death signal after)
)


def config_data(seed: int) -> dict[str, Any]:
    return {
        "name": "faults",
        "seed": seed,
        "inputs": [{"kind": "arith", "count": 40, "min_steps": 2, "max_steps": 4}],
        "generate": {"rollouts_per_problem": 2},
        "annotate": [{"kind": "mc", "n": 2}],
        "runner": {"workers": 2, "shard_size": 4},
    }


def write_config(directory: Path, seed: int) -> Path:
    path = directory / f"build-{seed}.yaml"
    path.write_text(yaml.safe_dump(config_data(seed)))
    return path


@pytest.fixture(scope="module")
def clean_hash(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], str]:
    """The content hash of an uninterrupted in-process build of ``config_data(seed)`` (built once)."""
    hashes: dict[int, str] = {}

    def get(seed: int) -> str:
        if seed not in hashes:
            out = tmp_path_factory.mktemp(f"clean-{seed}") / "out"
            hashes[seed] = LocalRunner().run(parse_config(config_data(seed)), out, workers=0).content_hash
        return hashes[seed]

    return get


# -- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    parent: int
    start: int  # /proc/<pid>/stat field 22: tells a live process from a later one with the same pid
    cmdline: str

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        """The process ``pid`` if it is alive (not a zombie)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        return None if fields[0] in "ZX" else cls(pid, int(fields[1]), int(fields[19]), cmdline)

    def alive(self) -> bool:
        now = Proc.of(self.pid)
        return now is not None and now.start == self.start

    @property
    def spawned_worker(self) -> bool:
        return "multiprocessing.spawn" in self.cmdline


def descendants(pid: int) -> list[Proc]:
    """Every live descendant of ``pid``, from /proc/<pid>/task/*/children."""
    found: list[Proc] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                pids = [int(p) for p in children.read_text().split()]
            except OSError:
                continue
            for child in pids:
                proc = Proc.of(child)
                if proc is not None:
                    found.append(proc)
                    todo.append(child)
    return found


def tagged(tag: str) -> list[Proc]:
    """Live processes whose environment carries ``TAG=tag``: the build and everything it started."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        proc = Proc.of(int(entry.name)) if needle in environ.split(b"\0") else None
        if proc is not None:
            found.append(proc)
    return found


class Build:
    """One `prmforge build` in its own session, with its output captured to files."""

    def __init__(self, config: Path, out: Path, logs: Path, *args: str) -> None:
        self.tag = uuid.uuid4().hex
        self.out = out
        self.stdout_file = logs / f"{self.tag}.stdout"
        self.stderr_file = logs / f"{self.tag}.stderr"
        command = [str(PRMFORGE), "build", str(config), "--output", str(out), *args]
        with self.stdout_file.open("wb") as stdout, self.stderr_file.open("wb") as stderr:
            self.proc = subprocess.Popen(
                command,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, TAG: self.tag},
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.stdout_file.read_text(errors="replace")

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the build exited ({self.proc.returncode}) before {what}:\n{self.stderr[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"the build did not reach {what} within {WAIT_S:.0f} s")
            time.sleep(0.005)

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the build did not exit within {WAIT_S:.0f} s:\n{self.stderr[-3000:]}")

    def kill_leftovers(self) -> None:
        """Teardown: whatever of this build still runs (only after a failed test) is killed by pid."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for proc in tagged(self.tag):
            os.kill(proc.pid, signal.SIGKILL)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Build]]:
    builds: list[Build] = []

    def begin(config: Path, out: Path, *args: str) -> Build:
        build = Build(config, out, tmp_path, *args)
        builds.append(build)
        return build

    yield begin
    for build in builds:
        build.kill_leftovers()


def assert_all_gone(build: Build, family: list[Proc]) -> None:
    """Neither the recorded descendants nor any process carrying the build's tag outlive it for long."""
    deadline = time.monotonic() + GONE_S
    while True:
        left = [p for p in family if p.alive()] + [p for p in tagged(build.tag) if p not in family]
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"processes of the build still run {GONE_S:.0f} s after it ended: {left}")
        time.sleep(0.05)


# -- the build directory ---------------------------------------------------------------------------


def count(out: Path, pattern: str) -> int:
    return sum(1 for _ in out.glob(pattern))


def workers_up(build: Build) -> Callable[[], bool]:
    return lambda: len(spawned(descendants(build.pid), build.pid)) == 2


def spawned(family: list[Proc], driver: int) -> list[Proc]:
    """The driver's worker processes: its own children started by multiprocessing's spawn (a child
    that a worker forks has the worker's command line until it execs)."""
    return [p for p in family if p.spawned_worker and p.parent == driver]


def markers(out: Path) -> list[Marker]:
    return [Marker.from_json(json.loads(p.read_text())) for p in sorted(out.glob("markers/*/*.json"))]


def assert_nothing_torn(out: Path) -> None:
    """Every file under a final name is whole, and every marker's files verify against it."""
    for path in out.rglob("*"):
        if not path.is_file() or ".tmp-" in path.name:
            continue
        if path.suffix == ".parquet":
            pq.read_metadata(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
    build = BuildDir(out)
    for marker in markers(out):
        assert build.committed(marker.stage, marker.shard, marker.config_hash) == marker, marker.stage


def assert_cli_resumes_to(
    config: Path, out: Path, start: Callable[..., Build], expected: str, *args: str
) -> None:
    rerun = start(config, out, *args)
    assert rerun.wait() == 0, rerun.stderr[-3000:]
    assert f"resumed {out}" in " ".join(rerun.stdout.split())
    assert Manifest.read(out).content_hash == expected
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def assert_resumes_to(out: Path, seed: int, expected: str) -> None:
    """A rerun in this process (cheaper than the CLI; the worker count never changes the content)."""
    result = LocalRunner().run(parse_config(config_data(seed)), out, workers=0)
    assert result.resumed
    assert result.content_hash == Manifest.read(out).content_hash == expected
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def expected_hashes(config: BuildConfig) -> dict[str, str]:
    graph = compose(config, parsers_of(open_inputs(config)))
    return {**graph.hashes, "dedup": graph.global_hash, "write": graph.global_hash}


# -- tests ---------------------------------------------------------------------------------------


DIE_WITH_PARENT = """
import ctypes, os, signal, subprocess, sys
def refuse(*args, **kwargs):
    raise AssertionError(f"started a process: {args}")
subprocess.Popen.__init__ = refuse
os.fork = refuse
from prmforge.pipelines.runners.interrupt import die_with_parent
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # as a worker starts (children_ignore_sigint)
os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C of the group while it imported: held
die_with_parent(os.getppid())
deathsig = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(deathsig), 0, 0, 0)  # PR_GET_PDEATHSIG
with open('/proc/self/status') as status:
    fields = dict(line.partition(':')[::2] for line in status)
print(deathsig.value, fields['SigIgn'].strip(), fields['SigBlk'].strip())
"""


def test_a_worker_arms_its_death_signal_without_starting_a_process() -> None:
    """A worker's setup forks nothing: a child forked before its exec carries the worker's command line
    (``ctypes.util.find_library`` ran ``/sbin/ldconfig -p``), and a count of workers saw three. Run as
    a child of this test, started with SIGINT blocked and one held: its parent's death now sends it
    SIGKILL, the held SIGINT is gone (no KeyboardInterrupt), SIGINT is ignored (bit 2 of SigIgn) and
    no longer blocked (SigBlk), and no process was started."""
    done = subprocess.run(
        [sys.executable, "-c", DIE_WITH_PARENT], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    deathsig, ignored, blocked = done.stdout.split()
    sigint = 1 << (signal.SIGINT - 1)
    assert (int(deathsig), int(ignored, 16) & sigint, int(blocked, 16) & sigint) == (
        signal.SIGKILL,
        sigint,
        0,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "to_group", "workers"),
    [
        (signal.SIGINT, True, "2"),  # Ctrl-C: the terminal signals the whole process group
        (signal.SIGTERM, False, "2"),  # `kill PID`
        (signal.SIGTERM, True, "2"),  # a supervisor stopping the group
        (signal.SIGINT, True, "0"),  # an in-process build
    ],
    ids=["sigint-group", "sigterm-driver", "sigterm-group", "sigint-in-process"],
)
def test_a_signal_mid_build_stops_it_and_a_rerun_resumes(
    tmp_path: Path,
    start: Callable[..., Build],
    clean_hash: Callable[[int], str],
    signum: int,
    to_group: bool,
    workers: str,
) -> None:
    config, out = write_config(tmp_path, 21), tmp_path / "out"
    build = start(config, out, "--workers", workers)
    build.wait_until(lambda: count(out, "markers/assemble/shard-*.json") > 0, "the first assemble marker")
    family = descendants(build.pid)
    assert len(spawned(family, build.pid)) == int(workers)
    if to_group:
        os.killpg(build.pid, signum)
    else:
        os.kill(build.pid, signum)
    assert build.wait() == 130
    found = INTERRUPTED.findall(build.stderr)
    assert len(found) == 1, build.stderr[-3000:]
    done, total = map(int, found[0])
    assert total == SHARDS
    assert done < SHARDS
    assert done <= count(out, "markers/assemble/shard-*.json")
    assert "Traceback" not in build.stderr
    assert_all_gone(build, family)
    assert_nothing_torn(out)
    if signum == signal.SIGINT and workers == "2":  # the rerun a user types; the others rerun in-process
        assert_cli_resumes_to(config, out, start, clean_hash(21), "--workers", workers)
    else:
        assert_resumes_to(out, 21, clean_hash(21))


@pytest.mark.slow
def test_ctrl_c_with_two_shards_at_once_in_process_stops_both_threads_and_resumes(
    tmp_path: Path, start: Callable[..., Build], clean_hash: Callable[[int], str]
) -> None:
    """`shards_per_worker: 2` in the driver's own process: Ctrl-C stops both shard threads at their next
    step before the worker is torn down; nothing is torn and the rerun gives the clean build
    (placement is not content: the same hash)."""
    data = config_data(21)
    data["runner"] = {**data["runner"], "shards_per_worker": 2}
    config, out = tmp_path / "two.yaml", tmp_path / "out"
    config.write_text(yaml.safe_dump(data))
    build = start(config, out, "--workers", "0")
    build.wait_until(lambda: count(out, "markers/assemble/shard-*.json") > 0, "the first assemble marker")
    os.killpg(build.pid, signal.SIGINT)
    assert build.wait() == 130
    found = INTERRUPTED.findall(build.stderr)
    assert len(found) == 1, build.stderr[-3000:]
    done, total = map(int, found[0])
    assert (total, done <= count(out, "markers/assemble/shard-*.json")) == (SHARDS, True)
    assert done < SHARDS
    assert "Traceback" not in build.stderr
    assert_nothing_torn(out)
    assert_resumes_to(out, 21, clean_hash(21))


def test_a_sigint_while_the_workers_are_started_interrupts_the_build(
    tmp_path: Path, clean_hash: Callable[[int], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver blocks SIGINT in its main thread while it starts workers (so that they start with it
    blocked). One sent to the driver then is taken by another of its threads, and must still stop
    the build: it was once ignored there too, and the kernel threw it away (the build ran on)."""
    real = local.ProcessPoolExecutor.submit
    sent: list[int] = []

    def signal_first(pool: Any, *args: Any, **kwargs: Any) -> Any:
        if not sent:
            sent.append(os.getpid())
            os.kill(os.getpid(), signal.SIGINT)
        return real(pool, *args, **kwargs)

    monkeypatch.setattr(local.ProcessPoolExecutor, "submit", signal_first)
    out = tmp_path / "out"
    with pytest.raises(BuildInterrupted) as stopped:
        LocalRunner().run(parse_config(config_data(21)), out, workers=2)
    assert (sent, stopped.value.total, stopped.value.done < SHARDS) == ([os.getpid()], SHARDS, True)
    monkeypatch.undo()
    assert_resumes_to(out, 21, clean_hash(21))


@pytest.mark.slow
def test_ctrl_c_while_the_workers_start_is_an_interruption_not_a_broken_pool(
    tmp_path: Path, start: Callable[..., Build], clean_hash: Callable[[int], str]
) -> None:
    """Workers are still importing when Ctrl-C reaches the group: before they ignore SIGINT themselves."""
    config, out = write_config(tmp_path, 21), tmp_path / "out"
    build = start(config, out)
    build.wait_until(workers_up(build), "two workers")
    family = descendants(build.pid)
    os.killpg(build.pid, signal.SIGINT)
    assert build.wait() == 130, build.stderr[-3000:]
    # A fast worker may commit a shard before the signal lands: what matters is k < n and no crash.
    [(done, total)] = INTERRUPTED.findall(build.stderr)
    assert (int(done) < SHARDS, int(total)) == (True, SHARDS)
    assert "Traceback" not in build.stderr
    assert_all_gone(build, family)
    assert_resumes_to(out, 21, clean_hash(21))


@pytest.mark.slow
def test_sigterm_during_the_global_stages_stops_the_build_and_a_rerun_finishes(
    tmp_path: Path, clean_hash: Callable[[int], str]
) -> None:
    """The signal arrives after every shard is committed, as dedup starts (deterministically: the
    driver signals itself there), and still ends in the interruption message and 130."""
    config, out = write_config(tmp_path, 21), tmp_path / "out"
    script = (
        "import os, signal, sys\n"
        "from prmforge.pipelines.runners import finalize\n"
        "original = finalize.Finalizer.run\n"
        "def run(self):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return original(self)\n"
        "finalize.Finalizer.run = run\n"
        "from prmforge.pipelines.cli import app\n"
        "app(sys.argv[1:])\n"
    )
    args = ["build", str(config), "--output", str(out), "--workers", "0"]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=WAIT_S
    )
    assert done.returncode == 130, done.stderr[-3000:]
    assert INTERRUPTED.findall(done.stderr) == [(str(SHARDS), str(SHARDS))]
    assert not (out / "manifest.json").exists()
    assert_resumes_to(out, 21, clean_hash(21))


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["workers-started", "first-load-marker", "half-the-shards"])
def test_killing_the_driver_kills_its_workers_and_restart_builds_another_config(
    tmp_path: Path, start: Callable[..., Build], clean_hash: Callable[[int], str], moment: str
) -> None:
    old, new, out = write_config(tmp_path, 21), write_config(tmp_path, 22), tmp_path / "out"
    build = start(old, out)
    points: dict[str, Callable[[], bool]] = {
        "workers-started": workers_up(build),
        "first-load-marker": lambda: count(out, "markers/load/shard-*.json") > 0,
        "half-the-shards": lambda: count(out, "markers/assemble/shard-*.json") >= SHARDS // 2,
    }
    build.wait_until(points[moment], moment)
    family = descendants(build.pid)
    assert len(spawned(family, build.pid)) == 2
    os.kill(build.pid, signal.SIGKILL)  # the driver alone, not its group
    assert build.wait() == -signal.SIGKILL
    assert_all_gone(build, family)

    if moment == "half-the-shards":  # as a user would; the other moments restart in-process
        restart = start(new, out, "--restart")
        assert restart.wait() == 0, restart.stderr[-3000:]
    else:
        LocalRunner().run(parse_config(config_data(22)), out, restart=True, workers=0)
    assert Manifest.read(out).content_hash == clean_hash(22)
    expected = expected_hashes(parse_config(config_data(22)))
    found = markers(out)
    assert sorted((m.stage, m.shard) for m in found) == sorted(
        [(s, i) for s in SHARD_STAGES for i in range(SHARDS)] + [("dedup", GLOBAL), ("write", GLOBAL)]
    )
    assert all(m.config_hash == expected[m.stage] for m in found)
    assert len({m.run_id for m in found}) == 1  # the restarted run wrote every one of them
    assert_nothing_torn(out)


@pytest.mark.slow
def test_killing_the_whole_group_at_five_points_always_resumes_to_the_same_data(
    tmp_path: Path, start: Callable[..., Build], clean_hash: Callable[[int], str]
) -> None:
    """SIGKILL to the driver and its workers at once; each run resumes the previous one."""
    config, out = write_config(tmp_path, 23), tmp_path / "out"
    total = SHARDS * len(SHARD_STAGES)
    points = [0, 4, 17, 33, total]  # committed shard markers (0: as soon as the workers exist)
    for point in points:
        build = start(config, out)
        if point == 0:
            build.wait_until(workers_up(build), "workers")
        else:
            build.wait_until(
                partial(lambda n: count(out, "markers/*/shard-*.json") >= n, point), f"{point} markers"
            )
        family = descendants(build.pid)
        os.killpg(build.pid, signal.SIGKILL)
        # After the last shard only the global stages are left: the build may just have finished.
        assert build.wait() in ((-signal.SIGKILL, 0) if point == total else (-signal.SIGKILL,))
        assert_all_gone(build, family)
        assert_nothing_torn(out)
    assert_resumes_to(out, 23, clean_hash(23))


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_retried_and_the_build_equals_a_clean_one(
    tmp_path: Path, start: Callable[..., Build], clean_hash: Callable[[int], str]
) -> None:
    """The OOM killer's way: one worker dies mid-shard; the driver runs the shards that had begun
    again (alone, so a second death would be theirs), the build completes (exit 0, no traceback,
    nothing poisoned) with a clean build's content hash, and no process of it is left."""
    config, out = write_config(tmp_path, 21), tmp_path / "out"
    build = start(config, out)
    build.wait_until(lambda: count(out, "markers/load/shard-*.json") > 0, "the first load marker")
    family = descendants(build.pid)
    workers = spawned(family, build.pid)
    assert len(workers) == 2
    os.kill(workers[0].pid, signal.SIGKILL)
    assert build.wait() == 0, build.stderr[-3000:]
    assert "Traceback" not in build.stderr
    assert_all_gone(build, family)
    assert_nothing_torn(out)
    assert not (out / "poisoned").exists() or not any((out / "poisoned").iterdir())
    assert Manifest.read(out).content_hash == clean_hash(21)
