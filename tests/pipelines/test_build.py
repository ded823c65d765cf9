"""End-to-end builds through the local runner: resume, determinism, quarantine, readable output."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    # Conservation between stages: what one stage accepted is exactly what the next one received.
    assert stages["generate"]["rows_in"] == stages["load"]["accepted"]
    assert stages["generate"]["rows_out"] == 2 * stages["generate"]["accepted"]
    assert stages["annotate-mc"]["rows_in"] == stages["generate"]["rows_out"]
    assert stages["assemble"]["rows_in"] == stages["annotate-mc"]["accepted"]
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
    # The build is deterministic, so its label quality is too (N=4 completions per step).
    assert (s["steps"], s["positive_steps"]) == (138, 106)
    assert s["quality"] == {
        "rows": 40,
        "first_error_f1": 0.6364,
        "error_acc": 0.4667,
        "correct_acc": 1.0,
        "step_accuracy": 0.913,
        "false_positives": 6,
        "false_negatives": 6,
        "fp_after_first_error": 0,
        "fn_before_first_error": 6,
    }
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


def test_a_poison_row_is_quarantined_even_alone_and_its_batch_mates_survive() -> None:
    """isolate_failures reruns a failing batch row by row; the row that fails alone is quarantined."""
    from prmforge.pipelines.stages import isolate_failures

    def run(batch: Sequence[int]) -> list[int]:
        if 3 in batch:
            raise ValueError("three is poison")
        return [x * 10 for x in batch]

    done, bad = isolate_failures("s", [1, 2, 3, 4], run, lambda x: ("src", x))
    assert done == [(1, 10), (2, 20), (4, 40)]
    assert [(q.stage, q.source, q.index, q.reason) for q in bad] == [
        ("s", "src", 3, "ValueError: three is poison")
    ]
    done, bad = isolate_failures("s", [3], run, lambda x: ("src", x))
    assert done == []
    assert [q.index for q in bad] == [3]


def test_losing_an_earlier_stage_file_reruns_the_shard(tmp_path: Path) -> None:
    first = LocalRunner().run(small_config(), tmp_path / "b")
    (tmp_path / "b" / "stages" / "load" / "shard-00000.parquet").unlink()
    events: list[StageEvent] = []
    again = LocalRunner(events.append).run(small_config(), tmp_path / "b")
    assert again.content_hash == first.content_hash
    assert sorted((e.stage, e.shard) for e in events if not e.resumed) == [("load", 0)]


def test_restart_discards_a_build_but_never_a_foreign_directory(tmp_path: Path) -> None:
    LocalRunner().run(small_config(), tmp_path / "b")
    (tmp_path / "b" / "notes.txt").write_text("mine")
    result = LocalRunner().run(small_config(), tmp_path / "b", restart=True)
    assert (result.resumed, result.shards_run) == (False, 4)
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"  # only the build's own entries go
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "precious.txt").write_text("keep")
    with pytest.raises(BuildStateError, match=r"holds no build\.json: refusing to write or to delete it"):
        LocalRunner().run(small_config(), tmp_path / "foreign", restart=True)
    assert (tmp_path / "foreign" / "precious.txt").read_text() == "keep"


def test_a_changed_input_file_is_refused_on_resume(tmp_path: Path, gsm8k_file: Path) -> None:
    data = tmp_path / "g.jsonl"
    data.write_bytes(b"".join(gsm8k_file.read_bytes().splitlines(keepends=True)[:6]))
    config = small_config(suites=[{"kind": "gsm8k", "path": str(data)}])
    LocalRunner().run(config, tmp_path / "b")
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join([lines[1], lines[0], *lines[2:]]))  # same rows, same count, new order
    with pytest.raises(BuildStateError, match=r"input file\(s\) changed since this build started"):
        LocalRunner().run(config, tmp_path / "b")
