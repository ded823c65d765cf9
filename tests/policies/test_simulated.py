"""The simulated policy: deterministic, continues from any prefix, errs as parameterised."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import pickle
from collections.abc import Sequence

import pytest

import prmforge.policies.simulated as simulated_module
from prmforge.policies.base import GenerationRequest, GenerationResult, Policy, split_steps
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import Problem, SamplingParams
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.gsm8k import parse_gsm8k_row
from prmforge.suites.plan import Calc, Plan, PlanStep, parse_answer_line, plan_of
from prmforge.suites.truth import exact_truth

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
    return policy.generate([GenerationRequest(problem, tuple(prefix), n, sampling, seed)])[0]


def _answers(result: GenerationResult) -> list[str | None]:
    return [parse_answer_line(c.text) for c in result.completions]


def test_implements_the_policy_protocol() -> None:
    assert isinstance(SimulatedPolicy(), Policy)


def test_fingerprint_changes_with_params_and_seed() -> None:
    base = SimulatedPolicy().fingerprint
    assert base == SimulatedPolicy(SimulatedPolicyParams(), seed=0).fingerprint
    assert base.startswith("simulated-v1:")
    assert SimulatedPolicy(seed=1).fingerprint != base
    assert SimulatedPolicy(SimulatedPolicyParams(error_rate=0.2)).fingerprint != base
    assert SimulatedPolicy(SimulatedPolicyParams(trap_share=0.0)).fingerprint != base


def test_generation_is_deterministic() -> None:
    """Same policy seed and request give the same completions; the request seed and index matter."""
    problems = generate_arith_problems(10, seed=4, min_steps=3, max_steps=6)
    requests = [GenerationRequest(p, (), 6, SamplingParams(temperature=1.0), seed=9) for p in problems]
    first = SimulatedPolicy(seed=3).generate(requests)
    assert SimulatedPolicy(seed=3).generate(requests) == first
    reseeded = [dataclasses.replace(r, seed=10) for r in requests]
    assert SimulatedPolicy(seed=3).generate(reseeded) != first
    assert SimulatedPolicy(seed=4).generate(requests) != first
    distinct = {c.text for result in first for c in result.completions}
    assert len(distinct) > len(problems)


def test_problems_it_cannot_serve_are_refused_naming_the_problem() -> None:
    """No plan, a bad plan or a non-math domain: a ValueError naming the problem (the row is quarantined)."""
    cases = [
        (Problem("p-1", "math", "q", "1", "test"), "problem 'p-1'.*has no plan"),
        (
            Problem("p-2", "math", "q", "1", "test", {"plan": {"steps": 3}}),
            "problem 'p-2'.*'steps' must be a list",
        ),
        (
            dataclasses.replace(TOY, problem_id="logic-1", domain="logic"),
            "problem 'logic-1' is a 'logic' problem",
        ),
    ]
    policy = SimulatedPolicy()
    for problem, message in cases:
        with pytest.raises(ValueError, match=message):
            _ask(policy, problem)
    assert _ask(policy, TOY, temperature=0.0).completions[0].text.endswith("The answer is: 77")


def test_temperature_zero_reproduces_the_reference_from_every_correct_prefix() -> None:
    """Greedy decoding on a non-trap problem continues the reference solution exactly."""
    problems = generate_arith_problems(12, seed=6, min_steps=3, max_steps=9)
    policy = SimulatedPolicy()
    plain = [p for p in problems if policy.trap_calc(p) is None]
    # Seed-dependent pins in this file: regenerate with `scripts/pinned_numbers.py test_simulated.py`.
    assert len(plain) == 12  # trap_share 0.1: none of these 12 drew a trap
    for problem in plain:
        reference = plan_of(problem).reference_steps()
        for k in range(len(reference)):
            text = _ask(policy, problem, reference[:k], temperature=0.0, seed=k).completions[0].text
            assert text == "\n\n".join(reference[k:])
            assert exact_truth(problem, [*reference[:k], *split_steps(text)]).first_error == -1


def test_an_error_in_the_prefix_is_carried_at_temperature_zero() -> None:
    result = _ask(SimulatedPolicy(NO_TRAP), TOY, SLIPPED_FIRST, temperature=0.0)
    text = result.completions[0].text
    assert text == (
        "Ben has 37+5 = <<37+5=42>>42 marbles.\n\n"
        "Together they have 37+42 = <<37+42=79>>79 marbles.\nThe answer is: 79"
    )
    truth = exact_truth(TOY, [*SLIPPED_FIRST, *split_steps(text)])
    assert truth.step_correct == (False, False, False)


def test_gsm8k_references_carry_a_wrong_prefix_value() -> None:
    answer = "A has 2+2=<<2+2=4>>4 pens.\nB has 4*3=<<4*3=12>>12 pens.\nAll have 12+4=<<12+4=16>>16.\n#### 16"
    row = json.dumps({"question": "Pens?", "answer": answer}).encode()
    problem = parse_gsm8k_row(row, source="t", index=0)
    policy = SimulatedPolicy(NO_TRAP)
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
    texts = {c.text for c in _ask(SimulatedPolicy(params), problem, ["Take <<6-6=0>>0."], n=50).completions}
    assert "Share 12/4 = <<12/4=3>>3.\nThe answer is: 3" in texts
    assert len(texts) > 5


def test_a_complete_or_longer_prefix_gets_just_the_answer_line() -> None:
    policy = SimulatedPolicy(NO_TRAP)
    reference = TOY_PLAN.reference_steps()
    assert _ask(policy, TOY, reference).completions[0].text == "The answer is: 77"
    assert _ask(policy, TOY, [*reference, "More."]).completions[0].text == "The answer is: 77"
    wrong_last = (*reference[:2], "Together they have 36+41 = <<36+41=70>>70 marbles.")
    assert _ask(policy, TOY, wrong_last).completions[0].text == "The answer is: 70"


def test_self_correction_recovers_the_right_answer_at_a_measurable_rate() -> None:
    """From a wrong first step, the last step (it reads c0) recomputes from true values 30% of the time."""
    params = SimulatedPolicyParams(error_rate=0.0, self_correct_prob=0.3, trap_share=0.0)
    result = _ask(SimulatedPolicy(params, seed=5), TOY, SLIPPED_FIRST, n=400, seed=1)
    right = [c for c in result.completions if parse_answer_line(c.text) == "77"]
    assert len(right) == 111  # pinned (scripts/pinned_numbers.py); 30% of 400 is 120 +- 9
    for completion in right:
        assert exact_truth(TOY, [*SLIPPED_FIRST, *split_steps(completion.text)]).step_correct[0] is False
        assert exact_truth(TOY, [*SLIPPED_FIRST, *split_steps(completion.text)]).step_correct[2] is True
    never = SimulatedPolicyParams(error_rate=0.0, self_correct_prob=0.0, trap_share=0.0)
    result = _ask(SimulatedPolicy(never, seed=5), TOY, SLIPPED_FIRST, n=400, seed=1)
    assert set(_answers(result)) == {"79"}


def _wrong_rollouts(problems: list[Problem], policy: SimulatedPolicy, temperature: float) -> int:
    sampling = SamplingParams(temperature=temperature)
    requests = [GenerationRequest(p, (), 8, sampling, seed=i) for i, p in enumerate(problems)]
    wrong = 0
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        wrong += sum(exact_truth(problem, split_steps(c.text)).first_error != -1 for c in result.completions)
    return wrong


def test_mistakes_scale_with_temperature() -> None:
    problems = generate_arith_problems(40, seed=8, min_steps=3, max_steps=6)
    policy = SimulatedPolicy(NO_TRAP, seed=2)
    counts = [_wrong_rollouts(problems, policy, t) for t in (0.0, 0.3, 0.7, 1.0)]
    assert counts == [0, 55, 101, 144]  # of 320 rollouts each (pinned: scripts/pinned_numbers.py)


def test_default_parameters_solve_about_sixty_percent() -> None:
    """Arithmetic problems of 3-6 steps at temperature 0.7: final answer right in 50-70% of rollouts."""
    problems = generate_arith_problems(100, seed=3, min_steps=3, max_steps=6)
    policy = SimulatedPolicy()
    requests = [GenerationRequest(p, (), 8, SamplingParams(), seed=i) for i, p in enumerate(problems)]
    right = 0
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        right += _answers(result).count(problem.gold)
    assert right == 495  # of 800 (pinned: scripts/pinned_numbers.py)
    assert 0.5 * 800 <= right <= 0.7 * 800


def test_trap_problems_are_rarely_solved_and_self_correction_cannot_fix_them() -> None:
    problems = generate_arith_problems(30, seed=12, min_steps=3, max_steps=6)
    eager = SimulatedPolicyParams(error_rate=0.0, self_correct_prob=1.0, trap_share=1.0)
    policy = SimulatedPolicy(eager, seed=1)
    assert all(policy.trap_calc(p) is not None for p in problems)
    requests = [GenerationRequest(p, (), 8, SamplingParams(), seed=i) for i, p in enumerate(problems)]
    solved = 0
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        solved += _answers(result).count(problem.gold)
    assert solved == 11  # of 240: the trap calc is right about 5% of the time (scripts/pinned_numbers.py)


def test_a_trap_is_a_systematic_error_even_when_greedy() -> None:
    """At temperature 0 the trap is always fallen into, the same way for every request seed."""
    problems = generate_arith_problems(10, seed=12, min_steps=3, max_steps=6)
    policy = SimulatedPolicy(SimulatedPolicyParams(trap_share=1.0), seed=1)
    for problem in problems:
        plan = plan_of(problem)
        trap = policy.trap_calc(problem)
        assert trap is not None
        trap_step = next(t for t in range(len(plan.steps)) if plan.first_calc(t + 1) > trap)
        texts = {_ask(policy, problem, temperature=0.0, seed=s).completions[0].text for s in range(3)}
        assert len(texts) == 1
        assert exact_truth(problem, split_steps(texts.pop())).first_error == trap_step
        if trap_step + 1 < len(plan.steps):  # a prefix that got the trap right is continued correctly
            past = plan.reference_steps()[: trap_step + 1]
            after = _ask(policy, problem, past, temperature=0.0).completions[0].text
            assert exact_truth(problem, [*past, *split_steps(after)]).first_error == -1


def test_difficulty_is_fixed_per_problem_and_seed() -> None:
    problems = generate_arith_problems(20, seed=1)
    a, b = SimulatedPolicy(seed=1), SimulatedPolicy(seed=2)
    levels = [a.difficulty(p) for p in problems]
    assert levels == [SimulatedPolicy(seed=1).difficulty(p) for p in problems]
    assert levels != [b.difficulty(p) for p in problems]
    assert all(0.5 <= d <= 1.5 for d in levels)
    assert max(levels) - min(levels) > 0.5


def test_token_counts_and_max_tokens() -> None:
    policy = SimulatedPolicy(NO_TRAP)
    result = _ask(policy, TOY, SLIPPED_FIRST, n=2)
    prompt = GenerationRequest(TOY, SLIPPED_FIRST, 1, SamplingParams(), 0).prompt
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
    assert not imported & {"StepTruth", "Rollout", "exact_truth", "judge_steps", "step_is_correct"}
    bare = Problem("bare", "math", "Q?", "77", "test", {"plan": TOY_PLAN.to_dict()})
    assert (
        parse_answer_line(_ask(SimulatedPolicy(NO_TRAP), bare, temperature=0.0).completions[0].text) == "77"
    )


# ------------------------------------------------------------------ an engine built from its parameters


def test_fingerprints_are_unchanged_by_the_engine_api() -> None:
    """Pinned before the policy stopped taking problems: the same params and seed, the same string."""
    assert SimulatedPolicy().fingerprint == "simulated-v1:221c462c4e66827b"
    assert SimulatedPolicy(SimulatedPolicyParams(error_rate=0.2), seed=3).fingerprint == (
        "simulated-v1:2a6235984a979703"
    )


def test_requests_carry_the_problem() -> None:
    request = GenerationRequest(TOY, SLIPPED_FIRST, 2, SamplingParams(), 0)
    assert (request.problem_id, request.question) == ("toy-0", TOY_QUESTION)
    assert request.prompt == f"{TOY_QUESTION}\n\n{SLIPPED_FIRST[0]}\n\n"


def test_per_problem_state_is_memoised_in_a_bounded_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most TASK_CACHE_SIZE problems are held; an evicted one is rebuilt with identical outputs."""
    monkeypatch.setattr(simulated_module, "TASK_CACHE_SIZE", 3)
    problems = generate_arith_problems(5, seed=2)
    policy = SimulatedPolicy(seed=4)
    first = [_ask(policy, p, n=3) for p in problems]
    assert policy.memoised_problems == 3
    assert [_ask(policy, p, n=3) for p in problems] == first
    assert [_ask(SimulatedPolicy(seed=4), p, n=3) for p in problems] == first


def test_a_different_problem_under_a_known_id_is_not_served_stale_state() -> None:
    policy = SimulatedPolicy(NO_TRAP)
    assert parse_answer_line(_ask(policy, TOY, temperature=0.0).completions[0].text) == "77"
    other = Plan((PlanStep(("It is ", "."), (Calc("5*5"),)),))
    renamed = dataclasses.replace(TOY, meta={"plan": other.to_dict()})
    assert (
        _ask(policy, renamed, temperature=0.0).completions[0].text
        == "It is 5*5 = <<5*5=25>>25.\nThe answer is: 25"
    )
    copy = dataclasses.replace(TOY, meta={"plan": TOY_PLAN.to_dict()})  # equal, not identical: served as TOY
    assert parse_answer_line(_ask(policy, copy, temperature=0.0).completions[0].text) == "77"


def test_the_policy_pickles_without_its_memo() -> None:
    policy = SimulatedPolicy(SimulatedPolicyParams(error_rate=0.3), seed=2)
    before = _ask(policy, TOY, n=5)
    clone = pickle.loads(pickle.dumps(policy))
    assert clone.fingerprint == policy.fingerprint
    assert clone.memoised_problems == 0
    assert _ask(clone, TOY, n=5) == before


def _long_problem(steps: int) -> Problem:
    """A GSM8K-style chain: each step one calc over the previous result and an older one."""
    parts = []
    for k in range(steps):
        if k == 0:
            expr = "40+2"
        elif k % 3 == 0:
            expr = f"{{c{k - 1}}}-{{c{k // 2}}}+{k % 9 + 1}"
        else:
            expr = f"{{c{k - 1}}}+{k % 7 + 1}"
        parts.append(PlanStep((f"Step {k}: they have ", " coins."), (Calc(expr),)))
    plan = Plan(tuple(parts))
    # One id for every length: the trap (if any) falls at the same relative place.
    return Problem("long", "math", "Coins: 40 and 2.", "0", "test", {"plan": plan.to_dict()})


@pytest.mark.parametrize(
    ("params", "per_calc"),
    [(NO_TRAP, 1.5), (SimulatedPolicyParams(error_rate=0.3, self_correct_prob=0.5, trap_share=1.0), 3.0)],
    ids=["plain", "trap-and-self-correction"],
)
def test_expression_evaluations_grow_linearly_with_the_steps(
    params: SimulatedPolicyParams, per_calc: float
) -> None:
    """One evaluation per calc written, plus those of mistakes and of the healed values after a trap:
    a completion, and a continuation of a long prefix, cost time linear in the plan's steps."""
    per_completion = {}
    for steps in (300, 600, 1200):
        problem = _long_problem(steps)
        policy = SimulatedPolicy(params, seed=1)
        sampled = _ask(policy, problem, n=4, temperature=1.0, max_tokens=10**6)
        per_completion[steps] = policy.evaluations / 4
        assert per_completion[steps] <= per_calc * steps
        prefix = split_steps(sampled.completions[0].text)[: steps // 2]
        before = policy.evaluations
        _ask(policy, problem, prefix, n=4, temperature=1.0)
        assert (policy.evaluations - before) / 4 <= per_calc * (steps - len(prefix))  # reading it costs none
    assert per_completion[600] <= 2.2 * per_completion[300]
    assert per_completion[1200] <= 2.2 * per_completion[600]


def test_a_five_thousand_step_plan_is_generated() -> None:
    problem = _long_problem(5000)
    policy = SimulatedPolicy(NO_TRAP)
    text = _ask(policy, problem, temperature=0.0, max_tokens=10**6).completions[0].text
    assert exact_truth(problem, split_steps(text)).first_error == -1
    assert policy.evaluations == 5000
