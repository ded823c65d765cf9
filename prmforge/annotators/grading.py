"""What rollout-based annotators need from an answer grader, as a protocol, and its memo.

Annotators take any object with this method by injection (the final-answer
verifier in ``prmforge.verifiers`` is one); they never import a grader.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["AnswerMemo", "OutcomeGrader", "SplitGrader"]


@runtime_checkable
class OutcomeGrader(Protocol):
    """Judges the final answer contained in a full solution text.

    ``grade(text, gold)`` is True when the answer ``text`` ends with is
    equivalent to ``gold``, False when it is not, and ``None`` when no answer
    can be extracted or compared.
    """

    def grade(self, text: str, gold: str) -> bool | None: ...


@runtime_checkable
class SplitGrader(OutcomeGrader, Protocol):
    """A grader whose two halves can be called apart: extraction, then comparison."""

    def extract(self, text: str) -> str | None: ...

    def grade_answer(self, answer: str, gold: str) -> bool | None: ...


_UNKNOWN = object()


class AnswerMemo:
    """Grades continuations: the completion's own answer (the prefix's only when the completion states
    none, e.g. an empty completion after a prefix that ends with the answer), each verdict computed once
    per ``(extracted answer, gold)``.

    Monte Carlo grades thousands of completions that end with a handful of distinct answers, so the
    equivalence check (math-verify, the costly half) runs once per distinct answer. A grader without
    separable halves is called on the whole text, as before.
    """

    def __init__(self, grader: OutcomeGrader) -> None:
        self.grader = grader
        self._verdicts: dict[tuple[str, str], bool | None] = {}
        self.hits = 0
        self.misses = 0

    def grade(self, prefix: str, completion: str, gold: str) -> bool | None:
        grader = self.grader
        if not isinstance(grader, SplitGrader):
            return grader.grade(prefix + completion, gold)
        answer = grader.extract(completion)
        if answer is None:
            answer = grader.extract(prefix + completion)
        if answer is None:
            return None
        key = (answer, gold)
        # One lookup: the grading threads of two shards of one worker may share this memo, and the
        # other may clear it between a membership test and a read (pipelines/overlap.py).
        known = self._verdicts.get(key, _UNKNOWN)
        if known is not _UNKNOWN:
            self.hits += 1
            return known  # type: ignore[return-value]
        self.misses += 1
        verdict = grader.grade_answer(answer, gold)
        if len(self._verdicts) >= 65_536:  # bounded: a long-lived worker never grows without end
            self._verdicts.clear()
        self._verdicts[key] = verdict
        return verdict
