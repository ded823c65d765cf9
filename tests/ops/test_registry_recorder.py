"""The recorder ``prmforge build`` uses: coalesced writes, the cancel poll, counts from the manifest,
how an ending is classified, and what an unreachable registry does (and does not) do to a build."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from ops_fixtures import wait_for, write_config

from prmforge.ops.db import RegistryError
from prmforge.ops.registry import Registry
from prmforge.ops.registry_manifest import check_manifest
from prmforge.ops.registry_recorder import FINAL_ATTEMPTS, BuildRecorder, open_recorder
from prmforge.ops.registry_schema import StageInfo
from prmforge.pipelines.config import BuildConfig, load_config
from prmforge.pipelines.runners.builddir import StageCounts
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.pipelines.stats import summarize
from prmforge.schemas.errors import BuildStateError


@pytest.fixture
def cfg(tmp_path: Path) -> BuildConfig:
    return load_config(write_config(tmp_path / "small.yaml", count=8, shard_size=4))


def event(stage: str = "load", shard: int = 0) -> StageEvent:
    return StageEvent(shard, stage, StageCounts(2, 2, 0, 2), False, 0.5)


class FlakyRegistry(Registry):
    """A real registry whose progress and final writes fail while ``down`` is set (a network outage)."""

    down = False

    def record_progress(self, build_id: int, stages: Sequence[StageInfo], num_shards: int | None) -> bool:
        if self.down:
            raise RegistryError("db: connection refused")
        return super().record_progress(build_id, stages, num_shards)

    def finish(self, build_id: int, status: str, **kwargs: object) -> None:  # type: ignore[override]
        if self.down:
            raise RegistryError("db: connection refused")
        super().finish(build_id, status, **kwargs)  # type: ignore[arg-type]


def test_events_are_coalesced_into_a_few_writes_a_second(
    registry: Registry, cfg: BuildConfig, tmp_path: Path
) -> None:
    recorder = BuildRecorder(registry, pytest.fail)
    recorder.start(cfg, tmp_path / "out")
    build_id = recorder.build_id
    assert build_id is not None
    began = time.monotonic()
    for i in range(3000):
        recorder.on_event(event(shard=i % 7))
    wait_for(
        lambda: registry.get(build_id).stages == (StageInfo("load", 3000, 0, 6000, 6000, 0, 1500.0),),
        "the counts reach the registry",
    )
    elapsed = time.monotonic() - began
    progress_writes = recorder.writes - 1
    assert 1 <= progress_writes <= elapsed / recorder.flush_s + 1
    recorder.interrupted("stopped")
    assert registry.get(build_id).status == "interrupted"


def test_a_cancel_requested_in_the_registry_stops_the_build(
    registry: Registry, cfg: BuildConfig, tmp_path: Path
) -> None:
    warnings: list[str] = []
    cancelled = threading.Event()
    recorder = BuildRecorder(registry, warnings.append, on_cancel=cancelled.set)
    recorder.start(cfg, tmp_path / "out")
    assert recorder.build_id is not None
    registry.request_cancel(recorder.build_id)
    wait_for(cancelled.is_set, "the driver sees the cancel")
    recorder.interrupted("interrupted after 0 of 2 shards; rerun to resume")
    info = registry.get(recorder.build_id)
    assert (info.status, info.error) == ("cancelled", "interrupted after 0 of 2 shards; rerun to resume")
    assert warnings == [
        f"build {recorder.build_id}: cancel requested in the registry; stopping (a rerun resumes)"
    ]


def test_a_resumed_build_records_the_manifest_counts(
    registry: Registry, cfg: BuildConfig, tmp_path: Path
) -> None:
    """A rerun only reports the final stage of each committed shard; its row still holds every count."""
    out = tmp_path / "out"
    for expected_resumed in (0, 2):
        recorder = BuildRecorder(registry, pytest.fail)
        with recorder.recording(cfg, out):
            result = LocalRunner(recorder.on_event, recorder.on_plan).run(cfg, out, workers=0)
            recorder.finished(result)
        assert recorder.build_id is not None
        info = registry.get(recorder.build_id)
        manifest = Manifest.read(out)
        assert (info.status, info.error, info.content_hash) == ("succeeded", None, manifest.content_hash)
        assert info.cost == summarize(out)["cost"]
        assert {s.name: (s.rows_in, s.rows_out, s.quarantined) for s in info.stages} == {
            name: (c.rows_in, c.rows_out, c.quarantined) for name, c in manifest.stages.items()
        }
        assert [(s.name, s.shards) for s in info.stages][-3:] == [("assemble", 2), ("dedup", 1), ("write", 1)]
        assert next(s for s in info.stages if s.name == "assemble").resumed == expected_resumed
        assert check_manifest(info).agrees


@pytest.mark.parametrize(
    ("raised", "status", "error"),
    [
        (BuildStateError("/out: is not a directory"), "failed", "/out: is not a directory"),
        (RuntimeError("boom"), "failed", "RuntimeError: boom"),
        (KeyboardInterrupt(), "interrupted", "interrupted"),
    ],
)
def test_an_exception_out_of_the_build_is_recorded(
    registry: Registry, cfg: BuildConfig, tmp_path: Path, raised: BaseException, status: str, error: str
) -> None:
    recorder = BuildRecorder(registry, pytest.fail)
    with pytest.raises(type(raised)), recorder.recording(cfg, tmp_path / "out"):
        raise raised
    assert recorder.build_id is not None
    info = registry.get(recorder.build_id)
    assert (info.status, info.error) == (status, error)


def test_an_unreachable_registry_leaves_the_build_unrecorded_with_one_warning(
    cfg: BuildConfig, tmp_path: Path
) -> None:
    url = "sqlite:////nonexistent-prmforge-dir/r.sqlite"
    warnings: list[str] = []
    recorder = open_recorder(url, strict=False, warn=warnings.append)
    with recorder.recording(cfg, tmp_path / "out"):
        result = LocalRunner(recorder.on_event, recorder.on_plan).run(cfg, tmp_path / "out", workers=0)
        recorder.finished(result)
    assert warnings == [
        f"{url}: cannot open the build registry (unable to open database file); this build is not "
        "recorded in the registry"
    ]
    assert not recorder.active
    with pytest.raises(RegistryError, match=r"cannot open the build registry"):
        open_recorder(url, strict=True, warn=pytest.fail)


def test_registry_outages_only_warn_and_the_row_catches_up(
    registry: Registry, cfg: BuildConfig, tmp_path: Path
) -> None:
    flaky = FlakyRegistry(registry.engine, registry.url)
    warnings: list[str] = []
    recorder = BuildRecorder(flaky, warnings.append)
    recorder.start(cfg, tmp_path / "out")
    build_id = recorder.build_id
    assert build_id is not None
    flaky.down = True
    recorder.on_event(event())
    wait_for(lambda: warnings, "a warning")
    assert warnings == ["db: connection refused; the build goes on; its registry row lags"]
    flaky.down = False
    wait_for(lambda: registry.get(build_id).stages, "the counts written once the registry is back")
    flaky.down = True
    recorder.on_event(event())
    recorder.interrupted("interrupted")
    assert warnings[1:] == [f"db: connection refused; build {build_id} could not be recorded as interrupted"]
    assert len(warnings) == 2  # one warning per outage of progress, one for the final status
    assert registry.get(build_id).status == "running"  # what `builds show` then reports as a gone driver
    assert FINAL_ATTEMPTS == 3
