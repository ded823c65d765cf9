"""Tool annotator: verdicts become hard labels, values, a first error, cost and provenance."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from prmforge.annotators.base import Annotator
from prmforge.annotators.tool import ToolAnnotator, first_error_from_hard, labels_from_checks
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import Problem, Rollout, SamplingParams
from prmforge.suites.logic import generate_logic_problems, generate_logic_rollouts
from prmforge.verifiers.equations import EquationVerifier
from prmforge.verifiers.verdict import Check, Verdict
from prmforge.verifiers.z3_entailment import Z3EntailmentVerifier


def rollout(problem_id: str, steps: Sequence[str], rollout_id: str = "r0") -> Rollout:
    return Rollout(
        rollout_id=rollout_id,
        problem_id=problem_id,
        policy="test",
        sampling=SamplingParams(),
        seed=0,
        text="\n\n".join(steps),
        steps=tuple(steps),
        final_answer=None,
        outcome=None,
        prompt_tokens=0,
        completion_tokens=0,
    )


def check(verdict: Verdict) -> Check:
    return Check(verdict, "r", "tool", "1")


@pytest.mark.parametrize(
    ("hard", "first_error"),
    [
        ((), -1),
        ((True, True), -1),
        ((True, False, None), 1),
        ((False,), 0),
        ((True, None, False), None),
        ((None, True), None),
        ((True, None), None),
    ],
)
def test_first_error_from_hard(hard: tuple[bool | None, ...], first_error: int | None) -> None:
    assert first_error_from_hard(hard) == first_error


def test_labels_from_checks_follow_verdict_status() -> None:
    checks = [check(v) for v in (Verdict.PASS, Verdict.SOLVER_UNKNOWN, Verdict.FAIL, Verdict.TIMEOUT)]
    assert labels_from_checks(checks) == ((1.0, None, 0.0, 0.0), (True, None, False, False), None)
    checks = [check(v) for v in (Verdict.PASS, Verdict.FAIL, Verdict.INFRA_ERROR, Verdict.ABSTAIN)]
    assert labels_from_checks(checks) == ((1.0, 0.0, None, None), (True, False, None, None), 1)


def test_equation_annotator_labels_steps() -> None:
    annotator = ToolAnnotator(EquationVerifier(), "equations")
    assert isinstance(annotator, Annotator)
    assert annotator.name == "equations"
    problem = Problem("p1", "math", "How many?", "13", "test")
    rollouts = [
        rollout("p1", ["18 - 6 = 12", "12 + 2 = 15", "So the answer is 15."], "a"),
        rollout("p1", ["18 - 6 = 12", "12 + 1 = 13"], "b"),
        rollout("p1", ["We start.", "12 + 2 = 15"], "c"),
    ]
    a, b, c = annotator.annotate({"p1": problem}, rollouts)
    assert (a.source, a.rollout_id) == ("equations", "a")
    assert (a.values, a.hard, a.first_error) == ((1.0, 0.0, None), (True, False, None), 1)
    assert (b.values, b.hard, b.first_error) == ((1.0, 1.0), (True, True), -1)
    assert (c.hard, c.first_error) == ((None, False), None)
    assert a.cost.tool_calls == 3
    assert a.cost.completions == 0
    assert a.cost.seconds >= 0.0
    steps = a.meta["checks"]
    assert a.meta["tool"] == "equations"
    assert [s["verdict"] for s in steps] == ["PASS", "FAIL", "ABSTAIN"]
    assert steps[1]["reason"] == "false: 12+2 = 15 (the left side is 14)"
    assert {(s["tool"], s["tool_version"]) for s in steps} == {("equations", "prmforge-equations/2")}
    assert all(len(s["digest"]) == 16 for s in steps)
    assert json.loads(json.dumps(dict(a.meta))) == dict(a.meta)


def test_z3_annotator_matches_logic_truth() -> None:
    problems = generate_logic_problems(6, seed=2)
    pairs = [(p, steps, truth) for p in problems for steps, truth in generate_logic_rollouts(p, 2, 3, 0.3)]
    rollouts = [rollout(p.problem_id, steps, f"r{i}") for i, (p, steps, _) in enumerate(pairs)]
    with Z3EntailmentVerifier() as verifier:
        labels = ToolAnnotator(verifier, "z3").annotate({p.problem_id: p for p in problems}, rollouts)
    for label, (_, _, truth) in zip(labels, pairs, strict=True):
        assert label.hard == truth.step_correct
        assert label.first_error == truth.first_error
        assert label.cost.tool_calls == len(truth.step_correct)
        assert {s["tool"] for s in label.meta["checks"]} == {"z3"}


class _Short:
    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        return [check(Verdict.PASS)]


def test_a_verifier_that_skips_steps_is_refused() -> None:
    problem = Problem("p1", "math", "?", "", "test")
    with pytest.raises(ValueError, match="1 checks, 2 steps"):
        ToolAnnotator(_Short(), "short").annotate({"p1": problem}, [rollout("p1", ["a", "b"])])


class _Raising:
    """Raises TypeError on the rollout whose first step is ``boom`` (a tool bug, a hostile input)."""

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        if steps and steps[0] == "boom":
            raise TypeError("unhashable type: 'list'")
        return [check(Verdict.PASS) for _ in steps]


def test_a_verifier_that_raises_on_one_rollout_leaves_the_others_labelled() -> None:
    problem = Problem("p1", "math", "?", "", "test")
    rollouts = [
        rollout("p1", ["a", "b"], "r0"),
        rollout("p1", ["boom", "c"], "r1"),
        rollout("p1", ["d"], "r2"),
    ]
    first, bad, last = ToolAnnotator(_Raising(), "raising").annotate({"p1": problem}, rollouts)
    assert (first.hard, first.first_error, last.hard) == ((True, True), -1, (True,))
    assert (bad.values, bad.hard, bad.first_error) == ((None, None), (None, None), None)
    assert bad.meta["verifier_error"] == "TypeError: unhashable type: 'list'"
    assert [c["verdict"] for c in bad.meta["checks"]] == ["INFRA_ERROR", "INFRA_ERROR"]
    assert bad.meta["checks"][0]["reason"] == "the verifier raised TypeError: unhashable type: 'list'"
    assert "verifier_error" not in first.meta


class _Misconfigured:
    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        raise ConfigError("annotate.0.threshold: must be below 1")


def test_a_configuration_error_still_stops_the_build() -> None:
    problem = Problem("p1", "math", "?", "", "test")
    with pytest.raises(ConfigError, match="threshold"):
        ToolAnnotator(_Misconfigured(), "bad").annotate({"p1": problem}, [rollout("p1", ["a"])])
