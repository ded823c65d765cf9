"""What the simulated policy derives from one problem, once: compiled calcs, true values, its trap.

A :class:`Task` holds everything generation needs from a problem's plan, in the
form it needs it: each calc compiled (:mod:`prmforge.policies.exact`), with a
fill template and its tokens; the first calc of each step; the earlier calcs
each step references; the true values; the literals a wrong operand may be
drawn from; the problem's difficulty and its trap calc. :func:`build_task`
raises ``ValueError`` naming the problem when there is no usable plan.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from fractions import Fraction

from prmforge.policies.exact import Compiled, Num, Values, compile_expr, normal, operand_text
from prmforge.schemas.records import Problem
from prmforge.schemas.seeds import unit
from prmforge.suites.plan import Plan, PlanError, plan_of, tokenize

__all__ = ["Overlay", "PreparedCalc", "Task", "build_task"]

_NUMBER_RE = re.compile(r"\d[\d,]*(?:\.\d+)?")
_REF_SPLIT_RE = re.compile(r"\{c(\d+)\}")


@dataclass(frozen=True, slots=True)
class PreparedCalc:
    """A plan calc, prepared once: compiled, with its fill template and tokens (references as ints)."""

    run: Compiled
    template: tuple[str | int, ...]
    tokens: tuple[str | int, ...]

    def fill(self, values: Values) -> str:
        """:func:`~prmforge.suites.plan.fill`: the expression with each ``{cK}`` replaced by ``values[K]``."""
        return "".join(
            [part if isinstance(part, str) else operand_text(values[part]) for part in self.template]
        )


def _prepare(expr: str) -> PreparedCalc:
    pieces = _REF_SPLIT_RE.split(expr)  # literal, ref index, literal, ...
    template = tuple(piece if k % 2 == 0 else int(piece) for k, piece in enumerate(pieces) if piece)
    tokens = tuple(int(tok[2:-1]) if tok.startswith("{") else tok for tok in tokenize(expr))
    return PreparedCalc(compile_expr(expr), template, tokens)


@dataclass(frozen=True, slots=True)
class Task:
    """What the policy derives from one problem, computed once (and memoised by problem id)."""

    problem: Problem
    plan: Plan
    calcs: tuple[PreparedCalc, ...]
    starts: tuple[int, ...]
    """``starts[t]``: the global index of step t's first calc; ``starts[-1]`` is the number of calcs."""
    external: tuple[tuple[int, ...], ...]
    """Per step, the earlier calcs (before the step) that its calcs reference."""
    truth: tuple[Num, ...]
    numbers: tuple[Fraction, ...]
    difficulty: float
    trap: int | None


def build_task(problem: Problem, *, seed: int, trap_share: float, difficulty_spread: float) -> Task:
    """The :class:`Task` of ``problem``; ValueError naming the problem when the policy cannot serve it."""
    pid = problem.problem_id
    if problem.domain != "math":
        raise ValueError(f"simulated policy: problem {pid!r} is a {problem.domain!r} problem, not math")
    try:
        plan = plan_of(problem)
    except PlanError as err:
        raise ValueError(f"simulated policy cannot serve problem {pid!r}: {err}") from None
    prepared = tuple(_prepare(calc.expr) for calc in plan.calcs)
    starts = [0]
    for step in plan.steps:
        starts.append(starts[-1] + len(step.calcs))
    external = tuple(
        tuple(sorted({r for calc in prepared[a:b] for r in calc.tokens if isinstance(r, int) and r < a}))
        for a, b in itertools.pairwise(starts)
    )
    truth: list[Num] = []
    for calc in prepared:
        truth.append(normal(calc.run(truth)))
    literals = {Fraction(n.replace(",", "")) for n in _NUMBER_RE.findall(problem.question)}
    for calc in prepared:
        literals.update(
            Fraction(tok)
            for tok in calc.tokens
            if isinstance(tok, str) and (tok[0].isdigit() or tok[0] == ".")
        )
    trap = None
    if unit("simulated-trap", seed, pid) < trap_share:
        trap = int(unit("simulated-trap-calc", seed, pid) * len(prepared))
    return Task(
        problem=problem,
        plan=plan,
        calcs=prepared,
        starts=tuple(starts),
        external=external,
        truth=tuple(truth),
        numbers=tuple(sorted(literals)),
        difficulty=1.0 + difficulty_spread * (2.0 * unit("simulated-difficulty", seed, pid) - 1.0),
        trap=trap,
    )


class Overlay:
    """``[*base[:start], *tail]`` without the copy: a self-correcting step's basis (read-only)."""

    __slots__ = ("_base", "_start", "_tail")

    def __init__(self, base: Values, start: int, tail: Values) -> None:
        self._base, self._start, self._tail = base, start, tail

    def __len__(self) -> int:
        return self._start + len(self._tail)

    def __getitem__(self, index: int) -> Num:
        return self._base[index] if index < self._start else self._tail[index - self._start]
