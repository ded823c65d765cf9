"""The SCAN annotator: exact expectations with a scripted test-double policy, then a run on arith
problems with the simulated policy against vanilla Monte Carlo and exact truth."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_mc import GOLDS, PROBLEMS, CannedPolicy, ExactGrader, _rollout, _without_seconds

from prmforge.annotators.base import Annotator
from prmforge.annotators.config import AnnotatorContext
from prmforge.annotators.mc import MonteCarloAnnotator
from prmforge.annotators.metrics import processbench_f1, step_confusion
from prmforge.annotators.scan import ScanAnnotator, scan_step_seed
from prmforge.annotators.scan_config import ScanConfig
from prmforge.policies.base import GenerationRequest, GenerationResult, Policy, split_steps
from prmforge.policies.cache import CachedPolicy, RequestCache
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels, StepTruth
from prmforge.schemas.seeds import derive_seed
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.truth import exact_truth
from prmforge.verifiers.answer import AnswerGrader, extract_final_answer

TOKENS_PER_STEP = 10 + 11 + 12 + 13  # CannedPolicy's four completions of one request


def _scan(policy: Policy, **kwargs: object) -> ScanAnnotator:
    """SCAN with n = 4 over the scripted test double (the grader is the real one, counting calls)."""
    options: dict[str, object] = {"n": 4, "sampling": SamplingParams(temperature=0.8), "seed": 3}
    options.update(kwargs)
    return ScanAnnotator(policy, ExactGrader(), **options)  # type: ignore[arg-type]


def _question(pid: str, outcomes: Sequence[bool | None], steps: int = 3) -> list[Rollout]:
    """One rollout per outcome for problem ``pid``, ids ``pid-0``, ``pid-1``, ..."""
    return [_rollout(f"{pid}-{i}", pid, steps, outcome) for i, outcome in enumerate(outcomes)]


def _prompt_tokens(requests: Sequence[GenerationRequest]) -> int:
    return sum(len(r.prompt.split()) for r in requests)


# --- contract -------------------------------------------------------------------------------------------


def test_is_an_annotator_named_scan() -> None:
    annotator = _scan(CannedPolicy(GOLDS, {}))
    assert isinstance(annotator, Annotator)
    assert annotator.name == "scan"
    assert _scan(CannedPolicy(GOLDS, {}), name="scan16").name == "scan16"


def test_empty_batch_makes_no_call() -> None:
    policy = CannedPolicy(GOLDS, {})
    assert _scan(policy).annotate(PROBLEMS, []) == []
    assert policy.batches == []


def test_seeds_are_derived_under_their_own_label() -> None:
    assert scan_step_seed(3, "a", 2) == derive_seed("scan-step", 3, "a", 2, bits=31)
    assert 0 <= scan_step_seed(3, "a", 2) < 2**31
    assert scan_step_seed(3, "a", 2) != derive_seed("mc-step", 3, "a", 2, bits=31)
    assert len({scan_step_seed(s, r, t) for s in (0, 1) for r in ("a", "b") for t in (0, 1)}) == 8


# --- the worked example of the module docstring -------------------------------------------------------


def test_the_worked_example() -> None:
    """SC = 3/4: the correct rollouts are free; the incorrect one stops at its first zero (step 2)."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 3, 0, 4]})
    rollouts = [*_question("p1", [True, True, True]), _rollout("w", "p1", 5, outcome=False)]
    *right, wrong = _scan(policy).annotate(PROBLEMS, rollouts)

    for label in right:
        assert (label.values, label.hard, label.first_error) == ((1.0,) * 3, (True,) * 3, -1)
        assert label.cost == Cost()
        assert "abstained" not in label.meta
    assert [[len(r.prefix) for r in batch] for batch in policy.batches] == [[1], [2], [3]]
    assert [r.seed for r in policy.requests] == [scan_step_seed(3, "w", t) for t in range(3)]
    assert all(r.n == 4 and r.sampling == SamplingParams(temperature=0.8) for r in policy.requests)
    assert wrong.values == (1.0, 1.0, 0.0, None, None)
    assert wrong.hard == (True, True, False, False, False)
    assert wrong.first_error == 2
    assert (wrong.source, wrong.rollout_id) == ("scan", "w")
    assert dataclasses.replace(wrong.cost, seconds=0.0) == Cost(
        completions=12, generated_tokens=3 * TOKENS_PER_STEP, prompt_tokens=_prompt_tokens(policy.requests)
    )
    assert wrong.meta == {
        "sc": 0.75,
        "confidence": 0.75,
        "distance": 2,
        "ratio": 0.0,
        "n": 4,
        "last_step_from_outcome": True,
        "steps_rolled": 3,
        "correct_counts": [4, 3, 0, None, None],
        "mc_values": [1.0, 0.75, 0.0, None, None],
        "ungraded": 0,
    }
    assert json.loads(json.dumps(dict(wrong.meta))) == dict(wrong.meta)


def test_soft_scores_within_the_distance_before_the_error() -> None:
    """SC = 0.8: scan_math's worked example, c = (1, .75, .5, .25, 0) -> (1, 1, .625, .3125, 0)."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 3, 2, 1, 0]})
    rollouts = [*_question("p1", [True] * 4), _rollout("w", "p1", 6, outcome=False)]
    wrong = _scan(policy).annotate(PROBLEMS, rollouts)[-1]
    assert wrong.values == (1.0, 1.0, 0.625, 0.3125, 0.0, None)
    assert wrong.hard == (True, True, True, True, False, False)
    assert wrong.first_error == 4
    assert wrong.meta["mc_values"] == [1.0, 0.75, 0.5, 0.25, 0.0, None]
    assert wrong.meta["sc"] == 0.8
    narrow = _scan(CannedPolicy(GOLDS, {"Q-p1": [4, 3, 2, 1, 0]}), distance=0).annotate(PROBLEMS, rollouts)
    assert narrow[-1].values == (1.0, 1.0, 1.0, 1.0, 0.0, None)  # outside the window: 1[c > 0]


def test_the_ratio_rule_stops_where_the_estimate_falls() -> None:
    """SC = 3/4, c = (1.0, 0.25, 0.0): 0.25 < 0.5 x 1.0, so ratio 0.5 places the error at step 1 and
    stops there (two rounds); SCAN's own rule rolls on to the zero at step 2."""
    rollouts = [*_question("p1", [True, True, True]), _rollout("w", "p1", 5, outcome=False)]
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 1, 0, 4]})
    wrong = _scan(policy, ratio=0.5).annotate(PROBLEMS, rollouts)[-1]
    assert [[len(r.prefix) for r in batch] for batch in policy.batches] == [[1], [2]]
    assert wrong.first_error == 1
    assert wrong.hard == (True, False, False, False, False)
    assert wrong.values == (1.0, 1 / 3, None, None, None)  # min(1, 0.25 / 0.75) at t*
    assert (wrong.meta["ratio"], wrong.meta["steps_rolled"], wrong.meta["mc_values"]) == (
        0.5,
        2,
        [1.0, 0.25, None, None, None],
    )
    zero = _scan(CannedPolicy(GOLDS, {"Q-p1": [4, 1, 0, 4]})).annotate(PROBLEMS, rollouts)[-1]
    assert (zero.first_error, zero.meta["steps_rolled"]) == (2, 3)


def test_the_ratio_rule_compares_step_0_with_sc_and_falls_back_on_the_outcome() -> None:
    """Step 0 is compared with SC (0.25 < 0.5 x 0.75: the error); a rollout whose estimates never fall
    below half the previous one gets its last step's 0 from the outcome."""
    rollouts = [*_question("p1", [True, True, True]), _rollout("w", "p1", 3, outcome=False)]
    early = _scan(CannedPolicy(GOLDS, {"Q-p1": [1, 4]}), ratio=0.5).annotate(PROBLEMS, rollouts)[-1]
    assert (early.first_error, early.meta["mc_values"]) == (0, [0.25, None, None])
    late = _scan(CannedPolicy(GOLDS, {"Q-p1": [3, 2]}), ratio=0.5).annotate(PROBLEMS, rollouts)[-1]
    assert (late.first_error, late.meta["mc_values"]) == (2, [0.75, 0.5, 0.0])
    assert late.hard == (True, True, False)


def _suspect_s(step: int) -> object:
    """A suspect rule naming ``step`` of rollout ``s`` only (a correct rollout with a hidden error)."""
    return lambda problem, rollout: step if rollout.rollout_id == "s" else None


def test_a_suspected_correct_rollout_is_rolled_out_and_a_fall_is_its_hidden_error() -> None:
    """SC = 4/4; rollout s is correct but suspected at step 3: it is rolled out like an incorrect one,
    c = (1.0, 0.25): 0.25 < 0.5 x 1.0 places the error at step 1 and stops (two rounds, s alone)."""
    rollouts = [*_question("p1", [True, True, True]), _rollout("s", "p1", 5, outcome=True)]
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 1, 0, 4]})
    labels = _scan(policy, ratio=0.5, suspect=_suspect_s(3)).annotate(PROBLEMS, rollouts)
    assert [[len(r.prefix) for r in batch] for batch in policy.batches] == [[1], [2]]
    hidden = labels[-1]
    assert (hidden.first_error, hidden.hard) == (1, (True, False, False, False, False))
    assert hidden.values == (1.0, 0.25, None, None, None)  # min(1, c / SC) with SC = 1
    assert (hidden.meta["suspect"], hidden.meta["hidden_error"], hidden.meta["mc_values"]) == (
        3,
        True,
        [1.0, 0.25, None, None, None],
    )
    assert hidden.cost.completions == 8
    assert all(lab.first_error == -1 and "suspect" not in lab.meta for lab in labels[:3])


def test_a_suspected_rollout_without_a_fall_stays_correct_and_never_rolls_its_last_step() -> None:
    """No fall through the suspected step: correct, -1. Suspected at its last step (4 of 5), it is rolled
    out through step 3 only: the last step's value is the outcome's 1.0."""
    rollouts = [*_question("p1", [True, True, True]), _rollout("s", "p1", 5, outcome=True)]
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 3, 4, 4]})
    clean = _scan(policy, ratio=0.5, suspect=_suspect_s(4)).annotate(PROBLEMS, rollouts)[-1]
    assert [[len(r.prefix) for r in batch] for batch in policy.batches] == [[1], [2], [3], [4]]
    assert (clean.first_error, clean.values) == (-1, (1.0,) * 5)
    assert (clean.meta["hidden_error"], clean.meta["mc_values"]) == (False, [1.0, 0.75, 1.0, 1.0, 1.0])


def test_a_suspected_rollout_abstains_at_no_cost_when_asked() -> None:
    rollouts = [*_question("p1", [True, True, True]), _rollout("s", "p1", 5, outcome=True)]
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 1, 0, 4]})
    scan = _scan(policy, ratio=0.5, suspect=_suspect_s(3), suspected="abstain")
    left = scan.annotate(PROBLEMS, rollouts)[-1]
    assert policy.batches == []
    assert (left.first_error, left.hard, left.cost.completions) == (None, (None,) * 5, 0)
    assert left.meta["abstained"] == (
        "a correct outcome, but step 3 computes with a number that neither the question nor an earlier "
        "result gives: the outcome may hide a silently corrected error"
    )


def test_the_suspect_rule_is_asked_about_correct_rollouts_only() -> None:
    asked: list[str] = []

    def suspect(problem: Problem, rollout: Rollout) -> int | None:
        asked.append(rollout.rollout_id)
        return None

    rollouts = [*_question("p1", [True, True, True]), _rollout("w", "p1", 3, outcome=False)]
    _scan(CannedPolicy(GOLDS, {"Q-p1": [4, 0]}), suspect=suspect).annotate(PROBLEMS, rollouts)
    assert asked == ["p1-0", "p1-1", "p1-2"]


def test_scan_config_builds_the_ungrounded_suspect() -> None:
    from prmforge.annotators.scan_config import ungrounded_suspect

    problem = Problem("p", "math", "Ann has 4 pens and buys 3.", "7", "test")
    steps = ("She has 4+3 = <<4+3=7>>7 pens.", "Then 7*5 = <<7*5=35>>35.", "The answer is: 7")
    rollout = dataclasses.replace(_rollout("s", "p", 3, outcome=True), steps=steps)
    assert ungrounded_suspect(problem, rollout) == 1
    assert ScanConfig(suspect="ungrounded").provenance("x")["tool"] == (
        "number grounding (prmforge.verifiers.grounding)"
    )
    with pytest.raises(ValidationError, match="suspected"):
        ScanConfig(suspect="ungrounded", suspected="drop")  # type: ignore[arg-type]


# --- the confidence filter ------------------------------------------------------------------------------


def test_a_question_below_the_threshold_abstains_at_no_cost() -> None:
    """p2 is right 2 of 4 times: SC 0.5 < 0.75, so all its rollouts abstain and none is rolled out."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 0], "Q-p2": [0, 0]})
    rollouts = [*_question("p1", [True, True, True, False]), *_question("p2", [True, False, False, True])]
    labels = _scan(policy).annotate(PROBLEMS, rollouts)
    assert [r.question for r in policy.requests] == ["Q-p1", "Q-p1"]  # p1-3's steps 0 and 1
    for label in labels[4:]:
        assert (label.values, label.hard, label.first_error) == ((None,) * 3, (None,) * 3, None)
        assert label.cost == Cost()
        assert label.meta["sc"] == 0.5
        assert label.meta["abstained"] == (
            "self-confidence 0.5 (2 of 4 rollouts correct) is below the threshold 0.75: "
            "SCAN drops the question as noisy"
        )
    assert labels[3].first_error == 1
    assert [lab.meta.get("abstained") for lab in labels[:4]] == [None] * 4


def test_the_threshold_is_a_parameter() -> None:
    rollouts = _question("p2", [True, False, False, True])
    assert {lab.first_error for lab in _scan(CannedPolicy(GOLDS, {})).annotate(PROBLEMS, rollouts)} == {None}
    kept = _scan(CannedPolicy(GOLDS, {"Q-p2": [4, 4]}), confidence=0.5).annotate(PROBLEMS, rollouts)
    assert [lab.first_error for lab in kept] == [-1, 2, 2, -1]
    assert kept[1].values == (1.0, 1.0, 0.0)  # min(1, 1.0 / 0.5)


def test_ungraded_rollouts_count_as_incorrect_and_abstain() -> None:
    """SC divides by every rollout: T, T, T, None is 0.75 (kept); the ungraded one abstains for free."""
    kept = _scan(CannedPolicy(GOLDS, {})).annotate(PROBLEMS, _question("p1", [True, True, True, None]))
    assert [lab.first_error for lab in kept] == [-1, -1, -1, None]
    assert kept[3].meta["abstained"] == "ungraded response"
    assert kept[3].cost == Cost()
    dropped = _scan(CannedPolicy(GOLDS, {})).annotate(
        PROBLEMS, _question("p1", [True, True, True, None, None])
    )
    assert {lab.meta["sc"] for lab in dropped} == {0.6}
    assert all("below the threshold" in lab.meta["abstained"] for lab in dropped)


# --- which steps are rolled out -------------------------------------------------------------------------


def test_rounds_send_step_t_of_every_still_active_incorrect_rollout_in_one_call() -> None:
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 0, 4, 4], "Q-p2": [2, 3, 4], "Q-p3": [0, 4]})
    rollouts = [
        *_question("p1", [True] * 3),
        _rollout("a", "p1", 5, outcome=False),  # stops after step 1
        *_question("p2", [True] * 3),
        _rollout("b", "p2", 3, outcome=False),  # steps 0, 1 rolled out; the last from the outcome
        *_question("p3", [True] * 3),
        _rollout("c", "p3", 2, outcome=False),  # stops after step 0
    ]
    a, b, c = (lab for lab in _scan(policy).annotate(PROBLEMS, rollouts) if lab.rollout_id in "abc")
    assert [[(r.question, len(r.prefix)) for r in batch] for batch in policy.batches] == [
        [("Q-p1", 1), ("Q-p2", 1), ("Q-p3", 1)],
        [("Q-p1", 2), ("Q-p2", 2)],
    ]
    assert (a.values, a.first_error) == ((1.0, 0.0, None, None, None), 1)
    assert (b.values, b.first_error) == ((0.5 / 0.75, 1.0, 0.0), 2)  # SC 0.75: min(1, c / 0.75)
    assert b.meta["mc_values"] == [0.5, 0.75, 0.0]
    assert b.meta["correct_counts"] == [2, 3, None]
    assert (c.values, c.first_error) == ((0.0, None), 0)
    assert [x.meta["steps_rolled"] for x in (a, b, c)] == [2, 2, 1]
    assert [x.cost.completions for x in (a, b, c)] == [8, 8, 4]


def test_a_one_step_incorrect_rollout_is_its_own_error_for_free() -> None:
    policy = CannedPolicy(GOLDS, {})
    labels = _scan(policy).annotate(
        PROBLEMS, [*_question("p1", [True] * 3, 1), _rollout("w", "p1", 1, False)]
    )
    assert (labels[-1].values, labels[-1].hard, labels[-1].first_error) == ((0.0,), (False,), 0)
    assert policy.batches == []


def test_a_rollout_without_steps_abstains() -> None:
    (label,) = _scan(CannedPolicy(GOLDS, {})).annotate(PROBLEMS, [_rollout("e", "p1", 0, True)])
    assert (label.values, label.hard, label.first_error) == ((), (), None)
    assert label.meta["abstained"] == "a response with no steps"


def test_the_last_step_rolled_out_as_scan_does() -> None:
    """last_step_from_outcome=False: the last step gets completions too; with no zero, SCAN drops it."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 4, 4]})
    rollouts = [
        *_question("p1", [True] * 6),
        _rollout("w", "p1", 3, outcome=False, answer=11),  # empty completions grade on its answer 11
        _rollout("d", "p1", 3, outcome=False),  # the completer recovers after every prefix
    ]
    *_, w, d = _scan(policy, last_step_from_outcome=False).annotate(PROBLEMS, rollouts)
    assert [len(r.prefix) for r in policy.requests] == [1, 1, 2, 2, 3, 3]
    assert (w.values, w.first_error, w.cost.completions) == ((1.0, 1.0, 0.0), 2, 12)
    assert w.meta["correct_counts"] == [4, 4, 0]
    assert (d.values, d.hard, d.first_error) == ((None,) * 3, (None,) * 3, None)
    assert d.meta["abstained"] == "no step has estimate 0 (SCAN drops it)"
    assert d.cost.completions == 12  # what was spent is still reported
    assert d.meta["mc_values"] == [1.0, 1.0, 1.0]


# --- costs ----------------------------------------------------------------------------------------------


def test_cached_completions_counted_on_a_rerun(tmp_path: Path) -> None:
    rollouts = [*_question("p1", [True] * 3), _rollout("w", "p1", 4, outcome=False)]
    script = {"Q-p1": [4, 2, 0]}
    first = _scan(CachedPolicy(CannedPolicy(GOLDS, script), RequestCache(tmp_path / "c.sqlite3")))
    inner = CannedPolicy(GOLDS, script)
    second = _scan(CachedPolicy(inner, RequestCache(tmp_path / "c.sqlite3")))
    one, two = first.annotate(PROBLEMS, rollouts), second.annotate(PROBLEMS, rollouts)
    assert inner.batches == []
    assert [x.cost.cached_completions for x in one] == [0, 0, 0, 0]
    assert [x.cost.cached_completions for x in two] == [0, 0, 0, 12]
    assert [(x.values, x.cost.generated_tokens) for x in two] == [
        (x.values, x.cost.generated_tokens) for x in one
    ]


def test_seconds_are_apportioned_by_generated_tokens() -> None:
    """One round of two requests: a rollout whose completions are empty gets no share of the time."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 4], "Q-p2": [0]}, sleep=0.02)
    rollouts = [
        *_question("p1", [True] * 3),
        _rollout("a", "p1", 3, outcome=False),
        *_question("p2", [True] * 3),
        _rollout("b", "p2", 2, outcome=False),
    ]
    labels = {lab.rollout_id: lab for lab in _scan(policy).annotate(PROBLEMS, rollouts)}
    a, b = labels["a"], labels["b"]
    assert (a.cost.generated_tokens, b.cost.generated_tokens) == (2 * TOKENS_PER_STEP, TOKENS_PER_STEP)
    assert a.cost.seconds > b.cost.seconds > 0  # round 0: split evenly; round 1 is all a's
    assert a.cost.seconds + b.cost.seconds >= 0.04
    assert all(lab.cost.seconds == 0 for rid, lab in labels.items() if rid not in "ab")


def test_calls_of_a_few_requests_give_the_same_labels_graded_on_a_second_thread() -> None:
    script = {"Q-p1": [4, 2, 1, 0], "Q-p2": [3, 3, 0]}
    rollouts = [
        *_question("p1", [True] * 9),
        *(_rollout(f"w{i}", "p1", 5, outcome=False) for i in range(3)),
        *_question("p2", [True] * 9),
        *(_rollout(f"v{i}", "p2", 4, outcome=False) for i in range(3)),
    ]
    whole_policy, split_policy = CannedPolicy(GOLDS, script), CannedPolicy(GOLDS, script)
    whole = _scan(whole_policy).annotate(PROBLEMS, rollouts)

    threads: set[str] = set()

    class Recording(ExactGrader):
        def grade(self, text: str, gold: str) -> bool | None:
            threads.add(threading.current_thread().name)
            return super().grade(text, gold)

    split = ScanAnnotator(
        split_policy, Recording(), n=4, sampling=SamplingParams(temperature=0.8), seed=3, requests_per_call=4
    ).annotate(PROBLEMS, rollouts)
    assert _without_seconds(split) == _without_seconds(whole)
    assert [len(b) for b in whole_policy.batches] == [6, 6, 6, 3]  # p2's three stop after step 2
    assert [len(b) for b in split_policy.batches] == [4, 2, 4, 2, 4, 2, 3]
    assert threads
    assert all(name.startswith("scan-grading") for name in threads)


# --- determinism, truth, validation ---------------------------------------------------------------------


def test_deterministic_and_blind_to_truth() -> None:
    script = {"Q-p1": [3, 1, 0, 2]}
    real = StepTruth(first_error=1, step_correct=(True, False, True, True, True))
    wrong = _rollout("w", "p1", 5, outcome=False, truth=real)
    rollouts = [*_question("p1", [True] * 3), wrong]
    runs = [
        _scan(CannedPolicy(GOLDS, script)).annotate(PROBLEMS, [*rollouts[:3], r])
        for r in (wrong, wrong.redacted(), dataclasses.replace(wrong, truth=StepTruth(-1, (True,) * 5)))
    ]
    assert _without_seconds(runs[0]) == _without_seconds(runs[1]) == _without_seconds(runs[2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"confidence": 0.0}, r"confidence must be in \(0, 1\]"),
        ({"confidence": 1.5}, r"confidence must be in \(0, 1\]"),
        ({"distance": -1}, "distance must be >= 0"),
        ({"ratio": -0.1}, r"ratio must be in \[0, 1\]"),
        ({"ratio": 1.5}, r"ratio must be in \[0, 1\]"),
        ({"requests_per_call": 0}, "requests_per_call must be >= 1"),
    ],
)
def test_rejects_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _scan(CannedPolicy(GOLDS, {}), **kwargs)


def test_missing_problem_is_an_error_before_any_request() -> None:
    policy = CannedPolicy(GOLDS, {"Q-p1": [0]})
    with pytest.raises(ValueError, match=r"rollout 'zz': problem 'nope'"):
        _scan(policy).annotate(
            PROBLEMS, [*_question("p1", [True, True, True, False]), _rollout("zz", "nope", 2, True)]
        )
    assert policy.batches == []


def test_policy_returning_wrong_completion_count_is_an_error() -> None:
    class Short(CannedPolicy):
        def _one(self, request: GenerationRequest) -> GenerationResult:
            result = super()._one(request)
            return dataclasses.replace(result, completions=result.completions[:-1])

    with pytest.raises(ValueError, match="3 completions, 4 requested"):
        _scan(Short(GOLDS, {"Q-p1": [4]})).annotate(PROBLEMS, _question("p1", [True, True, True, False]))


# --- the config -----------------------------------------------------------------------------------------


def _context(policy: Policy, seed: int = 7) -> AnnotatorContext:
    return AnnotatorContext(policy=policy, seed=seed, isolation="none", programs=lambda: None)


def test_config_defaults_and_build() -> None:
    config = ScanConfig()
    assert (config.kind, config.source, config.n, config.confidence, config.distance) == (
        "scan",
        "scan",
        8,
        0.75,
        2,
    )
    assert config.last_step_from_outcome is True
    assert ScanConfig.domains == frozenset({"math"})
    assert ScanConfig.continues_prefixes is True
    assert config.provenance("bwrap") == {"method": "scan", "tool": "none", "isolation": "no code executed"}
    assert config.ratio == 0.0
    assert "N=8" in config.card_sentence()
    assert "0.75" in config.card_sentence()
    assert "stopping at the first step valued 0;" in config.card_sentence()
    ratio = ScanConfig(ratio=0.5)
    assert "stopping at the first step valued 0 or below 0.5 x the step before it" in ratio.card_sentence()
    assert ratio.build(_context(CannedPolicy(GOLDS, {}))).annotator._ratio == 0.5
    built = config.build(_context(CannedPolicy(GOLDS, {})))
    assert isinstance(built.annotator, ScanAnnotator)
    assert built.annotator.name == "scan"


def test_config_seeds_a_named_source_apart() -> None:
    """Unnamed: the context's seed; named: derive_seed(seed, "annotator", name), as Monte Carlo's."""
    rollouts = _question("p1", [True, True, True, False])
    seeds = []
    for config in (ScanConfig(n=4), ScanConfig(n=4, name="scan-b")):
        policy = CannedPolicy(GOLDS, {"Q-p1": [4, 0]})
        labels = config.build(_context(policy)).annotator.annotate(PROBLEMS, rollouts)
        assert labels[-1].source == config.source
        seeds.append(policy.requests[0].seed)
    assert seeds == [
        scan_step_seed(7, "p1-3", 0),
        scan_step_seed(derive_seed(7, "annotator", "scan-b"), "p1-3", 0),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"n": 0},
        {"confidence": 0.0},
        {"confidence": 1.01},
        {"distance": -1},
        {"ratio": -0.5},
        {"ratio": 1.01},
        {"kind": "mc"},
        {"k": 8},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ScanConfig.model_validate(bad)


# --- the simulated policy on arith problems, against vanilla Monte Carlo and truth ----------------------


def _sample(problems: Sequence[Problem], policy: Policy, k: int) -> list[Rollout]:
    """``k`` rollouts per problem, graded on the final answer, with their exact truth."""
    sampling, grader = SamplingParams(), AnswerGrader()
    seeds = [derive_seed("test-scan-generate", p.problem_id, bits=63) for p in problems]
    requests = [GenerationRequest(p, (), k, sampling, s) for p, s in zip(problems, seeds, strict=True)]
    rollouts = []
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        for i, completion in enumerate(result.completions):
            steps = split_steps(completion.text)
            answer = extract_final_answer(completion.text)
            rollouts.append(
                Rollout(
                    rollout_id=f"{problem.problem_id}-{i}",
                    problem_id=problem.problem_id,
                    policy=policy.fingerprint,
                    sampling=sampling,
                    seed=0,
                    text=completion.text,
                    steps=steps,
                    final_answer=answer,
                    outcome=False if answer is None else grader.grade(completion.text, problem.gold),
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=completion.tokens,
                    truth=exact_truth(problem, steps),
                )
            )
    return rollouts


@pytest.fixture(scope="module")
def arith() -> tuple[list[Rollout], list[StepLabels], list[StepLabels], list[StepLabels]]:
    """60 arith problems x 8 rollouts: SCAN twice, vanilla MC (n = 8 on every step) once."""
    problems = generate_arith_problems(60, seed=5, min_steps=3, max_steps=6)
    by_id = {p.problem_id: p for p in problems}
    policy = SimulatedPolicy(SimulatedPolicyParams(), seed=1)
    rollouts = _sample(problems, policy, k=8)
    redacted = [r.redacted() for r in rollouts]
    scan = [ScanAnnotator(policy, AnswerGrader(), n=8, seed=2).annotate(by_id, redacted) for _ in range(2)]
    mc = MonteCarloAnnotator(policy, AnswerGrader(), n=8, seed=2).annotate(by_id, redacted)
    return rollouts, scan[0], scan[1], mc


Arith = tuple[list[Rollout], list[StepLabels], list[StepLabels], list[StepLabels]]


def test_arith_cost_is_a_small_share_of_vanilla_mc(arith: Arith) -> None:
    rollouts, scan, _, mc = arith
    spent = {name: sum((lab.cost for lab in labels), Cost()) for name, labels in (("scan", scan), ("mc", mc))}
    # The numbers pinned here depend on every seed (see tests/integration/test_mc_vs_truth.py).
    assert (spent["scan"].completions, spent["mc"].completions) == (1120, 13760)
    share = spent["scan"].completions / spent["mc"].completions
    assert round(share, 4) == 0.0814  # SCAN's paper: about 6%
    assert spent["scan"].generated_tokens / spent["mc"].generated_tokens < 0.1
    assert spent["scan"].prompt_tokens / spent["mc"].prompt_tokens < 0.1
    rolled = [lab for lab in scan if lab.meta["steps_rolled"]]
    assert all(r.outcome is False for r, lab in zip(rollouts, scan, strict=True) if lab.meta["steps_rolled"])
    assert len(rolled) == 38  # of 480 rollouts, the incorrect ones of kept questions


def test_arith_is_deterministic(arith: Arith) -> None:
    _, first, second, _ = arith
    assert _without_seconds(first) == _without_seconds(second)


def test_arith_filtered_questions_abstain_and_kept_ones_label(arith: Arith) -> None:
    rollouts, scan, _, _ = arith
    sc: dict[str, list[bool | None]] = {}
    for rollout in rollouts:
        sc.setdefault(rollout.problem_id, []).append(rollout.outcome)
    for rollout, label in zip(rollouts, scan, strict=True):
        share = sum(o is True for o in sc[rollout.problem_id]) / 8
        assert label.meta["sc"] == share
        if share < 0.75:
            assert label.first_error is None
            assert "below the threshold 0.75" in label.meta["abstained"]
            assert label.cost == Cost()
        else:
            assert label.first_error is not None, label.meta.get("abstained")
            assert len(label.values) == len(label.hard) == len(rollout.steps)
    filtered = {pid for pid, outcomes in sc.items() if sum(o is True for o in outcomes) < 6}
    assert len(filtered) == 24  # of 60 questions


def test_arith_the_filter_removes_mcs_false_negatives(arith: Arith) -> None:
    """SCAN's premise: MC's under-estimated errors come from questions the completer cannot solve."""
    rollouts, scan, _, mc = arith
    truth = [r.truth.prefix_labels() for r in rollouts if r.truth is not None]
    kept = [i for i, lab in enumerate(scan) if lab.first_error is not None]
    everything = step_confusion([lab.hard for lab in mc], truth)
    on_kept = step_confusion([mc[i].hard for i in kept], [truth[i] for i in kept])
    assert (everything.fn, on_kept.fn) == (26, 0)
    scan_kept = step_confusion([scan[i].hard for i in kept], [truth[i] for i in kept])
    assert scan_kept.fn == 0
    labels = [rollouts[i].truth.first_error for i in kept]  # type: ignore[union-attr]
    scan_f1 = processbench_f1([scan[i].first_error for i in kept], labels)
    mc_f1 = processbench_f1([mc[i].first_error for i in kept], labels)
    assert scan_f1.correct_acc == 1.0
    # On the kept rollouts SCAN's first errors are MC's rule (the first zero) on other seeds, except on
    # correct outcomes, which SCAN takes as error-free for free: MC finds 5 of their 25 true errors.
    assert (round(scan_f1.f1, 4), round(mc_f1.f1, 4)) == (0.4051, 0.5517)


def test_scan_refuses_a_cascade_that_would_hide_rollouts_from_its_self_confidence() -> None:
    from prmforge.pipelines.config import parse_config
    from prmforge.schemas.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"annotate\.1\.defer_to: SCAN computes each question's self-confidence"
    ):
        parse_config(
            {
                "name": "x",
                "inputs": [{"kind": "arith", "count": 4}],
                "annotate": [{"kind": "equations"}, {"kind": "scan", "defer_to": ["equations"]}],
                "fuse": {"rule": "earliest"},
            }
        )


class _Recount(CannedPolicy):
    """CannedPolicy whose confirmation requests (seed label ``scan-confirm``) follow a second script."""

    def __init__(self, first: dict[str, list[int]], again: dict[str, list[int]]) -> None:
        super().__init__(GOLDS, first)
        self._again = CannedPolicy(GOLDS, again)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.batches.append(list(requests))
        confirm = {derive_seed("scan-confirm", 3, "w", t, bits=31) for t in range(8)}
        return [self._again._one(r) if r.seed in confirm else self._one(r) for r in requests]


def test_confirm_estimates_a_surviving_fall_again_and_goes_on_when_it_was_noise() -> None:
    """SC = 3/4, ratio 0.5. Step 1 first counts 1 of 4 (0.25 < 0.5 x 1.0: a fall some completion
    survives): estimated again, 4 of 4 -> pooled 5/8 = 0.625, no error; the search goes on to step 2
    (0 of 4): the error is at 2. A confirmation that counts 1 again keeps the error at 1 (2/8)."""
    rollouts = [*_question("p1", [True, True, True]), _rollout("w", "p1", 5, outcome=False)]
    noise = _Recount({"Q-p1": [4, 1, 0, 4]}, {"Q-p1": [4, 4, 4, 4]})
    wrong = _scan(noise, ratio=0.5, confirm=True).annotate(PROBLEMS, rollouts)[-1]
    assert [[(len(r.prefix), r.seed) for r in batch] for batch in noise.batches] == [
        [(1, scan_step_seed(3, "w", 0))],
        [(2, scan_step_seed(3, "w", 1))],
        [(2, derive_seed("scan-confirm", 3, "w", 1, bits=31))],
        [(3, scan_step_seed(3, "w", 2))],
    ]
    assert wrong.first_error == 2
    assert wrong.hard == (True, True, False, False, False)
    assert wrong.meta["correct_counts"] == [4, 5, 0, None, None]
    assert wrong.meta["mc_values"] == [1.0, 0.625, 0.0, None, None]
    assert (wrong.meta["confirmed"], wrong.cost.completions) == ([1], 16)
    real = _Recount({"Q-p1": [4, 1, 0, 4]}, {"Q-p1": [4, 1, 4, 4]})
    kept = _scan(real, ratio=0.5, confirm=True).annotate(PROBLEMS, rollouts)[-1]
    assert (kept.first_error, kept.meta["correct_counts"][:2], kept.meta["confirmed"]) == (1, [4, 2], [1])
    assert kept.cost.completions == 12
    # A count of 0 is SCAN's own error: never estimated again.
    zero = _Recount({"Q-p1": [4, 0, 0, 4]}, {"Q-p1": [4, 4, 4, 4]})
    stop = _scan(zero, ratio=0.5, confirm=True).annotate(PROBLEMS, rollouts)[-1]
    assert (stop.first_error, stop.meta["confirmed"], stop.cost.completions) == (1, [], 8)
    # Off (the default), the first count decides and meta has no "confirmed".
    plain = _scan(_Recount({"Q-p1": [4, 1, 0, 4]}, {"Q-p1": [4, 4, 4, 4]}), ratio=0.5).annotate(
        PROBLEMS, rollouts
    )[-1]
    assert (plain.first_error, "confirmed" in plain.meta) == (1, False)


def test_confirm_needs_a_ratio_and_leaves_the_config_hash_when_off() -> None:
    with pytest.raises(ValueError, match="confirm re-estimates a step the ratio rule flagged above 0"):
        _scan(CannedPolicy(GOLDS, {}), confirm=True)
    with pytest.raises(ValidationError, match="confirm: needs ratio > 0"):
        ScanConfig(confirm=True)
    assert "confirm" not in ScanConfig(ratio=0.5).model_dump()
    assert ScanConfig(ratio=0.5, confirm=True).model_dump()["confirm"] is True
    on = ScanConfig(ratio=0.5, confirm=True)
    assert "A fall that some completions survive is estimated again with N more" in on.card_sentence()
    assert on.build(_context(CannedPolicy(GOLDS, {}))).annotator._confirm is True
