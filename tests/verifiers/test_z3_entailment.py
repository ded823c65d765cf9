"""Z3 local entailment in a child process: verdicts, countermodels, determinism, hard kills, crashes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import z3

from prmforge.languages.formula import (
    FormulaError,
    entailment_smt2,
    format_formula,
    parse_formula,
    parse_step,
)
from prmforge.schemas.records import Problem
from prmforge.verifiers.base import StepVerifier
from prmforge.verifiers.verdict import Verdict
from prmforge.verifiers.z3_entailment import Z3EntailmentVerifier, Z3Settings

# Z3 issue #7607: a^3 + b^3 = c^3 over positive integers. A small rlimit stops it deterministically;
# with no budget at all it runs until it is killed.
FERMAT = """
(declare-const a Int)
(declare-const b Int)
(declare-const c Int)
(declare-const n Int)
(assert (>= a 1))
(assert (>= b 1))
(assert (>= c 1))
(assert (= n 3))
(assert (= (+ (^ a n) (^ b n)) (^ c n)))
"""

PROBLEM = Problem(
    problem_id="logic-t",
    domain="logic",
    question="\n".join(
        [
            "Premises:",
            "P1: all x. (Dog(x) -> Animal(x))",
            "P2: Dog(rex)",
            "P3: Rain -> Wet",
            "P4: Wet",
            "Goal: Animal(rex)",
        ]
    ),
    gold="Animal(rex)",
    source="test",
)


@pytest.fixture(scope="module")
def verifier() -> Iterator[Z3EntailmentVerifier]:
    with Z3EntailmentVerifier(Z3Settings(rlimit=2_000_000)) as v:
        yield v


def f(text: str) -> object:
    return parse_formula(text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------ formulas


@pytest.mark.parametrize(
    "text",
    [
        "all x. (Dog(x) -> Animal(x))",
        "~(P & Q) | R",
        "P -> Q -> R",
        "(P -> Q) -> R",
        "exists y. all x. Likes(x, y)",
        "P & (all x. Q(x)) | R",
        "A <-> B",
        "~(exists x. Cat(x))",
    ],
)
def test_formulas_round_trip(text: str) -> None:
    formula = parse_formula(text)
    assert parse_formula(format_formula(formula)) == formula


def test_unicode_and_binding() -> None:
    assert format_formula(parse_formula("∀x.(P(x) ∧ ¬Q(x)) → R")) == "all x. (P(x) & ~Q(x) -> R)"
    assert format_formula(parse_formula("P -> Q -> R")) == "P -> Q -> R"
    assert parse_formula("P -> Q -> R") != parse_formula("(P -> Q) -> R")


@pytest.mark.parametrize("text", ["", "P &", "dog(x)", "P(X)", "P(a) & P(a, b)", "all X. P(X)", "P Q", "(P"])
def test_malformed_formulas_are_refused(text: str) -> None:
    with pytest.raises(FormulaError):
        parse_formula(text)


def test_smt2_rendering() -> None:
    smt = entailment_smt2([parse_formula("all x. (Dog(x) -> Animal(x))")], parse_formula("Animal(rex)"))
    assert smt.splitlines() == [
        "(declare-sort U 0)",
        "(declare-const c_rex U)",
        "(declare-fun p_Animal (U) Bool)",
        "(declare-fun p_Dog (U) Bool)",
        "(assert (forall ((v_x U)) (=> (p_Dog v_x) (p_Animal v_x))))",
        "(assert (not (p_Animal c_rex)))",
    ]
    assert "declare-sort" not in entailment_smt2([parse_formula("P")], parse_formula("P | Q"))


def test_step_text() -> None:
    claim = parse_step("Step 3: from P2 and S1, by modus ponens: Q(a)")
    assert ([str(c) for c in claim.cites], claim.rule, format_formula(claim.conclusion)) == (
        ["P2", "S1"],
        "modus ponens",
        "Q(a)",
    )
    with pytest.raises(FormulaError):
        parse_step("Therefore Q(a).")


# ------------------------------------------------------------------ verdicts


@pytest.mark.parametrize(
    ("premises", "conclusion", "verdict"),
    [
        (["Rain -> Wet", "Rain"], "Wet", Verdict.PASS),  # modus ponens
        (["Rain -> Wet", "~Wet"], "~Rain", Verdict.PASS),  # modus tollens
        (["~Rain | Wet", "Rain"], "Wet", Verdict.PASS),  # disjunctive syllogism
        (["Rain -> Wet", "Wet"], "Rain", Verdict.FAIL),  # affirming the consequent
        (["Rain -> Wet", "~Rain"], "~Wet", Verdict.FAIL),  # denying the antecedent
        (["Rain -> ~Wet", "Rain"], "Wet", Verdict.FAIL),  # dropped negation
        ([], "P | ~P", Verdict.PASS),
        (["all x. (Dog(x) -> Animal(x))", "Dog(rex)"], "Animal(rex)", Verdict.PASS),
        (["all x. (Dog(x) -> Animal(x))"], "Dog(tom) -> Animal(tom)", Verdict.PASS),
        (["all x. (Dog(x) -> Animal(x))", "Dog(rex)"], "Animal(tom)", Verdict.FAIL),  # wrong instantiation
        (["all x. (Dog(x) -> Animal(x))"], "all x. (Animal(x) -> Dog(x))", Verdict.FAIL),  # conversion
        (["Dog(rex)"], "exists x. Dog(x)", Verdict.PASS),
        (["Dog(rex)"], "all x. Dog(x)", Verdict.FAIL),  # hasty generalization
        (["exists y. all x. Likes(x, y)"], "all x. exists y. Likes(x, y)", Verdict.PASS),
        (["all x. exists y. Likes(x, y)"], "exists y. all x. Likes(x, y)", Verdict.FAIL),  # quantifier swap
    ],
)
def test_entailment_verdicts(
    verifier: Z3EntailmentVerifier, premises: list[str], conclusion: str, verdict: Verdict
) -> None:
    check = verifier.check_entailment([parse_formula(p) for p in premises], parse_formula(conclusion))
    assert check.verdict is verdict, check.reason
    assert (check.tool, check.tool_version) == ("z3", z3.get_full_version())
    assert len(check.output_digest) == 16


def test_countermodels_are_summarised(verifier: Z3EntailmentVerifier) -> None:
    check = verifier.check_entailment(
        [parse_formula("Rain -> Wet"), parse_formula("Wet")], parse_formula("Rain")
    )
    assert check.reason == "not entailed; countermodel: Rain=false; Wet=true"
    check = verifier.check_entailment(
        [parse_formula("all x. (Dog(x) -> Animal(x))"), parse_formula("Dog(rex)")],
        parse_formula("Animal(tom)"),
    )
    assert check.reason.startswith("not entailed; countermodel: domain {e0, e1}")
    model = check.reason.split("countermodel: ", 1)[1]
    facts = dict(part.split("=", 1) for part in model.split("; ")[1:])
    assert facts["rex"] != facts["tom"]
    assert facts["rex"] in facts["Dog"]
    assert facts["tom"] not in facts["Animal"]


def test_steps_are_checked_locally(verifier: Z3EntailmentVerifier) -> None:
    assert isinstance(verifier, StepVerifier)
    steps = [
        "Step 1: from P1, by universal instantiation: Dog(rex) -> Animal(rex)",
        "Step 2: from P3 and P4, by modus ponens: Rain",  # affirming the consequent
        "Step 3: from S1 and P2, by modus ponens: Animal(rex)",
        "Step 4: from S2 and P3, by modus ponens: Wet",  # valid given S2's claim: errors do not propagate
        "Step 5: from P9, by modus ponens: Wet",
        "Step 6: from S7, by modus ponens: Wet",
        "Step 7: therefore the dog is an animal",
        "Step 8: from S7, by modus ponens: Wet",
        "Step 9: from , by excluded middle: Rain | ~Rain",
    ]
    checks = verifier.check_steps(PROBLEM, steps)
    assert [c.verdict for c in checks] == [
        Verdict.PASS,
        Verdict.FAIL,
        Verdict.PASS,
        Verdict.PASS,
        Verdict.ABSTAIN,
        Verdict.ABSTAIN,
        Verdict.ABSTAIN,
        Verdict.ABSTAIN,
        Verdict.PASS,
    ]
    assert checks[4].reason == "cites P9: no such premise or earlier parsed step"
    assert checks[6].reason.startswith("step does not parse")


def test_unparseable_premises_abstain(verifier: Z3EntailmentVerifier) -> None:
    broken = Problem("b", "logic", "P1: Dog(rex) &", "", "test")
    checks = verifier.check_steps(broken, ["Step 1: from P1, by conjunction elimination: Dog(rex)"])
    assert checks[0].verdict is Verdict.ABSTAIN
    assert checks[0].reason.startswith("premises do not parse: premise P1")


# ---------------------------------------------------- budgets and failures


def test_rlimit_gives_the_same_unknown_twice(verifier: Z3EntailmentVerifier) -> None:
    first = verifier.check_smt2(FERMAT)
    second = verifier.check_smt2(FERMAT)
    assert first.verdict is Verdict.SOLVER_UNKNOWN
    assert first.reason.startswith("z3 unknown: canceled (rlimit 2000000, used ")
    assert (second.verdict, second.reason, second.output_digest) == (
        first.verdict,
        first.reason,
        first.output_digest,
    )


def test_a_hung_solver_is_killed_and_replaced() -> None:
    with Z3EntailmentVerifier(Z3Settings(rlimit=0, wall_timeout_s=1.0)) as v:
        assert v.check_smt2("(declare-const p Bool)(assert p)(assert (not p))").verdict is Verdict.PASS
        pid = v.worker.pid
        assert pid is not None
        started = time.monotonic()
        check = v.check_smt2(FERMAT)
        assert check.verdict is Verdict.UNAVAILABLE
        assert check.reason == "worker killed at the wall-clock deadline"
        assert time.monotonic() - started < 5.0
        assert not _alive(pid)
        assert v.worker.pid is None
        after = v.check_entailment([parse_formula("P")], parse_formula("P"))
        assert after.verdict is Verdict.PASS
        assert v.worker.pid not in (None, pid)


def test_a_worker_that_dies_is_an_infra_error() -> None:
    with Z3EntailmentVerifier(Z3Settings(rlimit=0, wall_timeout_s=30.0)) as v:
        assert v.check_entailment([parse_formula("P")], parse_formula("P")).verdict is Verdict.PASS
        pid = v.worker.pid
        assert pid is not None
        timer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
        timer.start()
        check = v.check_smt2(FERMAT)
        timer.join()
        assert check.verdict is Verdict.INFRA_ERROR
        assert check.reason == "worker died (killed by signal 9)"
        assert v.check_entailment([parse_formula("P")], parse_formula("P")).verdict is Verdict.PASS


def test_a_worker_that_cannot_start_is_an_infra_error() -> None:
    with Z3EntailmentVerifier(Z3Settings(memory_mb=40)) as v:
        check = v.check_entailment([parse_formula("P")], parse_formula("P"))
    assert check.verdict is Verdict.INFRA_ERROR
    assert check.reason.startswith("worker did not start: worker died (exit code")
    assert check.tool_version == "unknown"


def test_a_query_z3_rejects_is_an_infra_error(verifier: Z3EntailmentVerifier) -> None:
    check = verifier.check_smt2("(assert (undeclared_symbol 1))")
    assert check.verdict is Verdict.INFRA_ERROR
    assert check.reason.startswith("z3 rejected the query")
