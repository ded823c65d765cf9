"""What differs between the suites' domains: how a solution splits into steps, how its outcome
is graded, and (for evaluation only) its exact truth."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prmforge.policies.base import split_steps
from prmforge.schemas.records import Problem, StepTruth
from prmforge.suites.code import code_spec_of, judge_code_truth
from prmforge.suites.logic import judge_logic_truth
from prmforge.suites.truth import judge_truth
from prmforge.verifiers.answer import AnswerGrader, extract_final_answer
from prmforge.verifiers.compile_test import CompileTestVerifier
from prmforge.verifiers.formula import FormulaError, format_formula, parse_formula
from prmforge.verifiers.verdict import Verdict


def segment(problem: Problem, text: str) -> tuple[str, ...]:
    """Programs split into their non-blank lines (indentation kept); everything else on blank lines."""
    if problem.domain == "code":
        return tuple(line for line in text.splitlines() if line.strip())
    return split_steps(text)


def judge(problem: Problem, steps: Sequence[str]) -> StepTruth | None:
    """Exact truth where the problem's suite knows it; None for problems from outside the built-in suites."""
    if problem.domain == "code":
        return judge_code_truth(problem, steps)
    if problem.domain == "logic":
        return judge_logic_truth(problem, steps)
    if "plan" in problem.meta:
        return judge_truth(problem, steps)
    return None


def _last_formula(steps: Sequence[str]) -> str | None:
    if not steps:
        return None
    _, _, claim = steps[-1].rpartition(":")
    try:
        return format_formula(parse_formula(claim.strip()))
    except FormulaError:
        return None


class RolloutGrader:
    """Grades a whole solution against the problem's gold: an answer, a goal formula, or unit tests.

    Programs run in the sandbox (through :class:`CompileTestVerifier`, created on first use);
    an infrastructure failure leaves the outcome unknown (None), never wrong.
    """

    def __init__(self, programs: Callable[[], CompileTestVerifier] = CompileTestVerifier) -> None:
        self._answers = AnswerGrader()
        self._make_programs = programs
        self._programs: CompileTestVerifier | None = None

    def grade(self, problem: Problem, text: str) -> tuple[str | None, bool | None]:
        """``(final answer, outcome)``; a math solution that states no answer is wrong, not unknown."""
        if problem.domain == "code":
            if self._programs is None:
                self._programs = self._make_programs()
            outcome = self._programs.run_program(code_spec_of(problem), segment(problem, text))
            if outcome.verdict is Verdict.INFRA_ERROR:
                return None, None
            return None, outcome.verdict is Verdict.PASS
        if problem.domain == "logic":
            last = _last_formula(segment(problem, text))
            return last, last is not None and last == format_formula(parse_formula(problem.gold))
        answer = extract_final_answer(text)
        if answer is None:
            return None, False
        return answer, self._answers.grade(text, problem.gold)
