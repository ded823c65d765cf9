"""The simulated policy: deterministic, continues from any prefix, errs as parameterised."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from collections.abc import Sequence

import pytest

import prmforge.policies.simulated as simulated_module
from prmforge.policies.base import GenerationRequest, GenerationResult, Policy, split_steps
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import Problem, SamplingParams
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.gsm8k import parse_gsm8k_row
from prmforge.suites.plan import Calc, Plan, PlanError, PlanStep, parse_answer_line, plan_of
from prmforge.suites.truth import judge_truth

TOY_PLAN = Plan(
    (
        PlanStep(("Ava has ", " marbles."), (Calc("12*3"),)),
        PlanStep(("Ben has ", " marbles."), (Calc("{c0}+5"),)),
        PlanStep(("Together they have ", " marbles."), (Calc("{c0}+{c1}"),)),
    )
)
TOY_QUESTION = "Ava has 12 bags of 3 marbles. Ben has 5 more. How many in all?"
TOY = Problem("toy-0", "math", TOY_QUESTION, "77", "test", {"plan": TOY_PLAN.to_dict()})
SLIPPED_FIRST = ("Ava has 12*3 = <<12*3=37>>37 marbles.",)
NO_TRAP = SimulatedPolicyParams(trap_share=0.0)


def _ask(
    policy: SimulatedPolicy,
    problem: Problem,
    prefix: Sequence[str] = (),
    *,
    n: int = 1,
    temperature: float = 0.7,
    seed: int = 0,
    max_tokens: int = 1024,
) -> GenerationResult:
    sampling = SamplingParams(temperature=temperature, max_tokens=max_tokens)
    return policy.generate([GenerationRequest(problem.question, tuple(prefix), n, sampling, seed)])[0]


def _answers(result: GenerationResult) -> list[str | None]:
    return [parse_answer_line(c.text) for c in result.completions]


def test_implements_the_policy_protocol() -> None:
    assert isinstance(SimulatedPolicy([TOY]), Policy)


def test_fingerprint_changes_with_params_and_seed() -> None:
    base = SimulatedPolicy([TOY]).fingerprint
    assert base == SimulatedPolicy([TOY], SimulatedPolicyParams(), seed=0).fingerprint
    assert base.startswith("simulated-v1:")
    assert SimulatedPolicy([TOY], seed=1).fingerprint != base
    assert SimulatedPolicy([TOY], SimulatedPolicyParams(error_rate=0.2)).fingerprint != base
    assert SimulatedPolicy([TOY], SimulatedPolicyParams(trap_share=0.0)).fingerprint != base


def test_generation_is_deterministic() -> None:
    """Same policy seed and request give the same completions; the request seed and index matter."""
    problems = generate_arith_problems(10, seed=4, min_steps=3, max_steps=6)
    requests = [
        GenerationRequest(p.question, (), 6, SamplingParams(temperature=1.0), seed=9) for p in problems
    ]
    first = SimulatedPolicy(problems, seed=3).generate(requests)
    assert SimulatedPolicy(problems, seed=3).generate(requests) == first
    reseeded = [dataclasses.replace(r, seed=10) for r in requests]
    assert SimulatedPolicy(problems, seed=3).generate(reseeded) != first
    assert SimulatedPolicy(problems, seed=4).generate(requests) != first
    distinct = {c.text for result in first for c in result.completions}
    assert len(distinct) > len(problems)


def test_unknown_question_and_missing_plan_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown problem 'What is 2\\+2\\?'"):
        SimulatedPolicy([TOY]).generate([GenerationRequest("What is 2+2?", (), 1, SamplingParams(), 0)])
    with pytest.raises(PlanError, match="problem p-1 has no plan"):
        SimulatedPolicy([Problem("p-1", "math", "q", "1", "test")])


def test_temperature_zero_reproduces_the_reference_from_every_correct_prefix() -> None:
    """Greedy decoding on a non-trap problem continues the reference solution exactly."""
    problems = generate_arith_problems(12, seed=6, min_steps=3, max_steps=9)
    policy = SimulatedPolicy(problems)
    plain = [p for p in problems if policy.trap_calc(p.problem_id) is None]
    assert len(plain) == 10
    for problem in plain:
        reference = plan_of(problem).reference_steps()
        for k in range(len(reference)):
            text = _ask(policy, problem, reference[:k], temperature=0.0, seed=k).completions[0].text
            assert text == "\n\n".join(reference[k:])
            assert judge_truth(problem, [*reference[:k], *split_steps(text)]).first_error == -1


def test_an_error_in_the_prefix_is_carried_at_temperature_zero() -> None:
    result = _ask(SimulatedPolicy([TOY], NO_TRAP), TOY, SLIPPED_FIRST, temperature=0.0)
    text = result.completions[0].text
    assert text == (
        "Ben has 37+5 = <<37+5=42>>42 marbles.\n\n"
        "Together they have 37+42 = <<37+42=79>>79 marbles.\nThe answer is: 79"
    )
    truth = judge_truth(TOY, [*SLIPPED_FIRST, *split_steps(text)])
    assert truth.step_correct == (False, False, False)


def test_gsm8k_references_carry_a_wrong_prefix_value() -> None:
    answer = "A has 2+2=<<2+2=4>>4 pens.\nB has 4*3=<<4*3=12>>12 pens.\nAll have 12+4=<<12+4=16>>16.\n#### 16"
    row = json.dumps({"question": "Pens?", "answer": answer}).encode()
    problem = parse_gsm8k_row(row, source="t", index=0)
    policy = SimulatedPolicy([problem], NO_TRAP)
    text = _ask(policy, problem, ["A has 2+2 = <<2+2=5>>5 pens."], temperature=0.0).completions[0].text
    assert text == "B has 5*3 = <<5*3=15>>15 pens.\n\nAll have 15+5 = <<15+5=20>>20.\nThe answer is: 20"


def test_a_prefix_value_that_makes_the_plan_divide_by_zero_does_not_crash() -> None:
    plan = Plan(
        (
            PlanStep(("Take ", "."), (Calc("6-2"),)),
            PlanStep(("Share ", "."), (Calc("12/{c0}"),)),
        )
    )
    problem = Problem("div-0", "math", "Share 12 among 6-2.", "3", "test", {"plan": plan.to_dict()})
    params = SimulatedPolicyParams(error_rate=0.9, trap_share=0.0)
    texts = {
        c.text
        for c in _ask(SimulatedPolicy([problem], params), problem, ["Take <<6-6=0>>0."], n=50).completions
    }
    assert "Share 12/4 = <<12/4=3>>3.\nThe answer is: 3" in texts
    assert len(texts) > 5


def test_a_complete_or_longer_prefix_gets_just_the_answer_line() -> None:
    policy = SimulatedPolicy([TOY], NO_TRAP)
    reference = TOY_PLAN.reference_steps()
    assert _ask(policy, TOY, reference).completions[0].text == "The answer is: 77"
    assert _ask(policy, TOY, [*reference, "More."]).completions[0].text == "The answer is: 77"
    wrong_last = (*reference[:2], "Together they have 36+41 = <<36+41=70>>70 marbles.")
    assert _ask(policy, TOY, wrong_last).completions[0].text == "The answer is: 70"


def test_self_correction_recovers_the_right_answer_at_a_measurable_rate() -> None:
    """From a wrong first step, the last step (it reads c0) recomputes from true values 30% of the time."""
    params = SimulatedPolicyParams(error_rate=0.0, self_correct_prob=0.3, trap_share=0.0)
    result = _ask(SimulatedPolicy([TOY], params, seed=5), TOY, SLIPPED_FIRST, n=400, seed=1)
    right = [c for c in result.completions if parse_answer_line(c.text) == "77"]
    assert len(right) == 120
    for completion in right:
        assert judge_truth(TOY, [*SLIPPED_FIRST, *split_steps(completion.text)]).step_correct[0] is False
        assert judge_truth(TOY, [*SLIPPED_FIRST, *split_steps(completion.text)]).step_correct[2] is True
    never = SimulatedPolicyParams(error_rate=0.0, self_correct_prob=0.0, trap_share=0.0)
    result = _ask(SimulatedPolicy([TOY], never, seed=5), TOY, SLIPPED_FIRST, n=400, seed=1)
    assert set(_answers(result)) == {"79"}


def _wrong_rollouts(problems: list[Problem], policy: SimulatedPolicy, temperature: float) -> int:
    sampling = SamplingParams(temperature=temperature)
    requests = [GenerationRequest(p.question, (), 8, sampling, seed=i) for i, p in enumerate(problems)]
    wrong = 0
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        wrong += sum(judge_truth(problem, split_steps(c.text)).first_error != -1 for c in result.completions)
    return wrong


def test_mistakes_scale_with_temperature() -> None:
    problems = generate_arith_problems(40, seed=8, min_steps=3, max_steps=6)
    policy = SimulatedPolicy(problems, NO_TRAP, seed=2)
    counts = [_wrong_rollouts(problems, policy, t) for t in (0.0, 0.3, 0.7, 1.0)]
    assert counts == [0, 54, 97, 131]  # of 320 rollouts each


def test_default_parameters_solve_about_sixty_percent() -> None:
    """Arithmetic problems of 3-6 steps at temperature 0.7: final answer right in 50-70% of rollouts."""
    problems = generate_arith_problems(100, seed=3, min_steps=3, max_steps=6)
    policy = SimulatedPolicy(problems)
    requests = [
        GenerationRequest(p.question, (), 8, SamplingParams(), seed=i) for i, p in enumerate(problems)
    ]
    right = 0
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        right += _answers(result).count(problem.gold)
    assert right == 475  # of 800
    assert 0.5 * 800 <= right <= 0.7 * 800


def test_trap_problems_are_rarely_solved_and_self_correction_cannot_fix_them() -> None:
    problems = generate_arith_problems(30, seed=12, min_steps=3, max_steps=6)
    eager = SimulatedPolicyParams(error_rate=0.0, self_correct_prob=1.0, trap_share=1.0)
    policy = SimulatedPolicy(problems, eager, seed=1)
    assert all(policy.trap_calc(p.problem_id) is not None for p in problems)
    requests = [
        GenerationRequest(p.question, (), 8, SamplingParams(), seed=i) for i, p in enumerate(problems)
    ]
    solved = 0
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        solved += _answers(result).count(problem.gold)
    assert solved == 11  # of 240: the trap calc is right about 5% of the time


def test_a_trap_is_a_systematic_error_even_when_greedy() -> None:
    """At temperature 0 the trap is always fallen into, the same way for every request seed."""
    problems = generate_arith_problems(10, seed=12, min_steps=3, max_steps=6)
    policy = SimulatedPolicy(problems, SimulatedPolicyParams(trap_share=1.0), seed=1)
    for problem in problems:
        plan = plan_of(problem)
        trap = policy.trap_calc(problem.problem_id)
        assert trap is not None
        trap_step = next(t for t in range(len(plan.steps)) if plan.first_calc(t + 1) > trap)
        texts = {_ask(policy, problem, temperature=0.0, seed=s).completions[0].text for s in range(3)}
        assert len(texts) == 1
        assert judge_truth(problem, split_steps(texts.pop())).first_error == trap_step
        if trap_step + 1 < len(plan.steps):  # a prefix that got the trap right is continued correctly
            past = plan.reference_steps()[: trap_step + 1]
            after = _ask(policy, problem, past, temperature=0.0).completions[0].text
            assert judge_truth(problem, [*past, *split_steps(after)]).first_error == -1


def test_difficulty_is_fixed_per_problem_and_seed() -> None:
    problems = generate_arith_problems(20, seed=1)
    a, b = SimulatedPolicy(problems, seed=1), SimulatedPolicy(problems, seed=2)
    levels = [a.difficulty(p.problem_id) for p in problems]
    assert levels == [SimulatedPolicy(problems, seed=1).difficulty(p.problem_id) for p in problems]
    assert levels != [b.difficulty(p.problem_id) for p in problems]
    assert all(0.5 <= d <= 1.5 for d in levels)
    assert max(levels) - min(levels) > 0.5


def test_token_counts_and_max_tokens() -> None:
    policy = SimulatedPolicy([TOY], NO_TRAP)
    result = _ask(policy, TOY, SLIPPED_FIRST, n=2)
    prompt = GenerationRequest(TOY.question, SLIPPED_FIRST, 1, SamplingParams(), 0).prompt
    assert result.prompt_tokens == len(prompt.split())
    for completion in result.completions:
        assert completion.tokens == len(completion.text.split())
        assert completion.finish_reason == "stop"
    full = _ask(policy, TOY, temperature=0.0).completions[0]
    cut = _ask(policy, TOY, temperature=0.0, max_tokens=5).completions[0]
    assert (cut.text, cut.tokens, cut.finish_reason) == ("Ava has 12*3 = <<12*3=36>>36", 5, "length")
    assert full.text.startswith(cut.text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"error_rate": -0.1}, "error_rate must be in"),
        ({"trap_error_prob": 1.5}, "trap_error_prob must be in"),
        ({"reference_temperature": 0.0}, "reference_temperature must be > 0"),
        ({"slip_weight": -1.0}, "slip_weight must be in"),
        ({"slip_weight": 0.0, "operand_weight": 0.0, "operation_weight": 0.0}, "cannot all be 0"),
        ({"self_correct_prob": True}, "must be a finite number"),
        ({"difficulty_spread": float("nan")}, "must be a finite number"),
    ],
)
def test_params_are_validated(change: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatedPolicyParams(**change)


def test_params_are_numbers_that_configs_can_override() -> None:
    fields = dataclasses.fields(SimulatedPolicyParams)
    assert all(f.type == "float" for f in fields)
    assert SimulatedPolicyParams(**{f.name: float(getattr(NO_TRAP, f.name)) for f in fields}) == NO_TRAP


def test_the_policy_never_needs_step_truth() -> None:
    """The module imports nothing that computes or carries truth; it works from the plan alone."""
    tree = ast.parse(inspect.getsource(simulated_module))
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names}
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "prmforge.suites.truth" not in modules
    assert not imported & {"StepTruth", "Rollout", "judge_truth", "judge_steps", "step_is_correct"}
    bare = Problem("bare", "math", "Q?", "77", "test", {"plan": TOY_PLAN.to_dict()})
    assert (
        parse_answer_line(_ask(SimulatedPolicy([bare], NO_TRAP), bare, temperature=0.0).completions[0].text)
        == "77"
    )
