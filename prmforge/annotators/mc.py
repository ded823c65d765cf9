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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prmforge.annotators.grading import AnswerMemo, OutcomeGrader
from prmforge.annotators.mc_math import first_error_from_values, hard_labels, mc_value
from prmforge.annotators.rollout_calls import Estimate, PrefixEstimator
from prmforge.policies.base import GenerationRequest, Policy
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
        self._estimator: PrefixEstimator[_Tally] = PrefixEstimator(
            policy,
            AnswerMemo(grader),
            n=n,
            per_call=requests_per_call,
            request_of=self._request,
            gold_of=lambda tally: tally.problem.gold,
            record=self._record,
            thread_name="mc-grading",
        )
        self._policy = policy
        self._grader = grader
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
        """Roll out every ``(rollout, step)`` in ``jobs`` and record the values: calls of
        ``requests_per_call`` overlapped with grading (see :mod:`prmforge.annotators.rollout_calls`)."""
        self._estimator.run(jobs)

    def _request(self, tally: _Tally, step: int) -> GenerationRequest:
        return GenerationRequest(
            problem=tally.problem,
            prefix=tally.rollout.steps[: step + 1],
            n=self._n,
            sampling=self._sampling,
            seed=step_seed(self._seed, tally.rollout.rollout_id, step),
        )

    def _record(self, tally: _Tally, step: int, estimate: Estimate) -> None:
        tally.values[step] = mc_value(estimate.correct, self._n)
        tally.correct_counts[step] = estimate.correct
        tally.ungraded += estimate.ungraded
        tally.steps_rolled += 1
        tally.completions += estimate.completions
        tally.tokens += estimate.tokens
        tally.prompt_tokens += estimate.prompt_tokens
        tally.cached += estimate.completions if estimate.cached else 0
        tally.seconds += estimate.seconds

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
