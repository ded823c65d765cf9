"""End-to-end builds through the local runner: resume, determinism, quarantine, readable output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import small_config

from prmforge.pipelines.builddir import BuildDir
from prmforge.pipelines.local import LocalRunner
from prmforge.pipelines.shard import StageEvent
from prmforge.pipelines.stages import annotate_stage
from prmforge.pipelines.stats import summarize
from prmforge.schemas.arrow import prm_examples_from_table, problems_from_table, rollouts_from_table
from prmforge.schemas.errors import BuildStateError
from prmforge.schemas.records import Cost, StepLabels


def test_build_writes_manifest_and_conserves_rows(tmp_path: Path) -> None:
    """Every stage reports rows in = accepted + quarantined, and the data files are in the manifest."""
    result = LocalRunner().run(small_config(), tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["num_shards"] == 4  # 20 problems, 5 per shard
    stages = manifest["stages"]
    assert sorted(stages) == ["annotate-mc", "assemble", "generate", "load"]
    assert stages["load"] == {"rows_in": 20, "accepted": 20, "quarantined": 0, "rows_out": 20}
    assert stages["generate"]["rows_out"] == 40  # 2 rollouts per problem
    assert stages["annotate-mc"]["rows_in"] == 40
    assert stages["assemble"]["rows_out"] == stages["annotate-mc"]["rows_out"] == 40
    for totals in stages.values():
        assert totals["rows_in"] == totals["accepted"] + totals["quarantined"]
    data = [f for f in manifest["files"] if f["path"].startswith("data/")]
    assert [f["path"] for f in data] == [f"data/train-{i:05d}-of-00004.parquet" for i in range(4)]
    assert sum(f["rows"] for f in data) == 40
    for f in manifest["files"]:
        pq.read_metadata(tmp_path / "b" / f["path"])  # every committed file is a whole Parquet file
    assert result.content_hash == manifest["content_hash"]
    assert not list((tmp_path / "b").rglob(".*.tmp-*"))


def test_rerun_is_a_noop_resume(tmp_path: Path) -> None:
    first = LocalRunner().run(small_config(), tmp_path / "b")
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "b" / "data").iterdir()}
    events: list[StageEvent] = []
    second = LocalRunner(events.append).run(small_config(), tmp_path / "b")
    assert second.resumed
    assert (second.shards_run, second.shards_skipped) == (0, 4)
    assert second.content_hash == first.content_hash
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "b" / "data").iterdir()} == files
    assert all(e.resumed for e in events)


def test_workers_do_not_change_the_content_hash(tmp_path: Path) -> None:
    inline = LocalRunner().run(small_config(), tmp_path / "w0", workers=0)
    pooled = LocalRunner().run(small_config(), tmp_path / "w2", workers=2)
    assert inline.content_hash == pooled.content_hash


def test_seed_changes_the_content_hash(tmp_path: Path) -> None:
    a = LocalRunner().run(small_config(), tmp_path / "a")
    b = LocalRunner().run(small_config(seed=12), tmp_path / "b")
    assert a.content_hash != b.content_hash


def test_resume_after_losing_a_stage_recomputes_only_that_stage(tmp_path: Path) -> None:
    """A shard whose final marker is gone reruns from its last committed stage, giving the same hash."""
    first = LocalRunner().run(small_config(), tmp_path / "b")
    build = BuildDir(tmp_path / "b")
    build.marker_file("assemble", 2).unlink()
    build.marker_file("annotate-mc", 2).unlink()
    (tmp_path / "b" / "data" / "train-00002-of-00004.parquet").write_bytes(b"truncated")
    events: list[StageEvent] = []
    again = LocalRunner(events.append).run(small_config(), tmp_path / "b")
    assert again.content_hash == first.content_hash
    ran = sorted((e.stage, e.shard) for e in events if not e.resumed)
    assert ran == [("annotate-mc", 2), ("assemble", 2)]


def test_changed_config_is_refused(tmp_path: Path) -> None:
    LocalRunner().run(small_config(), tmp_path / "b")
    with pytest.raises(BuildStateError, match=r"different configuration"):
        LocalRunner().run(small_config(seed=99), tmp_path / "b")


def test_a_foreign_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "precious.txt").write_text("keep me")
    with pytest.raises(BuildStateError, match=r"no build\.json"):
        LocalRunner().run(small_config(), tmp_path / "b")
    assert (tmp_path / "b" / "precious.txt").read_text() == "keep me"


def test_truncate_option_cuts_steps_after_the_first_error(tmp_path: Path) -> None:
    LocalRunner().run(small_config(labels={"after_first_error": "truncate"}), tmp_path / "b")
    examples = []
    for path in sorted((tmp_path / "b" / "data").glob("*.parquet")):
        examples.extend(prm_examples_from_table(pq.read_table(path)))
    assert examples
    for e in examples:
        if e.first_error >= 0:
            assert len(e.completions) == e.first_error + 1
            assert e.labels == (*([True] * e.first_error), False)
        else:
            assert all(e.labels)


def test_summary_scores_labels_against_truth(tmp_path: Path) -> None:
    LocalRunner().run(small_config(), tmp_path / "b")
    s = summarize(tmp_path / "b")
    assert s["rows"] == 40
    assert s["positive_steps"] + s["negative_steps"] == s["steps"]
    assert s["quality"]["rows"] == 40
    assert set(s["quality_by_suite"]) == {"arith", "gsm8k"}
    assert 0.0 <= s["quality"]["step_accuracy"] <= 1.0
    # completions: N=4 per rolled-out step; the last step is labelled from the outcome
    assert s["cost"]["completions"] == 4 * (s["steps"] - s["rows"])


def test_annotators_only_see_redacted_rollouts(tmp_path: Path) -> None:
    """The annotate stage hands annotators rollouts without truth, whatever the build."""
    LocalRunner().run(small_config(), tmp_path / "b")
    build = BuildDir(tmp_path / "b")
    problems = {p.problem_id: p for p in problems_from_table(pq.read_table(build.stage_file("load", 0)))}
    rollouts = rollouts_from_table(pq.read_table(build.stage_file("generate", 0)))
    assert all(r.truth is not None for r in rollouts)

    class Spy:
        name = "spy"

        def __init__(self) -> None:
            self.seen: list[object] = []

        def annotate(self, problems, rollouts):  # type: ignore[no-untyped-def]
            self.seen.extend(r.truth for r in rollouts)
            return [StepLabels("spy", r.rollout_id, (), (), -1, Cost()) for r in rollouts]

    spy = Spy()
    out = annotate_stage(problems, rollouts, spy)
    assert len(out.records) == len(rollouts)
    assert spy.seen == [None] * len(rollouts)


def test_a_rerun_after_losing_commits_pays_nothing_twice(tmp_path: Path) -> None:
    """Generations already made come back from the request cache: no completion is generated again."""
    LocalRunner().run(small_config(), tmp_path / "b")
    first = summarize(tmp_path / "b")
    assert first["cost"]["cached_completions"] == 0
    build = BuildDir(tmp_path / "b")
    for shard in range(4):  # as if the build had been killed after generating, before committing labels
        build.marker_file("annotate-mc", shard).unlink()
        build.marker_file("assemble", shard).unlink()
    LocalRunner().run(small_config(), tmp_path / "b")
    again = summarize(tmp_path / "b")
    assert again["content_hash"] == first["content_hash"]
    assert again["cost"]["completions"] == first["cost"]["completions"] > 0
    assert again["cost"]["cached_completions"] == again["cost"]["completions"]
