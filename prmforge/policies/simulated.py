"""A stochastic solver for the built-in suites: realistic mistakes, no model weights.

The policy works from each problem's plan (``Problem.meta["plan"]``). Given a
question and any prefix of step texts, it reads the values the prefix claims
(``<<expr=value>>``), continues from those claimed values (so errors carry
forward) and writes the remaining steps in the plan's words. Each calc it
writes may go wrong in one of three ways:

- *slip*: the right expression with a wrong result;
- *wrong operand*: one operand replaced by another number of the problem or an
  earlier result;
- *wrong operation*: one operator swapped for another.

The chance of a mistake grows with the temperature and with a per-problem
difficulty; a share of problems has a *trap* calc that the policy gets wrong
(always the same way) with high probability. Later steps sometimes
*self-correct*: they recompute from the true values instead of the carried
wrong ones (never past a trap). Temperature 0 is greedy: an event happens
exactly when its probability is above 1/2, so there are no random mistakes.

Every completion is deterministic: its random stream is seeded by hashing the
policy seed, the request seed, the rendered prompt and the completion index.
See ``docs/simulated_policy.md`` for the parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from prmforge.policies.base import STEP_SEPARATOR, Completion, GenerationRequest, GenerationResult
from prmforge.schemas.records import Problem
from prmforge.suites.plan import (
    ExprError,
    Plan,
    answer_line,
    evaluate,
    fill,
    format_operand,
    parse_annotations,
    parse_value,
    plan_of,
    refs_of,
    tokenize,
)

__all__ = ["SimulatedPolicy", "SimulatedPolicyParams"]

_NUMBER_RE = re.compile(r"\d[\d,]*(?:\.\d+)?")
_OPERATORS = "+-*/"
_OPERATOR_SET = frozenset(_OPERATORS)
_MUTATION_TRIES = 12
_UNBOUNDED = frozenset({"reference_temperature", "slip_weight", "operand_weight", "operation_weight"})


@dataclass(frozen=True, slots=True)
class SimulatedPolicyParams:
    """How often and how the simulated policy errs (see ``docs/simulated_policy.md``)."""

    error_rate: float = 0.08
    """Chance of a mistake per calc at ``reference_temperature`` on a problem of difficulty 1."""
    reference_temperature: float = 0.7
    """Temperature at which ``error_rate`` applies; the chance scales linearly with temperature."""
    max_error_rate: float = 0.9
    """Cap on the per-calc mistake chance, however high the temperature."""
    difficulty_spread: float = 0.5
    """Per-problem difficulty is uniform in ``[1 - spread, 1 + spread]`` and multiplies ``error_rate``."""
    slip_weight: float = 0.4
    """Relative weight of arithmetic slips (right expression, wrong result)."""
    operand_weight: float = 0.3
    """Relative weight of wrong operands (another number of the problem or an earlier result)."""
    operation_weight: float = 0.3
    """Relative weight of wrong operations (one operator swapped)."""
    self_correct_prob: float = 0.1
    """Chance that a step using a wrong carried value recomputes from the true values instead."""
    trap_share: float = 0.1
    """Share of problems with one trap calc (chosen per problem from the seed)."""
    trap_error_prob: float = 0.95
    """Chance of getting the trap calc wrong; self-correction cannot repair a trap."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{spec.name} must be a finite number, got {value!r}")
            high = math.inf if spec.name in _UNBOUNDED else 1.0
            if not 0.0 <= value <= high:
                raise ValueError(f"{spec.name} must be in [0, {high}], got {value!r}")
        if self.reference_temperature == 0:
            raise ValueError("reference_temperature must be > 0")
        if self.slip_weight + self.operand_weight + self.operation_weight <= 0:
            raise ValueError("slip_weight, operand_weight and operation_weight cannot all be 0")


def _unit(*parts: object) -> float:
    """A number in [0, 1) from a hash of ``parts`` (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _rng(*parts: object) -> random.Random:
    return random.Random(int(_unit(*parts) * 2**64))


@dataclass(frozen=True, slots=True)
class _Task:
    problem_id: str
    plan: Plan
    truth: tuple[Fraction, ...]
    numbers: tuple[Fraction, ...]
    difficulty: float
    trap: int | None


def _chance(p: float, temperature: float, rng: random.Random) -> bool:
    """Sample an event of probability ``p``; greedy (temperature 0) takes the likelier outcome."""
    if temperature <= 0:
        return p > 0.5
    return rng.random() < p


def _safe(expr: str, values: Sequence[Fraction]) -> Fraction | None:
    try:
        return evaluate(expr, values)
    except ExprError:
        return None


class SimulatedPolicy:
    """The :class:`~prmforge.policies.base.Policy` of the built-in suites."""

    def __init__(
        self, problems: Iterable[Problem], params: SimulatedPolicyParams | None = None, seed: int = 0
    ) -> None:
        self._params = params if params is not None else SimulatedPolicyParams()
        self._seed = seed
        self._tasks: dict[str, _Task] = {}
        for problem in problems:
            if problem.question not in self._tasks:
                self._tasks[problem.question] = self._task(problem)
        blob = json.dumps({"params": dataclasses.asdict(self._params), "seed": seed}, sort_keys=True)
        self._fingerprint = f"simulated-v1:{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def params(self) -> SimulatedPolicyParams:
        return self._params

    def _task(self, problem: Problem) -> _Task:
        plan = plan_of(problem)
        pid = problem.problem_id
        literals = {Fraction(n.replace(",", "")) for n in _NUMBER_RE.findall(problem.question)}
        for calc in plan.calcs:
            literals.update(Fraction(tok) for tok in tokenize(calc.expr) if tok[0].isdigit() or tok[0] == ".")
        spread = self._params.difficulty_spread
        trap = None
        if _unit(self._seed, "trap", pid) < self._params.trap_share:
            trap = int(_unit(self._seed, "trap-calc", pid) * len(plan.calcs))
        return _Task(
            problem_id=pid,
            plan=plan,
            truth=plan.true_values(),
            numbers=tuple(sorted(literals)),
            difficulty=1.0 + spread * (2.0 * _unit(self._seed, "difficulty", pid) - 1.0),
            trap=trap,
        )

    def _by_id(self, problem_id: str) -> _Task:
        for task in self._tasks.values():
            if task.problem_id == problem_id:
                return task
        raise ValueError(f"simulated policy: unknown problem {problem_id!r}")

    def difficulty(self, problem_id: str) -> float:
        """The error-rate multiplier of a problem (for inspection)."""
        return self._by_id(problem_id).difficulty

    def trap_calc(self, problem_id: str) -> int | None:
        """The global index of the problem's trap calc, or None (for inspection)."""
        return self._by_id(problem_id).trap

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = []
        for request in requests:
            task = self._tasks.get(request.question)
            if task is None:
                head = request.question[:80] + ("..." if len(request.question) > 80 else "")
                raise ValueError(f"simulated policy: unknown problem {head!r} (no plan for this question)")
            prompt = request.prompt
            completions = tuple(self._complete(task, request, prompt, i) for i in range(request.n))
            results.append(GenerationResult(completions=completions, prompt_tokens=len(prompt.split())))
        return results

    # ------------------------------------------------------------ solving

    def _complete(self, task: _Task, request: GenerationRequest, prompt: str, index: int) -> Completion:
        rng = _rng(self._seed, request.seed, prompt, index)
        temperature = request.sampling.temperature
        plan = task.plan
        carried = self._read_prefix(task, request.prefix)
        texts = []
        for t in range(min(len(request.prefix), len(plan.steps)), len(plan.steps)):
            texts.append(self._step(task, t, carried, temperature, rng))
        if not texts:
            texts.append(answer_line(carried[-1]))
        return _truncate(STEP_SEPARATOR.join(texts), request.sampling.max_tokens)

    def _read_prefix(self, task: _Task, prefix: Sequence[str]) -> list[Fraction]:
        """Values the prefix claims for its calcs (computed from the carried values where it states none)."""
        carried: list[Fraction] = []
        for t, text in enumerate(prefix[: len(task.plan.steps)]):
            claims = parse_annotations(text)
            for j, calc in enumerate(task.plan.steps[t].calcs):
                value = None
                if j < len(claims):
                    try:
                        value = parse_value(claims[j][1])
                    except ExprError:
                        value = None
                if value is None:
                    value = _safe(calc.expr, carried)
                carried.append(task.truth[len(carried)] if value is None else value)
        return carried

    def _healed(self, task: _Task, carried: Sequence[Fraction]) -> list[Fraction]:
        """True values of the calcs so far, except that a trap keeps its carried value."""
        healed: list[Fraction] = []
        for g, calc in enumerate(task.plan.calcs[: len(carried)]):
            value = carried[g] if g == task.trap else _safe(calc.expr, healed)
            healed.append(task.truth[g] if value is None else value)
        return healed

    def _step(
        self, task: _Task, t: int, carried: list[Fraction], temperature: float, rng: random.Random
    ) -> str:
        plan, p = task.plan, self._params
        start = plan.first_calc(t)
        step = plan.steps[t]
        basis = list(carried)
        external = {r for calc in step.calcs for r in refs_of(calc.expr) if r < start}
        healed = self._healed(task, carried)
        if any(carried[r] != healed[r] for r in external) and _chance(p.self_correct_prob, temperature, rng):
            basis = healed
        error_p = min(
            p.max_error_rate, p.error_rate * task.difficulty * temperature / p.reference_temperature
        )
        filled, values = [], []
        for j, calc in enumerate(step.calcs):
            g = start + j
            # A carried value that makes the plan divide by zero: this calc falls back to the truth.
            source = basis if _safe(calc.expr, basis) is not None else task.truth[:g]
            text, value = fill(calc.expr, source), evaluate(calc.expr, source)
            if g == task.trap:
                if _chance(p.trap_error_prob, temperature, rng):
                    how = _rng(self._seed, "trap-how", task.problem_id)  # the same misconception every time
                    text, value = self._mistake(task, calc.expr, source, g, how)
            elif _chance(error_p, temperature, rng):
                text, value = self._mistake(task, calc.expr, source, g, rng)
            basis.append(value)
            carried.append(value)
            filled.append(text)
            values.append(value)
        rendered = step.render(filled, values)
        return f"{rendered}\n{answer_line(values[-1])}" if t == len(plan.steps) - 1 else rendered

    # ------------------------------------------------------------ mistakes

    def _mistake(
        self, task: _Task, expr: str, basis: Sequence[Fraction], g: int, rng: random.Random
    ) -> tuple[str, Fraction]:
        """A wrong version of calc ``g``: ``(filled expression, value)`` with a value that differs."""
        p = self._params
        tokens = [
            format_operand(basis[int(tok[2:-1])]) if tok.startswith("{") else tok for tok in tokenize(expr)
        ]
        right = evaluate("".join(tokens))
        kinds = ["slip", "operand", "operation"]
        kind = rng.choices(kinds, weights=[p.slip_weight, p.operand_weight, p.operation_weight])[0]
        found = None
        pool = [*task.numbers, *basis[:g]]
        if kind == "operand" and pool:
            found = _vary(
                tokens, _operand_positions(tokens), lambda _: format_operand(rng.choice(pool)), right, rng
            )
        elif kind == "operation":
            swap: Callable[[str], str] = lambda op: rng.choice(_OPERATORS.replace(op, ""))  # noqa: E731
            found = _vary(tokens, _operator_positions(tokens), swap, right, rng)
        return found if found is not None else ("".join(tokens), _slip(right, rng))


def _operand_positions(tokens: Sequence[str]) -> list[int]:
    """Numbers (and filled references, which may be parenthesised like ``(7/2)``)."""
    return [i for i, tok in enumerate(tokens) if tok not in _OPERATOR_SET and tok not in ("(", ")")]


def _operator_positions(tokens: Sequence[str]) -> list[int]:
    """Binary operators: an operator right after an operand or a closing parenthesis."""
    return [
        i
        for i in range(1, len(tokens))
        if tokens[i] in _OPERATOR_SET and tokens[i - 1] not in _OPERATOR_SET and tokens[i - 1] != "("
    ]


def _acceptable(value: Fraction, right: Fraction) -> bool:
    if value == right:
        return False
    if right.denominator == 1 and value.denominator != 1:
        return False
    return not (right > 0 and value <= 0)


def _vary(
    tokens: list[str],
    positions: list[int],
    replace: Callable[[str], str],
    right: Fraction,
    rng: random.Random,
) -> tuple[str, Fraction] | None:
    """Replace the token at a random position until the value changes acceptably (or give up)."""
    if not positions:
        return None
    for _ in range(_MUTATION_TRIES):
        i = rng.choice(positions)
        changed = [*tokens[:i], replace(tokens[i]), *tokens[i + 1 :]]
        text = "".join(changed)
        value = _safe(text, ())
        if value is not None and _acceptable(value, right):
            return text, value
    return None


def _slip(right: Fraction, rng: random.Random) -> Fraction:
    """A plausible wrong result: off by one, two or ten, a factor of ten, or two digits swapped."""
    options = [right + 1, right - 1, right + 2, right - 2, right + 10, right - 10, right * 10]
    digits = str(right.numerator) if right.denominator == 1 else ""
    if len(digits.lstrip("-")) >= 2:
        swapped = digits[:-2] + digits[-1] + digits[-2]
        options.append(Fraction(int(swapped)))
    if right.denominator == 1 and right.numerator % 10 == 0:
        options.append(right / 10)
    good = [v for v in options if _acceptable(v, right)]
    return rng.choice(good) if good else right + 1


def _truncate(text: str, max_tokens: int) -> Completion:
    """Cut ``text`` after ``max_tokens`` whitespace-separated tokens (``finish_reason="length"``)."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    if len(spans) <= max_tokens:
        return Completion(text=text, tokens=len(spans))
    cut = text[: spans[max_tokens - 1][1]] if max_tokens > 0 else ""
    return Completion(text=cut, tokens=max_tokens, finish_reason="length")
