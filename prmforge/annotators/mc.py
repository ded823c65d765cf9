"""Monte Carlo step labels (Math-Shepherd, METHODS.md §1 and §2(a)), with SCAN's sequential early stop.

For every rollout and every step t, the policy samples ``n`` completions after
the prefix ``steps[: t + 1]``; the step's value is the share of completions
whose final answer the grader accepts. A completion is graded on
``"\\n\\n".join(prefix) + "\\n\\n" + completion.text``, so a completion that is
empty because the prefix already states the answer still grades.

Worked example (n = 4, three steps, last step from the outcome, outcome False)::

    correct completions after steps 0, 1:  4, 1   ->  values (1.0, 0.25, 0.0)
    hard (True, True, False), first_error 2, cost.completions 8

The annotator reads ``problem.question``, ``problem.gold``, ``rollout.steps``
and ``rollout.outcome``; it never reads ``rollout.truth``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from prmforge.annotators.grading import AnswerMemo, OutcomeGrader
from prmforge.annotators.mc_math import first_error_from_values, hard_labels, mc_value
from prmforge.policies.base import STEP_SEPARATOR, GenerationRequest, GenerationResult, Policy
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels
from prmforge.schemas.seeds import derive_seed

__all__ = ["MonteCarloAnnotator", "step_seed"]

_SEED_BITS = 31  # fits every backend's seed type (signed 32-bit included)


def step_seed(seed: int, rollout_id: str, step: int) -> int:
    """The seed of the completions requested after step ``step`` of rollout ``rollout_id``.

    :func:`~prmforge.schemas.seeds.derive_seed` of the three (label ``"mc-step"``), 31 bits:
    stable across processes and Python versions (unlike ``hash``), distinct per rollout and step.
    """
    return derive_seed("mc-step", seed, rollout_id, step, bits=_SEED_BITS)


@dataclass(eq=False)
class _Tally:
    """The running state of one rollout's annotation (hashed by identity)."""

    rollout: Rollout
    problem: Problem
    values: list[float | None]
    correct_counts: list[int | None]
    completions: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    cached: int = 0
    ungraded: int = 0
    seconds: float = 0.0
    steps_rolled: int = 0
    active: bool = True


class MonteCarloAnnotator:
    """Labels steps by the share of ``n`` sampled completions that reach the gold answer.

    Args:
        policy: the completer; requests go to ``policy.generate`` in batches (wrap
            it in :class:`~prmforge.policies.cache.CachedPolicy` to resume for free).
        grader: judges a completed solution's final answer against ``problem.gold``;
            an ungradeable completion (``None``) counts as not correct.
        n: completions per step (Math-Shepherd uses 8).
        sampling: sampling parameters of every request.
        seed: base seed; each request's seed is :func:`step_seed` of it.
        early_stop: SCAN's sequential mode. Steps are rolled out in rounds (round t
            sends step t of every still-active rollout in one call); a rollout stops
            at its first step valued 0 and its later steps get value and hard ``None``.
            Without it, every request of the batch goes out in one call.
        last_step_from_outcome: the last step's value is the rollout's own outcome
            (1.0 or 0.0) with no completions, as distilabel does; a rollout whose
            outcome is ``None`` has its last step rolled out like the others.
        name: the ``source`` of the labels (give two MC annotators distinct names).

    Output per rollout: ``values`` (MC estimates), ``hard`` (value > 0),
    ``first_error`` (:func:`~prmforge.annotators.mc_math.first_error_from_values`),
    ``cost`` and ``meta = {"n", "early_stop", "last_step_from_outcome",
    "steps_rolled", "correct_counts", "ungraded"}``; ``correct_counts[t]`` is
    ``None`` for a step not rolled out.

    ``cost.completions`` is ``n`` times the steps rolled out, ``generated_tokens``
    the completions' tokens (cached ones included), ``cached_completions`` those
    served from a cache. ``seconds`` is the wall time of each ``generate`` call,
    apportioned to the rollouts in it by their share of the call's generated
    tokens (by completion count when the call generated no tokens).
    """

    def __init__(
        self,
        policy: Policy,
        grader: OutcomeGrader,
        *,
        n: int = 8,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        early_stop: bool = False,
        last_step_from_outcome: bool = True,
        name: str = "mc",
        requests_per_call: int = 256,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if requests_per_call < 1:
            raise ValueError(f"requests_per_call must be >= 1, got {requests_per_call}")
        self._per_call = requests_per_call
        self._policy = policy
        self._grader = grader
        self._memo = AnswerMemo(grader)
        self._n = n
        self._sampling = sampling if sampling is not None else SamplingParams()
        self._seed = seed
        self._early_stop = early_stop
        self._last_step_from_outcome = last_step_from_outcome
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]:
        tallies = [self._start(problems, r) for r in rollouts]
        if self._early_stop:
            depth = max((len(t.rollout.steps) for t in tallies), default=0)
            for step in range(depth):
                due = [t for t in tallies if t.active and step < len(t.rollout.steps)]
                self._run([(t, step) for t in due if self._needs_rollout(t, step)])
                for tally in due:
                    if not self._needs_rollout(tally, step):
                        self._set_from_outcome(tally, step)
                    if tally.values[step] == 0 or step == len(tally.rollout.steps) - 1:
                        tally.active = False
        else:
            jobs: list[tuple[_Tally, int]] = []
            for tally in tallies:
                for step in range(len(tally.rollout.steps)):
                    if self._needs_rollout(tally, step):
                        jobs.append((tally, step))
                    else:
                        self._set_from_outcome(tally, step)
            self._run(jobs)
        return [self._finish(t) for t in tallies]

    def _start(self, problems: Mapping[str, Problem], rollout: Rollout) -> _Tally:
        try:
            problem = problems[rollout.problem_id]
        except KeyError:
            missing = f"problem {rollout.problem_id!r} is not among the problems given"
            raise ValueError(f"rollout {rollout.rollout_id!r}: {missing}") from None
        steps = len(rollout.steps)
        return _Tally(rollout=rollout, problem=problem, values=[None] * steps, correct_counts=[None] * steps)

    def _needs_rollout(self, tally: _Tally, step: int) -> bool:
        """False only for a last step whose value the rollout's known outcome gives."""
        is_last = step == len(tally.rollout.steps) - 1
        return not (self._last_step_from_outcome and is_last and tally.rollout.outcome is not None)

    @staticmethod
    def _set_from_outcome(tally: _Tally, step: int) -> None:
        tally.values[step] = 1.0 if tally.rollout.outcome else 0.0

    def _run(self, jobs: Sequence[tuple[_Tally, int]]) -> None:
        """Roll out every ``(rollout, step)`` in ``jobs`` and record the values.

        The requests go to ``generate`` in calls of ``requests_per_call`` (every request of the shard
        in one call when it has fewer); while the engine generates one call's completions, the
        previous call's are graded on a second thread (the engine never waits on grading, and a GPU
        engine releases the GIL while it computes). Each request's result depends only on its own
        seed, so the split changes no label.
        """
        if not jobs:
            return
        calls = [jobs[i : i + self._per_call] for i in range(0, len(jobs), self._per_call)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-grading") as grading:
            pending: Future[None] | None = None
            for call in calls:
                requests = [
                    GenerationRequest(
                        problem=tally.problem,
                        prefix=tally.rollout.steps[: step + 1],
                        n=self._n,
                        sampling=self._sampling,
                        seed=step_seed(self._seed, tally.rollout.rollout_id, step),
                    )
                    for tally, step in call
                ]
                started = time.perf_counter()
                results = self._policy.generate(requests)
                elapsed = time.perf_counter() - started
                if len(results) != len(requests):
                    raise ValueError(f"policy returned {len(results)} results for {len(requests)} requests")
                if pending is not None:
                    pending.result()  # the previous call's grading (and its errors) before the next
                pending = grading.submit(self._record, call, requests, results, elapsed)
            if pending is not None:
                pending.result()

    def _record(
        self,
        jobs: Sequence[tuple[_Tally, int]],
        requests: Sequence[GenerationRequest],
        results: Sequence[GenerationResult],
        elapsed: float,
    ) -> None:
        """Grade one call's completions and record each step's value, tokens and share of the time."""
        call_tokens: dict[_Tally, int] = {}
        call_completions: dict[_Tally, int] = {}
        for (tally, step), request, result in zip(jobs, requests, results, strict=True):
            if len(result.completions) != self._n:
                raise ValueError(
                    f"rollout {tally.rollout.rollout_id!r} step {step}: policy returned "
                    f"{len(result.completions)} completions, {self._n} requested"
                )
            prefix_text = STEP_SEPARATOR.join(request.prefix) + STEP_SEPARATOR
            correct = 0
            for completion in result.completions:
                verdict = self._memo.grade(prefix_text, completion.text, tally.problem.gold)
                correct += verdict is True
                tally.ungraded += verdict is None
            tokens = sum(c.tokens for c in result.completions)
            tally.values[step] = mc_value(correct, self._n)
            tally.correct_counts[step] = correct
            tally.steps_rolled += 1
            tally.completions += self._n
            tally.tokens += tokens
            tally.prompt_tokens += result.prompt_tokens
            tally.cached += self._n if result.cached else 0
            call_tokens[tally] = call_tokens.get(tally, 0) + tokens
            call_completions[tally] = call_completions.get(tally, 0) + self._n
        shares = call_tokens if sum(call_tokens.values()) > 0 else call_completions
        total = sum(shares.values())
        for tally, share in shares.items():
            tally.seconds += elapsed * share / total

    def _finish(self, tally: _Tally) -> StepLabels:
        values = tuple(tally.values)
        return StepLabels(
            source=self._name,
            rollout_id=tally.rollout.rollout_id,
            values=values,
            hard=hard_labels(values),
            first_error=first_error_from_values(values),
            cost=Cost(
                completions=tally.completions,
                generated_tokens=tally.tokens,
                seconds=tally.seconds,
                cached_completions=tally.cached,
                prompt_tokens=tally.prompt_tokens,
            ),
            meta={
                "n": self._n,
                "early_stop": self._early_stop,
                "last_step_from_outcome": self._last_step_from_outcome,
                "steps_rolled": tally.steps_rolled,
                "correct_counts": list(tally.correct_counts),
                "ungraded": tally.ungraded,
            },
        )
