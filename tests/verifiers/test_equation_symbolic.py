"""Claims with variables or irrationals: sympy's facts under a time limit, and the rules that use them."""

from __future__ import annotations

import pytest

from prmforge.verifiers._equation_worker import facts as worker_facts
from prmforge.verifiers.equation_cues import Mentions
from prmforge.verifiers.equation_engine import SymbolicEngine
from prmforge.verifiers.equation_grammar import Node, parse, to_json
from prmforge.verifiers.equation_symbolic import (
    Facts,
    LinkContext,
    assignments,
    decide,
    expanded,
    request_facts,
    rewriting_shape,
    unexpanded,
)
from prmforge.verifiers.verdict import Verdict


def _tree(text: str) -> Node:
    return parse(tuple(text.split()))


def _facts(left: str, right: str, **subs: str) -> Facts:
    found = request_facts(
        _tree(left), _tree(right), percent=False, subs={k: _tree(v) for k, v in subs.items()}
    )
    assert found is not None
    return found


# ---------------------------------------------------------------------------------------- facts


def test_numeric_facts() -> None:
    """Irrational numbers are compared to 35 digits; the gap is relative."""
    exact = _facts("sqrt ( 50 )", "5 sqrt ( 2 )")
    assert (exact.numeric, exact.equal, exact.real) == (True, True, True)
    wrong = _facts("sqrt ( 12 )", "3 sqrt ( 2 )")
    assert (wrong.equal, wrong.left, wrong.right) == (False, "3.464101615", "4.242640687")
    assert wrong.gap == pytest.approx(0.1835, abs=1e-4)
    assert _facts("sqrt ( - 4 )", "2").real is False
    assert _facts("pi", "( 22 ) / ( 7 )").gap == pytest.approx(0.000402, abs=1e-6)


@pytest.mark.parametrize(
    ("left", "right", "equal", "constant", "degrees"),
    [
        ("( x + 1 ) ^ 2", "x ^ 2 + 2 x + 1", True, None, (2, 2, -1)),
        ("( x + 1.3 ) ^ 2", "x ^ 2 + ( 2.6 ) x + 1.69", True, None, (2, 2, -1)),
        ("( x + 1 ) ^ 2", "x ^ 2 + x + 1", False, None, (2, 2, 1)),
        ("2 x + 3", "2 x + 5", False, "-2", (1, 1, 0)),
        ("( ( x ^ 2 - 1 ) / ( x - 1 ) )", "x + 1", True, None, None),
        ("sqrt ( x ) + 1", "sqrt ( x ) + 2", False, "-1", None),
        ("x ( x + 1 )", "( x + 3 ) ( x - 1 )", False, None, (2, 2, 1)),
        ("a ^ 2 - b ^ 2", "( a - b ) ( a + b )", True, None, (2, 2, -1)),
    ],
)
def test_identity_facts(
    left: str, right: str, equal: bool, constant: str | None, degrees: tuple[int, int, int] | None
) -> None:
    """With free variables: identity, a constant difference, and the sides' total degrees."""
    found = _facts(left, right)
    assert (found.numeric, found.equal, found.constant_gap, found.degrees) == (
        False,
        equal,
        constant,
        degrees,
    )


def test_substituted_values() -> None:
    """Values given in the step are substituted before comparing."""
    assert _facts("2 x + 1", "7", x="3").equal
    found = _facts("2 x + 1", "8", x="3")
    assert (found.numeric, found.equal, found.left, found.right) == (True, False, "7", "8")


def test_the_worker_rebuilds_trees_without_parsing_text() -> None:
    """The child reads trees node by node; a request it cannot build answers an error."""
    reply = worker_facts({"left": to_json(_tree("binom ( 5 ) ( 2 )")), "right": ["num", "10"]})
    assert reply["equal"] is True
    with pytest.raises(ValueError, match="not a claim tree"):
        worker_facts({"left": ["__import__", "os"], "right": ["num", "1"]})


def test_engine_time_limit_kills_and_restarts_the_child() -> None:
    """A request past the limit gets None, and the next one a fresh child; answers are cached."""
    engine = SymbolicEngine(timeout_s=1.0)
    try:
        request = {"left": ["num", "1"], "right": ["num", "1"]}
        assert engine.facts({**request, "sleep": 5}) is None
        assert engine.restarts == 1
        assert engine.facts(request) is not None
        calls = engine.calls
        assert engine.facts(request) is not None
        assert engine.calls == calls  # the cache answered
        assert engine.facts({"left": ["^", ["var", "x"], ["var", "y"]], "right": ["bad"]}) is None
    finally:
        engine.close()
    with pytest.raises(ValueError, match="timeout_s"):
        SymbolicEngine(timeout_s=0)


# ---------------------------------------------------------------------------------------- rules


def _symbolic(**kw: object) -> Facts:
    base: dict[str, object] = {
        "numeric": False,
        "real": True,
        "equal": False,
        "free": (frozenset({"x"}), frozenset({"x"})),
    }
    return Facts(**{**base, **kw})  # type: ignore[arg-type]


def _numeric(gap: float, **kw: object) -> Facts:
    return Facts(numeric=True, real=True, equal=False, left="1", right="2", gap=gap, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "context", "outcome"),
    [
        # numbers
        (_numeric(0.3), LinkContext(), "false"),
        (_numeric(0.004), LinkContext(rational_side=True), "approx"),  # an irrational rounded: pi 49 = 154
        (_numeric(0.004), LinkContext(), "false"),  # sqrt(54 * 156) = sqrt(8504): no side was rounded
        (_numeric(0.015), LinkContext(decimals=True), "approx"),  # sqrt(2) = 1.41
        (_numeric(0.015), LinkContext(), "false"),
        (_numeric(0.04), LinkContext(mentions=Mentions(approximate=True)), "approx"),
        (_numeric(0.3, integers=True), LinkContext(mentions=Mentions(modular=True)), "modular"),
        (_numeric(0.3), LinkContext(substituted=True), "condition"),  # x = 0 may be another case
        (_numeric(0.3), LinkContext(had_variables=True, mentions=Mentions(solving=True)), "condition"),
        (Facts(numeric=True, real=False, equal=False), LinkContext(), "unparseable"),
        # variables: an equation in unknowns is a condition...
        (_symbolic(), LinkContext(), "condition"),
        (_symbolic(degrees=(1, 0, 1), free=(frozenset({"x"}), frozenset())), LinkContext(), "condition"),
        (_symbolic(equal=True), LinkContext(), "holds"),
        # ...unless no value satisfies it
        (_symbolic(constant_gap="-2"), LinkContext(), "false"),
        (_symbolic(constant_gap="-2"), LinkContext(names_a_variable=True), "condition"),  # S = S + 2
        (_symbolic(constant_gap="-2"), LinkContext(mentions=Mentions(solving=True)), "condition"),
        (_symbolic(constant_gap="-2"), LinkContext(mentions=Mentions(trial=True)), "condition"),
        (_symbolic(constant_gap="-2"), LinkContext(mentions=Mentions(division=True)), "condition"),
        # ...or the step asserts it for every value: a chain continuing an identity, an expansion
        (_symbolic(degrees=(2, 2, 1)), LinkContext(previous_identity=True), "false"),
        (
            _symbolic(degrees=(2, 1, 2)),
            LinkContext(previous_identity=True),
            "condition",
        ),  # leading terms differ
        (_symbolic(degrees=(2, 2, 1)), LinkContext(), "condition"),
        (
            _symbolic(degrees=(2, 2, 1)),
            LinkContext(mentions=Mentions(rewriting=True), rewriting_shape=True),
            "false",
        ),
        (_symbolic(degrees=(2, 2, 1)), LinkContext(mentions=Mentions(rewriting=True)), "condition"),
        (
            _symbolic(degrees=(2, 2, 1)),
            LinkContext(mentions=Mentions(rewriting=True, solving=True), rewriting_shape=True),
            "condition",
        ),
        (
            _symbolic(degrees=(2, 2, 1)),
            LinkContext(mentions=Mentions(rewriting=True), rewriting_shape=True, side_reused=True),
            "condition",
        ),
        (
            _symbolic(degrees=(2, 2, 1)),
            LinkContext(mentions=Mentions(rewriting=True), rewriting_shape=True, first_link=False),
            "condition",
        ),
        (
            _symbolic(degrees=(2, 2, 1)),
            LinkContext(previous_identity=True, mentions=Mentions(base=True)),
            "condition",
        ),
    ],
)
def test_decide(facts: Facts, context: LinkContext, outcome: str) -> None:
    """Each rule of :func:`decide`, and each exception to it."""
    assert decide(facts, context)[0] == outcome


@pytest.mark.parametrize(
    ("text", "is_unexpanded", "is_expanded"),
    [
        ("( x + 1 ) ^ 2", True, False),
        ("2 ( x + 3 )", True, False),
        ("x ^ 2 + 2 x + 1", False, True),
        ("( 2 x ) ^ 2", False, True),
        ("( ( x ) / ( 2 ) ) + 1", False, False),
        ("3 + 4", False, False),
    ],
)
def test_shapes(text: str, is_unexpanded: bool, is_expanded: bool) -> None:
    """Unexpanded: a bracketed sum of variables multiplied or raised; expanded: a sum of monomials."""
    assert (unexpanded(_tree(text)), expanded(_tree(text))) == (is_unexpanded, is_expanded)
    assert rewriting_shape(_tree("( x + 1 ) ^ 2"), _tree("x ^ 2 + 1"))
    assert not rewriting_shape(_tree("( x + 1 ) ^ 2"), _tree("( x - 1 ) ^ 2"))


def test_assignments_keep_one_value_per_variable() -> None:
    """A variable given two different values is given none; equal values written twice count once."""
    seven, other = _tree("7"), _tree("8")
    given = [(0, "x", seven, "7"), (1, "x", _tree("3 + 4"), "7"), (2, "y", seven, "7"), (3, "y", other, "8")]
    assert assignments(given) == {"x": (0, seven)}
    assert assignments([(0, "z", _tree("x + 1"), "x+1")]) == {}


def test_a_claim_sympy_cannot_finish_in_time_is_left_undecided() -> None:
    """Expanding a 40th power of eight variables runs past the limit: ABSTAIN, within seconds."""
    from prmforge.verifiers.equations import check_text

    check, results = check_text("$(a+b+c+d+p+q+r+s)^{40} = a^{40} + b$")
    assert (check.verdict, [r.outcome for r in results]) == (Verdict.ABSTAIN, ["timeout"])
    assert check.seconds < 10
