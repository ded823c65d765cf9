"""The built-in ``code`` suite: problems, bug sites, rollouts and their exact truth (no execution here)."""

from __future__ import annotations

import json

import pytest

from prmforge.languages.code_program import CodeSpecError, assemble_program, code_spec_of, completed_prefix
from prmforge.schemas.records import Problem, StepTruth
from prmforge.suites.code import (
    BUG_KINDS,
    Bug,
    apply_bug,
    bug_truth,
    code_tasks,
    generate_code_problems,
    generate_code_rollouts,
    truncation_truth,
)


def test_at_least_twelve_tasks_in_both_languages() -> None:
    """There are 16 tasks, 8 per language, each with at least 4 bug sites."""
    tasks = code_tasks()
    assert len(tasks) == 16
    assert {t.language for t in tasks} == {"python", "c"}
    assert len(code_tasks(["python"])) == 8
    assert len(code_tasks(["c"])) == 8
    assert all(len(t.bugs) >= 4 for t in tasks)
    assert len({t.name for t in tasks}) == len(tasks)


@pytest.mark.parametrize("language", ["python", "c"])
def test_every_bug_kind_appears_in_each_language(language: str) -> None:
    """Each language has every mutation kind at least once."""
    kinds = {bug.kind for task in code_tasks([language]) for bug in task.bugs}
    assert kinds == set(BUG_KINDS)


def test_every_bug_site_applies_and_changes_exactly_its_line() -> None:
    """A substitution changes only line ``bug.line``; a deletion removes exactly that line."""
    for task in code_tasks():
        for bug in task.bugs:
            mutated = apply_bug(task.reference, bug)
            if bug.kind == "deleted_line":
                assert mutated == task.reference[: bug.line] + task.reference[bug.line + 1 :]
            else:
                diff = [i for i, (a, b) in enumerate(zip(task.reference, mutated, strict=True)) if a != b]
                assert diff == [bug.line], (task.name, bug)


def test_apply_bug_refuses_sites_that_do_not_fit() -> None:
    """Out-of-range lines, text not on the line and deleting the last line raise ValueError."""
    reference = ("def f(x):", "    y = x + 1", "    return y")
    assert apply_bug(reference, Bug(1, "operator_swap", "+", "-")) == (
        "def f(x):",
        "    y = x - 1",
        "    return y",
    )
    with pytest.raises(ValueError, match="outside"):
        apply_bug(reference, Bug(3, "operator_swap", "+", "-"))
    with pytest.raises(ValueError, match="does not change"):
        apply_bug(reference, Bug(1, "operator_swap", "*", "-"))
    with pytest.raises(ValueError, match="last line"):
        apply_bug(reference, Bug(2, "deleted_line"))


def test_truth_of_bugs_and_truncations() -> None:
    """Only the mutated line is wrong; a truncated program's last line is wrong."""
    reference = ("a", "b", "c", "d")
    assert bug_truth(reference, Bug(1, "wrong_constant", "b", "x")) == StepTruth(1, (True, False, True, True))
    assert bug_truth(reference, Bug(1, "deleted_line")) == StepTruth(1, (True, False, True))
    assert truncation_truth(2) == StepTruth(1, (True, False))
    assert truncation_truth(2).prefix_labels() == (True, False)
    with pytest.raises(ValueError, match="at least one line"):
        truncation_truth(0)


def test_problems_are_reproducible_and_carry_the_task() -> None:
    """Same arguments, same problems; meta holds language, tests and the reference lines as JSON values."""
    problems = generate_code_problems(20, seed=3)
    assert problems == generate_code_problems(20, seed=3)
    assert [p.problem_id for p in problems[:2]] == ["code-3-0", "code-3-1"]
    assert len({p.meta["task"] for p in problems[:16]}) == 16  # one cycle covers every task
    first = problems[0]
    assert first.domain == "code"
    assert first.source == "code"
    assert json.loads(json.dumps(dict(first.meta))) == dict(first.meta)
    assert first.gold == "\n".join(first.meta["reference"]) + "\n"
    spec = code_spec_of(first)
    assert spec.language in {"python", "c"}
    assert spec.tests
    assert spec.reference[0].rstrip(" {:") in first.question


def test_language_filter_and_bad_arguments() -> None:
    """Only the requested language is used; unknown languages and negative counts raise."""
    assert {p.meta["language"] for p in generate_code_problems(10, 0, languages=("c",))} == {"c"}
    with pytest.raises(ValueError, match="unknown languages"):
        generate_code_problems(1, 0, languages=("rust",))
    with pytest.raises(ValueError, match="count must be"):
        generate_code_problems(-1, 0)


def test_reference_copies_when_bug_rate_is_zero() -> None:
    """bug_rate 0 gives k exact reference copies with first_error -1."""
    problem = generate_code_problems(1, 0)[0]
    rollouts = generate_code_rollouts(problem, 5, seed=1, bug_rate=0.0)
    reference = tuple(problem.meta["reference"])
    assert rollouts == [(reference, StepTruth(-1, tuple(True for _ in reference)))] * 5


def test_buggy_rollouts_differ_from_the_reference_exactly_at_the_first_error() -> None:
    """With bug_rate 1 every rollout equals the reference before first_error and departs at it."""
    seen_kinds = set()
    for problem in generate_code_problems(16, seed=0):
        reference = tuple(problem.meta["reference"])
        rollouts = generate_code_rollouts(problem, 6, seed=2, bug_rate=1.0)
        assert rollouts == generate_code_rollouts(problem, 6, seed=2, bug_rate=1.0)
        for steps, truth in rollouts:
            first = truth.first_error
            assert 0 <= first < len(steps) == len(truth.step_correct)
            assert steps[:first] == reference[:first]
            if steps == reference[: len(steps)]:
                seen_kinds.add("truncated")
                assert first == len(steps) - 1 < len(reference) - 1 + 1
            else:
                assert steps[first] != reference[first]
                assert truth.step_correct.count(False) == 1
                seen_kinds.add("deleted" if len(steps) < len(reference) else "substituted")
    assert seen_kinds == {"truncated", "deleted", "substituted"}


def test_rollout_arguments_are_validated() -> None:
    """Negative k, a bug_rate outside [0, 1] and a non-code problem raise."""
    problem = generate_code_problems(1, 0)[0]
    with pytest.raises(ValueError, match="k must be"):
        generate_code_rollouts(problem, -1, 0)
    with pytest.raises(ValueError, match="bug_rate"):
        generate_code_rollouts(problem, 1, 0, bug_rate=1.5)
    other = Problem("x", "math", "1+1?", "2", "arith")
    with pytest.raises(CodeSpecError):
        generate_code_rollouts(other, 1, 0)


def test_completed_prefix_and_assembly() -> None:
    """Line t's program: the rollout's lines to t plus the reference's rest; the last is the rollout."""
    reference = ("a", "b", "c", "d")
    steps = ("a", "X", "c")
    assert completed_prefix(steps, reference, 0) == ("a", "b", "c", "d")
    assert completed_prefix(steps, reference, 1) == ("a", "X", "c", "d")
    assert completed_prefix(steps, reference, 2) == ("a", "X", "c")
    with pytest.raises(IndexError):
        completed_prefix(steps, reference, 3)
    c_problem = generate_code_problems(1, 0, languages=("c",))[0]
    spec = code_spec_of(c_problem)
    source = assemble_program(spec, spec.reference, with_tests=True)
    assert source.startswith("#include <string.h>")
    # C tests are never appended to the sample's source: a trusted driver runs them from outside.
    assert source == assemble_program(spec, spec.reference, with_tests=False)
    assert "main" not in source
    assert spec.c_tests is not None
    assert len(spec.c_tests.checks) >= 3


def test_judging_a_program_from_its_lines_agrees_with_the_generator() -> None:
    """exact_code_truth, which sees only the lines, reproduces the generator's truth for every rollout."""
    from prmforge.suites.code import exact_code_truth

    problems = generate_code_problems(32, seed=4)
    checked = 0
    for problem in problems:
        for steps, truth in generate_code_rollouts(problem, 8, seed=9, bug_rate=0.8):
            assert exact_code_truth(problem, steps) == truth, (problem.problem_id, steps)
            checked += 1
    assert checked == 256


def test_a_slice_is_generated_without_the_problems_before_it() -> None:
    whole = generate_code_problems(10, seed=4)
    assert generate_code_problems(3, seed=4, start=6) == whole[6:9]
