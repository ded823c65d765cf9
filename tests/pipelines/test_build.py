"""End-to-end builds through the local runner: resume, determinism, quarantine, readable output."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow.parquet as pq
import pytest
from conftest import committed, small_config

from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator
from prmforge.pipelines.runners.builddir import GLOBAL, BuildDir, Marker, StageCounts
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.pipelines.stages import AnnotateStage
from prmforge.pipelines.stats import summarize
from prmforge.schemas.errors import BuildStateError
from prmforge.schemas.records import Cost, PRMExample, Problem, Rollout, StepLabels

SHARD_STAGES = ["load", "generate", "annotate-mc", "fuse", "assemble"]


def test_build_writes_manifest_and_conserves_rows(tmp_path: Path) -> None:
    """Every stage reports rows in = accepted + quarantined, and the data files are in the manifest."""
    result = LocalRunner().run(small_config(), tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    # 12 arith problems in shards of 5, 5, 2 and 8 GSM8K problems in 5, 3: shards never straddle inputs.
    assert manifest["num_shards"] == 5
    stages = manifest["stages"]
    assert sorted(stages) == sorted([*SHARD_STAGES, "dedup", "write"])
    assert list(result.manifest.stages) == [*SHARD_STAGES, "dedup", "write"]  # graph order
    assert stages["load"] == {"rows_in": 20, "accepted": 20, "quarantined": 0, "excluded": 0, "rows_out": 20}
    assert stages["generate"]["rows_out"] == 40  # 2 rollouts per problem
    assert stages["annotate-mc"]["rows_in"] == 40
    assert (
        stages["assemble"]["rows_out"]
        == stages["fuse"]["rows_out"]
        == stages["annotate-mc"]["rows_out"]
        == 40
    )
    # Conservation between stages: what one stage accepted is exactly what the next one received.
    assert stages["generate"]["rows_in"] == stages["load"]["accepted"]
    assert stages["generate"]["rows_out"] == 2 * stages["generate"]["accepted"]
    assert stages["annotate-mc"]["rows_in"] == stages["generate"]["rows_out"]
    assert stages["fuse"]["rows_in"] == stages["generate"]["rows_out"]
    assert stages["assemble"]["rows_in"] == stages["fuse"]["rows_out"]
    assert stages["dedup"]["rows_in"] == stages["write"]["rows_out"] == 40
    data = [f for f in manifest["files"] if f["path"].startswith("data/")]
    # The global write stage: one file per split here, n counted per split.
    assert [f["path"] for f in data] == ["data/train-00000-of-00001.parquet"]
    assert sum(f["rows"] for f in data) == 40
    for f in manifest["files"]:
        pq.read_metadata(tmp_path / "b" / f["path"])  # every committed file is a whole Parquet file
    assert result.content_hash == manifest["content_hash"]
    assert result.manifest == Manifest.read(tmp_path / "b")
    assert result.manifest.stages["load"] == StageCounts(rows_in=20, accepted=20, quarantined=0, rows_out=20)
    assert (result.grown, result.problems) == ((), ())
    assert not list((tmp_path / "b").rglob(".*.tmp-*"))


def test_rerun_is_a_noop_resume(tmp_path: Path) -> None:
    first = LocalRunner().run(small_config(), tmp_path / "b")
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "b" / "data").iterdir()}
    events: list[StageEvent] = []
    second = LocalRunner(events.append).run(small_config(), tmp_path / "b")
    assert second.resumed
    assert (second.shards_run, second.shards_skipped) == (0, 5)
    assert second.content_hash == first.content_hash
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "b" / "data").iterdir()} == files
    assert len(events) == 7  # the final stage of each of the 5 shards, then dedup and write
    assert all(e.resumed for e in events)


def test_workers_do_not_change_the_content_hash(tmp_path: Path) -> None:
    inline = LocalRunner().run(small_config(), tmp_path / "w0", workers=0)
    pooled = LocalRunner().run(small_config(), tmp_path / "w2", workers=2)
    assert inline.content_hash == pooled.content_hash


def test_the_same_config_and_seed_give_the_same_hash_in_two_directories(tmp_path: Path) -> None:
    a = LocalRunner().run(small_config(), tmp_path / "a")
    b = LocalRunner().run(small_config(), tmp_path / "elsewhere" / "b")
    assert a.content_hash == b.content_hash
    assert (tmp_path / "a" / "data" / "train-00000-of-00001.parquet").read_bytes() == (
        tmp_path / "elsewhere" / "b" / "data" / "train-00000-of-00001.parquet"
    ).read_bytes()


def test_seed_changes_the_content_hash(tmp_path: Path) -> None:
    a = LocalRunner().run(small_config(), tmp_path / "a")
    b = LocalRunner().run(small_config(seed=12), tmp_path / "b")
    assert a.content_hash != b.content_hash


def _global(root: Path, stage: str) -> Marker:
    return Marker.from_json(json.loads(BuildDir(root).marker_file(stage, GLOBAL).read_text()))


def test_resume_after_losing_a_stage_recomputes_only_that_stage(tmp_path: Path) -> None:
    """A shard whose final markers are gone reruns them; a damaged data file reruns `write` alone."""
    first = LocalRunner().run(small_config(), tmp_path / "b")
    build = BuildDir(tmp_path / "b")
    dedup_run, write_run = _global(build.root, "dedup").run_id, _global(build.root, "write").run_id
    build.marker_file("assemble", 2).unlink()
    build.marker_file("annotate-mc", 2).unlink()
    (tmp_path / "b" / "data" / "train-00000-of-00001.parquet").write_bytes(b"truncated")
    events: list[StageEvent] = []
    again = LocalRunner(events.append).run(small_config(), tmp_path / "b")
    assert again.content_hash == first.content_hash
    ran = sorted((e.stage, e.shard) for e in events if not e.resumed)
    # annotate-mc reran with the same labels, so fuse (made from them) is reused; write reran because
    # its file was damaged.
    assert ran == [("annotate-mc", 2), ("assemble", 2), ("write", GLOBAL)]
    # Global stages resume like the others: dedup's marker still verifies, write's file did not.
    assert _global(build.root, "dedup").run_id == dedup_run
    assert _global(build.root, "write").run_id != write_run
    pq.read_metadata(tmp_path / "b" / "data" / "train-00000-of-00001.parquet")


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
    examples: list[PRMExample] = committed(tmp_path / "b", "data/", "example")
    assert len(examples) == 40
    assert any(e.first_error >= 0 for e in examples)
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
    # Pinned: regenerate with `scripts/pinned_numbers.py test_summary_scores`.
    assert (s["steps"], s["positive_steps"]) == (130, 108)
    expected = {
        "rows": 40,
        "first_error_f1": 0.8235,
        "error_acc": 0.7,
        "correct_acc": 1.0,
        "step_accuracy": 0.9692,
        "false_positives": 4,
        "false_negatives": 0,
        "fp_after_first_error": 1,
        "fn_before_first_error": 0,
    }
    assert s["quality"] == expected
    # One source, fused by `single`: the source's own quality is the trained label's.
    assert s["quality_by_source"] == {"mc": {"coverage": 1.0, "decided": 40, **expected}}
    # completions: N=4 per rolled-out step; the last step is labelled from the outcome
    assert s["cost"]["completions"] == 4 * (s["steps"] - s["rows"])
    assert s["cost_by_source"]["mc"]["completions"] == s["cost"]["completions"]
    assert s["generation"] == {
        "rollouts": 40,
        "generated_rollouts": 40,
        "completion_tokens": sum(
            r.completion_tokens for r in committed(tmp_path / "b", "stages/generate/", "rollout")
        ),
    }


class _Spy:
    name = "spy"

    def __init__(self) -> None:
        self.seen: list[object] = []

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]:
        self.seen.extend(r.truth for r in rollouts)
        return [StepLabels("spy", r.rollout_id, (), (), -1, Cost()) for r in rollouts]


SPY = _Spy()


class SpyConfig(AnnotatorConfig):
    domains: ClassVar[frozenset[str]] = frozenset({"math"})
    kind: Literal["spy"] = "spy"

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        return BuiltAnnotator(SPY)

    def provenance(self, isolation: str) -> dict[str, str]:
        return {"method": "spy", "tool": "none", "isolation": "none"}

    def card_sentence(self) -> str:
        return "a spy."


class _Env:
    policy: Any = None
    programs: Callable[[], Any] = staticmethod(lambda: None)


def test_annotators_only_see_redacted_rollouts(tmp_path: Path) -> None:
    """The annotate stage hands annotators rollouts without truth, whatever the build."""
    LocalRunner().run(small_config(), tmp_path / "b")
    problems: list[Problem] = committed(tmp_path / "b", "stages/load/", "problem")
    rollouts: list[Rollout] = committed(tmp_path / "b", "stages/generate/", "rollout")
    assert len(rollouts) == 40
    assert all(r.truth is not None for r in rollouts)
    stage = AnnotateStage(SpyConfig(), 0, "bwrap", {})
    stage.setup(_Env())
    SPY.seen.clear()
    out = stage.run({"generate": rollouts, "load": problems})
    assert len(out.records) == len(rollouts)
    assert SPY.seen == [None] * len(rollouts)


def test_a_rerun_after_losing_commits_pays_nothing_twice(tmp_path: Path) -> None:
    """Generations already made come back from the request cache: no completion is generated again."""
    LocalRunner().run(small_config(), tmp_path / "b")
    first = summarize(tmp_path / "b")
    assert first["cost"]["cached_completions"] == 0
    build = BuildDir(tmp_path / "b")
    for shard in range(5):  # as if the build had been killed after generating, before committing labels
        build.marker_file("annotate-mc", shard).unlink()
        build.marker_file("assemble", shard).unlink()
    LocalRunner().run(small_config(), tmp_path / "b")
    again = summarize(tmp_path / "b")
    assert again["content_hash"] == first["content_hash"]
    assert again["cost"]["completions"] == first["cost"]["completions"] > 0
    assert again["cost"]["cached_completions"] == again["cost"]["completions"]


def test_losing_an_earlier_stage_file_reruns_the_shard(tmp_path: Path) -> None:
    first = LocalRunner().run(small_config(), tmp_path / "b")
    (tmp_path / "b" / "stages" / "load" / "shard-00000.parquet").unlink()
    events: list[StageEvent] = []
    again = LocalRunner(events.append).run(small_config(), tmp_path / "b")
    assert again.content_hash == first.content_hash
    # load reruns with the same problems, so nothing made from them reruns.
    assert sorted((e.stage, e.shard) for e in events if not e.resumed) == [("load", 0)]


def test_restart_discards_a_build_but_never_a_foreign_directory(tmp_path: Path) -> None:
    LocalRunner().run(small_config(), tmp_path / "b")
    (tmp_path / "b" / "notes.txt").write_text("mine")
    result = LocalRunner().run(small_config(), tmp_path / "b", restart=True)
    assert (result.resumed, result.shards_run) == (False, 5)
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"  # only the build's own entries go
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "precious.txt").write_text("keep")
    with pytest.raises(BuildStateError, match=r"holds no build\.json: refusing to write or to delete it"):
        LocalRunner().run(small_config(), tmp_path / "foreign", restart=True)
    assert (tmp_path / "foreign" / "precious.txt").read_text() == "keep"


def test_a_changed_input_file_is_refused_on_resume(tmp_path: Path, gsm8k_file: Path) -> None:
    data = tmp_path / "g.jsonl"
    data.write_bytes(b"".join(gsm8k_file.read_bytes().splitlines(keepends=True)[:6]))
    config = small_config(inputs=[{"kind": "gsm8k", "path": str(data)}])
    LocalRunner().run(config, tmp_path / "b")
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join([lines[1], lines[0], *lines[2:]]))  # same rows, same count, new order
    with pytest.raises(BuildStateError, match=r"input file\(s\) changed since this build started"):
        LocalRunner().run(config, tmp_path / "b")
