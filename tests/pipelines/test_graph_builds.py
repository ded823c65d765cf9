"""Builds over the stage graph: several label sources fused per rule, and growing a build by a source."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PolicyCalls, committed, processbench_items, small_config
from typer.testing import CliRunner

from prmforge.pipelines.cli import app
from prmforge.pipelines.config import BuildConfig
from prmforge.pipelines.runners.builddir import GLOBAL, BuildDir, Marker
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.runners.shard import StageEvent
from prmforge.pipelines.stats import summarize
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.errors import BuildStateError
from prmforge.schemas.records import PRMExample, Rollout, StepLabels
from prmforge.verifiers.equations import check_text
from prmforge.verifiers.verdict import Verdict

MC_EQ = [{"kind": "mc", "n": 4}, {"kind": "equations"}]


def _first_bad(labels: StepLabels) -> int | None:
    return next((t for t, h in enumerate(labels.hard) if h is False), None)


def earliest(sources: list[StepLabels]) -> int | None:
    """Restated: the earliest step any source labels bad; else -1 if some source decided the rollout."""
    claims = [t for t in map(_first_bad, sources) if t is not None]
    if claims:
        return min(claims)
    return -1 if any(s.first_error == -1 for s in sources) else None


def majority(sources: list[StepLabels], steps: int) -> int | None:
    """Restated: per step, the sources that spoke vote; half or more saying bad makes it the first error."""
    for t in range(steps):
        votes = [s.hard[t] for s in sources if s.hard[t] is not None]
        if not votes:
            return None
        if 2 * votes.count(False) >= len(votes):
            return t
    return -1


def _labels(root: Path, source: str) -> dict[str, StepLabels]:
    return {lab.rollout_id: lab for lab in committed(root, f"stages/annotate-{source}/", "labels")}


def _excluded_ids(root: Path) -> list[str]:
    entries: list[QuarantineEntry] = committed(root, "excluded/", "quarantine")
    return [json.loads(q.preview)["rollout_id"] for q in entries]


def test_earliest_fusion_of_mc_and_equations(tmp_path: Path) -> None:
    root = tmp_path / "b"
    result = LocalRunner().run(small_config(annotate=MC_EQ, fuse={"rule": "earliest"}), root)
    assert result.problems == ()
    rows: list[PRMExample] = committed(root, "data/", "example")
    mc, eq = _labels(root, "mc"), _labels(root, "equations")
    assert len(rows) == len(mc) == len(eq) == 40
    disagree = 0
    for row in rows:
        sources = [mc[row.example_id], eq[row.example_id]]
        assert [(v.source, v.first_error) for v in row.votes] == [(s.source, s.first_error) for s in sources]
        assert row.first_error == earliest(sources)
        disagree += sources[0].first_error != sources[1].first_error
    assert disagree > 0  # the sources do disagree, so the rule is exercised
    s = summarize(root)
    assert set(s["quality_by_source"]) == {"mc", "equations"}
    assert s["quality_by_source"]["mc"]["rows"] == s["quality_by_source"]["equations"]["rows"] == 40
    assert s["quality"]["rows"] == 40
    mc_cost, eq_cost = s["cost_by_source"]["mc"], s["cost_by_source"]["equations"]
    assert mc_cost["completions"] > 0
    assert mc_cost["tool_calls"] == 0
    assert eq_cost["completions"] == 0
    # 130 steps: pinned (scripts/pinned_numbers.py test_earliest_fusion).
    assert eq_cost["tool_calls"] == sum(len(lab.hard) for lab in eq.values()) == s["steps"] == 130
    assert s["cost"]["completions"] == mc_cost["completions"]
    # Labelling cost is kept apart from the cost of generating the rollouts being labelled.
    assert s["generation"]["generated_rollouts"] == 40
    card = (root / "README.md").read_text()
    assert "Trained label: `earliest`: the earliest first error any source claims." in card
    assert "| `mc` | Monte Carlo estimation (Math-Shepherd), N=4 completions per step" in card
    assert "| `equations` | exact check of the equalities each step states" in card


def test_majority_fusion_of_three_sources(tmp_path: Path) -> None:
    root = tmp_path / "b"
    annotate = [*MC_EQ, {"kind": "mc", "n": 2, "name": "mc2"}]
    LocalRunner().run(small_config(annotate=annotate, fuse={"rule": "majority"}), root)
    by_source = [_labels(root, name) for name in ("mc", "equations", "mc2")]
    rollouts: list[Rollout] = committed(root, "stages/generate/", "rollout")
    expected = {r.rollout_id: majority([m[r.rollout_id] for m in by_source], len(r.steps)) for r in rollouts}
    rows: list[PRMExample] = committed(root, "data/", "example")
    assert {row.example_id: row.first_error for row in rows} == {
        k: v for k, v in expected.items() if v is not None
    }
    assert all([v.source for v in row.votes] == ["mc", "equations", "mc2"] for row in rows)
    assert sorted(_excluded_ids(root)) == sorted(k for k, v in expected.items() if v is None)
    # Majority differs from earliest on some rollouts: a lone claim of one source is outvoted.
    assert any(expected[r.rollout_id] != earliest([m[r.rollout_id] for m in by_source]) for r in rollouts)


def test_single_fusion_leaves_out_what_its_source_cannot_decide(tmp_path: Path) -> None:
    """`single: equations` over generated and imported rollouts: undecided labels are left out, with why."""
    items = tmp_path / "pb.json"
    items.write_text(json.dumps(processbench_items(12)), encoding="utf-8")
    config = small_config(
        inputs=[
            {"kind": "arith", "count": 6, "min_steps": 2, "max_steps": 5},
            {"kind": "rollouts", "path": str(items), "preset": "processbench"},
        ],
        annotate=MC_EQ,
        fuse={"rule": "single", "source": "equations"},
    )
    root = tmp_path / "b"
    result = LocalRunner().run(config, root)
    assert result.problems == ()
    eq = _labels(root, "equations")
    undecided = sorted(k for k, lab in eq.items() if lab.first_error is None)
    assert len(eq) == 6 * 2 + 12
    # Independently: an item is undecided when a step the checker cannot check comes before any failure.
    verdicts = [[check_text(step)[0].verdict for step in item["steps"]] for item in processbench_items(12)]
    unchecked = [next((v for v in vs if v is not Verdict.PASS), Verdict.PASS) for vs in verdicts]
    assert len(undecided) == sum(v not in (Verdict.PASS, Verdict.FAIL) for v in unchecked) == 9
    rows: list[PRMExample] = committed(root, "data/", "example")
    assert {r.example_id: r.first_error for r in rows} == {
        k: lab.first_error for k, lab in eq.items() if lab.first_error is not None
    }
    assert sorted(_excluded_ids(root)) == undecided
    # mc cannot continue imported rollouts: it abstains on them and its vote is null.
    mc = _labels(root, "mc")
    imported = [r for r in committed(root, "stages/generate/", "rollout") if r.policy.startswith("imported:")]
    assert len(imported) == 12
    assert {mc[r.rollout_id].meta["abstained"] for r in imported} == {
        "an imported rollout cannot be continued by the built-in policy"
    }
    assert set(undecided) <= {r.rollout_id for r in imported}
    s = summarize(root)
    reason = "assemble: first_error: undecided: equations could not decide (an unchecked step comes first)"
    assert (s["excluded"], s["excluded_reasons"]) == (9, {reason: 9})
    assert s["stages"]["assemble"] == {
        "rows_in": 24,
        "accepted": 24,
        "quarantined": 0,
        "excluded": 9,
        "rows_out": 15,
    }
    assert s["quarantined"] == 0
    card = (root / "README.md").read_text()
    assert f"## Left out of the training data\n\n- 9 x {reason}\n" in card
    assert "Trained label: `single`: the labels of `equations`." in card


# ---------------------------------------------------------------- growing a build


def _ran(events: list[StageEvent]) -> Counter[tuple[str, bool]]:
    return Counter((e.stage, e.resumed) for e in events)


def _global_run(root: Path, stage: str) -> str:
    return Marker.from_json(json.loads(BuildDir(root).marker_file(stage, GLOBAL).read_text())).run_id


def test_adding_a_source_computes_only_it_and_what_depends_on_it(
    tmp_path: Path, policy_calls: PolicyCalls
) -> None:
    root = tmp_path / "b"
    first = LocalRunner().run(small_config(), root, workers=0)
    assert policy_calls.calls > 0
    before = {stage: _global_run(root, stage) for stage in ("dedup", "write")}
    policy_calls.reset()
    events: list[StageEvent] = []
    grown_config = small_config(annotate=MC_EQ, fuse={"rule": "earliest"})
    grown = LocalRunner(events.append).run(grown_config, root, workers=0)
    assert policy_calls.calls == 0  # generations and mc's completions are reused, never recomputed
    assert grown.grown == ("equations",)
    assert grown.resumed
    assert _ran(events) == {
        ("load", True): 5, ("generate", True): 5, ("annotate-mc", True): 5,
        ("annotate-equations", False): 5, ("fuse", False): 5, ("assemble", False): 5,
        ("dedup", False): 1, ("write", False): 1,
    }  # fmt: skip
    # The global stages ran again: their markers were written by the growing run.
    assert all(_global_run(root, stage) != before[stage] for stage in before)
    assert grown.content_hash != first.content_hash
    fresh = LocalRunner().run(grown_config, tmp_path / "fresh", workers=0)
    assert grown.content_hash == fresh.content_hash
    stored = json.loads((root / "build.json").read_text())
    assert stored["config_hash"] == grown_config.content_hash()
    # Rerunning the grown config is a plain resume; it grows nothing.
    again = LocalRunner().run(grown_config, root, workers=0)
    assert (again.grown, again.shards_run, again.content_hash) == ((), 0, fresh.content_hash)


SHARD_STAGES = ("load", "generate", "annotate-mc", "fuse", "assemble")


@pytest.mark.parametrize(
    ("change", "recomputed"),
    [
        ({"fuse": {"rule": "earliest"}}, ("fuse", "assemble")),
        ({"split": {"validation": 0.5}}, ("assemble",)),
        ({"split": {"dedup": True, "balance": {"target": 0.5}}}, ()),
        ({"split": {"near_dedup": {"threshold": 0.5}, "rows_per_file": 2}}, ()),
    ],
    ids=["fuse", "split-shares", "split-balance", "split-near-dedup"],
)
def test_changing_fuse_or_split_recomputes_only_what_reads_them(
    tmp_path: Path, policy_calls: PolicyCalls, change: dict[str, Any], recomputed: tuple[str, ...]
) -> None:
    root = tmp_path / "b"
    first = LocalRunner().run(small_config(), root, workers=0)
    policy_calls.reset()
    events: list[StageEvent] = []
    changed = small_config(**change)
    result = LocalRunner(events.append).run(changed, root, workers=0)
    assert policy_calls.calls == 0
    assert (result.grown, result.reconfigured) == ((), tuple(change))
    # A shard with nothing to recompute reports its last stage resumed, and that alone.
    shards = (
        {(stage, stage not in recomputed): 5 for stage in SHARD_STAGES}
        if recomputed
        else {("assemble", True): 5}
    )
    assert _ran(events) == Counter(shards | {("dedup", False): 1, ("write", False): 1})
    assert result.shards_run == (5 if recomputed else 0)
    fresh = LocalRunner().run(changed, tmp_path / "fresh", workers=0)
    assert result.content_hash == fresh.content_hash
    assert json.loads((root / "build.json").read_text())["config_hash"] == changed.content_hash()
    assert (
        json.loads((root / "manifest.json").read_text())["dedup"]
        == json.loads((tmp_path / "fresh" / "manifest.json").read_text())["dedup"]
    )
    data = sorted(p.name for p in (root / "data").iterdir())
    assert data == sorted(p.name for p in (tmp_path / "fresh" / "data").iterdir())
    # The first configuration again is a change back, in place as well, to the first content.
    policy_calls.reset()
    back = LocalRunner().run(small_config(), root, workers=0)
    assert (back.content_hash, back.reconfigured, policy_calls.calls) == (
        first.content_hash,
        tuple(change),
        0,
    )


def test_global_stages_report_their_events(tmp_path: Path) -> None:
    events: list[StageEvent] = []
    LocalRunner(events.append).run(small_config(), tmp_path / "b")
    assert [(e.stage, e.shard, e.resumed) for e in events if e.shard == GLOBAL] == [
        ("dedup", GLOBAL, False),
        ("write", GLOBAL, False),
    ]


def _refusal(config: BuildConfig, root: Path) -> str:
    """The message of the BuildStateError a run raises (the exception itself is not kept)."""
    try:
        LocalRunner().run(config, root)
    except BuildStateError as err:
        return str(err)
    raise AssertionError("the run was not refused")


def test_a_refused_run_releases_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "b"
    first = LocalRunner().run(small_config(), root)
    with pytest.raises(BuildStateError, match="different configuration") as refused:
        LocalRunner().run(small_config(seed=12), root)
    assert LocalRunner().run(small_config(), root).content_hash == first.content_hash
    assert refused.value  # kept alive, as a caller that records the error keeps it


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 12},
        {"annotate": [{"kind": "mc", "n": 3}, {"kind": "equations"}], "fuse": {"rule": "earliest"}},
        {"annotate": [{"kind": "equations"}]},
        {"generate": {"rollouts_per_problem": 3}},
        {"labels": {"after_first_error": "truncate"}},
    ],
    ids=["seed", "n", "removed-source", "generate", "labels"],
)
def test_any_other_change_is_refused(tmp_path: Path, change: dict[str, object]) -> None:
    root = tmp_path / "b"
    first = LocalRunner().run(small_config(), root)
    changed: BuildConfig = small_config(**change)
    assert _refusal(changed, root) == (
        f"{root} holds a build of a different configuration (config hash "
        f"{small_config().content_hash()[:12]} != {changed.content_hash()[:12]}); only adding annotators "
        "and changing `fuse:` or `split:` change a build in place: use another --output or pass --restart "
        "to discard it"
    )
    # The refused run changed nothing: the build still resumes as it was.
    assert LocalRunner().run(small_config(), root).content_hash == first.content_hash


def test_growing_through_the_command_line_says_so(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "name": "grow",
        "inputs": [{"kind": "arith", "count": 6}],
        "generate": {"rollouts_per_problem": 2},
        "annotate": [{"kind": "mc", "n": 2}],
        "runner": {"workers": 0, "shard_size": 3},
    }
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data))
    runner = CliRunner()
    out = str(tmp_path / "b")
    assert runner.invoke(app, ["build", str(config), "-o", out]).exit_code == 0
    data["annotate"] = [{"kind": "mc", "n": 2}, {"kind": "equations"}]
    data["fuse"] = {"rule": "earliest"}
    config.write_text(yaml.safe_dump(data))
    grown = runner.invoke(app, ["build", str(config), "-o", out])
    assert grown.exit_code == 0, grown.output
    assert f"resumed {out}: 2 shard(s) run, 0 already committed; grew by equations" in " ".join(
        grown.output.split()
    )
    data["split"] = {"validation": 0.5}
    config.write_text(yaml.safe_dump(data))
    split = runner.invoke(app, ["build", str(config), "-o", out])
    assert split.exit_code == 0, split.output
    assert f"resumed {out}: 2 shard(s) run, 0 already committed; changed `split:` in place" in " ".join(
        split.output.split()
    )
    data["seed"] = 5
    config.write_text(yaml.safe_dump(data))
    refused = runner.invoke(app, ["build", str(config), "-o", out])
    assert refused.exit_code == 1
    assert "pass --restart to discard it" in " ".join(refused.output.split())
    assert "Traceback" not in refused.output
    restarted = runner.invoke(app, ["build", str(config), "-o", out, "--restart"])
    assert restarted.exit_code == 0, restarted.output
    assert f"built {out}: 2 shard(s) run, 0 already committed" in " ".join(restarted.output.split())
