"""Runner conformance: every runner builds one config into one content hash (DESIGN.md, "Runners").

Append a runner to ``RUNNERS`` (the Beam and Ray runners of the runners issue) and it must
produce the same data files, byte for byte in content, as the in-process local runner.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import small_config

from prmforge.pipelines.config import BuildConfig
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.plan import BuildResult

Build = Callable[[BuildConfig, Path], BuildResult]


@dataclass(frozen=True)
class RunnerCase:
    name: str
    build: Build


def _local(workers: int) -> RunnerCase:
    return RunnerCase(f"local-{workers}", lambda config, out: LocalRunner().run(config, out, workers=workers))


def _beam(workers: int) -> RunnerCase:
    from prmforge.pipelines.runners.beam import BeamRunner

    return RunnerCase(f"beam-{workers}", lambda config, out: BeamRunner().run(config, out, workers=workers))


def _ray(workers: int) -> RunnerCase:
    """The Ray runner as a user starts it: no cluster address, so it starts a local Ray for the build
    and stops it after (its session files in a short temporary folder: Ray's socket paths are short)."""

    def build(config: BuildConfig, out: Path) -> BuildResult:
        from prmforge.pipelines.runners.ray import RayRunner

        tmp = Path(tempfile.mkdtemp(prefix="pfray-", dir="/tmp"))
        try:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("RAY_TMPDIR", str(tmp))
                env.setenv("RAY_USAGE_STATS_ENABLED", "0")
                env.delenv("RAY_ADDRESS", raising=False)
                return RayRunner().run(config, out, workers=workers)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    return RunnerCase(f"ray-{workers}", build)


RUNNERS: list[RunnerCase] = [_local(0), _local(1), _local(2), _beam(0), _beam(2), _ray(1), _ray(2)]


def conformance_config() -> BuildConfig:
    """Two sources fused by `earliest`, a validation split and dedup: every global stage has work."""
    return small_config(
        annotate=[{"kind": "mc", "n": 2}, {"kind": "equations"}],
        fuse={"rule": "earliest"},
        split={"validation": 0.25, "dedup": True},
        runner={"workers": 0, "shard_size": 4},
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The build of the simplest runner: in this process, shard after shard."""
    return LocalRunner().run(conformance_config(), tmp_path_factory.mktemp("reference") / "b", workers=0)


def test_the_reference_build_exercises_every_stage(reference: BuildResult) -> None:
    m = reference.manifest
    assert m.num_shards == 5  # 12 arith in 4, 4, 4 and 8 GSM8K in 4, 4
    assert m.splits["validation"] > 0
    assert m.dedup["dropped"] > 0
    assert m.sources == ("mc", "equations")


@pytest.mark.parametrize("case", RUNNERS, ids=[c.name for c in RUNNERS])
def test_every_runner_builds_the_same_content_hash(
    tmp_path: Path, case: RunnerCase, reference: BuildResult
) -> None:
    result = case.build(conformance_config(), tmp_path / "b")
    assert result.content_hash == reference.content_hash
    assert result.manifest.splits == reference.manifest.splits
    assert result.manifest.dedup == reference.manifest.dedup
    assert [(f.path, f.rows, f.content_hash) for f in result.manifest.under("data/")] == [
        (f.path, f.rows, f.content_hash) for f in reference.manifest.under("data/")
    ]
    assert (result.shards_run, result.problems) == (5, ())
