"""The arithmetic word-problem suite."""

from __future__ import annotations

import re

import pytest

from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.plan import Plan, format_value, parse_annotations, plan_of, refs_of
from prmforge.suites.truth import exact_truth


def test_same_arguments_give_identical_problems() -> None:
    """Reproducible, and problem i depends only on (seed, i)."""
    first = generate_arith_problems(30, seed=7, min_steps=2, max_steps=9)
    assert generate_arith_problems(30, seed=7, min_steps=2, max_steps=9) == first
    assert generate_arith_problems(5, seed=7, min_steps=2, max_steps=9) == first[:5]
    other = generate_arith_problems(30, seed=8, min_steps=2, max_steps=9)
    assert [p.question for p in other] != [p.question for p in first]


def test_records_are_well_formed() -> None:
    problems = generate_arith_problems(40, seed=3)
    assert [p.problem_id for p in problems[:3]] == ["arith-3-0", "arith-3-1", "arith-3-2"]
    assert len({p.problem_id for p in problems}) == 40
    for problem in problems:
        plan = plan_of(problem)
        assert (problem.domain, problem.source) == ("math", "arith")
        assert problem.gold == format_value(plan.answer())
        assert re.fullmatch(r"[1-9]\d*", problem.gold)
        assert problem.question.endswith("?")
        assert problem.meta["steps"] == len(plan.steps)
        assert 2 <= len(plan.steps) <= 6


def test_reference_solutions_are_exactly_true() -> None:
    """The reference is judged all-correct, states the gold answer, and every value is a positive integer."""
    for problem in generate_arith_problems(60, seed=11, min_steps=1, max_steps=10):
        plan = plan_of(problem)
        steps = plan.reference_steps()
        assert exact_truth(problem, steps).first_error == -1
        assert steps[-1].endswith(f"\nThe answer is: {problem.gold}")
        assert all(v.denominator == 1 and v > 0 for v in plan.true_values())
        assert [len(parse_annotations(s)) for s in steps] == [len(s.calcs) for s in plan.steps]


def test_long_solutions_of_eight_steps_and_more() -> None:
    problems = generate_arith_problems(40, seed=5, min_steps=8, max_steps=12)
    lengths = [len(plan_of(p).steps) for p in problems]
    assert min(lengths) >= 8
    assert max(lengths) == 12
    assert len(set(lengths)) == 5
    for problem in problems:
        assert exact_truth(problem, plan_of(problem).reference_steps()).first_error == -1


def _ancestors(plan: Plan) -> set[int]:
    calcs = plan.calcs
    seen = {len(calcs) - 1}
    for index in range(len(calcs) - 1, -1, -1):
        if index in seen:
            seen.update(refs_of(calcs[index].expr))
    return seen


def test_dependencies_reach_back_and_every_calc_feeds_the_answer() -> None:
    """Steps use earlier results, not only the previous one; no calc is a dead end."""
    problems = generate_arith_problems(50, seed=2, min_steps=4, max_steps=8)
    far_refs = 0
    two_calc_steps = 0
    for problem in problems:
        plan = plan_of(problem)
        assert _ancestors(plan) == set(range(len(plan.calcs)))
        for index, calc in enumerate(plan.calcs):
            far_refs += sum(1 for ref in refs_of(calc.expr) if ref < index - 1)
        two_calc_steps += sum(1 for step in plan.steps if len(step.calcs) == 2)
    assert far_refs >= 50
    assert two_calc_steps >= 20


def test_variety_of_names_items_operations_and_phrasings() -> None:
    problems = generate_arith_problems(120, seed=1, min_steps=3, max_steps=7)
    names = {m for p in problems for m in re.findall(r"\b([A-Z][a-z]+) has \d+ ", p.question)}
    items = {re.search(r"How many ([a-z ]+?) do", p.question).group(1) for p in problems}  # type: ignore[union-attr]
    operators = {tok for p in problems for c in plan_of(p).calcs for tok in "+-*/" if tok in c.expr}
    templates = set()
    for problem in problems:
        for step in plan_of(problem).steps:
            shape = " _ ".join(step.text)
            templates.add(re.sub(r"\b[A-Z][a-z]+\b|\d+", "X", shape))
    finals = {re.search(r"How many [a-z ]+? (do|does) ", p.question).group(1) for p in problems}  # type: ignore[union-attr]
    assert len(names) >= 20
    assert len(items) >= 12
    assert operators == {"+", "-", "*", "/"}
    assert len(templates) >= 20
    assert finals == {"do", "does"}  # "How many ... do A, B and C have altogether?" and "... does A have?"


@pytest.mark.parametrize(
    ("count", "lo", "hi", "message"),
    [
        (-1, 2, 6, "count must be >= 0, got -1"),
        (3, 0, 6, "need 1 <= min_steps <= max_steps, got 0 and 6"),
        (3, 5, 4, "need 1 <= min_steps <= max_steps, got 5 and 4"),
    ],
)
def test_invalid_arguments(count: int, lo: int, hi: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_arith_problems(count, seed=0, min_steps=lo, max_steps=hi)


def test_a_slice_is_generated_without_the_problems_before_it() -> None:
    """Problem i depends only on (seed, i): problems 7..11 alone equal the slice of a whole run."""
    whole = generate_arith_problems(12, seed=3, min_steps=2, max_steps=5)
    assert generate_arith_problems(5, seed=3, min_steps=2, max_steps=5, start=7) == whole[7:12]
