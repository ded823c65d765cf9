"""Monte Carlo requests in calls of `requests_per_call`, graded on a second thread while the engine
generates the next call; verdicts memoised by (extracted answer, gold)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from test_mc import GOLDS, PROBLEMS, CannedPolicy, _rollout, _without_seconds

from prmforge.annotators.grading import AnswerMemo
from prmforge.annotators.mc import MonteCarloAnnotator
from prmforge.policies.base import GenerationRequest, GenerationResult
from prmforge.schemas.records import SamplingParams
from prmforge.verifiers.answer import AnswerGrader

SCRIPT = {"Q-p1": [4, 2, 0, 1], "Q-p2": [3, 3, 3, 3], "Q-p3": [1, 0, 0, 0]}
ROLLOUTS = [_rollout("r1", "p1", 4, False), _rollout("r2", "p2", 3, True), _rollout("r3", "p3", 4, None)]


def _mc(policy: object, grader: object, per_call: int) -> MonteCarloAnnotator:
    return MonteCarloAnnotator(
        policy,  # type: ignore[arg-type]
        grader,  # type: ignore[arg-type]
        n=4,
        sampling=SamplingParams(temperature=0.8),
        seed=3,
        requests_per_call=per_call,
    )


def test_calls_of_a_few_requests_give_the_same_labels_as_one_call() -> None:
    one = CannedPolicy(GOLDS, SCRIPT)
    whole = _mc(one, AnswerGrader(), 256).annotate(PROBLEMS, ROLLOUTS)
    split = CannedPolicy(GOLDS, SCRIPT)
    parts = _mc(split, AnswerGrader(), 3).annotate(PROBLEMS, ROLLOUTS)
    assert _without_seconds(parts) == _without_seconds(whole)
    assert [len(b) for b in one.batches] == [9]  # r1: 3 steps (last from outcome), r2: 2, r3: 4
    assert [len(b) for b in split.batches] == [3, 3, 3]
    assert [r.seed for b in split.batches for r in b] == [r.seed for r in one.batches[0]]


def test_requests_per_call_must_be_positive() -> None:
    with pytest.raises(ValueError, match="requests_per_call must be >= 1, got 0"):
        _mc(CannedPolicy(GOLDS, SCRIPT), AnswerGrader(), 0)


class _BlockingGrader:
    """Grading call 0 waits until the engine has started generating call 1: it can only finish if
    grading runs beside generation."""

    def __init__(self, second_call_started: threading.Event) -> None:
        self.second_call_started = second_call_started
        self.waited: list[bool] = []
        self.threads: set[str] = set()

    def grade(self, text: str, gold: str) -> bool | None:
        self.threads.add(threading.current_thread().name)
        if not self.waited:
            self.waited.append(self.second_call_started.wait(timeout=30))
        return AnswerGrader().grade(text, gold)


class _SignallingPolicy(CannedPolicy):
    def __init__(self, started: threading.Event) -> None:
        super().__init__(GOLDS, SCRIPT)
        self.started = started

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if self.batches:  # the second call begins
            self.started.set()
        return super().generate(requests)


def test_the_previous_call_is_graded_while_the_engine_generates_the_next() -> None:
    started = threading.Event()
    grader = _BlockingGrader(started)
    labels = _mc(_SignallingPolicy(started), grader, 3).annotate(PROBLEMS, ROLLOUTS)
    assert grader.waited == [True]  # call 1 started while call 0 was being graded
    assert all(name.startswith("mc-grading") for name in grader.threads)
    assert labels[1].values == (0.75, 0.75, 1.0)


def test_a_verdict_is_computed_once_per_answer_and_gold() -> None:
    memo = AnswerMemo(AnswerGrader())
    prefix = "Step 1: 3 + 4 = 7\n\n"
    assert memo.grade(prefix, "So 7 in all. The answer is 7", "7") is True
    assert memo.grade(prefix, "Therefore the answer is 7", "7") is True
    assert memo.grade(prefix, "The answer is 8", "7") is False
    assert (memo.misses, memo.hits) == (2, 1)


def test_the_completions_answer_wins_and_the_prefixs_counts_when_it_states_none() -> None:
    memo = AnswerMemo(AnswerGrader())
    prefix = "3 + 4 = 7. The answer is 7\n\n"
    assert memo.grade(prefix, "", "7") is True  # an empty completion after a prefix with the answer
    assert memo.grade(prefix, "Wait, it is 8. The answer is 8", "7") is False
    assert memo.grade("Start.\n\n", "no number here", "7") is None


def test_a_grader_without_halves_is_called_on_the_whole_text() -> None:
    seen: list[str] = []

    class Whole:
        def grade(self, text: str, gold: str) -> bool | None:
            seen.append(text)
            return True

    assert AnswerMemo(Whole()).grade("a\n\n", "b", "1") is True
    assert seen == ["a\n\nb"]
