"""The scripted policy of the logic and code suites, and the domain router beside the simulated policy."""

from __future__ import annotations

import pytest

from prmforge.policies.base import GenerationRequest, GenerationResult, split_steps
from prmforge.policies.router import DomainRouter
from prmforge.policies.scripted import ScriptedParams, ScriptedPolicy, scripted_seed
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import Problem, SamplingParams, StepTruth
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.code import exact_code_truth, generate_code_problems, generate_code_rollouts
from prmforge.suites.logic import exact_logic_truth, generate_logic_problems, generate_logic_rollouts

LOGIC = generate_logic_problems(2, seed=1)
CODE = generate_code_problems(2, seed=1)


def segment(problem: Problem, text: str) -> tuple[str, ...]:
    """Programs split into their non-blank lines, derivations on blank lines."""
    if problem.domain == "code":
        return tuple(line for line in text.splitlines() if line.strip())
    return split_steps(text)


def judge(problem: Problem, steps: tuple[str, ...]) -> StepTruth:
    return exact_code_truth(problem, steps) if problem.domain == "code" else exact_logic_truth(problem, steps)


def request(problem: Problem, n: int = 3, seed: int = 5, prefix: tuple[str, ...] = ()) -> GenerationRequest:
    return GenerationRequest(problem, prefix, n, SamplingParams(), seed)


def test_samples_are_deterministic_and_segment_back_into_the_generated_steps() -> None:
    policy = ScriptedPolicy(seed=2)
    first = policy.generate([request(p) for p in (*LOGIC, *CODE)])
    again = ScriptedPolicy(seed=2).generate([request(p) for p in (*LOGIC, *CODE)])
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
        ScriptedPolicy().generate([request(LOGIC[0], prefix=("Step 1: x",))])


def test_problems_it_cannot_serve_are_refused_naming_the_problem() -> None:
    math = generate_arith_problems(1, seed=1)[0]
    with pytest.raises(ValueError, match=f"problem {math.problem_id}: .*serves logic and code only"):
        ScriptedPolicy().generate([request(math)])
    bare_logic = Problem("logic-x", "logic", "Prove q.", "q", "test")
    with pytest.raises(ValueError, match="problem logic-x: a logic problem needs its derivation plan"):
        ScriptedPolicy().generate([request(bare_logic)])
    bare_code = Problem("code-x", "code", "Write f.", "", "test")
    with pytest.raises(ValueError, match="problem code-x"):
        ScriptedPolicy().generate([request(bare_code)])


def test_fingerprints_are_unchanged() -> None:
    """Pinned before policies became engines: same params and seed, same fingerprint (and rollout ids)."""
    assert ScriptedPolicy().fingerprint == "scripted-v1:7486521d9fb0fbf3"
    assert ScriptedPolicy(ScriptedParams(0.1, 0.3), seed=3).fingerprint == "scripted-v1:3516eca78e45b95b"


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
    simulated = Counting(SimulatedPolicy(seed=1))
    scripted = Counting(ScriptedPolicy(seed=1))
    router = DomainRouter({"math": simulated, "logic": scripted, "code": scripted})
    order = [math[0], LOGIC[0], math[1], LOGIC[1], CODE[0]]
    results = router.generate([request(p) for p in order])
    assert simulated.batches == [2]
    assert scripted.batches == [3]
    assert results[0] == SimulatedPolicy(seed=1).generate([request(math[0])])[0]
    assert results[1] == ScriptedPolicy(seed=1).generate([request(LOGIC[0])])[0]
    assert results[4] == ScriptedPolicy(seed=1).generate([request(CODE[0])])[0]
    assert router.fingerprint == "+".join(sorted({simulated.fingerprint, scripted.fingerprint}))
    assert router.generate([]) == []


def test_the_router_fingerprint_is_the_one_routed_policies_had() -> None:
    """Pinned from ``RoutedPolicy([simulated, scripted], ...)``, so rollout ids do not change."""
    both = DomainRouter({"math": SimulatedPolicy(), "logic": ScriptedPolicy(), "code": ScriptedPolicy()})
    assert both.fingerprint == "scripted-v1:7486521d9fb0fbf3+simulated-v1:221c462c4e66827b"
    alone = DomainRouter({"math": SimulatedPolicy(SimulatedPolicyParams(error_rate=0.2), seed=3)})
    assert alone.fingerprint == "simulated-v1:2a6235984a979703"


def test_the_router_is_also_importable_beside_the_scripted_policy() -> None:
    from prmforge.policies import scripted

    assert scripted.DomainRouter is DomainRouter


def test_a_domain_without_a_route_is_refused_naming_it() -> None:
    router = DomainRouter({"math": SimulatedPolicy()})
    with pytest.raises(
        ValueError, match=f"no policy serves the domain 'logic' \\(problem {LOGIC[0].problem_id}\\)"
    ):
        router.generate([request(generate_arith_problems(1, seed=1)[0]), request(LOGIC[0])])
    with pytest.raises(ValueError, match="at least one route"):
        DomainRouter({})
