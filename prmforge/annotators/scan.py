"""SCAN's self-denoising Monte Carlo annotation (METHODS.md §2(e); ``yyDing1/SCAN-PRM``).

The label rules are :mod:`prmforge.annotators.scan_math`; this module runs them on a batch:

1. **Self-confidence.** The policy's own samples of a question are the rollouts generated for it
   (all rollouts of one problem arrive in the same ``annotate`` call), so ``SC(q)`` is the share of
   q's rollouts in the batch whose outcome is correct (an ungraded one counts as incorrect, as
   SCAN divides by every sample drawn).
2. **Confidence filter.** A question with ``SC < confidence`` (0.75) is noisy: the completer cannot
   solve it, so every prefix would score 0 (under-estimated errors). Its rollouts abstain
   (``meta["abstained"]`` names the SC and the threshold), at no cost.
3. **Correct rollouts** are positives for free: every step 1.0 / True, ``first_error`` -1.
4. **Incorrect rollouts** of two or more steps get ``n`` completions per step with the sequential
   early stop: rounds, round t sending step t of every still-active incorrect rollout in one
   ``policy.generate`` call, a rollout stopping at its first step whose estimate ``c_t`` is 0. The
   last step's estimate is the outcome's 0.0 without completions (``last_step_from_outcome``, as
   Monte Carlo does; SCAN rolls it out, and a completion after a whole wrong solution almost always
   restates its answer). :func:`~prmforge.annotators.scan_math.scan_labels` then gives the soft
   scores (``min(1, c_t / SC)`` within ``distance`` steps before ``t*``, ``1[c_t > 0]`` elsewhere) and
   ``t*``; ``hard`` is :func:`~prmforge.schemas.records.prefix_labels` of ``t*``; ``values`` after
   ``t*`` are None (SCAN trains no score there). A one-step incorrect rollout is ``(0.0,)`` free.
5. **Suspected correct rollouts** (``suspect``, off by default; beyond SCAN): a correct outcome can hide
   an error the policy silently corrected later. ``suspect(problem, rollout)`` names the step where
   such a rollout shows it (the cascade's cheap check: :func:`~prmforge.verifiers.grounding.first_ungrounded`,
   a step computing with a number nothing before it derived), and the rollout is rolled out as an
   incorrect one is, steps 0..that step (never its last: the outcome's 1.0), with the same early stop.
   A fall in value there is its error (``meta["hidden_error"]``), with soft labels as above; none
   keeps it correct. ``meta["suspect"]`` holds the step. With ``suspected="abstain"`` it abstains
   instead, at no cost (its error could not be located reliably with few completions).
6. **Abstentions** (labels None, ``first_error`` None, ``meta["abstained"]``): a filtered question,
   an ungraded rollout (outcome None), one with no steps, and one that
   :func:`~prmforge.annotators.scan_math.scan_labels` drops (no estimate 0: only possible when the
   last step is rolled out).

Worked example (n = 4, distance 2; question q has four rollouts, three correct, so SC = 0.75 >= 0.75)::

    three correct rollouts            -> values (1.0, ...), first_error -1, no completions
    the incorrect one, five steps: correct completions after steps 0, 1, 2: 4, 3, 0 -> stop
        c = (1.0, 0.75, 0.0, None, None); t* = 2
        scores: step 0: min(1, 1.0/0.75) = 1.0; step 1: min(1, 0.75/0.75) = 1.0; step 2: 0.0
        values (1.0, 1.0, 0.0, None, None), hard (True, True, False, False, False), cost 12 completions
    a question with rollouts right, wrong, wrong, right: SC = 0.5 < 0.75 -> all four abstain, cost 0

Costs and calls are Monte Carlo's (:class:`~prmforge.annotators.mc.MonteCarloAnnotator`): calls of
``requests_per_call`` requests, graded through :class:`~prmforge.annotators.grading.AnswerMemo` on a
second thread while the engine generates the next call, each call's wall time apportioned to its
rollouts by generated tokens. Request seeds are :func:`scan_step_seed`. The annotator reads
``problem.gold``, ``rollout.steps`` and ``rollout.outcome``; it never reads ``rollout.truth``.

SC is computed over the rollouts passed in: in a cascade, where the rollouts an earlier source decided
are left out, it is computed over the rest (biased upward when those were mostly incorrect ones).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prmforge.annotators.grading import AnswerMemo, OutcomeGrader
from prmforge.annotators.mc_math import mc_value
from prmforge.annotators.rollout_calls import Estimate, PrefixEstimator
from prmforge.annotators.scan_math import (
    CONFIDENCE_THRESHOLD,
    DISTANCE,
    confidence_filter,
    error_step,
    needs_step_rollouts,
    next_rollout_step,
    scan_labels,
    self_confidence,
)
from prmforge.policies.base import GenerationRequest, Policy
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels, prefix_labels
from prmforge.schemas.seeds import derive_seed

__all__ = ["ScanAnnotator", "Suspect", "scan_step_seed"]

Suspect = Callable[[Problem, Rollout], int | None]
"""Where a correct rollout shows a hidden error (the last step to roll out), or None: not suspected."""

_SEED_BITS = 31  # as Monte Carlo's request seeds: fits every backend's seed type


def scan_step_seed(seed: int, rollout_id: str, step: int) -> int:
    """The seed of SCAN's completions after step ``step`` of rollout ``rollout_id``.

    :func:`~prmforge.schemas.seeds.derive_seed` of the three (label ``"scan-step"``), 31 bits, as
    :func:`~prmforge.annotators.mc.step_seed` (label ``"mc-step"``): SCAN's estimates are a stream
    of their own, independent of a Monte Carlo source's on the same rollouts.
    """
    return derive_seed("scan-step", seed, rollout_id, step, bits=_SEED_BITS)


@dataclass(eq=False)
class _Case:
    """One rollout's running state (hashed by identity); ``rolled`` holds the estimates of steps 0..k-1."""

    rollout: Rollout
    problem: Problem
    sc: float
    suspect: int | None = None  # a correct rollout rolled out through this step (None: not suspected)
    rolled: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    confirmed: list[int] = field(default_factory=list)  # steps estimated twice (``confirm``)
    completions: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    cached: int = 0
    ungraded: int = 0
    seconds: float = 0.0


class ScanAnnotator:
    """SCAN: confidence-filtered, early-stopped Monte Carlo on incorrect rollouts, with soft labels.

    Args:
        policy: the completer (the policy that sampled the rollouts, so SC is its self-confidence).
        grader: judges a completed solution's final answer; an ungradeable completion is not correct.
        n: completions per step (SCAN: 8).
        confidence: the filter's threshold on SC (SCAN: 0.75), in (0, 1].
        distance: the soft window's width d before the predicted error (SCAN: 2).
        sampling: sampling parameters of every request.
        seed: base seed; each request's seed is :func:`scan_step_seed` of it.
        last_step_from_outcome: an incorrect rollout's last step is 0.0 from its outcome, without
            completions (False: it is rolled out as SCAN does).
        name: the ``source`` of the labels.
        requests_per_call: most requests per ``generate`` call.
        ratio: the error rule (:func:`~prmforge.annotators.scan_math.error_step`): 0 is SCAN's
            (the first step valued 0); in (0, 1] GenPRM's relative progress, the first step valued
            below ``ratio`` x the step before it (SC before step 0). The early stop follows it.
        suspect: finds a correct rollout's hidden error (see the module's step 5); None: SCAN's rule,
            every correct rollout is all positive for free.
        suspected: what a suspected correct rollout gets: ``"rollout"`` (located by completions) or
            ``"abstain"`` (no labels, no cost).
        confirm: (beyond SCAN; needs ``ratio`` > 0) a step the ratio rule flags while its count is
            above 0 is estimated again with ``n`` more completions (seed label ``"scan-confirm"``);
            the pooled estimate over 2n decides, and the search goes on when it is no error. A
            count of 0 is not re-estimated. ``meta["confirmed"]`` lists those steps.

    ``meta`` of every rollout: ``sc``, ``confidence``, ``distance``, ``ratio``, ``n``,
    ``last_step_from_outcome``, ``steps_rolled``, ``correct_counts`` (None for a step not rolled
    out), ``mc_values`` (the raw estimates, the last step's from the outcome included; None where
    unknown), ``ungraded``; and ``abstained`` (the reason) when the rollout gets no labels.
    """

    def __init__(
        self,
        policy: Policy,
        grader: OutcomeGrader,
        *,
        n: int = 8,
        confidence: float = CONFIDENCE_THRESHOLD,
        distance: int = DISTANCE,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        last_step_from_outcome: bool = True,
        name: str = "scan",
        requests_per_call: int = 256,
        ratio: float = 0.0,
        suspect: Suspect | None = None,
        suspected: Literal["rollout", "abstain"] = "rollout",
        confirm: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 0.0 < confidence <= 1.0:
            raise ValueError(f"confidence must be in (0, 1], got {confidence}")
        if distance < 0:
            raise ValueError(f"distance must be >= 0, got {distance}")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio}")
        if confirm and ratio == 0:
            raise ValueError("confirm re-estimates a step the ratio rule flagged above 0: it needs ratio > 0")
        self._ratio = ratio
        self._confirm = confirm
        self._suspect = suspect
        self._suspected_rollout = suspected == "rollout"
        self._policy = policy
        self._memo = AnswerMemo(grader)
        self._n = n
        self._confidence = confidence
        self._distance = distance
        self._sampling = sampling if sampling is not None else SamplingParams()
        self._seed = seed
        self._last_from_outcome = last_step_from_outcome
        self._name = name
        self._estimator: PrefixEstimator[_Case] = PrefixEstimator(
            policy,
            self._memo,
            n=n,
            per_call=requests_per_call,
            request_of=self._request,
            gold_of=lambda case: case.problem.gold,
            record=self._record,
            thread_name="scan-grading",
        )

    @property
    def name(self) -> str:
        return self._name

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]:
        outcomes: dict[str, list[bool | None]] = {}
        for rollout in rollouts:
            if rollout.problem_id not in problems:
                missing = f"problem {rollout.problem_id!r} is not among the problems given"
                raise ValueError(f"rollout {rollout.rollout_id!r}: {missing}")
            outcomes.setdefault(rollout.problem_id, []).append(rollout.outcome)
        sc = {pid: self_confidence(found) for pid, found in outcomes.items()}
        cases = [_Case(r, problems[r.problem_id], sc[r.problem_id]) for r in rollouts]
        for case in cases:
            case.suspect = self._suspected(case)
        active = [
            c
            for c in cases
            if self._kept(c)
            and (
                needs_step_rollouts(c.rollout.outcome, len(c.rollout.steps))
                or (c.suspect is not None and self._suspected_rollout)
            )
        ]
        while due := [(c, t) for c in active if (t := self._next(c)) is not None]:
            self._run(due)  # one round: the next step of every still-active rollout (or a confirmation)
        return [self._finish(c, outcomes[c.rollout.problem_id]) for c in cases]

    @staticmethod
    def _steps(case: _Case) -> int:
        return len(case.rollout.steps)

    def _kept(self, case: _Case) -> bool:
        return confidence_filter(case.sc, self._confidence)

    def _suspected(self, case: _Case) -> int | None:
        """The step where a correct rollout of two or more steps shows a hidden error, or None."""
        if self._suspect is None or case.rollout.outcome is not True or self._steps(case) < 2:
            return None
        return self._suspect(case.problem, case.rollout)

    def _next(self, case: _Case) -> int | None:
        """The step to roll out next, or None (early stop). When the last step's value is the outcome's
        0.0, only the steps before it are rolled out; a suspected correct one, through its step."""
        if case.suspect is not None:  # through that step, never the last (its value is the outcome's)
            limit = min(case.suspect, self._steps(case) - 2) + 1
        else:
            limit = self._steps(case) - 1 if self._last_from_outcome else self._steps(case)
        step = next_rollout_step(case.rolled, limit, case.sc, self._ratio)
        if step is None and self._confirm_due(case):  # once per step: it is scheduled now
            case.confirmed.append(len(case.rolled) - 1)
            return len(case.rolled) - 1
        return step

    def _confirm_due(self, case: _Case) -> bool:
        """``confirm``: the search stopped at step j because the ratio rule flagged an estimate above 0
        (a fall, not a zero) that was estimated once: it is estimated again with n more completions,
        pooled over 2n, and the search goes on past j when the pooled estimate is no error."""
        j = len(case.rolled) - 1
        return (
            self._confirm
            and j >= 0
            and j not in case.confirmed
            and case.counts[j] > 0
            and error_step(case.rolled, case.sc, self._ratio) == j
        )

    def _run(self, jobs: Sequence[tuple[_Case, int]]) -> None:
        """Roll out every ``(rollout, step)`` of ``jobs`` in calls of ``requests_per_call``, grading each
        call on a second thread while the engine generates the next (as Monte Carlo does)."""
        self._estimator.run(jobs)

    def _request(self, case: _Case, step: int) -> GenerationRequest:
        return GenerationRequest(
            problem=case.problem,
            prefix=case.rollout.steps[: step + 1],
            n=self._n,
            sampling=self._sampling,
            seed=scan_step_seed(self._seed, case.rollout.rollout_id, step)
            if step >= len(case.rolled)
            else derive_seed("scan-confirm", self._seed, case.rollout.rollout_id, step, bits=_SEED_BITS),
        )

    def _record(self, case: _Case, step: int, estimate: Estimate) -> None:
        """Record one step's estimate (pooled with the first for a confirmation), its tokens and its
        share of the call's time."""
        if step < len(case.rolled):
            case.counts[step] += estimate.correct
            case.rolled[step] = mc_value(case.counts[step], 2 * self._n)
        else:
            case.rolled.append(mc_value(estimate.correct, self._n))
            case.counts.append(estimate.correct)
        case.ungraded += estimate.ungraded
        case.completions += estimate.completions
        case.tokens += estimate.tokens
        case.prompt_tokens += estimate.prompt_tokens
        case.cached += estimate.completions if estimate.cached else 0
        case.seconds += estimate.seconds

    def _mc_values(self, case: _Case) -> list[float | None]:
        """The raw estimates per step: those rolled out, then the outcome's 0.0 for a last step reached
        without an error when it comes from the outcome, None for the rest."""
        steps = self._steps(case)
        values: list[float | None] = [*case.rolled, *([None] * (steps - len(case.rolled)))]
        # every step before the last rolled out, and the last of them not the error
        rolled_to_last = (
            len(case.rolled) == steps - 1
            and bool(case.rolled)
            and next_rollout_step(case.rolled, steps, case.sc, self._ratio) is not None
        )
        if self._last_from_outcome and rolled_to_last:
            values[-1] = 1.0 if case.rollout.outcome else 0.0  # the outcome's value
        return values

    def _finish(self, case: _Case, outcomes: Sequence[bool | None]) -> StepLabels:
        rollout, steps = case.rollout, self._steps(case)
        mc_values = self._mc_values(case)
        meta: dict[str, Any] = {
            "sc": case.sc,
            "confidence": self._confidence,
            "distance": self._distance,
            "ratio": self._ratio,
            "n": self._n,
            "last_step_from_outcome": self._last_from_outcome,
            "steps_rolled": len(case.rolled),
            "correct_counts": [*case.counts, *([None] * (steps - len(case.counts)))],
            "mc_values": mc_values,
            "ungraded": case.ungraded,
        }
        if case.suspect is not None:
            meta["suspect"] = case.suspect
        if self._confirm:
            meta["confirmed"] = list(case.confirmed)  # their correct_counts are out of 2n
        cost = Cost(
            completions=case.completions,
            generated_tokens=case.tokens,
            seconds=case.seconds,
            cached_completions=case.cached,
            prompt_tokens=case.prompt_tokens,
        )
        unknown = (None,) * steps
        if not self._kept(case):
            correct = sum(o is True for o in outcomes)
            meta["abstained"] = (
                f"self-confidence {case.sc:g} ({correct} of {len(outcomes)} rollouts correct) is below "
                f"the threshold {self._confidence:g}: SCAN drops the question as noisy"
            )
            return StepLabels(self._name, rollout.rollout_id, unknown, unknown, None, cost, meta)
        outcome = rollout.outcome
        if case.suspect is not None and not self._suspected_rollout:
            meta["abstained"] = (
                f"a correct outcome, but step {case.suspect} computes with a number that neither the "
                "question nor an earlier result gives: the outcome may hide a silently corrected error"
            )
            return StepLabels(self._name, rollout.rollout_id, unknown, unknown, None, cost, meta)
        if case.suspect is not None:
            hidden = error_step(case.rolled, case.sc, self._ratio)
            meta["hidden_error"] = hidden is not None and hidden >= 0
            outcome = not meta["hidden_error"]  # its labels are an incorrect rollout's
        labels = scan_labels(outcome, mc_values, case.sc, self._distance, self._ratio)
        if labels.scores is None or labels.first_error is None:
            meta["abstained"] = labels.reason
            return StepLabels(self._name, rollout.rollout_id, unknown, unknown, None, cost, meta)
        values = (*labels.scores, *((None,) * (steps - len(labels.scores))))
        hard = prefix_labels(labels.first_error, steps)
        return StepLabels(self._name, rollout.rollout_id, values, hard, labels.first_error, cost, meta)
