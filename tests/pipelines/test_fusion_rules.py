"""The fusion rules of issue #11 (consensus, weighted vote, reliability, GroundedPRM hybrid, min form,
truncation), with exact expectations."""

from __future__ import annotations

import doctest
import math
import random

import pytest

from prmforge.pipelines import fusion_grounded, fusion_rules
from prmforge.pipelines.fusion import Decision, fuse_majority, fuse_single
from prmforge.pipelines.fusion_grounded import grounded_hybrid, grounded_hybrid_labels, grounded_value
from prmforge.pipelines.fusion_rules import (
    Reliability,
    consensus,
    estimate_reliability,
    kept_steps,
    log_odds_weight,
    min_form,
    min_form_hard,
    reference_truth,
    weighted_vote,
)
from prmforge.schemas.records import Cost, StepLabels


def labels(
    source: str, hard: tuple[bool | None, ...], first_error: int | None, rollout: str = "r1", **meta: str
) -> StepLabels:
    values = tuple(None if h is None else float(h) for h in hard)
    return StepLabels(source, rollout, values, hard, first_error, Cost(), meta)


MC = labels("mc", (True, True, False), 2)
JUDGE = labels("judge", (True, False, None), 1)
ABSTAIN = labels("judge", (None, None, None), None, abstained="no verdict parsed")
CLEAN = labels("eq", (True, True, True), -1)


def test_doctests() -> None:
    """The worked examples in the docstrings hold."""
    assert doctest.testmod(fusion_rules, extraglobs={"Cost": Cost}).failed == 0
    assert doctest.testmod(fusion_grounded, extraglobs={"Cost": Cost}).failed == 0


# --- consensus ------------------------------------------------------------------------------------------


def test_consensus_keeps_an_agreed_first_error_and_an_agreed_clean_rollout() -> None:
    assert consensus([MC, labels("judge", (True, True, False), 2)]) == Decision(2)
    assert consensus([CLEAN, labels("mc", (True, True, True), -1)]) == Decision(-1)


def test_consensus_drops_a_disagreement_naming_every_source() -> None:
    assert consensus([MC, JUDGE]) == Decision(None, "sources disagree on the first error: mc 2, judge 1")
    # a clean source against one that found an error disagrees too
    assert consensus([MC, CLEAN]).reason == "sources disagree on the first error: mc 2, eq -1"


def test_an_abstaining_source_does_not_vote_and_required_counts_the_deciders() -> None:
    assert consensus([MC, ABSTAIN]) == Decision(
        None, "consensus needs 2 of 2 to decide; 1 did: mc 2, judge abstained (no verdict parsed)"
    )
    assert consensus([MC, ABSTAIN], required=1) == Decision(2)
    undecided = labels("tool", (True, None, False), None)
    assert consensus([MC, undecided, CLEAN], required=2).reason == (
        "sources disagree on the first error: mc 2, tool undecided, eq -1"
    )
    assert consensus([MC, undecided, labels("b", (True, True, False), 2)], required=2) == Decision(2)


def test_all_abstaining_is_undecided() -> None:
    other = labels("tool", (None, None, None), None)
    assert consensus([ABSTAIN, other], required=1) == Decision(
        None, "consensus needs 1 of 2 to decide; 0 did: judge abstained (no verdict parsed), tool undecided"
    )


def test_among_chooses_the_voters() -> None:
    assert consensus([MC, JUDGE, labels("b", (True, True, False), 2)], among={"mc", "b"}) == Decision(2)
    assert consensus([MC, JUDGE], among=["judge"]) == Decision(1)
    with pytest.raises(ValueError, match=r"among names \['z3'\], which gave no labels for r1"):
        consensus([MC, JUDGE], among={"mc", "z3"})
    with pytest.raises(ValueError, match="among must be a collection of source names, not the string 'mc'"):
        consensus([MC, JUDGE], among="mc")


@pytest.mark.parametrize("required", [0, 3, -1])
def test_consensus_refuses_a_required_out_of_range(required: int) -> None:
    with pytest.raises(ValueError, match=r"required must be in \[1, 2\]"):
        consensus([MC, JUDGE], required=required)


def test_consensus_refuses_no_or_repeated_sources() -> None:
    with pytest.raises(ValueError, match="at least one source"):
        consensus([])
    with pytest.raises(ValueError, match="names a source twice"):
        consensus([MC, MC])


def _random_labels(rng: random.Random, source: str, steps: int) -> StepLabels:
    hard = tuple(rng.choice((True, False, None)) for _ in range(steps))
    first_error = rng.choice((None, -1, *range(steps)))
    meta = {"abstained": "x"} if first_error is None and rng.random() < 0.5 else {}
    return labels(source, hard, first_error, **meta)


def test_consensus_of_one_source_is_single() -> None:
    rng = random.Random(20)
    for _ in range(300):
        s = _random_labels(rng, "s", rng.randint(0, 5))
        assert consensus([s]).first_error == fuse_single(s).first_error
        assert consensus([s], required=1) == consensus([s])


# --- weighted vote --------------------------------------------------------------------------------------


def test_log_odds_weights_are_clipped() -> None:
    assert log_odds_weight(0.75) == math.log(3.0)
    assert log_odds_weight(0.2) == 0.0  # below the floor: no say
    assert log_odds_weight(0.2, floor=0.1) == math.log(0.25)  # a worse-than-chance source inverts
    assert log_odds_weight(0.0, floor=0.1) == math.log(0.1 / 0.9)
    assert log_odds_weight(1.0) == log_odds_weight(0.99) == pytest.approx(math.log(99), abs=1e-12)
    assert log_odds_weight(1.0, ceiling=0.9) == pytest.approx(math.log(9), abs=1e-12)


@pytest.mark.parametrize(("floor", "ceiling"), [(0.0, 0.9), (0.5, 1.0), (0.6, 0.6), (0.9, 0.6)])
def test_log_odds_weight_refuses_a_bad_range(floor: float, ceiling: float) -> None:
    with pytest.raises(ValueError, match="need 0 < floor < ceiling < 1"):
        log_odds_weight(0.7, floor, ceiling)


@pytest.mark.parametrize("p", [-0.1, 1.1, math.nan])
def test_log_odds_weight_refuses_a_reliability_outside_0_1(p: float) -> None:
    with pytest.raises(ValueError, match="reliability must be in"):
        log_odds_weight(p)


def test_a_reliable_source_outvotes_two_weak_ones() -> None:
    strong = labels("a", (True, False), 1)
    weak = [labels("b", (True, True), -1), labels("c", (True, True), -1)]
    rel = {"a": 0.95, "b": 0.6, "c": 0.6}  # log 19 = 2.94 > 2 log 1.5 = 0.81
    assert weighted_vote([strong, *weak], 2, rel) == Decision(1)
    assert weighted_vote([strong, *weak], 2, {"a": 0.6, "b": 0.6, "c": 0.6}) == Decision(-1)


def test_the_ceiling_lets_enough_sources_outvote_a_certain_one() -> None:
    certain = labels("a", (False,), 0)
    goods = [labels(n, (True,), -1) for n in "bcd"]
    rel = {"a": 1.0, "b": 0.9, "c": 0.9, "d": 0.9}  # log 99 = 4.595
    assert weighted_vote([certain, *goods[:2]], 1, rel) == Decision(0)  # 2 log 9 = 4.394
    assert weighted_vote([certain, *goods], 1, rel) == Decision(-1)  # 3 log 9 = 6.592


def test_a_weighted_tie_is_an_error() -> None:
    bad = labels("a", (True, False), 1)
    goods = [labels("b", (True, True), -1), labels("c", (True, True), -1)]
    # log 9 against log 3 + log 3: equal up to rounding
    assert weighted_vote([bad, *goods], 2, {"a": 0.9, "b": 0.75, "c": 0.75}) == Decision(1)
    assert weighted_vote([bad, goods[0]], 2, {"a": 0.8, "b": 0.8}) == Decision(1)
    # log 6 - log 2 - log 3 sums to -4.4e-16 in floating point: still a tie
    rel = {"a": 6 / 7, "b": 2 / 3, "c": 3 / 4}
    assert math.fsum([log_odds_weight(6 / 7), -log_odds_weight(2 / 3), -log_odds_weight(3 / 4)]) < 0
    assert weighted_vote([bad, *goods], 2, rel) == Decision(1)
    assert weighted_vote([bad, *goods], 2, {**rel, "a": 6 / 7 - 1e-6}) == Decision(-1)


def test_zero_weight_sources_have_no_say() -> None:
    chance = labels("a", (False, True), 0)
    assert weighted_vote([chance], 2, {"a": 0.5}) == Decision(
        None, "no source with a non-zero weight labelled step 0"
    )
    assert weighted_vote([chance, labels("b", (True, True), -1)], 2, {"a": 0.3, "b": 0.7}) == Decision(-1)
    # below 0.5 with a lower floor, a 'bad' vote counts for 'good'
    assert weighted_vote([chance], 2, {"a": 0.3}, floor=0.1) == Decision(1)


def test_weighted_vote_gaps_abstentions_and_empty_rollouts() -> None:
    gap = labels("a", (True, None, False), None)
    assert weighted_vote([gap], 3, {"a": 0.9}) == Decision(
        None, "no source with a non-zero weight labelled step 1"
    )
    assert (
        weighted_vote([ABSTAIN], 3, {"judge": 0.9}).reason
        == "no source with a non-zero weight labelled step 0"
    )
    assert weighted_vote([MC], 0, {"mc": 0.9}) == Decision(-1)
    short = labels("a", (True,), -1)  # a step past its labels is an abstention
    assert weighted_vote([short, MC], 3, {"a": 0.9, "mc": 0.6}) == Decision(2)


def test_weighted_vote_needs_every_reliability_or_a_default() -> None:
    with pytest.raises(ValueError, match="reliability has no entry for source 'judge'"):
        weighted_vote([MC, JUDGE], 3, {"mc": 0.9})
    assert weighted_vote([MC, JUDGE], 3, {"mc": 0.9}, default_reliability=0.6) == Decision(2)
    with pytest.raises(ValueError, match=r"reliability of 'judge' must be in \[0, 1\], got 1.5"):
        weighted_vote([MC, JUDGE], 3, {"mc": 0.9}, default_reliability=1.5)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        weighted_vote([MC], -1, {"mc": 0.9})
    with pytest.raises(ValueError, match="at least one source"):
        weighted_vote([], 1, {})


def test_equal_reliabilities_give_majority() -> None:
    rng = random.Random(11)
    for _ in range(400):
        steps = rng.randint(0, 5)
        sources = [
            _random_labels(rng, f"s{i}", rng.choice((steps, steps, max(0, steps - 1)))) for i in range(4)
        ]
        sources = sources[: rng.randint(1, 4)]
        p = rng.uniform(0.51, 1.0)
        weighted = weighted_vote(sources, steps, dict.fromkeys((s.source for s in sources), p))
        assert weighted.first_error == fuse_majority(sources, steps).first_error


# --- reliability ----------------------------------------------------------------------------------------


def test_reference_truth_is_the_certain_prefix_and_the_first_certain_error() -> None:
    eq = labels("eq", (True, True, False, True), 2)
    assert reference_truth([eq, MC], {"eq"}) == (True, True, False, None)
    unsure = labels("eq", (True, None, True, False, False), None)
    assert reference_truth([unsure], {"eq"}) == (True, None, None, False, None)
    # two references: a conflict is not certain, agreement and one-sided verdicts are
    tool = labels("tool", (True, True, None, True, None), None)
    assert reference_truth([unsure, tool], {"eq", "tool"}) == (True, True, True, None, False)
    assert reference_truth([unsure, tool], {"tool"}) == (True, True, None, None, None)
    assert reference_truth(
        [labels("eq", (True, None), None), labels("t", (None, True), None)], {"eq", "t"}
    ) == (
        True,
        True,
    )
    assert reference_truth([MC], {"eq"}) == ()


def test_estimate_reliability_counts_agreement_on_certain_steps() -> None:
    r1 = [labels("eq", (True, True, False), 2), MC, JUDGE]
    r2 = [
        labels("eq", (True, None, False), None, rollout="r2"),
        labels("mc", (True, True, True), -1, rollout="r2"),
        labels("judge", (None, None, None), None, rollout="r2"),
    ]
    got = estimate_reliability([r1, r2], {"eq"})
    # mc: r1 steps 0, 1, 2 right; r2 step 0 right, step 2 wrong (step 1 is not certain)
    assert got["mc"] == Reliability("mc", 4, 5, 5 / 7)
    # judge: r1 step 0 right, step 1 wrong, step 2 abstained; r2 nothing
    assert got["judge"] == Reliability("judge", 1, 2, 0.5)
    assert set(got) == {"mc", "judge"}
    assert estimate_reliability([r1], {"eq"}, prior=(2.0, 1.0))["mc"] == Reliability("mc", 3, 3, 5 / 6)


def test_a_source_never_compared_gets_the_prior_mean_and_weight_zero() -> None:
    got = estimate_reliability([[MC, ABSTAIN]], {"eq"})
    assert got == {"mc": Reliability("mc", 0, 0, 0.5), "judge": Reliability("judge", 0, 0, 0.5)}
    assert log_odds_weight(got["mc"].p) == 0.0
    assert estimate_reliability([], {"eq"}) == {}


def test_estimated_reliabilities_feed_the_weighted_vote() -> None:
    history = [
        [
            labels("eq", (True, False), 1, rollout=f"h{i}"),
            labels("mc", (True, i % 4 != 0), -1, rollout=f"h{i}"),
        ]
        for i in range(8)
    ]
    history += [
        [labels("eq", (True, False), 1, rollout=f"j{i}"), labels("judge", (True, False), 1, rollout=f"j{i}")]
        for i in range(8)
    ]
    rel = {name: r.p for name, r in estimate_reliability(history, {"eq"}).items()}
    assert rel == {"mc": 11 / 18, "judge": 17 / 18}
    assert weighted_vote(
        [labels("mc", (True, True), -1), labels("judge", (True, False), 1)], 2, rel
    ) == Decision(1)


def test_estimate_reliability_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="prior must be two positive numbers"):
        estimate_reliability([], {"eq"}, prior=(0.0, 1.0))
    with pytest.raises(ValueError, match="references must name"):
        estimate_reliability([], set())
    with pytest.raises(ValueError, match=r"a group mixes rollouts \['r1', 'r2'\]"):
        estimate_reliability([[MC, labels("eq", (True,), -1, rollout="r2")]], {"eq"})
    with pytest.raises(ValueError, match="names a source twice"):
        estimate_reliability([[MC, MC]], {"eq"})


# --- GroundedPRM hybrid ---------------------------------------------------------------------------------


def test_grounded_value_is_the_position_weighted_mean_plus_the_outcome_term() -> None:
    # N = 3: (1/3)(1 * 3/3) + (1/3)(-1 * 2/3) + (1/3)(0 * 1/3) + 1/3 = 1/3 - 2/9 + 1/3
    assert grounded_value([True, False, None], True) == pytest.approx(4 / 9, abs=1e-15)
    assert grounded_value([None, None], False) == -0.5
    assert grounded_value([True], False) == 0.0
    assert grounded_value([], False) == -1.0


def test_grounded_labels_take_the_tool_then_mc_then_the_hybrid_value() -> None:
    tool = (True, None, None, False, None)
    # step 1: later (None, False, None): (1/3)(-1)(2/3) + 1/3 = 1/9 > 0
    # step 2: later (False, None): (1/2)(-1)(2/2) + 1/2 = 0, undecided; step 4 (last): the outcome
    assert grounded_value(tool[2:], True) == pytest.approx(1 / 9, abs=1e-15)
    assert grounded_value(tool[3:], True) == 0.0
    assert grounded_hybrid_labels(tool, True) == (True, True, None, False, True)
    assert grounded_hybrid_labels(tool, None) == (True, None, None, False, None)
    mc = (False, True, False, True, False)  # the tool wins where both label
    assert grounded_hybrid_labels(tool, True, mc) == (True, True, False, False, False)
    assert grounded_hybrid_labels(tool, True, (None,) * 5) == grounded_hybrid_labels(tool, True)
    with pytest.raises(ValueError, match="mc_hard has 2 steps, tool_hard 5"):
        grounded_hybrid_labels(tool, True, (True, True))


def test_grounded_hybrid_decides_the_first_error() -> None:
    tool = labels("tool", (True, None, False), None)
    assert grounded_hybrid(tool, False) == Decision(1)  # step 1: -1 - 1 < 0
    assert grounded_hybrid(tool, True) == Decision(
        None, "step 1 has no tool verdict, MC label or outcome-based label"
    )
    assert grounded_hybrid(tool, True, labels("mc", (True, True, True), -1)) == Decision(2)
    assert grounded_hybrid(labels("tool", (None, None), None), True) == Decision(-1)
    assert grounded_hybrid(labels("tool", (None, None), None), False) == Decision(0)
    assert grounded_hybrid(labels("tool", (), -1), None) == Decision(-1)


def test_grounded_consistency_filter() -> None:
    clean = labels("tool", (True, True, True), -1)
    assert grounded_hybrid(clean, True, consistency=True) == Decision(-1)
    assert grounded_hybrid(clean, False, consistency=True) == Decision(
        None,
        "inconsistent: step 1 verified True but its hybrid value is 0.0",  # 1 - 1
    )
    flawed = labels("tool", (True, True, False), 2)
    assert grounded_hybrid(flawed, False) == Decision(2)
    assert grounded_hybrid(flawed, False, consistency=True) == Decision(
        None, "inconsistent: step 0 verified True but its hybrid value is -0.25"
    )
    zero = labels("tool", (None, True, True), -1)  # step 1: later (True,), outcome False: 1 - 1 = 0
    assert grounded_hybrid(zero, False, consistency=True).reason.startswith("inconsistent: step 1")
    assert grounded_hybrid(clean, None, consistency=True) == Decision(
        None, "the consistency filter needs the outcome"
    )
    assert grounded_hybrid(labels("tool", (None,), None), True, consistency=True) == Decision(-1)


# --- min form -------------------------------------------------------------------------------------------


def test_min_form_exact() -> None:
    assert min_form((0.9, 0.5, 0.75, 0.25)) == (0.25, 0.25, 0.25, 0.25)
    assert min_form((0.25, 0.5, 0.75)) == (0.25, 0.5, 0.75)
    assert min_form((None, 0.5, None, 1.0)) == (None, 0.5, None, 1.0)
    assert min_form((None, None)) == (None, None)
    assert min_form(()) == ()


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_min_form_refuses_values_outside_0_1(bad: float) -> None:
    with pytest.raises(ValueError, match="value of step 1 must be in"):
        min_form((0.5, bad))


def test_min_form_properties() -> None:
    rng = random.Random(5)
    for _ in range(300):
        values = tuple(rng.choice((None, 0.0, rng.random())) for _ in range(rng.randint(0, 6)))
        y = min_form(values)
        known = [(t, v) for t, v in enumerate(y) if v is not None]
        assert [t for t, _ in known] == [t for t, v in enumerate(values) if v is not None]
        lows = [v for _, v in known]
        assert lows == sorted(lows)  # nondecreasing
        for t, low in known:
            later = [v for v in values[t:] if v is not None]
            assert low == min(later)
        assert min_form(y) == y  # idempotent


def test_min_form_hard() -> None:
    assert min_form_hard((0.5, 0.0, None, 0.25)) == (False, False, None, True)
    assert min_form_hard((0.75, 0.6), threshold=0.5) == (True, True)
    assert min_form_hard((0.75, 0.5), threshold=0.5) == (False, False)
    with pytest.raises(ValueError, match="threshold must be in"):
        min_form_hard((0.5,), threshold=1.0)


# --- truncation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "first_error", "mode", "kept"),
    [
        (5, 0, "first_error", 1),
        (5, 4, "first_error", 5),
        (5, -1, "first_error", 5),
        (0, -1, "first_error", 0),
        (5, 1, "none", 5),
        (0, -1, "none", 0),
    ],
)
def test_kept_steps(steps: int, first_error: int, mode: str, kept: int) -> None:
    assert kept_steps(steps, first_error, mode) == kept  # type: ignore[arg-type]


def test_kept_steps_refuses_bad_calls() -> None:
    with pytest.raises(ValueError, match="undecided rollout"):
        kept_steps(3, None)
    with pytest.raises(ValueError, match="first_error must be -1 or a step index below 3"):
        kept_steps(3, 3)
    with pytest.raises(ValueError, match="first_error must be"):
        kept_steps(3, -2)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        kept_steps(-1, -1)
    with pytest.raises(ValueError, match="mode must be 'first_error' or 'none'"):
        kept_steps(3, -1, "all")  # type: ignore[arg-type]
