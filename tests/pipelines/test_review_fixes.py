"""Defects a review found in the stage graph, each pinned by a test that failed before its fix."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import committed, small_config
from typer.testing import CliRunner

from prmforge.pipelines.cli import app
from prmforge.pipelines.config import parse_config
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.interrupt import BuildInterrupted
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.pipelines.stage import RecordKind, RowResult, Stage
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Rollout, StepLabels


class Misconfigured(Stage):
    reads: ClassVar[tuple[RecordKind, ...]] = ("source",)
    writes: ClassVar[RecordKind] = "problem"

    def process(self, batch: Sequence[Any], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        raise ConfigError("policy.params: unknown parameter(s) ['bogus']")


def test_a_configuration_error_stops_the_stage_instead_of_quarantining_every_row() -> None:
    with pytest.raises(ConfigError, match=r"policy\.params"):
        Misconfigured("m", ("source",), {}).run({"source": [1, 2, 3]})


def test_a_bad_policy_setting_fails_the_build_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"policy\.params: unknown parameter\(s\) \['bogus'\]"):
        LocalRunner().run(small_config(policy={"params": {"bogus": 1}}), tmp_path / "b")
    assert not (tmp_path / "b" / "markers").exists()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "Upper", ""])
def test_a_source_name_cannot_leave_its_folder(name: str) -> None:
    with pytest.raises(ConfigError, match=r"annotate\.0\.name"):
        small_config(annotate=[{"kind": "mc", "n": 2, "name": name}])


def test_two_named_monte_carlo_sources_are_independent_estimates(tmp_path: Path) -> None:
    config = small_config(
        annotate=[{"kind": "mc", "n": 2, "name": "a"}, {"kind": "mc", "n": 2, "name": "b"}],
        fuse={"rule": "earliest"},
    )
    LocalRunner().run(config, tmp_path / "b")
    a: list[StepLabels] = committed(tmp_path / "b", "stages/annotate-a/", "labels")
    b: list[StepLabels] = committed(tmp_path / "b", "stages/annotate-b/", "labels")
    assert [x.rollout_id for x in a] == [y.rollout_id for y in b]
    assert sum(x.values != y.values for x, y in zip(a, b, strict=True)) > 0


def test_a_stage_rerun_with_new_output_reruns_what_reads_it_and_not_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Markers record the content they were made from: labels never join rollouts they did not label
    (a real engine may give new text), and an identical recomputation costs nothing downstream."""
    from prmforge.pipelines.stages import generate

    root = tmp_path / "b"
    LocalRunner().run(small_config(), root)
    build = BuildDir(root)
    build.marker_file("generate", 1).unlink()
    events: list[StageEvent] = []
    LocalRunner(events.append).run(small_config(), root)
    assert sorted((e.stage, e.shard) for e in events if not e.resumed) == [("generate", 1)]

    original = generate.GenerateStage._limited

    def reworded(self: generate.GenerateStage, rollouts: list[Rollout]) -> RowResult:
        return original(self, [dataclasses.replace(r, text=r.text + " ") for r in rollouts])

    monkeypatch.setattr(generate.GenerateStage, "_limited", reworded)
    build.marker_file("generate", 1).unlink()
    events.clear()
    LocalRunner(events.append).run(small_config(), root)
    ran = sorted((e.stage, e.shard) for e in events if not e.resumed)
    # The rows assembled are the same (a rollout's text is not in them), so the global stages are reused.
    assert ran == [("annotate-mc", 1), ("assemble", 1), ("fuse", 1), ("generate", 1)]


def test_a_threshold_change_resumes_instead_of_refusing(tmp_path: Path) -> None:
    first = LocalRunner().run(small_config(), tmp_path / "b")
    again = LocalRunner().run(
        small_config(
            limits={"max_quarantine_share": 0.9}, runner={"workers": 0, "shard_size": 5, "cache": False}
        ),
        tmp_path / "b",
    )
    assert (again.resumed, again.shards_run, again.content_hash) == (True, 0, first.content_hash)


def _problems_file(path: Path, ids: list[str]) -> Path:
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k_train.jsonl"
    lines = shared.read_text(encoding="utf-8").splitlines()[: len(ids)]
    rows = [{**json.loads(line), "id": pid} for line, pid in zip(lines, ids, strict=True)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _id_build(path: Path, shard_size: int) -> Any:
    return parse_config(
        {
            "name": "ids",
            "inputs": [{"kind": "problems", "path": str(path), "preset": "gsm8k", "columns": {"id": "id"}}],
            "annotate": [{"kind": "equations"}],
            "generate": {"rollouts_per_problem": 2},
            "runner": {"workers": 0, "shard_size": shard_size},
        }
    )


def test_a_repeated_problem_id_in_one_shard_is_quarantined_at_load(tmp_path: Path) -> None:
    path = _problems_file(tmp_path / "p.jsonl", ["p0", "p1", "p1", "p3"])
    result = LocalRunner().run(_id_build(path, 4), tmp_path / "b")
    entries: list[QuarantineEntry] = committed(tmp_path / "b", "quarantine/load/", "quarantine")
    assert [(e.index, e.field, e.reason) for e in entries] == [
        (2, "problem_id", "'p1' repeats the id of row 1")
    ]
    assert result.manifest.stages["load"].accepted == 3


def test_a_problem_id_shared_across_shards_fails_the_build_and_keeps_one_copy(tmp_path: Path) -> None:
    path = _problems_file(tmp_path / "p.jsonl", ["p0", "p1", "p0", "p3"])
    result = LocalRunner().run(_id_build(path, 2), tmp_path / "b")
    assert result.manifest.dedup["clashing_ids"] == 2  # both rollouts of the second p0
    assert any("share a problem id" in p for p in result.problems)
    rows = committed(tmp_path / "b", "data/", "example")
    assert len(rows) == len({r.example_id for r in rows}) == 6


def test_build_warns_about_an_input_range_with_no_rows(tmp_path: Path) -> None:
    config = small_config(
        inputs=[{"kind": "arith", "count": 4}, {"kind": "gsm8k", "offset": 100000, "limit": 2}]
    )
    result = LocalRunner().run(config, tmp_path / "b")
    assert result.warnings == ("inputs.1: its range holds 0 rows",)


def test_export_refuses_an_unknown_split(tmp_path: Path) -> None:
    LocalRunner().run(small_config(), tmp_path / "b")
    run = CliRunner().invoke(
        app, ["export", str(tmp_path / "b"), "-o", str(tmp_path / "x.jsonl"), "--split", "dev"]
    )
    assert run.exit_code == 2
    assert "--split: must be one of train, validation, test (got 'dev')" in " ".join(run.output.split())


def test_an_interrupted_write_never_leaves_a_manifest_naming_deleted_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prmforge.pipelines.runners import stream

    LocalRunner().run(small_config(), tmp_path / "b")

    def broken(self: object, table: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(stream.ParquetStream, "write", broken)
    grown = small_config(annotate=[{"kind": "mc", "n": 4}, {"kind": "equations"}], fuse={"rule": "earliest"})
    with pytest.raises(BuildInterrupted):
        LocalRunner().run(grown, tmp_path / "b")
    run = CliRunner().invoke(app, ["stats", str(tmp_path / "b")])
    assert run.exit_code == 1
    assert "no manifest.json" in " ".join(run.output.split())
