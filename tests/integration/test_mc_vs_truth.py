"""Monte Carlo labels scored against exact truth: the noise SCAN measured, reproduced on fixed seeds.

Hard MC labels (``MC > 0``) are checked step by step against prefix truth
(True before the true first error, False from it on). Rollouts are sampled here
as the generate stage sampled them when these numbers were pinned (its request
seeds and rollout ids), so the test does not depend on the pipeline's code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from prmforge.annotators.mc import MonteCarloAnnotator
from prmforge.annotators.metrics import StepConfusion, step_confusion
from prmforge.policies.base import GenerationRequest, Policy, split_steps
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import Problem, Rollout, SamplingParams
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.truth import exact_truth
from prmforge.verifiers.answer import AnswerGrader, extract_final_answer


@dataclass(frozen=True)
class Outcome:
    confusion: StepConfusion
    steps_before_first_error: int

    @property
    def fn_rate(self) -> float:
        return self.confusion.fn / self.steps_before_first_error


def _sha(blob: object) -> bytes:
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).digest()


def sample_rollouts(problems: Sequence[Problem], policy: Policy, k: int, seed: int) -> list[Rollout]:
    """``k`` rollouts per problem, graded on the final answer, with their exact truth."""
    sampling, grader = SamplingParams(), AnswerGrader()
    seeds = [int.from_bytes(_sha([str(seed), "generate", p.problem_id])[:8], "big") >> 1 for p in problems]
    requests = [GenerationRequest(p, (), k, sampling, s) for p, s in zip(problems, seeds, strict=True)]
    rollouts = []
    for problem, req_seed, result in zip(problems, seeds, policy.generate(requests), strict=True):
        for i, completion in enumerate(result.completions):
            steps = split_steps(completion.text)
            answer = extract_final_answer(completion.text)
            rid = _sha([problem.problem_id, policy.fingerprint, sampling.as_dict(), req_seed, i]).hex()[:24]
            rollouts.append(
                Rollout(
                    rollout_id=rid,
                    problem_id=problem.problem_id,
                    policy=policy.fingerprint,
                    sampling=sampling,
                    seed=req_seed,
                    text=completion.text,
                    steps=steps,
                    final_answer=answer,
                    outcome=False if answer is None else grader.grade(completion.text, problem.gold),
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=completion.tokens,
                    truth=exact_truth(problem, steps),
                )
            )
    return rollouts


def label(n: int, **params: float) -> Outcome:
    """30 arith problems x 4 rollouts, labelled by MC with N completions per step."""
    problems = generate_arith_problems(30, seed=5, min_steps=3, max_steps=6)
    policy = SimulatedPolicy(SimulatedPolicyParams(**params), seed=1)
    rollouts = sample_rollouts(problems, policy, k=4, seed=3)
    annotator = MonteCarloAnnotator(policy, AnswerGrader(), n=n, sampling=SamplingParams(), seed=2)
    labels = annotator.annotate({p.problem_id: p for p in problems}, [r.redacted() for r in rollouts])
    truth = [r.truth.prefix_labels() for r in rollouts if r.truth is not None]
    assert len(truth) == len(rollouts) == 120
    return Outcome(step_confusion([lab.hard for lab in labels], truth), sum(sum(t) for t in truth))


# The numbers pinned below depend on every seed: regenerate them with
# `scripts/pinned_numbers.py test_mc_vs_truth` and check each still shows its test's effect.


def test_self_correction_gives_false_positives_after_the_true_first_error() -> None:
    with_correction = label(8, self_correct_prob=0.3, trap_share=0.0)
    without = label(8, self_correct_prob=0.0, trap_share=0.0)
    assert (with_correction.confusion.fp_at_first_error, with_correction.confusion.fp_after_first_error) == (
        29,
        49,
    )
    # Without self-correction a wrong prefix reaches the gold answer only when a completion's own
    # mistake lands back on the true value (here twice: slips giving 42-3=40 and 10.5*4=44, which
    # are the true values), so false positives all but vanish.
    assert (without.confusion.fp_at_first_error, without.confusion.fp_after_first_error) == (1, 1)


def test_unsolvable_problems_give_false_negatives_before_the_true_first_error() -> None:
    traps = label(8, self_correct_prob=0.0, trap_share=0.5)
    no_traps = label(8, self_correct_prob=0.0, trap_share=0.0)
    # 10 of the 30 problems drew a trap (3 of them at calc 0, leaving no step before it to mislabel).
    assert traps.confusion.fn == traps.confusion.fn_before_first_error == 28
    assert no_traps.confusion.fn == 0


def test_larger_n_lowers_the_false_negative_rate() -> None:
    rates = {n: label(n).fn_rate for n in (2, 4, 16)}
    assert rates[2] > rates[4] >= rates[16]
    assert round(rates[2], 4) == 0.0506
    assert rates[16] == 0.0
