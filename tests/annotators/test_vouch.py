"""The vouch annotator: exact expectations with the scripted test-double policy of test_mc."""

from __future__ import annotations

import dataclasses

import pytest
from test_mc import GOLDS, PROBLEMS, CannedPolicy, ExactGrader, _rollout

from prmforge.annotators.base import Annotator, LabelReader
from prmforge.annotators.mc import step_seed
from prmforge.annotators.vouch import VouchAnnotator, checked_error
from prmforge.annotators.vouch_config import VouchConfig, ungrounded_before
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels


def _eq(rid: str, hard: tuple[bool | None, ...], first_error: int | None) -> StepLabels:
    values = tuple(None if h is None else float(h) for h in hard)
    return StepLabels("equations", rid, values, hard, first_error, Cost())


def _vouch(policy: CannedPolicy, **kwargs: object) -> VouchAnnotator:
    options: dict[str, object] = {"of": ["equations"], "n": 4, "sampling": SamplingParams(temperature=0.8)}
    options.update(seed=3, **kwargs)
    return VouchAnnotator(policy, ExactGrader(), **options)  # type: ignore[arg-type]


def test_is_an_annotator_and_without_labels_abstains_on_everything() -> None:
    policy = CannedPolicy(GOLDS, {})
    annotator = _vouch(policy)
    assert isinstance(annotator, Annotator)
    assert isinstance(annotator, LabelReader)  # the stage hands it the earlier sources' labels
    assert annotator.name == "vouch"
    (only,) = annotator.annotate(PROBLEMS, [_rollout("a", "p1", 3, False)])
    assert (only.first_error, only.hard, only.meta["abstained"]) == (
        None,
        (None, None, None),
        "equations located no error to vouch for",
    )
    assert policy.batches == []
    with pytest.raises(ValueError, match="of: name at least one source"):
        _vouch(policy, of=[])
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        _vouch(policy, n=0)


def test_the_worked_example() -> None:
    """The equations fail step 3: 1 of 4 completions after step 2 reach the answer -> vouched, first
    error 3; 0 of 4 -> abstained with the cost paid; an error at step 0 or none: nothing to check."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 4, 1, 0, 0], "Q-p2": [4, 4, 0, 0, 0]})
    rollouts = [
        _rollout("good", "p1", 5, False),
        _rollout("open", "p2", 5, False),
        _rollout("zero", "p1", 5, False),
        _rollout("clean", "p1", 5, True),
    ]
    earlier = {
        "equations": {
            "good": _eq("good", (True, True, True, False, False), 3),
            "open": _eq("open", (True, None, None, False, False), 3),
            "zero": _eq("zero", (False, False, False, False, False), 0),
            "clean": _eq("clean", (True, True, True, True, True), -1),
        }
    }
    good, still_open, zero, clean = _vouch(policy).annotate_given(PROBLEMS, rollouts, earlier)
    assert (good.hard, good.values, good.first_error) == (
        (True, True, True, False, False),
        (None, None, 0.25, None, None),
        3,
    )
    assert good.meta == {"of": ["equations"], "n": 4, "checked": 3, "correct": 1}
    assert (good.cost.completions, good.cost.generated_tokens) == (4, 10 + 11 + 12 + 13)
    assert still_open.first_error is None
    assert still_open.hard == (None,) * 5
    assert still_open.meta["abstained"] == (
        "no completion after step 2 reached the answer (0 of 4): an error before step 3 is not ruled out"
    )
    assert still_open.cost.completions == 4
    assert zero.meta["abstained"] == "equations located the error at step 0: no step before it to vouch for"
    assert clean.meta["abstained"] == "equations located no error to vouch for"
    assert (zero.cost, clean.cost) == (Cost(), Cost())
    # One call: the prefixes through step 2 of the two rollouts with an error at step 3, seeded per step.
    (batch,) = policy.batches
    assert [(len(r.prefix), r.n, r.seed) for r in batch] == [
        (3, 4, step_seed(3, "good", 2)),
        (3, 4, step_seed(3, "open", 2)),
    ]


def test_the_earliest_located_error_of_the_sources_read() -> None:
    z3 = StepLabels("z3", "r", (1.0, 0.0, 0.0), (True, False, False), 1, Cost())
    eq = _eq("r", (True, True, False), 2)
    assert checked_error([eq, z3]) == 1
    assert checked_error([_eq("r", (True, True, True), -1)]) is None
    policy = CannedPolicy(GOLDS, {"Q-p1": [2, 0, 0]})
    (labels,) = _vouch(policy, of=["equations", "z3"]).annotate_given(
        PROBLEMS, [_rollout("r", "p1", 3, False)], {"equations": {"r": eq}, "z3": {"r": z3}}
    )
    assert (labels.first_error, labels.hard, labels.values) == (1, (True, False, False), (0.5, None, None))


def _worded(rid: str, question: str, steps: list[str]) -> tuple[Problem, Rollout]:
    problem = Problem(problem_id="g", domain="math", question=question, gold="10", source="test")
    rollout = _rollout(rid, "g", len(steps), False)
    return problem, dataclasses.replace(rollout, steps=tuple(steps), text="\n\n".join(steps))


def test_an_ungrounded_prefix_is_not_vouched_for_and_costs_nothing() -> None:
    question = "Ava has 7 apples. Ben has 5 more than Ava."
    steps = [
        "Ben has 7+5 = <<7+5=12>>12 apples.",
        "Together they have 7+13 = <<7+13=20>>20 apples.",  # 13: nothing before it gives it
        "Half of that is 20/2 = <<20/2=11>>11.",
    ]
    problem, rollout = _worded("w", question, steps)
    assert ungrounded_before(problem, rollout, 2) == 1
    assert ungrounded_before(problem, rollout, 1) is None
    policy = CannedPolicy({question: 10}, {question: [4, 4, 4]})
    earlier = {"equations": {"w": _eq("w", (True, True, False), 2)}}
    (labels,) = _vouch(policy, grounding=ungrounded_before).annotate_given({"g": problem}, [rollout], earlier)
    assert labels.first_error is None
    assert labels.meta["abstained"] == (
        "step 1 computes with a number neither the question nor an earlier result gives: an error before "
        "step 2 may be hidden"
    )
    assert policy.batches == []
    (plain,) = _vouch(policy).annotate_given({"g": problem}, [rollout], earlier)  # grounding off
    assert plain.first_error == 2


def test_config_builds_it_and_the_card_says_what_it_does() -> None:
    config = VouchConfig(of=["equations"], n=2)
    assert (config.source, config.reads_labels_of(), config.grounded) == ("vouch", ("equations",), True)
    assert config.card_sentence() == (
        "Vouching for the steps before equations's first failure at step k > 0: on a rollout whose steps "
        "compute only with grounded numbers, N=2 completions after step k-1; one reaching the answer "
        "vouches for steps 0..k-1, none leaves the rollout unlabelled."
    )
    assert config.provenance("x")["tool"] == "number grounding (prmforge.verifiers.grounding)"
    with pytest.raises(ValueError, match="of"):
        VouchConfig(of=[])
