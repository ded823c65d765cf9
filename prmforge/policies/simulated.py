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

Every completion is deterministic: its random stream is
:func:`prmforge.schemas.seeds.rng` of the policy seed, the request seed, the
rendered prompt and the completion index (per-problem draws likewise use the
project's one seed helper, each under its own label).
See ``docs/simulated_policy.md`` for the parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from prmforge.policies.base import STEP_SEPARATOR, Completion, GenerationRequest, GenerationResult
from prmforge.policies.exact import Num, Values, normal, parse_claim
from prmforge.policies.mistakes import make_mistake
from prmforge.policies.simulated_task import Overlay, PreparedCalc, Task, build_task
from prmforge.schemas import seeds
from prmforge.schemas.records import Problem
from prmforge.suites.plan import ExprError, PlanStep, answer_line, parse_annotations

__all__ = ["SimulatedPolicy", "SimulatedPolicyParams"]

_UNBOUNDED = frozenset({"reference_temperature", "slip_weight", "operand_weight", "operation_weight"})
# Rendering reads values' numerator, denominator and sign only, which ints provide as Fractions do.
_render_step = cast(Callable[[PlanStep, Sequence[str], Sequence[Num]], str], PlanStep.render)
_answer_line = cast(Callable[[Num], str], answer_line)


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


# Per-problem state is memoised by problem id, the least recently used dropped beyond this many.
TASK_CACHE_SIZE = 512


def _chance(p: float, temperature: float, rng: random.Random) -> bool:
    """Sample an event of probability ``p``; greedy (temperature 0) takes the likelier outcome."""
    if temperature <= 0:
        return p > 0.5
    return rng.random() < p


class SimulatedPolicy:
    """The :class:`~prmforge.policies.base.Policy` of the built-in suites: an engine built from its
    parameters alone, that works from each request's ``problem.meta["plan"]``.

    ``evaluations`` counts the calc expressions evaluated so far (for tests and profiling).
    """

    def __init__(self, params: SimulatedPolicyParams | None = None, seed: int = 0) -> None:
        self._params = params if params is not None else SimulatedPolicyParams()
        self._seed = seed
        self._tasks: OrderedDict[str, Task] = OrderedDict()
        p = self._params
        self._weights = (p.slip_weight, p.operand_weight, p.operation_weight)
        self.evaluations = 0
        blob = json.dumps({"params": dataclasses.asdict(self._params), "seed": seed}, sort_keys=True)
        self._fingerprint = f"simulated-v1:{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def params(self) -> SimulatedPolicyParams:
        return self._params

    @property
    def memoised_problems(self) -> int:
        """How many problems' derived state the policy holds (at most ``TASK_CACHE_SIZE``)."""
        return len(self._tasks)

    def __reduce__(self) -> tuple[type[SimulatedPolicy], tuple[SimulatedPolicyParams, int]]:
        return SimulatedPolicy, (self._params, self._seed)  # the memo (closures) is rebuilt on use

    def difficulty(self, problem: Problem) -> float:
        """The error-rate multiplier of a problem (for inspection)."""
        return self._task(problem).difficulty

    def trap_calc(self, problem: Problem) -> int | None:
        """The global index of the problem's trap calc, or None (for inspection)."""
        return self._task(problem).trap

    def _task(self, problem: Problem) -> Task:
        """The memoised state of ``problem``; ValueError naming it when the policy cannot serve it."""
        pid = problem.problem_id
        task = self._tasks.get(pid)
        if task is not None and (task.problem is problem or task.problem == problem):
            self._tasks.move_to_end(pid)
            return task
        p = self._params
        task = build_task(
            problem, seed=self._seed, trap_share=p.trap_share, difficulty_spread=p.difficulty_spread
        )
        self._tasks[pid] = task
        self._tasks.move_to_end(pid)
        while len(self._tasks) > TASK_CACHE_SIZE:
            self._tasks.popitem(last=False)
        return task

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = []
        for request in requests:
            task = self._task(request.problem)
            prompt = request.prompt
            carried = self._read_prefix(task, request.prefix)
            # Completion i's stream is rng("simulated-completion", seed, request seed, prompt, i): the
            # stem (with the long prompt) is hashed once per request.
            stem = seeds.SeedStem("simulated-completion", self._seed, request.seed, prompt)
            # Past a trap the prefix states, the healed values are the same for every completion: share them.
            shared: list[Num] | None = [] if task.trap is not None and task.trap < len(carried) else None
            completions = []
            for index in range(request.n):
                healed = shared if shared is not None else []
                completions.append(self._complete(task, request, list(carried), healed, stem.rng(index)))
            results.append(
                GenerationResult(completions=tuple(completions), prompt_tokens=len(prompt.split()))
            )
        return results

    # ------------------------------------------------------------ solving

    def _value(self, calc: PreparedCalc, values: Values) -> Num | None:
        """The calc's value over ``values``, None where it divides by zero (one evaluation)."""
        self.evaluations += 1
        try:
            return normal(calc.run(values))
        except ZeroDivisionError:
            return None

    def _read_prefix(self, task: Task, prefix: Sequence[str]) -> list[Num]:
        """Values the prefix claims for its calcs (computed from the carried values where it states none)."""
        carried: list[Num] = []
        starts = task.starts
        for t, text in enumerate(prefix[: len(task.plan.steps)]):
            claims = parse_annotations(text) if "<<" in text else []
            for j, g in enumerate(range(starts[t], starts[t + 1])):
                value = None
                if j < len(claims):
                    try:
                        value = parse_claim(claims[j][1])
                    except ExprError:
                        value = None
                if value is None:
                    value = self._value(task.calcs[g], carried)
                carried.append(task.truth[g] if value is None else value)
        return carried

    def _heal(self, task: Task, healed: list[Num], carried: Sequence[Num], stop: int) -> None:
        """Extend ``healed`` to (at least) ``stop`` calcs: the true values, except that a trap keeps its
        carried value and the calcs after it are recomputed from the healed values.

        They depend on nothing else, so a list is extended as far as any step needs and never changes.
        """
        trap = task.trap
        if trap is None or stop <= trap:
            healed.extend(task.truth[len(healed) : stop])
            return
        if len(healed) < trap:
            healed.extend(task.truth[len(healed) : trap])
        if len(healed) == trap:
            healed.append(carried[trap])
        for g in range(len(healed), stop):
            value = self._value(task.calcs[g], healed)
            healed.append(task.truth[g] if value is None else value)

    def _complete(
        self,
        task: Task,
        request: GenerationRequest,
        carried: list[Num],
        healed: list[Num],
        rng: random.Random,
    ) -> Completion:
        p, temperature = self._params, request.sampling.temperature
        error_p = min(
            p.max_error_rate, p.error_rate * task.difficulty * temperature / p.reference_temperature
        )
        steps = len(task.plan.steps)
        texts = [
            self._step(task, t, carried, healed, temperature, error_p, rng)
            for t in range(min(len(request.prefix), steps), steps)
        ]
        if not texts:
            texts.append(_answer_line(carried[-1]))
        return _truncate(STEP_SEPARATOR.join(texts), request.sampling.max_tokens)

    def _step(
        self,
        task: Task,
        t: int,
        carried: list[Num],
        healed: list[Num],
        temperature: float,
        error_p: float,
        rng: random.Random,
    ) -> str:
        """Write step ``t`` after the calcs in ``carried``, appending its values to ``carried``.

        ``healed`` holds the healed values (see :meth:`_heal`) computed so far.
        """
        p = self._params
        start, stop = task.starts[t], task.starts[t + 1]
        trap = task.trap
        reference: Sequence[Num] = task.truth  # before any trap, the healed values are the true ones
        corrected = False
        if task.external[t]:
            if trap is not None and trap < start:
                self._heal(task, healed, carried, start)
                reference = healed
            diverged = any(carried[r] != reference[r] for r in task.external[t])
            corrected = diverged and _chance(p.self_correct_prob, temperature, rng)
        filled: list[str] = []
        values: list[Num] = []
        # A self-correcting step recomputes from the healed values (and its own results).
        basis: Values = Overlay(reference, start, values) if corrected else carried
        for g in range(start, stop):
            calc = task.calcs[g]
            source: Values = basis
            value = self._value(calc, basis)
            if value is None:  # a carried value makes the plan divide by zero: this calc uses the truth
                source, value = task.truth, task.truth[g]
            if g == trap:
                wrong = _chance(p.trap_error_prob, temperature, rng)
                # A trap is the same misconception every time.
                how = seeds.rng("simulated-trap-how", self._seed, task.problem.problem_id) if wrong else rng
            else:
                wrong, how = _chance(error_p, temperature, rng), rng
            if wrong:
                text, value, evaluations = make_mistake(
                    calc.tokens, source, value, g, task.numbers, self._weights, how
                )
                self.evaluations += evaluations
            else:
                text = calc.fill(source)
            carried.append(value)
            filled.append(text)
            values.append(value)
        rendered = _render_step(task.plan.steps[t], filled, values)
        return f"{rendered}\n{_answer_line(values[-1])}" if t == len(task.plan.steps) - 1 else rendered


def _truncate(text: str, max_tokens: int) -> Completion:
    """Cut ``text`` after ``max_tokens`` whitespace-separated tokens (``finish_reason="length"``)."""
    tokens = len(text.split())  # the same tokens as the regex ``\S+`` (one definition of whitespace)
    if tokens <= max_tokens:
        return Completion(text=text, tokens=tokens)
    spans = [m.span() for m in itertools.islice(re.finditer(r"\S+", text), max_tokens)]
    cut = text[: spans[max_tokens - 1][1]] if max_tokens > 0 else ""
    return Completion(text=cut, tokens=max_tokens, finish_reason="length")
