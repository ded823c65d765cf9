"""Monte Carlo labels scored against exact truth: the noise SCAN measured, reproduced on fixed seeds.

Hard MC labels (``MC > 0``) are checked step by step against prefix truth
(True before the true first error, False from it on).
"""

from __future__ import annotations

from dataclasses import dataclass

from prmforge.annotators.mc import MonteCarloAnnotator
from prmforge.annotators.metrics import StepConfusion, step_confusion
from prmforge.pipelines.domains import RolloutGrader, judge, segment
from prmforge.pipelines.stages import GenerateSettings, generate_stage
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import SamplingParams
from prmforge.suites.arith import generate_arith_problems
from prmforge.verifiers.answer import AnswerGrader


@dataclass(frozen=True)
class Outcome:
    confusion: StepConfusion
    steps_before_first_error: int

    @property
    def fn_rate(self) -> float:
        return self.confusion.fn / self.steps_before_first_error


def label(n: int, **params: float) -> Outcome:
    """30 arith problems x 4 rollouts, labelled by MC with N completions per step."""
    problems = generate_arith_problems(30, seed=5, min_steps=3, max_steps=6)
    policy = SimulatedPolicy(problems, SimulatedPolicyParams(**params), seed=1)
    rollouts = generate_stage(
        problems, policy, GenerateSettings(4, SamplingParams(), 3), RolloutGrader().grade, segment, judge
    ).records
    annotator = MonteCarloAnnotator(policy, AnswerGrader(), n=n, sampling=SamplingParams(), seed=2)
    labels = annotator.annotate({p.problem_id: p for p in problems}, [r.redacted() for r in rollouts])
    truth = [r.truth.prefix_labels() for r in rollouts if r.truth is not None]
    assert len(truth) == len(rollouts) == 120
    return Outcome(step_confusion([lab.hard for lab in labels], truth), sum(sum(t) for t in truth))


def test_self_correction_gives_false_positives_after_the_true_first_error() -> None:
    with_correction = label(8, self_correct_prob=0.3, trap_share=0.0)
    without = label(8, self_correct_prob=0.0, trap_share=0.0)
    assert (with_correction.confusion.fp_at_first_error, with_correction.confusion.fp_after_first_error) == (
        26,
        38,
    )
    # Without self-correction a wrong prefix cannot reach the gold answer, except through one error
    # in a result the final answer does not use.
    assert (without.confusion.fp_at_first_error, without.confusion.fp_after_first_error) == (1, 0)


def test_unsolvable_problems_give_false_negatives_before_the_true_first_error() -> None:
    traps = label(8, self_correct_prob=0.0, trap_share=0.5)
    no_traps = label(8, self_correct_prob=0.0, trap_share=0.0)
    assert traps.confusion.fn == traps.confusion.fn_before_first_error == 68
    assert no_traps.confusion.fn == 0


def test_larger_n_lowers_the_false_negative_rate() -> None:
    rates = {n: label(n).fn_rate for n in (2, 4, 16)}
    assert rates[2] > rates[4] >= rates[16]
    assert round(rates[2], 4) == 0.0404
    assert rates[16] == 0.0
