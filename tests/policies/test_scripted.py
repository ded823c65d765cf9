"""The scripted policy of the logic and code suites, and the router beside the simulated policy."""

from __future__ import annotations

import pytest

from prmforge.pipelines.domains import judge, segment
from prmforge.policies.base import GenerationRequest, GenerationResult
from prmforge.policies.scripted import RoutedPolicy, ScriptedPolicy, scripted_seed
from prmforge.policies.simulated import SimulatedPolicy
from prmforge.schemas.records import SamplingParams
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.code import generate_code_problems, generate_code_rollouts
from prmforge.suites.logic import generate_logic_problems, generate_logic_rollouts

LOGIC = generate_logic_problems(2, seed=1)
CODE = generate_code_problems(2, seed=1)


def request(question: str, n: int = 3, seed: int = 5, prefix: tuple[str, ...] = ()) -> GenerationRequest:
    return GenerationRequest(question, prefix, n, SamplingParams(), seed)


def test_samples_are_deterministic_and_segment_back_into_the_generated_steps() -> None:
    policy = ScriptedPolicy([*LOGIC, *CODE], seed=2)
    first = policy.generate([request(p.question) for p in (*LOGIC, *CODE)])
    again = ScriptedPolicy([*LOGIC, *CODE], seed=2).generate([request(p.question) for p in (*LOGIC, *CODE)])
    assert first == again
    for problem, result in zip((*LOGIC, *CODE), first, strict=True):
        sampler = generate_logic_rollouts if problem.domain == "logic" else generate_code_rollouts
        rate = 0.2 if problem.domain == "logic" else 0.5  # the ScriptedParams defaults
        expected = sampler(problem, 3, scripted_seed(2, 5), rate)
        assert [
            (segment(problem, c.text), judge(problem, segment(problem, c.text))) for c in result.completions
        ] == [(steps, truth) for steps, truth in expected]


def test_a_prefix_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="cannot continue a prefix"):
        ScriptedPolicy(LOGIC).generate([request(LOGIC[0].question, prefix=("Step 1: x",))])


def test_math_problems_are_refused() -> None:
    with pytest.raises(ValueError, match="serves logic and code only"):
        ScriptedPolicy(generate_arith_problems(1, seed=1))


class Counting:
    """Wraps a policy and records each batch it is sent."""

    def __init__(self, inner: SimulatedPolicy | ScriptedPolicy) -> None:
        self.inner = inner
        self.batches: list[int] = []

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.batches.append(len(requests))
        return self.inner.generate(requests)


def test_the_router_sends_one_batch_per_policy_and_keeps_the_order() -> None:
    math = generate_arith_problems(2, seed=1)
    simulated = Counting(SimulatedPolicy(math, seed=1))
    scripted = Counting(ScriptedPolicy(LOGIC, seed=1))
    router = RoutedPolicy(
        [simulated, scripted], {p.question: simulated for p in math} | {p.question: scripted for p in LOGIC}
    )
    order = [math[0], LOGIC[0], math[1], LOGIC[1]]
    results = router.generate([request(p.question) for p in order])
    assert simulated.batches == [2]
    assert scripted.batches == [2]
    assert results[0] == SimulatedPolicy(math, seed=1).generate([request(math[0].question)])[0]
    assert results[1] == ScriptedPolicy(LOGIC, seed=1).generate([request(LOGIC[0].question)])[0]
    assert router.fingerprint == "+".join(sorted({simulated.fingerprint, scripted.fingerprint}))
