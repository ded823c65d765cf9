"""The logic suite: reproducible derivations, errors injected where they say, truth checked by Z3."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from prmforge.languages.formula import Atom, format_step, parse_formula, parse_premises, parse_step
from prmforge.schemas.records import Problem
from prmforge.suites.logic import exact_logic_truth, generate_logic_problems, generate_logic_rollouts
from prmforge.suites.logic_semantics import entails
from prmforge.verifiers.verdict import Verdict
from prmforge.verifiers.z3_entailment import Z3EntailmentVerifier


@pytest.fixture(scope="module")
def z3v() -> Iterator[Z3EntailmentVerifier]:
    with Z3EntailmentVerifier() as verifier:
        yield verifier


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return generate_logic_problems(40, seed=5)


def reference(problem: Problem) -> list[str]:
    return [render(t, entry) for t, entry in enumerate(problem.meta["plan"])]


def render(t: int, entry: dict[str, object]) -> str:
    text = f"Step {t + 1}: from {' and '.join(entry['cites'])}, by {entry['rule']}: {entry['formula']}"  # type: ignore[arg-type]
    claim = parse_step(text)
    return format_step(t + 1, claim.cites, claim.rule, claim.conclusion)


def _depends(steps: tuple[str, ...], t: int, replaced: list[int]) -> bool:
    """Whether step t is replaced or cites, directly or through other steps, a replaced step."""
    if t in replaced:
        return True
    cites = parse_step(steps[t]).cites
    return any(c.kind == "S" and _depends(steps, c.number - 1, replaced) for c in cites)


def test_reproducible() -> None:
    first = generate_logic_problems(12, seed=3)
    assert generate_logic_problems(12, seed=3) == first
    assert generate_logic_problems(4, seed=3) == first[:4]
    assert [p.question for p in generate_logic_problems(12, seed=4)] != [p.question for p in first]
    rollouts = generate_logic_rollouts(first[0], 5, seed=9, error_rate=0.3)
    assert generate_logic_rollouts(first[0], 5, seed=9, error_rate=0.3) == rollouts
    assert generate_logic_rollouts(first[0], 2, seed=9, error_rate=0.3) == rollouts[:2]


def test_records_are_well_formed(problems: list[Problem]) -> None:
    kinds = Counter(p.meta["first_order"] for p in problems)
    assert kinds[True] > 5
    assert kinds[False] > 5
    for p in problems:
        assert (p.domain, p.source) == ("logic", "logic")
        assert json.loads(json.dumps(dict(p.meta))) == dict(p.meta)
        premises = parse_premises(p.question)
        assert [premises[n + 1] for n in range(len(premises))] == [
            parse_formula(t) for t in p.meta["premises"]
        ]
        assert p.gold == p.meta["plan"][-1]["formula"]
        assert f"Goal: {p.gold}" in p.question
        assert 3 <= len(p.meta["plan"]) <= 10


def test_reference_derivations_are_correct(problems: list[Problem]) -> None:
    for p in problems:
        truth = exact_logic_truth(p, reference(p))
        assert truth.first_error == -1, p.problem_id


def test_every_error_recipe_is_an_invalid_step(problems: list[Problem]) -> None:
    kinds: Counter[str] = Counter()
    for p in problems:
        steps = reference(p)
        for t, entry in enumerate(p.meta["plan"]):
            for error in entry["errors"]:
                kinds[error["kind"]] += 1
                broken = [*steps[:t], render(t, error), *steps[t + 1 :]]
                truth = exact_logic_truth(p, broken)
                assert truth.first_error == t, (p.problem_id, t, error)
    assert set(kinds) >= {
        "affirming the consequent",
        "denying the antecedent",
        "wrong instantiation",
        "illicit conversion",
        "dropped negation",
        "added negation",
        "hasty generalization",
        "illicit quantifier swap",
    }


def test_errors_are_injected_at_the_replaced_steps(problems: list[Problem]) -> None:
    injected = 0
    for p in problems:
        ref = reference(p)
        for steps, truth in generate_logic_rollouts(p, 3, seed=1, error_rate=0.25):
            assert len(steps) == len(ref)
            replaced = [t for t, (a, b) in enumerate(zip(steps, ref, strict=True)) if a != b]
            injected += len(replaced)
            # Steps before the first replaced one are the reference's, so correct; the first replaced
            # one is invalid by construction. Later steps rest on wrong claims and are judged locally.
            assert truth.first_error == (replaced[0] if replaced else -1)
            assert all(truth.step_correct[: truth.first_error if truth.first_error >= 0 else None])
            assert all(truth.step_correct[t] for t in range(len(steps)) if not _depends(steps, t, replaced))
    assert injected > 20
    assert all(
        truth.first_error == -1 for p in problems for _, truth in generate_logic_rollouts(p, 1, 2, 0.0)
    )


def test_truth_agrees_with_z3_on_every_step(z3v: Z3EntailmentVerifier) -> None:
    rollouts = [
        (p, steps, truth)
        for p in generate_logic_problems(25, seed=11)
        for steps, truth in generate_logic_rollouts(p, 2, seed=4, error_rate=0.3)
    ]
    assert len(rollouts) == 50
    checked: Counter[bool] = Counter()
    for p, steps, truth in rollouts:
        checks = z3v.check_steps(p, steps)
        for t, (check, good) in enumerate(zip(checks, truth.step_correct, strict=True)):
            assert check.verdict is (Verdict.PASS if good else Verdict.FAIL), (p.problem_id, t, check.reason)
            checked[good] += 1
    assert checked[False] > 20
    assert checked[True] > 100


def test_premises_are_consistent(problems: list[Problem], z3v: Z3EntailmentVerifier) -> None:
    for p in problems:
        premises = [parse_formula(t) for t in p.meta["premises"]]
        assert z3v.check_entailment(premises, Atom("Absurd")).verdict is Verdict.FAIL, p.problem_id


def test_judge_edge_cases(problems: list[Problem]) -> None:
    p = problems[0]
    steps = reference(p)
    assert exact_logic_truth(p, []).first_error == 0
    garbled = [steps[0], "Step 2: the rest is obvious", *steps[2:]]
    assert exact_logic_truth(p, garbled).step_correct[1] is False
    future = [steps[0].replace("from ", "from S5 and ", 1), *steps[1:]]
    assert exact_logic_truth(p, future).first_error == 0
    missing = [steps[0].replace("from ", "from P99 and ", 1), *steps[1:]]
    assert exact_logic_truth(p, missing).first_error == 0


@pytest.mark.parametrize(
    ("premises", "conclusion", "expected"),
    [
        (["Rain -> Wet", "Rain"], "Wet", True),
        (["Rain -> Wet", "Wet"], "Rain", False),
        (["all x. (A(x) -> B(x))", "all x. (B(x) -> C(x))"], "all x. (A(x) -> C(x))", True),
        (["all x. (A(x) -> B(x))", "A(a)"], "B(b)", False),
        (["exists x. A(x)", "exists x. B(x)"], "exists x. (A(x) & B(x))", False),
        (["all x. A(x)"], "exists x. A(x)", True),
        (["exists y. all x. L(x, y)"], "all x. exists y. L(x, y)", True),
        (["all x. exists y. L(x, y)"], "exists y. all x. L(x, y)", False),
    ],
)
def test_finite_model_entailment(premises: list[str], conclusion: str, expected: bool) -> None:
    assert entails(tuple(parse_formula(t) for t in premises), parse_formula(conclusion)) is expected


def test_a_slice_is_generated_without_the_problems_before_it() -> None:
    whole = generate_logic_problems(9, seed=3)
    assert generate_logic_problems(4, seed=3, start=5) == whole[5:9]
