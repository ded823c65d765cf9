"""The built-in ``code`` suite: small Python and C functions with unit tests and exact line-level truth.

Each task has a reference solution, written as lines, and tests: Python tests
are ``assert`` statements run against the program; C tests are structured checks
(``prmforge-c-checks/1`` JSON: call, return type, expected value, buffers) that a
trusted driver runs from outside the sample's process
(:mod:`prmforge.verifiers.c_harness`). C tasks also carry a *prelude* of
``#include`` lines that is not part of the solution.

**Steps are lines.** A solution's steps are its non-blank source lines, with
their indentation; step t of a rollout is line t of its program.

**Rollouts** (:func:`generate_code_rollouts`) are reference copies, or programs
with one injected bug at a known line, or truncated programs:

- ``operator_swap``: one operator replaced (``+=`` -> ``-=``, ``<=`` -> ``<``);
- ``off_by_one``: a bound or an index moved by one;
- ``wrong_variable``: one variable used in place of another;
- ``wrong_constant``: one literal changed;
- ``deleted_line``: one line removed (never the last one);
- ``truncated``: only the first m lines, 1 <= m < n.

Every bug site is written out by hand (:class:`Bug`: the line, the text it
replaces and the replacement) and was chosen so that the tests catch it; the
test-suite re-checks this for every site by running it in the sandbox.

**Truth** (:class:`~prmforge.schemas.records.StepTruth`): a reference copy
has ``first_error = -1``. A bug at line i has ``first_error = i`` and only
step i incorrect; for a deleted line, step i is the line that now stands
where the deleted one was (the missing line is the error). A truncated
program has its last step incorrect, as in :mod:`prmforge.suites.truth`:
the missing lines are the error.

Problems are reproducible: problem i depends only on ``(seed, i)``.

How ``Problem.meta`` describes the program (:class:`~prmforge.languages.code_program.CodeSpec`),
and how lines are assembled into source, is the contract in
:mod:`prmforge.languages.code_program`, which the code verifiers read too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from prmforge.languages.code_program import CodeSpecError, code_spec_of
from prmforge.schemas import seeds
from prmforge.schemas.records import Problem, StepTruth
from prmforge.suites.code_tasks import BUG_KINDS, BY_NAME, LANGUAGES, TASKS, Bug, CodeTask

__all__ = [
    "BUG_KINDS",
    "LANGUAGES",
    "Bug",
    "CodeTask",
    "apply_bug",
    "bug_truth",
    "code_tasks",
    "exact_code_truth",
    "generate_code_problems",
    "generate_code_rollouts",
    "truncation_truth",
]


def code_tasks(languages: Sequence[str] = LANGUAGES) -> tuple[CodeTask, ...]:
    """The built-in tasks in the given languages, in a fixed order."""
    unknown = set(languages) - set(LANGUAGES)
    if unknown:
        raise ValueError(f"unknown languages {sorted(unknown)}; known: {list(LANGUAGES)}")
    return tuple(task for task in TASKS if task.language in languages)


def apply_bug(reference: Sequence[str], bug: Bug) -> tuple[str, ...]:
    """``reference`` with ``bug`` injected; ValueError when the site does not fit the lines."""
    if not 0 <= bug.line < len(reference):
        raise ValueError(f"bug line {bug.line} outside 0..{len(reference) - 1}")
    lines = list(reference)
    if bug.kind == "deleted_line":
        if bug.line == len(reference) - 1:
            raise ValueError("deleting the last line leaves no step to blame")
        del lines[bug.line]
        return tuple(lines)
    if not bug.old or bug.old not in lines[bug.line] or bug.old == bug.new:
        raise ValueError(f"bug {bug} does not change line {lines[bug.line]!r}")
    lines[bug.line] = lines[bug.line].replace(bug.old, bug.new, 1)
    return tuple(lines)


def bug_truth(reference: Sequence[str], bug: Bug) -> StepTruth:
    """Truth of ``apply_bug(reference, bug)``: only step ``bug.line`` is incorrect."""
    length = len(reference) - (1 if bug.kind == "deleted_line" else 0)
    return StepTruth(first_error=bug.line, step_correct=tuple(t != bug.line for t in range(length)))


def truncation_truth(length: int) -> StepTruth:
    """Truth of a reference truncated to ``length`` lines: the last step is incorrect (lines are missing)."""
    if length < 1:
        raise ValueError(f"a truncated program keeps at least one line, got {length}")
    return StepTruth(first_error=length - 1, step_correct=tuple(t != length - 1 for t in range(length)))


def _problem(task: CodeTask, seed: int, index: int) -> Problem:
    language = "Python" if task.language == "python" else "C"
    signature = task.reference[0].rstrip(" {:")
    return Problem(
        problem_id=f"code-{seed}-{index}",
        domain="code",
        question=f"Write the {language} function `{signature}`. {task.description}",
        gold="\n".join(task.reference) + "\n",
        source="code",
        meta={
            "task": task.name,
            "language": task.language,
            "entry_point": task.entry_point,
            "reference": list(task.reference),
            "tests": task.tests,
            "prelude": task.prelude,
        },
    )


def generate_code_problems(
    count: int, seed: int, languages: Sequence[str] = LANGUAGES, *, start: int = 0
) -> list[Problem]:
    """``count`` problems cycling through a seeded order of the tasks in ``languages``.

    Problem i depends only on ``(seed, i)`` (and ``languages``); ids are ``code-<seed>-<i>``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    pool = list(code_tasks(languages))
    if not pool:
        raise ValueError("no task in the requested languages")
    seeds.rng("code-suite", seed).shuffle(pool)
    return [_problem(pool[index % len(pool)], seed, index) for index in range(start, start + count)]


def _rng(seed: int, problem_id: str, index: int) -> random.Random:
    return seeds.rng("code-rollout", seed, problem_id, index)


def generate_code_rollouts(
    problem: Problem, k: int, seed: int, bug_rate: float = 0.5
) -> list[tuple[tuple[str, ...], StepTruth]]:
    """``k`` rollouts (steps = lines, truth) of a ``code`` problem.

    Each is, with probability ``1 - bug_rate``, a copy of the reference;
    otherwise a kind is drawn uniformly from the task's bug kinds plus
    ``truncated``, then a site of that kind (or a cut point) uniformly.
    Rollout j depends only on ``(seed, problem_id, j)``.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not 0.0 <= bug_rate <= 1.0:
        raise ValueError(f"bug_rate must be in [0, 1], got {bug_rate}")
    spec = code_spec_of(problem)
    task = BY_NAME.get(spec.task)
    if task is None or task.reference != spec.reference:
        raise CodeSpecError(f"problem {problem.problem_id} is not a built-in code task")
    reference = task.reference
    out: list[tuple[tuple[str, ...], StepTruth]] = []
    for index in range(k):
        rng = _rng(seed, problem.problem_id, index)
        if rng.random() >= bug_rate:
            out.append((reference, StepTruth(-1, tuple(True for _ in reference))))
            continue
        kinds = [*sorted({bug.kind for bug in task.bugs}), "truncated"]
        kind = rng.choice(kinds)
        if kind == "truncated":
            length = rng.randrange(1, len(reference))
            out.append((reference[:length], truncation_truth(length)))
            continue
        bug = rng.choice([b for b in task.bugs if b.kind == kind])
        out.append((apply_bug(reference, bug), bug_truth(reference, bug)))
    return out


def exact_code_truth(problem: Problem, steps: Sequence[str]) -> StepTruth:
    """Exact truth of a program's lines against the task's reference (evaluation only).

    The first line that departs from the reference is the error (a deleted line
    shows as the line standing in its place), and only that line is incorrect,
    as in :func:`bug_truth`; a strict prefix of the reference is a truncation
    (:func:`truncation_truth`); the reference itself has no error.
    """
    reference = code_spec_of(problem).reference
    lines = tuple(steps)
    if lines == reference:
        return StepTruth(first_error=-1, step_correct=tuple(True for _ in lines))
    if not lines:
        return StepTruth(first_error=0, step_correct=())
    if len(lines) < len(reference) and lines == reference[: len(lines)]:
        return truncation_truth(len(lines))
    first = next(
        (t for t, (a, b) in enumerate(zip(lines, reference, strict=False)) if a != b), len(reference)
    )
    return StepTruth(first_error=first, step_correct=tuple(t != first for t in range(len(lines))))
