"""The local runner retries a shard that kills or fails its worker, then quarantines it (poison).

Faults come from the runners' shared seam (``PRMFORGE_FAULT_CRASH_SHARD``, runners/faults.py): the
worker running the shard SIGKILLs itself or raises right after the shard's load stage committed.
After each: the build commits, every row is accounted for, and only the faulty shard differs from
a clean build. A shard that was merely running beside the one that died is never charged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import committed, small_config

from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.faults import DIED, FAULT_ENV, MAX_ATTEMPTS
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.runners.plan import BuildResult
from prmforge.schemas.arrow import QuarantineEntry

SHARD_SIZE = 4  # 12 arith + 8 GSM8K problems: 5 shards; shard 2 holds arith problems 8..11
RAISED = f"RuntimeError: {FAULT_ENV}: shard 2 crashes its worker (fault injection)"


def config():  # type: ignore[no-untyped-def]
    return small_config(runner={"workers": 2, "shard_size": SHARD_SIZE, "cache": False})


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return LocalRunner().run(config(), tmp_path_factory.mktemp("clean") / "b", workers=0)


def data_rows(result: BuildResult) -> list[tuple[str, int, str]]:
    return [(f.path, f.rows, f.content_hash) for f in result.manifest.under("data/")]


def assert_accounted(out: Path) -> None:
    """Every input row is accepted or quarantined at load; every written row is unique."""
    manifest = Manifest.read(out)
    load = manifest.stages["load"]
    assert load.rows_in == 20
    assert load.accepted + load.quarantined == 20
    assert load.quarantined == sum(f.rows for f in manifest.under("quarantine/load/"))
    ids = [r.example_id for r in committed(out, "data/", "example")]
    assert len(ids) == len(set(ids))


def test_a_worker_killed_once_mid_shard_is_retried_and_the_build_equals_a_clean_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean: BuildResult
) -> None:
    monkeypatch.setenv(FAULT_ENV, "2:kill:1")
    runner = LocalRunner()
    result = runner.run(config(), tmp_path / "b")
    assert result.content_hash == clean.content_hash
    assert data_rows(result) == data_rows(clean)
    assert runner.poisoned == {}
    assert BuildDir(tmp_path / "b").poisoned(2) is None
    # Killed beside another shard, then again alone (the fault fires on a first attempt; the
    # rerun beside the other shard was not charged), then it passed.
    assert result.warnings == ("shard 2: 1 attempt(s) failed on a worker; retried",)
    assert_accounted(tmp_path / "b")


@pytest.mark.parametrize(
    ("mode", "workers", "cause"),
    [("raise", 2, RAISED), ("kill", 2, DIED), pytest.param("kill", 1, DIED, marks=pytest.mark.slow)],
    ids=["raise-2-workers", "kill-2-workers", "kill-1-worker"],
)
def test_a_shard_that_fails_its_worker_every_time_is_quarantined_and_the_build_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean: BuildResult, mode: str, workers: int, cause: str
) -> None:
    monkeypatch.setenv(FAULT_ENV, f"2:{mode}")
    out = tmp_path / "b"
    runner = LocalRunner()
    result = runner.run(config(), out, workers=workers)
    reason = f"shard 2 failed its worker on {MAX_ATTEMPTS} of {MAX_ATTEMPTS} attempts (last: {cause})"
    assert runner.poisoned == {2: reason}  # only shard 2: the shards beside it were never charged
    assert result.warnings == (f"shard 2 was quarantined whole: {reason}",)
    assert BuildDir(out).poisoned(2) == reason
    entries: list[QuarantineEntry] = committed(out, "quarantine/load/", "quarantine")
    assert [(q.source, q.index, q.field, q.reason) for q in entries] == [
        ("arith", i, "<shard>", reason) for i in range(8, 12)
    ]
    assert result.manifest.stages["load"].quarantined == 4
    assert result.content_hash != clean.content_hash
    assert_accounted(out)
    # The other shards' committed files are exactly a clean build's, stage by stage.
    assert shard_files(result, skip=2) == shard_files(clean, skip=2)
    # A rerun reuses everything, the poisoned shard included.
    events = []
    monkeypatch.delenv(FAULT_ENV)
    runner.on_event = events.append  # the same runner: what it reports is this run's alone
    again = runner.run(config(), out, workers=workers)
    assert (again.content_hash, again.warnings, runner.poisoned) == (result.content_hash, (), {})
    assert all(e.resumed for e in events)


def shard_files(result: BuildResult, skip: int) -> list[tuple[str, int, str]]:
    """(path, rows, content hash) of every committed per-shard file but those of shard ``skip``."""
    return sorted(
        (f.path, f.rows, f.content_hash)
        for f in result.manifest.files
        if "/shard-" in f.path and f"shard-{skip:05d}" not in f.path
    )
