"""Fusion rules as pure functions, with exact expectations."""

from __future__ import annotations

import pytest

from prmforge.pipelines.fusion import (
    FusionParams,
    agreement,
    fuse,
    fuse_earliest,
    fuse_majority,
    fuse_single,
    mean_scores,
)
from prmforge.schemas.records import Cost, StepLabels, Vote


def labels(source: str, hard: tuple[bool | None, ...], first_error: int | None) -> StepLabels:
    values = tuple(None if h is None else float(h) for h in hard)
    return StepLabels(source, "r1", values, hard, first_error, Cost())


MC = labels("mc", (True, True, False), 2)
EQ = labels("eq", (True, False, None), 1)
ABSTAIN = labels("judge", (None, None, None), None)
CLEAN = labels("z", (True, True, True), -1)


def test_the_docstring_example() -> None:
    """earliest 1, majority 1 (a tie counts as an error), single(mc) 2."""
    assert fuse_earliest([MC, EQ]).first_error == 1
    assert fuse_majority([MC, EQ], 3).first_error == 1
    assert fuse_single(MC).first_error == 2


def test_single_is_undecided_when_its_source_is() -> None:
    decision = fuse_single(labels("eq", (True, None, False), None))
    assert decision.first_error is None
    assert decision.reason == "eq could not decide (an unchecked step comes first)"


def test_earliest_needs_a_claim_or_a_clean_decision() -> None:
    assert fuse_earliest([CLEAN, ABSTAIN]).first_error == -1
    assert fuse_earliest([ABSTAIN]).first_error is None
    assert fuse_earliest([ABSTAIN]).reason == "no source labelled an error and none decided the whole rollout"
    # A claim counts even from a source whose first error is unknown (an unchecked step before it).
    assert fuse_earliest([labels("eq", (None, False, True), None), CLEAN]).first_error == 1


def test_earliest_with_clears_takes_no_error_only_from_the_named_sources() -> None:
    """An exact checker that passes every step (CLEAN, source z) does not clear the rollout when only
    MC may: MC undecided leaves it undecided, with the reason; a claim still decides at once."""
    mc_open = labels("mc", (True, None, None), None)
    assert fuse_earliest([CLEAN, mc_open]).first_error == -1  # any source's -1
    held = fuse_earliest([CLEAN, mc_open], clears={"mc"})
    assert (held.first_error, held.reason) == (
        None,
        "no source labelled an error and none of mc decided the rollout has none",
    )
    mc_clean = labels("mc", (True, True, True), -1)
    assert fuse_earliest([CLEAN, mc_clean], clears={"mc"}).first_error == -1
    assert fuse_earliest([CLEAN, mc_clean], clears={"z"}).first_error == -1
    assert fuse_earliest([EQ, mc_open], clears={"mc"}).first_error == 1  # eq's claim
    assert fuse_earliest([CLEAN, MC], clears={"z"}).first_error == 2  # a claim beats a clear
    fused = fuse("earliest", [CLEAN, mc_open], 3, "mc", params=FusionParams(clears=("mc",)))
    assert (fused.first_error, fused.reason) == (held.first_error, held.reason)


def test_earliest_with_vouch_keeps_a_later_error_only_when_a_named_source_decided() -> None:
    """EQ claims step 1; with vouch {mc} it stands only when mc decided the rollout (its labels cover
    step 0), whatever mc's own first error; an error at step 0 needs nobody; a claim of the vouching
    source itself stands."""
    mc_open = labels("mc", (None, None, None), None)
    assert fuse_earliest([EQ, mc_open]).first_error == 1
    held = fuse_earliest([EQ, mc_open], vouch={"mc"})
    assert (held.first_error, held.reason) == (
        None,
        "an error at step 1, but none of mc vouched for the steps before",
    )
    assert fuse_earliest([EQ, MC], vouch={"mc"}).first_error == 1  # mc decided (its error is later)
    assert fuse_earliest([EQ, labels("mc", (True, True, True), -1)], vouch={"mc"}).first_error == 1
    assert fuse_earliest([EQ, MC], vouch={"judge"}).first_error is None
    at_zero = labels("eq", (False, None, None), 0)
    assert fuse_earliest([at_zero, mc_open], vouch={"mc"}).first_error == 0
    assert fuse_earliest([MC, mc_open], vouch={"mc"}).first_error == 2
    both = FusionParams(clears=("mc",), vouch=("mc",))
    fused = fuse("earliest", [EQ, mc_open], 3, "mc", params=both)
    assert (fused.first_error, fused.reason) == (held.first_error, held.reason)
    assert fuse("earliest", [CLEAN, mc_open], 3, "mc", params=both).first_error is None


def test_majority_votes_per_step_among_the_sources_that_spoke() -> None:
    three = [MC, labels("b", (True, True, True), -1), labels("c", (True, True, False), 2)]
    assert fuse_majority(three, 3).first_error == 2  # step 2: 2 of 3 say bad
    assert fuse_majority([MC, CLEAN, CLEAN], 3).first_error == -1  # step 2: 1 of 3
    gap = fuse_majority([labels("a", (True, None, False), None)], 3)
    assert (gap.first_error, gap.reason) == (None, "no source labelled step 1")


def test_scores_and_agreement() -> None:
    assert mean_scores([MC, EQ], 3) == (1.0, 0.5, 0.0)
    assert mean_scores([ABSTAIN], 2) == (None, None)
    assert agreement([MC, EQ, ABSTAIN], 1) == 0.5
    assert agreement([ABSTAIN], None) == 0.0


def test_fuse_records_every_vote() -> None:
    fused = fuse("earliest", [MC, EQ, ABSTAIN], 3, "mc")
    assert fused.first_error == 1
    assert fused.votes == (Vote("mc", 2), Vote("eq", 1), Vote("judge", None))
    assert fused.scores == (1.0, 0.5, 0.0)
    single = fuse("single", [MC, EQ], 3, "mc")
    assert (single.first_error, single.scores, single.agreement) == (2, (1.0, 1.0, 0.0), 0.5)


def test_fuse_refuses_bad_calls() -> None:
    with pytest.raises(ValueError, match="at least one source"):
        fuse("earliest", [], 3, "mc")
    with pytest.raises(ValueError, match="unknown fusion rule 'vote'"):
        fuse("vote", [MC], 3, "mc")
    with pytest.raises(ValueError, match="source 'z3' gave no labels"):
        fuse("single", [MC], 3, "z3")
