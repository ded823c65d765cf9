"""Tests of the Monte Carlo annotator with a scripted, deterministic policy and a tiny exact grader."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from prmforge.annotators.base import Annotator
from prmforge.annotators.grading import OutcomeGrader
from prmforge.annotators.mc import MonteCarloAnnotator, step_seed
from prmforge.policies.base import Completion, GenerationRequest, GenerationResult
from prmforge.policies.cache import CachedPolicy, RequestCache
from prmforge.schemas.records import Problem, Rollout, SamplingParams, StepLabels, StepTruth
from prmforge.verifiers.answer import AnswerGrader

_ANSWER = re.compile(r"The answer is:\s*(-?\d+)")


class ExactGrader:
    """The real answer grader, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._grader = AnswerGrader()

    def grade(self, text: str, gold: str) -> bool | None:
        self.calls += 1
        return self._grader.grade(text, gold)


class CannedPolicy:
    """After a prefix of L steps of question q, the first ``script[q][L - 1]`` of n completions are right.

    The gold answer of q is ``golds[q]``; wrong completions answer gold + 1. When the
    prefix's last step already states an answer, every completion is empty (0 tokens).
    Completion i has 10 + i tokens. Every batch passed to ``generate`` is recorded.
    """

    def __init__(self, golds: Mapping[str, int], script: Mapping[str, Sequence[int]], *, sleep: float = 0.0):
        self._golds = golds
        self._script = script
        self._sleep = sleep
        self.batches: list[list[GenerationRequest]] = []

    @property
    def fingerprint(self) -> str:
        return "scripted-v1"

    @property
    def requests(self) -> list[GenerationRequest]:
        return [r for batch in self.batches for r in batch]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.batches.append(list(requests))
        if self._sleep:
            time.sleep(self._sleep)
        return [self._one(r) for r in requests]

    def _one(self, request: GenerationRequest) -> GenerationResult:
        if _ANSWER.search(request.prefix[-1]):
            completions = tuple(Completion(text="", tokens=0) for _ in range(request.n))
        else:
            right = self._script[request.question][len(request.prefix) - 1]
            gold = self._golds[request.question]
            answers = [gold if i < right else gold + 1 for i in range(request.n)]
            completions = tuple(
                Completion(text=f"More work (seed {request.seed}).\n\nThe answer is: {a}", tokens=10 + i)
                for i, a in enumerate(answers)
            )
        return GenerationResult(completions=completions, prompt_tokens=len(request.prompt.split()))


def _problem(pid: str, gold: int) -> Problem:
    return Problem(problem_id=pid, domain="math", question=f"Q-{pid}", gold=str(gold), source="test")


def _rollout(
    rid: str,
    pid: str,
    n_steps: int,
    outcome: bool | None,
    *,
    answer: int | None = None,
    truth: StepTruth | None = None,
) -> Rollout:
    steps = [f"Step {t} of {rid}." for t in range(n_steps)]
    if answer is not None:
        steps[-1] = f"So the total is {answer}. The answer is: {answer}"
    return Rollout(
        rollout_id=rid,
        problem_id=pid,
        policy="scripted-v1",
        sampling=SamplingParams(),
        seed=1,
        text="\n\n".join(steps),
        steps=tuple(steps),
        final_answer=None if answer is None else str(answer),
        outcome=outcome,
        prompt_tokens=5,
        completion_tokens=20,
        truth=truth,
    )


PROBLEMS = {"p1": _problem("p1", 10), "p2": _problem("p2", 20), "p3": _problem("p3", 30)}
GOLDS = {"Q-p1": 10, "Q-p2": 20, "Q-p3": 30}


def _annotator(
    policy: CannedPolicy | CachedPolicy,
    *,
    early_stop: bool = False,
    last_step_from_outcome: bool = True,
    name: str = "mc",
) -> MonteCarloAnnotator:
    grader: OutcomeGrader = ExactGrader()
    return MonteCarloAnnotator(
        policy,
        grader,
        n=4,
        sampling=SamplingParams(temperature=0.8),
        seed=3,
        early_stop=early_stop,
        last_step_from_outcome=last_step_from_outcome,
        name=name,
    )


def _without_seconds(labels: Sequence[StepLabels]) -> list[StepLabels]:
    return [dataclasses.replace(lab, cost=dataclasses.replace(lab.cost, seconds=0.0)) for lab in labels]


# --- contract -------------------------------------------------------------------------------------------


def test_is_an_annotator_named_mc() -> None:
    """It satisfies the Annotator protocol; the default source name is "mc"."""
    annotator = _annotator(CannedPolicy(GOLDS, {}))
    assert isinstance(annotator, Annotator)
    assert annotator.name == "mc"
    assert _annotator(CannedPolicy(GOLDS, {}), name="mc16").name == "mc16"


def test_empty_batch_makes_no_call() -> None:
    """No rollouts, no requests."""
    policy = CannedPolicy(GOLDS, {})
    assert _annotator(policy).annotate(PROBLEMS, []) == []
    assert policy.batches == []


def test_rollout_without_steps() -> None:
    """A rollout with no steps gets empty labels, first_error -1 and zero cost."""
    policy = CannedPolicy(GOLDS, {})
    (label,) = _annotator(policy).annotate(PROBLEMS, [_rollout("r0", "p1", 0, None)])
    assert (label.values, label.hard, label.first_error) == ((), (), -1)
    assert label.cost.completions == 0
    assert policy.batches == []


# --- values without early stop --------------------------------------------------------------------------


def test_exact_values_and_one_call() -> None:
    """Values are #right / n per step; the last step comes from the outcome; one generate call in all."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 2, 0, 3], "Q-p2": [1, 1, 1]})
    rollouts = [_rollout("a", "p1", 4, outcome=False), _rollout("b", "p2", 3, outcome=True)]
    a, b = _annotator(policy).annotate(PROBLEMS, rollouts)

    assert len(policy.batches) == 1
    assert [(r.question, len(r.prefix)) for r in policy.requests] == [
        ("Q-p1", 1), ("Q-p1", 2), ("Q-p1", 3), ("Q-p2", 1), ("Q-p2", 2),
    ]  # fmt: skip
    assert a.values == (1.0, 0.5, 0.0, 0.0)
    assert a.hard == (True, True, False, False)
    assert a.first_error == 2
    assert a.meta["correct_counts"] == [4, 2, 0, None]
    assert a.meta["steps_rolled"] == 3
    assert b.values == (0.25, 0.25, 1.0)
    assert b.first_error == -1
    assert (a.source, a.rollout_id, b.rollout_id) == ("mc", "a", "b")


def test_requests_carry_question_prefix_n_sampling_and_seed() -> None:
    """Each request is (question, steps[:t+1], n, sampling, step_seed(seed, rollout_id, t))."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 4, 4]})
    rollout = _rollout("a", "p1", 3, outcome=True)
    _annotator(policy).annotate(PROBLEMS, [rollout])
    for t, request in enumerate(policy.requests):
        assert request.question == "Q-p1"
        assert request.prefix == rollout.steps[: t + 1]
        assert request.n == 4
        assert request.sampling == SamplingParams(temperature=0.8)
        assert request.seed == step_seed(3, "a", t)


def test_without_early_stop_every_step_is_rolled_out() -> None:
    """Without early stop, steps after a zero are still rolled out and keep their own values."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [0, 3, 1]})
    (label,) = _annotator(policy).annotate(PROBLEMS, [_rollout("a", "p1", 4, outcome=True)])
    assert label.values == (0.0, 0.75, 0.25, 1.0)
    assert label.hard == (False, True, True, True)
    assert label.first_error == 0


# --- last step ------------------------------------------------------------------------------------------


def test_last_step_from_outcome_makes_no_request_for_it() -> None:
    """With a known outcome the last step costs nothing and is 1.0 / 0.0."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 4]})
    right, wrong = _annotator(policy).annotate(
        PROBLEMS, [_rollout("r", "p1", 3, outcome=True), _rollout("w", "p1", 3, outcome=False)]
    )
    assert all(len(r.prefix) < 3 for r in policy.requests)
    assert (right.values[-1], wrong.values[-1]) == (1.0, 0.0)
    assert (right.first_error, wrong.first_error) == (-1, 2)
    assert right.cost.completions == 8


def test_unknown_outcome_rolls_the_last_step_out() -> None:
    """An outcome of None is no value: the last step is rolled out like the others."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 4, 1]})
    (label,) = _annotator(policy).annotate(PROBLEMS, [_rollout("a", "p1", 3, outcome=None)])
    assert [len(r.prefix) for r in policy.requests] == [1, 2, 3]
    assert label.values == (1.0, 1.0, 0.25)
    assert label.meta["correct_counts"] == [4, 4, 1]


def test_last_step_rolled_out_with_empty_completions_still_grades() -> None:
    """With last_step_from_outcome=False, empty completions after a final answer grade on the prefix."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 4]})
    right, wrong = _annotator(policy, last_step_from_outcome=False).annotate(
        PROBLEMS,
        [_rollout("r", "p1", 3, outcome=True, answer=10), _rollout("w", "p1", 3, outcome=False, answer=11)],
    )
    assert [len(r.prefix) for r in policy.requests] == [1, 2, 3, 1, 2, 3]
    assert (right.values, wrong.values) == ((1.0, 1.0, 1.0), (1.0, 1.0, 0.0))
    assert (right.first_error, wrong.first_error) == (-1, 2)
    assert right.cost.completions == 12
    assert right.cost.generated_tokens == 2 * (10 + 11 + 12 + 13)  # the last step's completions have 0 tokens


# --- early stop -----------------------------------------------------------------------------------------


def test_early_stop_stops_at_the_first_zero_in_rounds() -> None:
    """Round t sends step t of every active rollout; a rollout stops at its first zero."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 0, 4, 4], "Q-p2": [2, 3, 4], "Q-p3": [0, 4]})
    rollouts = [
        _rollout("a", "p1", 5, outcome=True),  # stops after step 1
        _rollout("b", "p2", 3, outcome=True),  # runs to the end; its last step comes from the outcome
        _rollout("c", "p3", 2, outcome=False),  # stops after step 0
    ]
    a, b, c = _annotator(policy, early_stop=True).annotate(PROBLEMS, rollouts)

    assert [[(r.question, len(r.prefix)) for r in batch] for batch in policy.batches] == [
        [("Q-p1", 1), ("Q-p2", 1), ("Q-p3", 1)],
        [("Q-p1", 2), ("Q-p2", 2)],
    ]
    assert a.values == (1.0, 0.0, None, None, None)
    assert a.hard == (True, False, None, None, None)
    assert a.first_error == 1
    assert b.values == (0.5, 0.75, 1.0)
    assert b.first_error == -1
    assert c.values == (0.0, None)
    assert c.first_error == 0
    assert [x.meta["steps_rolled"] for x in (a, b, c)] == [2, 2, 1]
    assert a.meta["correct_counts"] == [4, 0, None, None, None]
    assert [x.cost.completions for x in (a, b, c)] == [8, 8, 4]
    assert a.meta["early_stop"] is True


def test_early_stop_with_last_step_rolled_out() -> None:
    """With the outcome unknown, the last step is a round of its own."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 4, 0]})
    (label,) = _annotator(policy, early_stop=True).annotate(PROBLEMS, [_rollout("a", "p1", 3, outcome=None)])
    assert [len(batch) for batch in policy.batches] == [1, 1, 1]
    assert label.values == (1.0, 1.0, 0.0)
    assert label.first_error == 2


def test_early_stop_agrees_with_full_rollout_up_to_the_first_zero() -> None:
    """Early stop gives the same first error and values up to it as rolling out every step."""
    script = {"Q-p1": [3, 1, 0, 2, 0, 1]}
    full_policy, stop_policy = CannedPolicy(GOLDS, script), CannedPolicy(GOLDS, script)
    rollout = _rollout("a", "p1", 7, outcome=False)
    (full,) = _annotator(full_policy).annotate(PROBLEMS, [rollout])
    (stop,) = _annotator(stop_policy, early_stop=True).annotate(PROBLEMS, [rollout])
    assert full.first_error == stop.first_error == 2
    assert full.values[:3] == stop.values[:3]
    assert stop.values[3:] == (None,) * 4
    assert (len(full_policy.requests), len(stop_policy.requests)) == (6, 3)


# --- costs ----------------------------------------------------------------------------------------------


def test_costs_are_exact() -> None:
    """completions = n x steps rolled; tokens = sum of completion tokens; nothing cached without a cache."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [1, 2, 3], "Q-p2": [4, 4]})
    a, b = _annotator(policy).annotate(
        PROBLEMS, [_rollout("a", "p1", 4, outcome=True), _rollout("b", "p2", 2, outcome=None)]
    )
    per_step = 10 + 11 + 12 + 13
    assert (a.cost.completions, a.cost.generated_tokens, a.cost.cached_completions) == (12, 3 * per_step, 0)
    assert (b.cost.completions, b.cost.generated_tokens) == (8, 2 * per_step)
    assert a.cost.tool_calls == 0


def test_cached_completions_counted_on_a_rerun(tmp_path: Path) -> None:
    """Rerunning through a CachedPolicy serves everything from SQLite: same labels, all completions cached."""
    rollouts = [_rollout("a", "p1", 4, outcome=False), _rollout("b", "p2", 3, outcome=True)]
    script = {"Q-p1": [4, 2, 0], "Q-p2": [1, 1]}
    first_inner = CannedPolicy(GOLDS, script)
    first = _annotator(CachedPolicy(first_inner, RequestCache(tmp_path / "c.sqlite3"))).annotate(
        PROBLEMS, rollouts
    )
    assert [x.cost.cached_completions for x in first] == [0, 0]

    second_inner = CannedPolicy(GOLDS, script)
    second = _annotator(CachedPolicy(second_inner, RequestCache(tmp_path / "c.sqlite3"))).annotate(
        PROBLEMS, rollouts
    )
    assert second_inner.batches == []
    assert [x.cost.cached_completions for x in second] == [12, 8]
    assert [x.values for x in second] == [x.values for x in first]
    assert [x.cost.generated_tokens for x in second] == [x.cost.generated_tokens for x in first]


def test_seconds_apportioned_by_generated_tokens() -> None:
    """Each call's wall time is split between rollouts in proportion to their generated tokens."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [1], "Q-p2": [1, 1, 1]}, sleep=0.02)
    a, b = _annotator(policy).annotate(
        PROBLEMS, [_rollout("a", "p1", 2, outcome=True), _rollout("b", "p2", 4, outcome=True)]
    )
    assert a.cost.generated_tokens * 3 == b.cost.generated_tokens
    assert b.cost.seconds == pytest.approx(3 * a.cost.seconds)
    assert a.cost.seconds + b.cost.seconds >= 0.02


def test_seconds_apportioned_by_completions_when_no_tokens() -> None:
    """A call that generated no tokens is split by completion count."""
    policy = CannedPolicy(GOLDS, {}, sleep=0.02)
    rollouts = [
        _rollout("a", "p1", 1, outcome=None, answer=10),
        _rollout("b", "p1", 1, outcome=None, answer=10),
    ]
    a, b = _annotator(policy, last_step_from_outcome=False).annotate(PROBLEMS, rollouts)
    assert a.cost.generated_tokens == b.cost.generated_tokens == 0
    assert a.cost.seconds == pytest.approx(b.cost.seconds)
    assert a.cost.seconds > 0


# --- determinism and truth ------------------------------------------------------------------------------


def test_deterministic() -> None:
    """Same inputs give identical labels (cost.seconds aside) and identical requests."""
    script = {"Q-p1": [4, 2, 0, 1], "Q-p2": [1, 0]}
    rollouts = [_rollout("a", "p1", 5, outcome=False), _rollout("b", "p2", 3, outcome=True)]
    p1, p2 = CannedPolicy(GOLDS, script), CannedPolicy(GOLDS, script)
    first = _annotator(p1).annotate(PROBLEMS, rollouts)
    second = _annotator(p2).annotate(PROBLEMS, rollouts)
    assert _without_seconds(first) == _without_seconds(second)
    assert p1.requests == p2.requests


def test_request_seeds_differ_per_rollout_step_and_annotator_seed() -> None:
    """Seeds are distinct across steps and rollouts, and change with the annotator seed."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [1, 1, 1]})
    rollouts = [_rollout("a", "p1", 4, outcome=True), _rollout("b", "p1", 4, outcome=True)]
    _annotator(policy).annotate(PROBLEMS, rollouts)
    seeds = [r.seed for r in policy.requests]
    assert len(set(seeds)) == 6
    other = CannedPolicy(GOLDS, {"Q-p1": [1, 1, 1]})
    MonteCarloAnnotator(other, ExactGrader(), n=4, sampling=SamplingParams(temperature=0.8), seed=4).annotate(
        PROBLEMS, rollouts
    )
    assert not set(seeds) & {r.seed for r in other.requests}


def test_step_seed_is_stable_and_in_range() -> None:
    """step_seed is a fixed function (stable across processes and versions) into [0, 2**31)."""
    # Pinned values of derive_seed("mc-step", ...): regenerate with `scripts/pinned_numbers.py test_mc`.
    assert step_seed(0, "r1", 0) == 2116831250
    assert step_seed(1, "r1", 0) == 2057586387
    assert step_seed(0, "r1", 1) == 1972295085
    assert all(0 <= step_seed(s, f"r{s}", t) < 2**31 for s in range(20) for t in range(5))


def test_truth_is_never_read() -> None:
    """Labels are identical with the truth, redacted, or with a deliberately wrong truth."""
    script = {"Q-p1": [4, 1, 0, 2]}
    real = StepTruth(first_error=2, step_correct=(True, True, False, True, True))
    wrong = StepTruth(first_error=0, step_correct=(False, True, True, True, True))
    with_truth = _rollout("a", "p1", 5, outcome=False, truth=real)
    runs = [
        _annotator(CannedPolicy(GOLDS, script)).annotate(PROBLEMS, [r])
        for r in (with_truth, with_truth.redacted(), dataclasses.replace(with_truth, truth=wrong))
    ]
    assert _without_seconds(runs[0]) == _without_seconds(runs[1]) == _without_seconds(runs[2])


# --- grading and validation -----------------------------------------------------------------------------


def test_ungradeable_completions_count_as_wrong() -> None:
    """A grader verdict of None is not a correct completion, and is counted in meta."""

    class HalfUngradeable(CannedPolicy):
        def _one(self, request: GenerationRequest) -> GenerationResult:
            result = super()._one(request)
            mangled = tuple(
                dataclasses.replace(c, text="no answer here") if i % 2 else c
                for i, c in enumerate(result.completions)
            )
            return dataclasses.replace(result, completions=mangled)

    policy = HalfUngradeable(GOLDS, {"Q-p1": [4, 4]})
    (label,) = _annotator(policy).annotate(PROBLEMS, [_rollout("a", "p1", 3, outcome=True)])
    assert label.values == (0.5, 0.5, 1.0)
    assert label.meta["ungraded"] == 4


def test_meta_is_json_serialisable() -> None:
    """meta survives a JSON round trip unchanged."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4, 2, 0]})
    (label,) = _annotator(policy, early_stop=True).annotate(PROBLEMS, [_rollout("a", "p1", 4, outcome=False)])
    meta = dict(label.meta)
    assert json.loads(json.dumps(meta)) == meta
    assert meta == {
        "n": 4,
        "early_stop": True,
        "last_step_from_outcome": True,
        "steps_rolled": 3,
        "correct_counts": [4, 2, 0, None],
        "ungraded": 0,
    }


@pytest.mark.parametrize("n", [0, -3])
def test_rejects_non_positive_n(n: int) -> None:
    """n must be at least 1."""
    with pytest.raises(ValueError, match="n must be >= 1"):
        MonteCarloAnnotator(CannedPolicy(GOLDS, {}), ExactGrader(), n=n)


def test_missing_problem_names_rollout_and_problem() -> None:
    """A rollout whose problem is absent is a ValueError naming both ids, raised before any request."""
    policy = CannedPolicy(GOLDS, {"Q-p1": [4]})
    rollouts = [_rollout("a", "p1", 2, outcome=True), _rollout("zz", "nope", 2, outcome=True)]
    with pytest.raises(ValueError, match=r"rollout 'zz': problem 'nope'"):
        _annotator(policy).annotate(PROBLEMS, rollouts)
    assert policy.batches == []


def test_policy_returning_wrong_completion_count_is_an_error() -> None:
    """A policy that ignores n is reported, not averaged over."""

    class Short(CannedPolicy):
        def _one(self, request: GenerationRequest) -> GenerationResult:
            result = super()._one(request)
            return dataclasses.replace(result, completions=result.completions[:-1])

    with pytest.raises(ValueError, match="3 completions, 4 requested"):
        _annotator(Short(GOLDS, {"Q-p1": [4]})).annotate(PROBLEMS, [_rollout("a", "p1", 2, outcome=True)])
