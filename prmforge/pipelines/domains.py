"""The domain seam: how a solution splits into steps, how its outcome is graded, and (for evaluation
only) its exact truth — per domain, in one place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prmforge.languages.code_program import code_spec_of
from prmforge.languages.formula import FormulaError, format_formula, parse_formula
from prmforge.schemas.records import Problem, StepTruth
from prmforge.schemas.steps import split_steps
from prmforge.suites.code import exact_code_truth
from prmforge.suites.logic import exact_logic_truth
from prmforge.suites.truth import exact_truth
from prmforge.verifiers.answer import AnswerGrader, extract_final_answer
from prmforge.verifiers.verdict import Verdict

Outcome = tuple[str | None, bool | None]


class MathDomain:
    """Blank-line steps; the final answer graded against the gold; truth from the reference plan."""

    def __init__(self) -> None:
        self._answers = AnswerGrader()

    def segment(self, problem: Problem, text: str) -> tuple[str, ...]:
        return split_steps(text)

    def grade(self, problem: Problem, text: str) -> Outcome:
        """A solution that states no answer is wrong, not unknown."""
        answer = extract_final_answer(text)
        if answer is None:
            return None, False
        return answer, self._answers.grade(text, problem.gold)

    def truth(self, problem: Problem, steps: Sequence[str]) -> StepTruth | None:
        return exact_truth(problem, steps) if "plan" in problem.meta else None


class LogicDomain:
    """Blank-line derivation steps; the last formula must be the goal."""

    def segment(self, problem: Problem, text: str) -> tuple[str, ...]:
        return split_steps(text)

    def grade(self, problem: Problem, text: str) -> Outcome:
        steps = self.segment(problem, text)
        last = _last_formula(steps)
        return last, last is not None and last == format_formula(parse_formula(problem.gold))

    def truth(self, problem: Problem, steps: Sequence[str]) -> StepTruth | None:
        return exact_logic_truth(problem, steps)


class CodeDomain:
    """Programs split into their non-blank lines; graded by running the unit tests in the sandbox."""

    def __init__(self, programs: Callable[[], Any]) -> None:
        self._programs = programs

    def segment(self, problem: Problem, text: str) -> tuple[str, ...]:
        return tuple(line for line in text.splitlines() if line.strip())

    def grade(self, problem: Problem, text: str) -> Outcome:
        """A run that checked nothing (INFRA_ERROR, or ABSTAIN for tests that cannot be trusted, such as
        a free-form C ``main``) leaves the outcome unknown (None), never wrong."""
        outcome = self._programs().run_program(code_spec_of(problem), self.segment(problem, text))
        if outcome.verdict.status == "unchecked":
            return None, None
        return None, outcome.verdict is Verdict.PASS

    def truth(self, problem: Problem, steps: Sequence[str]) -> StepTruth | None:
        return exact_code_truth(problem, steps)


def _last_formula(steps: Sequence[str]) -> str | None:
    if not steps:
        return None
    _, _, claim = steps[-1].rpartition(":")
    try:
        return format_formula(parse_formula(claim.strip()))
    except FormulaError:
        return None


class Domains:
    """The operations of each problem's domain."""

    def __init__(self, programs: Callable[[], Any]) -> None:
        self._by_name: dict[str, MathDomain | LogicDomain | CodeDomain] = {
            "math": MathDomain(),
            "logic": LogicDomain(),
            "code": CodeDomain(programs),
        }

    def __call__(self, problem: Problem) -> MathDomain | LogicDomain | CodeDomain:
        return self._by_name[problem.domain]
