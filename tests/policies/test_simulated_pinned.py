"""The simulated policy's outputs are pinned: a digest of 2,776 completions, the guard of optimisations.

The workload covers greedy and sampled decoding, traps, self-correction, heavy mistake rates, fractions
and negative values, GSM8K-style plans (with ``$`` leads and non-echoed calcs), a plan whose carried
values divide by zero, truncation, and MC-style prefixes: every step prefix of sampled rollouts,
prefixes with unparseable or missing claims, and prefixes longer than the plan.

``run_workload`` takes an adapter rather than building requests itself, so the same workload can run
against two versions of an API. It first guarded the engine rewrite (incremental, integer-first
evaluation; problems travelling in requests), whose outputs were identical to the old policy's. Any
change that is meant to keep outputs (an optimisation, a refactor) must not move the digest.

The digest was re-pinned once, on purpose, when every seed moved to ``prmforge.schemas.seeds``
(new problems and random streams: different outputs by design, the same behaviour); regenerate it
only for a deliberate change of outputs, with ``scripts/pinned_numbers.py test_simulated_pinned``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

from prmforge.policies.base import GenerationRequest, GenerationResult, split_steps
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import Problem, SamplingParams
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.gsm8k import parse_gsm8k_row
from prmforge.suites.plan import Calc, Plan, PlanStep, plan_of

# (problem, prefix, n, sampling, request seed)
Ask = tuple[Problem, tuple[str, ...], int, SamplingParams, int]
Generate = Callable[[SimulatedPolicyParams, int, Sequence[Ask]], list[GenerationResult]]

# Pinned by scripts/pinned_numbers.py (see the module docstring for when they may change).
PINNED_DIGEST = "1828c1bb5fee5294ada2fb4b4540a93428a3ae8a4ea58c359658e48a1ca17f74"
PINNED_COMPLETIONS = 2776


def _plan_problem(pid: str, question: str, plan: Plan) -> Problem:
    return Problem(pid, "math", question, "0", "pinned", {"plan": plan.to_dict()})


def _problems() -> list[Problem]:
    problems = generate_arith_problems(10, seed=21, min_steps=3, max_steps=9)
    fractions = Plan(
        (
            PlanStep(("Split ", " pies."), (Calc("7/2"),)),
            PlanStep(("Triple is ", " and less ten is ", "."), (Calc("{c0}*3"), Calc("{c1}-10"))),
            PlanStep(("Then ", " remain."), (Calc("{c2} - {c0}/4", echo=False),)),
            PlanStep(("Scale by ", " to get ", "."), (Calc("0.25"), Calc("{c3}*{c4}/(2-5)", lead="$"))),
            PlanStep(("Last ", "."), (Calc("({c5}+{c1})/-{c4}+1.5"),)),
        )
    )
    problems.append(_plan_problem("frac-0", "Split 7 pies in 2, with 0.25 and 1.5 and 10.", fractions))
    zero = Plan((PlanStep(("Take ", "."), (Calc("6-2"),)), PlanStep(("Share ", "."), (Calc("12/{c0}"),))))
    problems.append(_plan_problem("div-0", "Share 12 among 6-2.", zero))
    answers = [
        "A has 2+2=<<2+2=4>>4 pens.\nB has 4*3=<<4*3=12>>12 pens.\nAll have 12+4=<<12+4=16>>16.\n#### 16",
        "She pays $1,200/8 = $<<1200/8=150>>150 a week.\nIn 3 weeks that is <<150*3=450>>450 dollars.\n"
        "Half of it is 450/4=<<450/4=112.5>>112.5.\nSo 112.5-2.5=<<112.5-2.5=110>>110 are left.\n#### 110",
    ]
    for index, answer in enumerate(answers):
        row = json.dumps({"question": f"Row {index}: 1,200 and 8 and 3 dollars?", "answer": answer})
        problems.append(parse_gsm8k_row(row.encode(), source="pinned", index=index))
    return problems


CONFIGS: tuple[tuple[SimulatedPolicyParams, int], ...] = (
    (SimulatedPolicyParams(), 0),
    (SimulatedPolicyParams(error_rate=0.5, trap_share=0.0, self_correct_prob=0.3), 7),
    (SimulatedPolicyParams(trap_share=1.0, self_correct_prob=0.5, error_rate=0.2), 3),
    (SimulatedPolicyParams(error_rate=0.9, operand_weight=2.0, slip_weight=0.1, trap_share=0.5), 11),
)
SAMPLINGS = (
    SamplingParams(temperature=0.0),
    SamplingParams(temperature=0.7),
    SamplingParams(temperature=1.3, max_tokens=40),
)


def _odd_prefixes(problem: Problem) -> list[tuple[str, ...]]:
    reference = plan_of(problem).reference_steps()
    return [
        reference[:1],
        ("I am not sure where to start.", *reference[1:2]),
        ("Nonsense <<12*3=abc>>abc and <<4=7/2>>7/2.", "<<1/0=1/0>> and <<2=-5>>-5"),
        (*reference, "An extra step.", "And one more."),
        (reference[0].replace(">>", "=9>>", 1),),
    ]


def run_workload(generate: Generate) -> tuple[str, int]:
    """``(sha256 of every result, completion count)`` of the pinned workload."""
    digest = hashlib.sha256()
    count = 0
    problems = _problems()
    for params, policy_seed in CONFIGS:
        for s, sampling in enumerate(SAMPLINGS):
            asks: list[Ask] = [(p, (), 3, sampling, 100 * s + i) for i, p in enumerate(problems)]
            first = generate(params, policy_seed, asks)
            for problem, result in zip(problems, first, strict=True):
                steps = split_steps(result.completions[-1].text)
                asks.extend((problem, steps[: t + 1], 2, sampling, t) for t in range(len(steps)))
                if s == 1:
                    asks.extend((problem, prefix, 2, sampling, 5) for prefix in _odd_prefixes(problem))
            for result in generate(params, policy_seed, asks):
                rows = [[c.text, c.tokens, c.finish_reason] for c in result.completions]
                digest.update(json.dumps([rows, result.prompt_tokens]).encode())
                count += len(rows)
    return digest.hexdigest(), count


def _generate(params: SimulatedPolicyParams, seed: int, asks: Sequence[Ask]) -> list[GenerationResult]:
    policy = SimulatedPolicy(params, seed=seed)
    return policy.generate([GenerationRequest(*ask) for ask in asks])


def test_outputs_match_the_pinned_digest() -> None:
    assert run_workload(_generate) == (PINNED_DIGEST, PINNED_COMPLETIONS)
