"""The Apache Beam runner (issue #12): the local runner's content hash on FnApiRunner in memory and with
worker processes, and its faults (RELIABILITY.md §5.2): a worker killed mid-shard, the driver killed,
Ctrl-C and SIGTERM, a rerun of a committed build, a changed config, a poison shard.

After every fault the build directory must be sound (:func:`assert_sound`): rows are conserved, every
(rollout, step) of the data files is there once, every committed file is whole and the manifest lists
exactly what lies on disk, with its sha256.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from conftest import committed, small_config
from test_conformance import conformance_config

from prmforge.pipelines.config import BuildConfig, load_config, parse_config
from prmforge.pipelines.runners.beam import SIDE_DIR, BeamRunner, pipeline_args
from prmforge.pipelines.runners.beam_dedup import check_agreement
from prmforge.pipelines.runners.builddir import BuildDir, Marker, file_sha256
from prmforge.pipelines.runners.faults import FAULT_ENV, MAX_ATTEMPTS, Fault
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.runners.plan import BuildResult, ShardTask, Worker
from prmforge.pipelines.runners.select import make_runner, with_overrides
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.errors import BuildStateError

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
PRMFORGE = Path(sys.executable).with_name("prmforge")
TAG = "PRMFORGE_BEAM_TEST_TAG"
SHARDS = 10  # FAULTS: 40 problems, 4 per shard
INTERRUPTED = re.compile(r"interrupted after (\d+) of (\d+) shards; rerun to resume")
WAIT_S = 180.0  # a bound on waiting for a build to reach a point or to exit; never a timing expectation
GONE_S = 10.0
DIED = "the worker process died (killed by a signal or out of memory)"


def faults_data(seed: int = 21) -> dict[str, Any]:
    return {
        "name": "faults",
        "seed": seed,
        "inputs": [{"kind": "arith", "count": 40, "min_steps": 2, "max_steps": 4}],
        "generate": {"rollouts_per_problem": 2},
        "annotate": [{"kind": "mc", "n": 2}],
        "split": {"validation": 0.2, "dedup": True},
        "runner": {"workers": 2, "shard_size": 4},
    }


def faults_config(seed: int = 21) -> BuildConfig:
    return parse_config(faults_data(seed))


@pytest.fixture(scope="module")
def local_hash(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], BuildResult]:
    """The in-process local build of a named config (built once per module)."""
    configs: dict[str, Callable[[], BuildConfig]] = {
        "conformance": conformance_config,
        "quickstart": lambda: load_config(QUICKSTART),
        "faults": faults_config,
    }
    built: dict[str, BuildResult] = {}

    def get(name: str) -> BuildResult:
        if name not in built:
            out = tmp_path_factory.mktemp(f"local-{name}") / "b"
            built[name] = LocalRunner().run(configs[name](), out, workers=0)
        return built[name]

    return get


# -- what must hold after every build ---------------------------------------------------------------


def markers(out: Path) -> list[Marker]:
    return [Marker.from_json(json.loads(p.read_text())) for p in sorted(out.glob("markers/*/*.json"))]


def assert_nothing_torn(out: Path) -> None:
    """Every file under a final name is whole and every marker verifies (a killed worker may leave
    temporaries: they never bear a final name, and the next run sweeps them)."""
    for path in out.rglob("*.parquet"):
        pq.read_metadata(path)
    build = BuildDir(out)
    for marker in markers(out):
        assert build.committed(marker.stage, marker.shard, marker.config_hash) == marker, marker.stage


def assert_sound(out: Path, input_rows: int) -> Manifest:
    """Conservation, unique (rollout, step) keys, whole files, and a manifest that is what lies on disk."""
    assert not (out / SIDE_DIR).exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert_nothing_torn(out)
    manifest = Manifest.read(out)
    for f in manifest.files:
        path = out / f.path
        assert file_sha256(path) == f.sha256, f.path
        assert pq.read_metadata(path).num_rows == f.rows, f.path
    listed = {f.path for f in manifest.files}
    on_disk = {
        p.relative_to(out).as_posix()
        for top in ("stages", "quarantine", "excluded", "data", "trees")
        for p in (out / top).rglob("*.parquet")
    }
    assert on_disk == listed
    stages = manifest.stages
    assert stages["load"].rows_in == input_rows
    for name, counts in stages.items():
        assert counts.rows_in == counts.accepted + counts.quarantined, name
        assert sum(f.rows for f in manifest.under(f"quarantine/{name}/")) == counts.quarantined, name
    assert stages["dedup"].rows_in == stages["assemble"].rows_out
    assert stages["dedup"].rows_out + stages["dedup"].excluded == stages["dedup"].rows_in
    assert stages["write"].rows_out == sum(manifest.splits.values()) == stages["dedup"].rows_out
    rows = committed(out, "data/", "example")
    assert len(rows) == sum(manifest.splits.values())
    keys = [(r.example_id, step) for r in rows for step in range(len(r.completions))]
    assert len(keys) == len(set(keys))
    return manifest


def assert_same_content(result: BuildResult, reference: BuildResult) -> None:
    assert result.content_hash == reference.content_hash
    assert result.manifest.splits == reference.manifest.splits
    assert result.manifest.dedup == reference.manifest.dedup
    assert result.manifest.stages == reference.manifest.stages
    assert [(f.path, f.rows, f.content_hash) for f in result.manifest.under("data/")] == [
        (f.path, f.rows, f.content_hash) for f in reference.manifest.under("data/")
    ]


def quarantined_by_stage(manifest: Manifest) -> dict[str, int]:
    shard_stages = [name for name in manifest.stages if name not in ("dedup", "write")]
    return {
        name: manifest.stages[name].quarantined for name in shard_stages if manifest.stages[name].quarantined
    }


# -- options ----------------------------------------------------------------------------------------


def test_workers_map_to_fnapirunner_options_and_the_options_pass_through_as_written() -> None:
    config = small_config()
    in_memory = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]
    assert pipeline_args(config, 0) == in_memory
    assert pipeline_args(config, 1) == in_memory
    assert pipeline_args(config, 3) == [
        "--runner=FnApiRunner",
        "--direct_num_workers=3",
        "--direct_running_mode=multi_processing",
    ]
    assert pipeline_args(config) == pipeline_args(config, config.runner.workers)
    mine = with_overrides(config, beam_options=["--direct_num_workers=4"])
    options = PipelineOptions(pipeline_args(mine, 2)).view_as(DirectOptions)
    assert (options.direct_num_workers, options.direct_running_mode) == (4, "multi_processing")
    flink = with_overrides(
        config, "beam", "FlinkRunner", ["--flink_master=localhost:8081", "--environment_type=LOOPBACK"]
    )
    assert pipeline_args(flink, 2) == [
        "--runner=FlinkRunner",
        "--flink_master=localhost:8081",
        "--environment_type=LOOPBACK",
    ]
    assert isinstance(make_runner(flink), BeamRunner)
    assert flink.content_hash() == config.content_hash()


# -- conformance ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("name", ["conformance", "quickstart"])
def test_beam_builds_the_local_runners_content(
    tmp_path: Path, local_hash: Callable[[str], BuildResult], name: str, workers: int
) -> None:
    config = conformance_config() if name == "conformance" else load_config(QUICKSTART)
    reference = local_hash(name)
    runner = BeamRunner()
    result = runner.run(config, tmp_path / "b", workers=workers)
    assert_same_content(result, reference)
    assert (result.shards_run, result.problems) == (reference.manifest.num_shards, ())
    assert result.warnings == reference.warnings
    manifest = assert_sound(tmp_path / "b", reference.manifest.stages["load"].rows_in)
    assert manifest.dedup["dropped"] > 0
    report = runner.report
    assert report is not None
    assert report.isolated == (workers >= 2)
    assert (report.failed_attempts, report.poisoned) == ({}, {})
    assert report.quarantined == quarantined_by_stage(manifest)
    assert report.dedup == manifest.dedup  # the GroupByKey decision (no near dedup nor balance here)


def _ids_config(tmp_path: Path, ids: list[str], split: dict[str, Any]) -> BuildConfig:
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k_train.jsonl"
    lines = shared.read_text(encoding="utf-8").splitlines()
    rows = [{**json.loads(lines[i % 4]), "id": pid} for i, pid in enumerate(ids)]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return parse_config(
        {
            "name": "ids",
            "seed": 5,
            "inputs": [{"kind": "problems", "path": str(path), "preset": "gsm8k", "columns": {"id": "id"}}],
            "annotate": [{"kind": "equations"}],
            "generate": {"rollouts_per_problem": 3},
            "split": split,
            "runner": {"workers": 0, "shard_size": 2},
        }
    )


@pytest.mark.slow
@pytest.mark.parametrize(("drop", "dropped", "near", "balanced"), [(True, 11, 3, 8), (False, 3, 10, 9)])
def test_beam_decides_clashing_ids_repeats_and_questions_as_the_global_dedup_stage(
    tmp_path: Path, drop: bool, dropped: int, near: int, balanced: int
) -> None:
    """p0 in shards 0 and 1 (a clash), p4..p7 the questions of p0..p3 again (repeated rows and
    questions under two ids), with near dedup and balance dropping more rows after them; repeats are
    dropped only with ``split.dedup``."""
    split = {
        "validation": 0.25,
        "dedup": drop,
        "near_dedup": {"threshold": 0.5, "shingle": 2},
        "balance": {"target": 0.5, "splits": ["train"]},
    }
    config = _ids_config(tmp_path, ["p0", "p1", "p0", "p3", "p4", "p5", "p6", "p7"], split)
    reference = LocalRunner().run(config, tmp_path / "local", workers=0)
    runner = BeamRunner()
    result = runner.run(config, tmp_path / "beam", workers=0)
    assert_same_content(result, reference)
    exact = {
        "clashing_ids": 3,  # the three rollouts of the second p0
        "duplicate_questions": 3,  # p4, p5, p7 (p6 repeats the question of the second p0: a clash)
        "repeated_rows": 8,
        "conflicting_labels": 0,
        "dropped": dropped,  # the clashes, and the repeats when they are dropped
    }
    assert runner.report is not None
    assert runner.report.dedup == exact
    dedup = result.manifest.dedup
    assert {k: dedup[k] for k in exact} == exact
    # Rows the Beam check leaves to the Finalizer (order-dependent), dropped after the exact ones:
    assert (dedup["near_duplicates"], dedup["balance_dropped"]) == (near, balanced)
    assert result.problems == (
        "3 row(s) share a problem id with rows of another shard (two input rows with one id); the later "
        "copies were dropped: give every input row a distinct id (see excluded rows of dedup)",
    )
    assert_sound(tmp_path / "beam", 8)


def test_the_agreement_check_refuses_a_decision_that_differs(tmp_path: Path) -> None:
    out = tmp_path / "b"
    LocalRunner().run(conformance_config(), out, workers=0)
    build, manifest = BuildDir(out), Manifest.read(out)
    entries: list[QuarantineEntry] = manifest.records(build, "stages/dedup/", "quarantine")
    counts = {k: manifest.dedup[k] for k in ("repeated_rows", "conflicting_labels", "dropped",
                                             "duplicate_questions", "clashing_ids")}  # fmt: skip
    decision = tmp_path / "dedup.json"

    def write(c: dict[str, int], e: list[QuarantineEntry]) -> None:
        decision.write_text(json.dumps({"counts": c, "entries": [vars_of(q) for q in e]}))

    write(counts, entries)
    assert check_agreement(decision, build, manifest) == counts
    write(counts, entries[1:])
    with pytest.raises(BuildStateError, match=r"the Beam dedup .* disagrees with the committed dedup stage"):
        check_agreement(decision, build, manifest)
    write({**counts, "repeated_rows": counts["repeated_rows"] + 1}, entries)
    with pytest.raises(BuildStateError, match=r"disagrees"):
        check_agreement(decision, build, manifest)


def vars_of(q: QuarantineEntry) -> dict[str, Any]:
    return {k: getattr(q, k) for k in QuarantineEntry.__dataclass_fields__}


def test_a_malformed_fault_seam_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "2:explode")
    with pytest.raises(ValueError, match=r"PRMFORGE_FAULT_CRASH_SHARD='2:explode': expected <shard>:"):
        Fault.from_env()
    monkeypatch.setenv(FAULT_ENV, "2:kill:1")
    assert Fault.from_env() == Fault(2, "kill", 1)
    monkeypatch.delenv(FAULT_ENV)
    assert Fault.from_env() is None


# -- reruns -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rerunning_a_committed_build_recomputes_nothing(
    tmp_path: Path, local_hash: Callable[[str], BuildResult]
) -> None:
    out = tmp_path / "b"
    first = BeamRunner().run(conformance_config(), out, workers=0)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    stamps.pop(out / "manifest.json")  # rewritten with the same content
    stamps.pop(out / "README.md")
    events: list[StageEvent] = []
    again = BeamRunner(on_event=events.append).run(conformance_config(), out, workers=0)
    assert (again.resumed, again.shards_run, again.shards_skipped) == (True, 0, 5)
    assert again.content_hash == first.content_hash == local_hash("conformance").content_hash
    assert all(e.resumed for e in events)
    assert [(e.shard, e.stage) for e in events] == [(i, "assemble") for i in range(5)] + [
        (-1, "dedup"),
        (-1, "write"),
    ]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert_sound(out, 20)


def test_resuming_with_a_changed_config_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "b"
    first = BeamRunner().run(conformance_config(), out, workers=0)
    changed = conformance_config().model_copy(update={"seed": 12})
    with pytest.raises(BuildStateError, match=r"holds a build of a different configuration \(config hash"):
        BeamRunner().run(changed, out, workers=0)
    assert Manifest.read(out).content_hash == first.content_hash
    again = BeamRunner().run(conformance_config(), out, workers=0)  # the refused run left it unlocked
    assert (again.shards_run, again.content_hash) == (0, first.content_hash)


# -- worker faults ----------------------------------------------------------------------------------


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def set_fault(value: str) -> None:
        monkeypatch.setenv(FAULT_ENV, value)

    return set_fault


def _load_event_of(out: Path, shard: int) -> tuple[int, dict[str, Any]] | None:
    """The pid of the worker that committed ``shard``'s load (from the workers' event logs), if any."""
    for path in out.glob(f"{SIDE_DIR}/*/events/*.jsonl"):
        whole = path.read_text().rpartition("\n")[0]  # a worker may be writing the last line now
        for line in whole.splitlines():
            event = json.loads(line)
            if (event["shard"], event["stage"], event["resumed"]) == (shard, "load", False):
                return int(event["pid"]), event
    return None


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_retried_and_the_build_is_the_clean_one(
    tmp_path: Path, fault: Callable[[str], None], local_hash: Callable[[str], BuildResult]
) -> None:
    """The seam parks the worker of shard 3 after its load (first attempt only); the test SIGKILLs it."""
    fault("3:hang:1")
    out = tmp_path / "b"
    killed: list[int] = []

    def kill_when_parked() -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            found = _load_event_of(out, 3)
            if found is not None:
                os.kill(found[0], signal.SIGKILL)
                killed.append(found[0])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_parked, daemon=True)
    killer.start()
    runner = BeamRunner()
    result = runner.run(faults_config(), out, workers=2)
    killer.join()
    assert len(killed) == 1
    assert runner.report is not None
    assert (runner.report.failed_attempts, runner.report.poisoned) == ({3: 1}, {})
    assert result.warnings == ("shard 3: 1 attempt(s) failed on a Beam worker; retried",)
    assert_same_content(result, local_hash("faults"))
    assert_sound(out, 40)
    assert BuildDir(out).poisoned(3) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "workers", "last_error"),
    [
        ("kill", 2, DIED),
        ("raise", 0, f"RuntimeError('{FAULT_ENV}: shard 2 crashes its worker (fault injection)')"),
    ],
    ids=["killed-worker-processes", "raising-in-process"],
)
def test_a_poison_shard_is_quarantined_with_the_reason_after_the_bound_and_the_build_commits(
    tmp_path: Path, fault: Callable[[str], None], mode: str, workers: int, last_error: str
) -> None:
    fault(f"2:{mode}")
    out = tmp_path / "b"
    runner = BeamRunner()
    result = runner.run(faults_config(), out, workers=workers)
    reason = (
        f"shard 2 failed its Beam worker on {MAX_ATTEMPTS} of {MAX_ATTEMPTS} attempts (last: {last_error})"
    )
    assert runner.report is not None
    assert runner.report.failed_attempts == {2: MAX_ATTEMPTS}
    assert runner.report.poisoned == {2: reason}
    assert runner.report.quarantined == {"load": 4}
    assert result.warnings == (f"shard 2 was quarantined whole: {reason}",)
    assert result.problems == ()
    manifest = assert_sound(out, 40)
    assert (manifest.stages["load"].quarantined, manifest.stages["load"].accepted) == (4, 36)
    entries: list[QuarantineEntry] = committed(out, "quarantine/load/", "quarantine")
    assert [(q.index, q.field, q.reason) for q in entries] == [(i, "<shard>", reason) for i in range(8, 12)]
    assert BuildDir(out).poisoned(2) == reason
    # The local runner, given the same poison record, builds the same content; a rerun reuses it all.
    local = tmp_path / "local"
    LocalRunner().run(faults_config(), local, workers=0)
    BuildDir(local).record_poison(2, reason)
    assert_same_content(LocalRunner().run(faults_config(), local, workers=0), result)
    events: list[StageEvent] = []
    again = BeamRunner(on_event=events.append).run(faults_config(), out, workers=0)
    assert (again.shards_run, again.content_hash, again.warnings) == (0, result.content_hash, ())
    assert all(e.resumed for e in events)


@pytest.mark.slow
def test_a_shard_that_fails_once_is_retried_not_quarantined(
    tmp_path: Path, fault: Callable[[str], None], local_hash: Callable[[str], BuildResult]
) -> None:
    fault("4:raise:1")
    runner = BeamRunner()
    result = runner.run(faults_config(), tmp_path / "b", workers=0)
    assert runner.report is not None
    assert (runner.report.failed_attempts, runner.report.poisoned) == ({4: 1}, {})
    assert_same_content(result, local_hash("faults"))
    assert_sound(tmp_path / "b", 40)


@pytest.mark.slow
def test_a_shard_that_fails_even_quarantined_fails_the_build_and_keeps_what_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In memory the DoFn runs in this process: shard 1 raises on every attempt, its poisoned one too."""
    original = Worker.run

    def run(self: Worker, task: ShardTask) -> None:
        if task.shard == 1:
            raise RuntimeError("stage crash")
        original(self, task)

    monkeypatch.setattr(Worker, "run", run)
    out = tmp_path / "b"
    config = conformance_config()
    with pytest.raises(
        BuildStateError,
        match=r"the Beam pipeline failed \(.*shard 1 failed its Beam worker even with its rows quarantined "
        r"at load: RuntimeError\('stage crash'\).*\); committed shards are kept: rerun to resume",
    ):
        BeamRunner().run(config, out, workers=0)
    reason = "shard 1 failed its Beam worker on 3 of 3 attempts (last: RuntimeError('stage crash'))"
    assert BuildDir(out).poisoned(1) == reason
    assert assembled(out) == 4
    assert not (out / "manifest.json").exists()
    assert_nothing_torn(out)
    monkeypatch.setattr(Worker, "run", original)
    again = BeamRunner().run(config, out, workers=0)
    assert (again.shards_run, again.manifest.stages["load"].quarantined) == (1, 4)
    assert_sound(out, 20)


# -- the driver: killed, interrupted (real `prmforge build --runner beam` processes) ----------------


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of ``pid`` as (pid, start time)."""
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(p) for p in children.read_text().split()]
            except OSError:
                continue
            for kid in kids:
                start = _start(kid)
                if start is not None:
                    found.append((kid, start))
                    todo.append(kid)
    return found


def _start(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in "ZX" else int(fields[19])


def tagged(tag: str) -> list[int]:
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0") and _start(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Build:
    """One `prmforge build --runner beam` in its own session, its output captured to files."""

    def __init__(self, config: Path, out: Path, logs: Path, *args: str) -> None:
        self.tag = uuid.uuid4().hex
        self.stdout_file, self.stderr_file = logs / f"{self.tag}.out", logs / f"{self.tag}.err"
        command = [str(PRMFORGE), "build", str(config), "--output", str(out), "--runner", "beam", *args]
        with self.stdout_file.open("wb") as stdout, self.stderr_file.open("wb") as stderr:
            self.proc = subprocess.Popen(
                command,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, TAG: self.tag},
                start_new_session=True,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return " ".join(self.stdout_file.read_text(errors="replace").split())

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
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in tagged(self.tag):
            os.kill(pid, signal.SIGKILL)


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


def write_config(directory: Path) -> Path:
    path = directory / "faults.yaml"
    path.write_text(yaml.safe_dump(faults_data()))
    return path


def assembled(out: Path) -> int:
    return sum(1 for _ in out.glob("markers/assemble/shard-*.json"))


def assert_all_gone(build: Build, family: list[tuple[int, int]]) -> None:
    deadline = time.monotonic() + GONE_S
    while True:
        left = [p for p in family if _start(p[0]) == p[1]] + [(p, 0) for p in tagged(build.tag)]
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"processes of the build still run {GONE_S:.0f} s after it ended: {left}")
        time.sleep(0.05)


@pytest.mark.slow
def test_killing_the_driver_mid_build_then_rerunning_gives_the_clean_hash(
    tmp_path: Path,
    start: Callable[..., Build],
    local_hash: Callable[[str], BuildResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, out = write_config(tmp_path), tmp_path / "out"
    # One shard parks after its load, so the build cannot finish before the kill however loaded the
    # machine is (the other worker commits the rest); the rerun runs without the seam.
    monkeypatch.setenv(FAULT_ENV, f"{SHARDS - 1}:hang:1")
    build = start(config, out, "--workers", "2")
    build.wait_until(lambda: assembled(out) > 0, "the first assemble marker")
    family = descendants(build.proc.pid)
    assert len([p for p in family if "sdk_worker_main" in _cmdline(p[0])]) >= 2
    os.kill(build.proc.pid, signal.SIGKILL)  # the driver alone, not its group
    assert build.wait() == -signal.SIGKILL
    assert_all_gone(build, family)
    assert_nothing_torn(out)
    done = assembled(out)
    assert 0 < done < SHARDS
    monkeypatch.delenv(FAULT_ENV)
    rerun = start(config, out, "--workers", "2")
    assert rerun.wait() == 0, rerun.stderr[-3000:]
    assert f"resumed {out}: {SHARDS - done} shard(s) run, {done} already committed" in rerun.stdout
    assert Manifest.read(out).content_hash == local_hash("faults").content_hash
    assert_sound(out, 40)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "to_group", "workers"),
    [(signal.SIGINT, True, "2"), (signal.SIGTERM, False, "2"), (signal.SIGINT, True, "0")],
    ids=["sigint-group", "sigterm-driver", "sigint-in-process"],
)
def test_a_signal_stops_the_build_and_a_rerun_resumes(
    tmp_path: Path,
    start: Callable[..., Build],
    local_hash: Callable[[str], BuildResult],
    signum: int,
    to_group: bool,
    workers: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, out = write_config(tmp_path), tmp_path / "out"
    if workers == "2":  # one shard parks after its load: the signal always lands before the end
        monkeypatch.setenv(FAULT_ENV, f"{SHARDS - 1}:hang:1")
    build = start(config, out, "--workers", workers)
    build.wait_until(lambda: assembled(out) > 0, "the first assemble marker")
    family = descendants(build.proc.pid)
    (os.killpg if to_group else os.kill)(build.proc.pid, signum)
    assert build.wait() == 130, build.stderr[-3000:]
    found = INTERRUPTED.findall(build.stderr)
    assert len(found) == 1, build.stderr[-3000:]
    done, total = map(int, found[0])
    assert (total, done) == (SHARDS, assembled(out))
    assert done < SHARDS
    if workers == "0" or not to_group:  # a Ctrl-C to the group also reaches Beam's harnesses, which say so
        assert "Traceback" not in build.stderr
    assert_all_gone(build, family)
    assert_nothing_torn(out)
    monkeypatch.delenv(FAULT_ENV, raising=False)
    if signum == signal.SIGINT and workers == "2":  # as a user would; the others rerun in this process
        rerun = start(config, out, "--workers", workers)
        assert rerun.wait() == 0, rerun.stderr[-3000:]
        assert f"resumed {out}: {SHARDS - done} shard(s) run, {done} already committed" in rerun.stdout
    else:
        again = BeamRunner().run(faults_config(), out, workers=0)
        assert (again.resumed, again.shards_run) == (True, SHARDS - done)
    assert Manifest.read(out).content_hash == local_hash("faults").content_hash
    assert_sound(out, 40)
