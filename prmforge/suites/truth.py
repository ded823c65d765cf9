"""Exact per-step truth of a solution to a built-in problem, read from the step texts.

Step t of a solution is judged against step t of the problem's plan: it is
correct when it states exactly the plan step's calcs, in order, each with the
plan's expression filled with TRUE values (compared by :func:`canonical`, so
``3*2`` equals ``2*3``) and the TRUE value. A step that states
``The answer is: V`` must be the plan's last step and V must be the true answer
(a missing answer line is not a false claim). Steps beyond the plan are
incorrect; a solution with fewer steps than the plan has its last step marked
incorrect (the missing steps are an error), and an empty solution gets
``first_error = 0``.

Evaluation only: no annotator and no policy may call this.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from prmforge.schemas.records import Problem, StepTruth, first_error_of
from prmforge.suites.plan import (
    ExprError,
    Plan,
    canonical,
    fill,
    parse_annotations,
    parse_answer_line,
    parse_value,
    plan_of,
)

__all__ = ["exact_truth", "judge_steps", "step_is_correct"]


def _claim_is_true(expr: str, value: str, expected_expr: str, expected_value: Fraction) -> bool:
    try:
        return parse_value(value) == expected_value and canonical(expr) == canonical(expected_expr)
    except ExprError:
        return False


def step_is_correct(plan: Plan, t: int, text: str, truth: Sequence[Fraction]) -> bool:
    """Whether ``text`` states step ``t`` of ``plan`` truly (``truth`` = :meth:`Plan.true_values`)."""
    if t >= len(plan.steps):
        return False
    calcs = plan.steps[t].calcs
    claims = parse_annotations(text)
    if len(claims) != len(calcs):
        return False
    start = plan.first_calc(t)
    for offset, ((expr, value), calc) in enumerate(zip(claims, calcs, strict=True)):
        if not _claim_is_true(expr, value, fill(calc.expr, truth), truth[start + offset]):
            return False
    answer = parse_answer_line(text)
    if answer is None:
        return True
    if t != len(plan.steps) - 1:
        return False
    try:
        return parse_value(answer) == truth[-1]
    except ExprError:
        return False


def judge_steps(plan: Plan, steps: Sequence[str]) -> StepTruth:
    """Truth of ``steps`` against ``plan`` (see the module docstring for the rules)."""
    if not steps:
        return StepTruth(first_error=0, step_correct=())
    truth = plan.true_values()
    correct = [step_is_correct(plan, t, text, truth) for t, text in enumerate(steps)]
    if len(steps) < len(plan.steps):
        correct[-1] = False
    first_error = first_error_of(correct)
    return StepTruth(first_error=first_error, step_correct=tuple(correct))


def exact_truth(problem: Problem, steps: Sequence[str]) -> StepTruth:
    """Exact truth of a solution's ``steps`` to a built-in ``problem`` (``problem.meta["plan"]``).

    Raises :class:`~prmforge.suites.plan.PlanError` when the problem has no valid plan.
    """
    return judge_steps(plan_of(problem), steps)
