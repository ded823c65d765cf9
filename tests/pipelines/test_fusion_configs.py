"""The fusion rules of `fusion_rules` reached from a build's `fuse:` (consensus, weighted, grounded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PolicyCalls, committed, small_config

from prmforge.annotators.vouch_config import ungrounded_before
from prmforge.pipelines.fusion import FusionParams, fuse
from prmforge.pipelines.fusion_rules import min_form
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Cost, FusedLabels, StepLabels

TWO = [{"kind": "mc", "n": 4}, {"kind": "equations"}]


def _labels(source: str, hard: tuple[bool | None, ...], first_error: int | None) -> StepLabels:
    values = tuple(None if h is None else float(h) for h in hard)
    return StepLabels(source, "r", values, hard, first_error, Cost())


MC = _labels("mc", (True, False, False), 1)
EQ = _labels("equations", (True, None, None), None)
EQ_BAD = _labels("equations", (True, False, None), 1)


def test_consensus_weighted_and_grounded_through_fuse() -> None:
    assert fuse("consensus", [MC, EQ_BAD], 3, "mc").first_error == 1
    undecided = fuse("consensus", [MC, EQ], 3, "mc")
    assert undecided.first_error is None
    assert undecided.reason == "consensus needs 2 of 2 to decide; 1 did: mc 1, equations undecided"
    assert fuse("consensus", [MC, EQ], 3, "mc", params=FusionParams(required=1)).first_error == 1
    weights = FusionParams(reliability=(("equations", 0.99), ("mc", 0.6)))
    assert fuse("weighted", [MC, EQ], 3, "mc", params=weights).first_error == 1
    grounded = FusionParams(tool="equations", mc="mc")
    fused = fuse("grounded", [MC, EQ], 3, "mc", params=grounded, outcome=False)
    assert (fused.rule, fused.first_error) == ("grounded", 1)
    with pytest.raises(ValueError, match=r"fusion \(grounded\): source 'z3' gave no labels for rollout r"):
        fuse("grounded", [MC, EQ], 3, "mc", params=FusionParams(tool="z3"), outcome=False)


@pytest.mark.parametrize(
    ("fuse_config", "message"),
    [
        ({"rule": "grounded"}, "rule 'grounded' needs `tool`"),
        ({"rule": "consensus", "among": ["mc", "judge"]}, "fuse.among: ['judge'] are not annotators"),
        ({"rule": "consensus", "required": 3}, "fuse.required: 3 is more than the 2 sources"),
        (
            {"rule": "weighted", "reliability": {"mc": 0.7}},
            "fuse.reliability: no reliability for ['equations']",
        ),
        ({"rule": "weighted", "reliability": {"mc": 1.0}, "default_reliability": 0.6}, "must be in (0, 1)"),
        ({"rule": "grounded", "tool": "equations", "mc": "mc8"}, "fuse.mc: ['mc8'] are not annotators"),
        ({"rule": "earliest", "clears": ["scan"]}, "fuse.clears: ['scan'] are not annotators"),
        ({"rule": "earliest", "clears": []}, "clears: name at least one source"),
        ({"rule": "majority", "clears": ["mc"]}, "clears: read by rule 'earliest' only, not 'majority'"),
        ({"rule": "earliest", "vouch": ["scan"]}, "fuse.vouch: ['scan'] are not annotators"),
        ({"rule": "earliest", "vouch": []}, "vouch: name at least one source"),
        ({"rule": "consensus", "vouch": ["mc"]}, "vouch: read by rule 'earliest' only, not 'consensus'"),
        ({"rule": "weighted", "reliability_from": ["equations"]}, "no reliability for ['equations']"),
        (
            {"rule": "weighted", "reliability_from": ["z3"]},
            "fuse.reliability_from: ['z3'] are not annotators",
        ),
    ],
)
def test_fuse_settings_are_checked_against_the_sources(fuse_config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        small_config(annotate=TWO, fuse=fuse_config)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "fuse_config",
    [
        {"rule": "consensus"},
        {"rule": "weighted", "reliability": {"equations": 0.99}, "default_reliability": 0.7},
        {"rule": "grounded", "tool": "equations", "mc": "mc"},
    ],
    ids=["consensus", "weighted", "grounded"],
)
def test_a_build_fuses_with_each_rule_and_the_card_names_it(
    fuse_config: dict[str, Any], tmp_path: Path
) -> None:
    config = small_config(annotate=TWO, fuse=fuse_config)
    LocalRunner().run(config, tmp_path / "b")
    fused: list[FusedLabels] = committed(tmp_path / "b", "stages/fuse/", "fused")
    assert len(fused) == 40
    assert {f.rule for f in fused} == {fuse_config["rule"]}
    assert any(f.first_error is not None for f in fused)
    assert f"`{fuse_config['rule']}`" in (tmp_path / "b" / "README.md").read_text()
    if fuse_config["rule"] == "consensus":  # kept only where MC and equations both decided and agree
        for f in fused:
            votes = {v.source: v.first_error for v in f.votes}
            assert (f.first_error is not None) == (
                votes["mc"] is not None and votes["mc"] == votes["equations"]
            )


def test_earliest_clears_in_a_build(tmp_path: Path) -> None:
    """`clears: [scan]`: a rollout the equations pass whole while SCAN abstains (its question is below
    the confidence filter) is left out, undecided; an equations claim still decides; the card says
    whose 'no error' counts."""
    annotate = [{"kind": "equations"}, {"kind": "scan", "n": 4, "ratio": 0.5}]
    config = small_config(annotate=annotate, fuse={"rule": "earliest", "clears": ["scan"]})
    LocalRunner().run(config, tmp_path / "b")
    fused: list[FusedLabels] = committed(tmp_path / "b", "stages/fuse/", "fused")
    assert len(fused) == 40
    held = 0
    for f in fused:
        votes = {v.source: v.first_error for v in f.votes}
        if votes["equations"] == -1 and votes["scan"] is None:
            held += 1
            assert f.first_error is None
            assert f.reason == "no source labelled an error and none of scan decided the rollout has none"
        elif f.first_error == -1:
            assert votes["scan"] == -1
    assert held > 0
    card = (tmp_path / "b" / "README.md").read_text()
    assert "a rollout none flags is kept as correct only when `scan` decided it so" in card
    assert "or below 0.5 x the step before it" in card


def test_the_recipe_rules_in_a_build(tmp_path: Path) -> None:
    """Two guards: `vouch: [scan]` leaves out an equations error after step 0 on a rollout SCAN did not
    decide; SCAN's `suspect: ungrounded` with `suspected: abstain` (the default recipe's) leaves out a
    correct rollout that computes with an ungrounded number. Both give reasons; the card says so."""
    scan = {"kind": "scan", "n": 4, "ratio": 0.5, "suspect": "ungrounded", "suspected": "abstain"}
    rollouts = {"kind": "arith", "count": 24, "min_steps": 4, "max_steps": 8}
    config = small_config(
        inputs=[rollouts],
        generate={"rollouts_per_problem": 4},
        annotate=[{"kind": "equations"}, scan],
        fuse={"rule": "earliest", "clears": ["scan"], "vouch": ["scan"]},
    )
    LocalRunner().run(config, tmp_path / "b")
    fused: list[FusedLabels] = committed(tmp_path / "b", "stages/fuse/", "fused")
    scanned = {lab.rollout_id: lab for lab in committed(tmp_path / "b", "stages/annotate-scan/", "labels")}
    assert len(fused) == 96
    unvouched = suspected = 0
    for f in fused:
        votes = {v.source: v.first_error for v in f.votes}
        if votes["scan"] is None and votes["equations"] not in (None, -1, 0):
            unvouched += 1
            assert f.first_error is None
            step = votes["equations"]
            assert f.reason == f"an error at step {step}, but none of scan vouched for the steps before"
        meta = scanned[f.rollout_id].meta
        if "suspect" in meta and meta["sc"] >= 0.75:  # (a question below the filter abstains anyway)
            suspected += 1
            assert votes["scan"] is None
            assert scanned[f.rollout_id].cost.completions == 0
            assert meta["abstained"].startswith(f"a correct outcome, but step {meta['suspect']} computes")
    assert unvouched > 0
    assert suspected > 0
    card = (tmp_path / "b" / "README.md").read_text()
    assert "an error after step 0 is kept only when `scan` decided the rollout" in card
    assert "is left out." in card


def test_stats_give_each_sources_confusion_and_the_kappa_of_every_pair(tmp_path: Path) -> None:
    from prmforge.pipelines.agreement import cohen_kappa, error_confusion
    from prmforge.pipelines.stats import summarize

    LocalRunner().run(small_config(annotate=TWO, fuse={"rule": "earliest"}), tmp_path / "b")
    summary = summarize(tmp_path / "b")
    mc: list[StepLabels] = committed(tmp_path / "b", "stages/annotate-mc/", "labels")
    eq: list[StepLabels] = committed(tmp_path / "b", "stages/annotate-equations/", "labels")
    rollouts = committed(tmp_path / "b", "stages/generate/", "rollout")
    truth = {r.rollout_id: r.truth.prefix_labels() for r in rollouts}
    expected = error_confusion(mc, truth)
    got = summary["confusion_by_source"]["mc"]
    assert (got["tp"], got["fp"], got["tn"], got["fn"]) == (
        expected.tp,
        expected.fp,
        expected.tn,
        expected.fn,
    )
    assert got["tp"] + got["fp"] + got["tn"] + got["fn"] + got["unknown"] == sum(
        len(r.steps) for r in rollouts
    )
    (pair,) = summary["agreement"]
    kappa = cohen_kappa(mc, eq)
    assert (pair["a"], pair["b"], pair["kappa"], pair["steps"]) == ("mc", "equations", kappa.kappa, kappa.n)
    assert summary["confusion_by_source"]["equations"]["fp"] == 0  # the exact checker never flags a good step


def test_prof_leaves_out_the_rollouts_whose_process_score_disagrees_with_their_outcome(
    tmp_path: Path,
) -> None:
    from prmforge.annotators.prof_filter import ProfCandidate, prof_filter
    from prmforge.pipelines.stats import summarize

    base = {"rule": "single", "source": "mc"}
    LocalRunner().run(small_config(fuse=base), tmp_path / "all")
    LocalRunner().run(small_config(fuse={**base, "prof": {}}), tmp_path / "prof")
    everything: list[FusedLabels] = committed(tmp_path / "all", "stages/fuse/", "fused")
    kept: list[FusedLabels] = committed(tmp_path / "prof", "stages/fuse/", "fused")
    rollouts = {r.rollout_id: r for r in committed(tmp_path / "all", "stages/generate/", "rollout")}
    groups: dict[str, list[ProfCandidate]] = {}
    for f in everything:
        r = rollouts[f.rollout_id]
        groups.setdefault(r.problem_id, []).append(ProfCandidate(r.rollout_id, r.outcome, f.scores))
    expected = sorted(rid for g in groups.values() for rid in prof_filter(g).kept)
    assert sorted(f.rollout_id for f in kept) == expected
    assert 0 < len(kept) < len(everything)
    outcomes = [rollouts[f.rollout_id].outcome for f in kept]
    assert outcomes.count(True) == outcomes.count(False)  # balanced per question, so overall too
    reasons = summarize(tmp_path / "prof")["excluded_reasons"]
    assert all(reason.startswith("fuse: labels: PROF: ") for reason in reasons)
    assert sum(reasons.values()) == len(everything) - len(kept)
    assert (
        "PROF filter: a rollout whose mean fused score disagrees"
        in (tmp_path / "prof" / "README.md").read_text()
    )


def test_weighted_fusion_estimates_reliabilities_on_the_steps_a_reference_is_certain_of() -> None:
    from prmforge.pipelines.fusion_rules import estimate_reliability, weighted_vote
    from prmforge.pipelines.stages.fuse import FuseStage
    from prmforge.schemas.records import Rollout, SamplingParams

    def rollout(rid: str) -> Rollout:
        return Rollout(
            rid, "p", "pol", SamplingParams(), 0, "a\n\nb\n\nc", ("a", "b", "c"), None, False, 1, 1
        )

    def labs(source: str, rid: str, hard: tuple[bool | None, ...], fe: int | None) -> StepLabels:
        return StepLabels(source, rid, tuple(None if h is None else float(h) for h in hard), hard, fe, Cost())

    eq = [labs("equations", "r1", (True, False, None), 1), labs("equations", "r2", (True, None, None), None)]
    mc = [labs("mc", "r1", (True, False, False), 1), labs("mc", "r2", (True, True, False), 2)]
    judge = [labs("judge", "r1", (True, True, False), 2), labs("judge", "r2", (False, False, False), 0)]
    params = FusionParams(reliability=(("equations", 0.99),), reliability_from=("equations",))
    stage = FuseStage("weighted", "mc", ["annotate-equations", "annotate-mc", "annotate-judge"], {}, params)
    side = {"annotate-equations": eq, "annotate-mc": mc, "annotate-judge": judge}
    out = stage.process([rollout("r1"), rollout("r2")], side)
    estimated = estimate_reliability([[eq[i], mc[i], judge[i]] for i in range(2)], {"equations"})
    assert (estimated["mc"].agreed, estimated["mc"].compared) == (3, 3)  # steps 0, 1 of r1; step 0 of r2
    assert (estimated["judge"].agreed, estimated["judge"].compared) == (1, 3)
    reliability = {"equations": 0.99, "mc": estimated["mc"].p, "judge": estimated["judge"].p}
    for i, result in enumerate(out):
        assert isinstance(result, list)
        expected = weighted_vote([eq[i], mc[i], judge[i]], 3, reliability)
        assert result[0].first_error == expected.first_error
    assert [r[0].first_error for r in out if isinstance(r, list)] == [1, 2]  # the unreliable judge has no say


def test_the_card_carries_each_sources_quality_against_truth(tmp_path: Path) -> None:
    from prmforge.pipelines.stats import summarize

    LocalRunner().run(small_config(annotate=TWO, fuse={"rule": "earliest"}), tmp_path / "b")
    card = (tmp_path / "b" / "README.md").read_text()
    summary = summarize(tmp_path / "b")
    assert "## Label quality against truth" in card
    for source in ("mc", "equations"):
        q = summary["quality_by_source"][source]
        c = summary["confusion_by_source"][source]
        completions = summary["cost_by_source"][source]["completions"]
        steps = sum(len(r.steps) for r in committed(tmp_path / "b", "stages/generate/", "rollout"))
        row = (
            f"| {source} | {q['decided']} of 40 | {q['first_error_f1']:.3f} | {c['precision']:.3f} | "
            f"{c['recall']:.3f} | {completions / steps:.2f} |"
        )
        assert row in card
    assert "| fused label | 40 of 40 |" in card


def test_a_build_without_truth_has_no_quality_section(tmp_path: Path) -> None:
    rows = tmp_path / "r.jsonl"
    rows.write_text('{"question": "What is 2 + 3?", "steps": ["2 + 3 = 5"], "answer": "5"}\n')
    config = small_config(inputs=[{"kind": "rollouts", "path": str(rows)}], annotate=[{"kind": "equations"}])
    LocalRunner().run(config, tmp_path / "b")
    assert "## Label quality against truth" not in (tmp_path / "b" / "README.md").read_text()


def test_min_form_scores_through_fuse() -> None:
    soft = StepLabels("mc", "r", (1.0, 0.25, 0.75, 0.5), (True, True, True, True), -1, Cost())
    other = StepLabels("judge", "r", (0.5, None, 0.25, 1.0), (True, None, True, True), -1, Cost())
    min_form = FusionParams(scores="min_form")
    assert fuse("single", [soft], 4, "mc", params=min_form).scores == (0.25, 0.25, 0.5, 0.5)
    assert fuse("single", [soft], 4, "mc").scores == (1.0, 0.25, 0.75, 0.5)
    # the mean of the two first (0.75, 0.25, 0.5, 0.75), then the least from each step on
    assert fuse("earliest", [soft, other], 4, "mc", params=min_form).scores == (0.25, 0.25, 0.5, 0.75)
    with pytest.raises(ValueError, match="scores must be 'mean' or 'min_form', got 'max'"):
        fuse("single", [soft], 4, "mc", params=FusionParams(scores="max"))


def test_scores_default_keeps_the_config_hash_and_min_form_is_in_it() -> None:
    plain = small_config(annotate=TWO, fuse={"rule": "earliest"})
    assert "scores" not in plain.model_dump(mode="json")["fuse"]
    assert small_config(annotate=TWO, fuse={"rule": "earliest", "scores": "mean"}).content_hash() == (
        plain.content_hash()
    )
    shaped = small_config(annotate=TWO, fuse={"rule": "earliest", "scores": "min_form"})
    assert shaped.model_dump(mode="json")["fuse"]["scores"] == "min_form"
    assert shaped.content_hash() != plain.content_hash()
    with pytest.raises(ConfigError) as info:
        small_config(annotate=TWO, fuse={"rule": "earliest", "scores": "max"})
    assert "fuse.scores" in str(info.value)


def test_a_build_with_min_form_scores(tmp_path: Path) -> None:
    """Every trained row's scores are the min-form of the sources' mean values; the labels and the
    first errors are those of the same build with mean scores; the card says so."""
    mean = small_config(annotate=TWO, fuse={"rule": "earliest"})
    shaped = small_config(annotate=TWO, fuse={"rule": "earliest", "scores": "min_form"})
    LocalRunner().run(mean, tmp_path / "mean")
    LocalRunner().run(shaped, tmp_path / "min")
    rows_mean = {e.example_id: e for e in committed(tmp_path / "mean", "data/", "example")}
    rows_min = {e.example_id: e for e in committed(tmp_path / "min", "data/", "example")}
    assert rows_mean.keys() == rows_min.keys()
    assert len(rows_min) > 0
    lowered = 0
    for rid, e in rows_min.items():
        before = rows_mean[rid]
        assert (e.labels, e.first_error) == (before.labels, before.first_error)
        assert e.scores == min_form(before.scores)
        lowered += e.scores != before.scores
    assert lowered > 0
    card = (tmp_path / "min" / "README.md").read_text()
    assert "`scores` are min-form (`fuse.scores`): each step's is the least of the per-step values" in card


def test_build_wide_reliabilities_from_stats_then_fused_again_in_place(
    tmp_path: Path, policy_calls: PolicyCalls
) -> None:
    """`prmforge stats --reliability-from equations` estimates MC's reliability over every shard at once
    (the rule's `reliability_from` does so per shard); given to `fuse.reliability`, the build is fused
    again in place with no policy call, as a fresh build of that config would be."""
    import json

    from typer.testing import CliRunner

    from prmforge.pipelines.cli import app
    from prmforge.pipelines.fusion_rules import estimate_reliability

    root = tmp_path / "b"
    LocalRunner().run(small_config(annotate=TWO, fuse={"rule": "earliest"}), root)
    mc: list[StepLabels] = committed(root, "stages/annotate-mc/", "labels")
    eq = {lab.rollout_id: lab for lab in committed(root, "stages/annotate-equations/", "labels")}
    expected = estimate_reliability([[eq[m.rollout_id], m] for m in mc], {"equations"})["mc"]
    assert len(mc) == 40
    assert expected.compared > 0
    out = CliRunner().invoke(app, ["stats", str(root), "--reliability-from", "equations", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)["reliability"]
    assert got == {
        "references": ["equations"],
        "rollouts": 40,
        "sources": {
            "mc": {"agreed": expected.agreed, "compared": expected.compared, "p": round(expected.p, 4)}
        },
    }
    table = CliRunner().invoke(app, ["stats", str(root), "--reliability-from", "equations"])
    assert table.exit_code == 0, table.output
    assert f"reliability: {{mc: {round(expected.p, 4)}, equations: 0.99}}" in table.output
    bad = CliRunner().invoke(app, ["stats", str(root), "--reliability-from", "z3"])
    assert bad.exit_code == 1
    assert "--reliability-from: ['z3'] named; the build's sources are mc, equations" in " ".join(
        bad.output.split()
    )
    # The printed lines, as they are, make a valid `fuse:`.
    printed = next(line for line in table.output.splitlines() if "reliability: {" in line)
    weighted = {"rule": "weighted", **yaml.safe_load(printed)}
    assert weighted["reliability"] == {"mc": round(expected.p, 4), "equations": 0.99}
    policy_calls.reset()
    fused_again = LocalRunner().run(small_config(annotate=TWO, fuse=weighted), root)
    assert (fused_again.reconfigured, policy_calls.calls) == (("fuse",), 0)
    fresh = LocalRunner().run(small_config(annotate=TWO, fuse=weighted), tmp_path / "fresh")
    assert fused_again.content_hash == fresh.content_hash
    fused: list[FusedLabels] = committed(root, "stages/fuse/", "fused")
    assert {f.rule for f in fused} == {"weighted"}


def test_the_vouch_source_in_a_build(tmp_path: Path) -> None:
    """`kind: vouch` reads the equations' labels: it spends completions only on rollouts with an
    equations error after step 0 and a grounded prefix, vouches (first error = the equations') or
    abstains with why; `vouch: [scan, vouch]` then keeps exactly the equations errors
    after step 0 that SCAN or it decided. The card names it."""
    scan = {"kind": "scan", "n": 4, "ratio": 0.5, "suspect": "ungrounded", "suspected": "abstain"}
    config = small_config(
        inputs=[{"kind": "arith", "count": 48, "min_steps": 4, "max_steps": 9}],
        generate={"rollouts_per_problem": 4},
        annotate=[{"kind": "equations"}, scan, {"kind": "vouch", "of": ["equations"], "n": 2}],
        fuse={"rule": "earliest", "clears": ["scan"], "vouch": ["scan", "vouch"]},
    )
    LocalRunner().run(config, tmp_path / "b")
    eq = {lab.rollout_id: lab for lab in committed(tmp_path / "b", "stages/annotate-equations/", "labels")}
    vouched = {lab.rollout_id: lab for lab in committed(tmp_path / "b", "stages/annotate-vouch/", "labels")}
    fused: list[FusedLabels] = committed(tmp_path / "b", "stages/fuse/", "fused")
    problems = {p.problem_id: p for p in committed(tmp_path / "b", "stages/load/", "problem")}
    rollouts = {r.rollout_id: r for r in committed(tmp_path / "b", "stages/generate/", "rollout")}
    assert len(vouched) == len(fused) == 192
    seen = {"vouched": 0, "open": 0}
    for f in fused:
        e, v = eq[f.rollout_id], vouched[f.rollout_id]
        votes = {vote.source: vote.first_error for vote in f.votes}
        if e.first_error is None or e.first_error <= 0:
            assert v.first_error is None
            assert v.cost.completions == 0
            continue
        k = e.first_error
        rollout = rollouts[f.rollout_id]
        ungrounded = ungrounded_before(problems[rollout.problem_id], rollout, k)
        if ungrounded is not None:
            assert v.first_error is None
            assert v.meta["abstained"].startswith(f"step {ungrounded} computes with a number")
            assert v.cost.completions == 0
        elif v.first_error is not None:
            seen["vouched"] += 1
            assert (v.first_error, v.hard[:k], v.hard[k], v.cost.completions) == (k, (True,) * k, False, 2)
        else:
            seen["open"] += 1
            assert v.meta["abstained"].startswith(f"no completion after step {k - 1} reached the answer")
            assert v.cost.completions == 2
        if votes["scan"] is None and f.first_error is not None and f.first_error > 0:
            assert v.first_error == f.first_error  # kept only because vouch decided it
    assert all(n > 0 for n in seen.values()), seen
    card = (tmp_path / "b" / "README.md").read_text()
    assert "Vouching for the steps before equations's first failure at step k > 0" in card
    assert "an error after step 0 is kept only when `scan`, `vouch` decided the rollout" in card


@pytest.mark.parametrize(
    ("annotate", "message"),
    [
        (
            [{"kind": "vouch", "of": ["equations"]}, {"kind": "equations"}],
            "annotate.0.of: 'equations' comes after it",
        ),
        ([{"kind": "equations"}, {"kind": "vouch", "of": ["z3"]}], "annotate.1.of: 'z3' is not an annotator"),
    ],
)
def test_vouch_reads_only_earlier_sources(annotate: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        small_config(annotate=annotate, fuse={"rule": "earliest"})
    assert message in str(info.value)
