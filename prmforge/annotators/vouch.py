"""Vouching for the steps before a precise checker's first failure (a cascade step, issue #11).

An exact checker (the equation checker, Z3) that fails step k of a rollout is right about step k,
but says nothing of a wrong operand or operation in steps 0..k-1: trusting its first failure places
the error late whenever an earlier step was wrong in a way it cannot see. This annotator checks that
prefix cheaply, only on the rollouts where such a source (``of``) located an error at k > 0:

1. with ``grounded``, the prefix must be number-grounded
   (:func:`~prmforge.verifiers.grounding.first_ungrounded`, strict): a step computing with a number
   neither the question nor an earlier result gives is a silent correction of an earlier error, so
   the prefix is not vouched for (abstain, no completions);
2. ``n`` completions continue the rollout after step k-1; when one of them reaches the gold answer
   the state after step k-1 is sound (a wrong state does not reach the gold answer unless the policy
   corrects it silently, which 1. looks for), so steps 0..k-1 are good and step k, the checker's, is
   the first error. When none does, an earlier error is not ruled out: abstain (with the cost paid).

Labels of a vouched rollout: ``hard`` True before k, False from k (prefix convention), ``values``
the estimate at step k-1 and None elsewhere, ``first_error`` k. Every other rollout is an abstention
(``meta.abstained`` says why), so fusion counts only what was checked: with ``fuse.vouch: [scan,
vouch]`` an equations-only error after step 0 is trained when this source (or SCAN) vouched for it.

Worked example (n = 4, the equations fail step 3 of a rollout whose steps 0..2 are grounded)::

    completions after step 2 reaching the gold answer: 1 of 4 -> hard (T, T, T, F, F), first_error 3
    0 of 4 -> abstained ("... an error before step 3 is not ruled out"), cost 4 completions

The annotator reads ``problem.question``, ``problem.gold`` and ``rollout.steps``; never ``truth``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from prmforge.annotators.grading import AnswerMemo, OutcomeGrader
from prmforge.annotators.mc import step_seed
from prmforge.annotators.mc_math import mc_value
from prmforge.annotators.rollout_calls import Estimate, PrefixEstimator
from prmforge.policies.base import GenerationRequest, Policy
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels

__all__ = ["VouchAnnotator", "checked_error"]

Grounding = Callable[[Problem, Rollout, int], int | None]
"""The first ungrounded step among steps 0..k-1 of a rollout (None: all grounded)."""


def checked_error(labels: Sequence[StepLabels]) -> int | None:
    """The earliest error any of ``labels`` located (first_error >= 0), or None.

    >>> from prmforge.schemas.records import Cost
    >>> a = StepLabels("eq", "r", (1.0, 0.0), (True, False), 1, Cost())
    >>> b = StepLabels("z3", "r", (None, None), (None, None), None, Cost())
    >>> checked_error([a, b]), checked_error([b])
    (1, None)
    """
    located = [s.first_error for s in labels if s.first_error is not None and s.first_error >= 0]
    return min(located, default=None)


@dataclass(eq=False)
class _Check:
    rollout: Rollout
    problem: Problem
    error: int
    estimate: Estimate | None = None


class VouchAnnotator:
    """Vouches for the prefix before the error that the sources it reads located (see the module)."""

    def __init__(
        self,
        policy: Policy,
        grader: OutcomeGrader,
        *,
        of: Sequence[str],
        n: int = 4,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        grounding: Grounding | None = None,
        name: str = "vouch",
        requests_per_call: int = 256,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not of:
            raise ValueError("of: name at least one source whose located errors to check")
        self._of, self._n, self._seed, self._name = tuple(of), n, seed, name
        self._sampling = sampling if sampling is not None else SamplingParams()
        self._grounding = grounding
        self._estimator: PrefixEstimator[_Check] = PrefixEstimator(
            policy,
            AnswerMemo(grader),
            n=n,
            per_call=requests_per_call,
            request_of=self._request,
            gold_of=lambda check: check.problem.gold,
            record=self._record,
            thread_name="vouch-grading",
        )

    @property
    def name(self) -> str:
        return self._name

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]:
        """Without the checked sources' labels there is nothing to vouch for: every rollout abstains."""
        return self.annotate_given(problems, rollouts, {})

    def annotate_given(
        self,
        problems: Mapping[str, Problem],
        rollouts: Sequence[Rollout],
        earlier: Mapping[str, Mapping[str, StepLabels]],
    ) -> list[StepLabels]:
        """``earlier[source][rollout_id]``: the labels of the sources named in ``of``."""
        out: dict[str, StepLabels] = {}
        checks: list[_Check] = []
        for rollout in rollouts:
            given = [
                earlier[s][rollout.rollout_id] for s in self._of if rollout.rollout_id in earlier.get(s, {})
            ]
            error = checked_error(given)
            problem = problems[rollout.problem_id]
            reason = self._why_not(problem, rollout, error)
            if reason is not None or error is None:
                out[rollout.rollout_id] = self._abstain(rollout, reason or "", Cost())
            else:
                checks.append(_Check(rollout, problem, error))
        self._estimator.run([(c, c.error - 1) for c in checks])
        for check in checks:
            out[check.rollout.rollout_id] = self._finish(check)
        return [out[r.rollout_id] for r in rollouts]

    def _why_not(self, problem: Problem, rollout: Rollout, error: int | None) -> str | None:
        """Why the prefix before ``error`` is not checked with completions (None: it is)."""
        named = ", ".join(self._of)
        if error is None:
            return f"{named} located no error to vouch for"
        if error == 0:
            return f"{named} located the error at step 0: no step before it to vouch for"
        step = self._grounding(problem, rollout, error) if self._grounding is not None else None
        if step is not None:
            return (
                f"step {step} computes with a number neither the question nor an earlier result gives: "
                f"an error before step {error} may be hidden"
            )
        return None

    def _request(self, check: _Check, step: int) -> GenerationRequest:
        return GenerationRequest(
            problem=check.problem,
            prefix=check.rollout.steps[: step + 1],
            n=self._n,
            sampling=self._sampling,
            seed=step_seed(self._seed, check.rollout.rollout_id, step),
        )

    @staticmethod
    def _record(check: _Check, step: int, estimate: Estimate) -> None:
        check.estimate = estimate

    def _finish(self, check: _Check) -> StepLabels:
        estimate = check.estimate
        assert estimate is not None
        cost = Cost(
            completions=estimate.completions,
            generated_tokens=estimate.tokens,
            seconds=estimate.seconds,
            cached_completions=estimate.completions if estimate.cached else 0,
            prompt_tokens=estimate.prompt_tokens,
        )
        k = check.error
        if estimate.correct == 0:
            reason = (
                f"no completion after step {k - 1} reached the answer ({estimate.correct} of {self._n}): "
                f"an error before step {k} is not ruled out"
            )
            return self._abstain(check.rollout, reason, cost, correct=0)
        steps = len(check.rollout.steps)
        values: list[float | None] = [None] * steps
        values[k - 1] = mc_value(estimate.correct, self._n)
        return StepLabels(
            source=self._name,
            rollout_id=check.rollout.rollout_id,
            values=tuple(values),
            hard=tuple(t < k for t in range(steps)),
            first_error=k,
            cost=cost,
            meta={"of": list(self._of), "n": self._n, "checked": k, "correct": estimate.correct},
        )

    def _abstain(self, rollout: Rollout, reason: str, cost: Cost, correct: int | None = None) -> StepLabels:
        steps = len(rollout.steps)
        meta: dict[str, object] = {"of": list(self._of), "n": self._n, "abstained": reason}
        if correct is not None:
            meta["correct"] = correct
        return StepLabels(
            source=self._name,
            rollout_id=rollout.rollout_id,
            values=(None,) * steps,
            hard=(None,) * steps,
            first_error=None,
            cost=cost,
            meta=meta,
        )
