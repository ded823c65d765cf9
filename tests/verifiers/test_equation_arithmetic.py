"""The grammar of a claim side and its exact rational value (roots, powers, factorials, binomials)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from prmforge.verifiers.equation_exact import EvalError, NotRational, Value, evaluate, literal
from prmforge.verifiers.equation_grammar import Ambiguous, GrammarError, has, parse, to_json, variables


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(text.split())


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("1 + 2 * 3", ("+", ("num", "1"), ("*", ("num", "2"), ("num", "3")))),
        ("2 ^ 3 ^ 2", ("^", ("num", "2"), ("^", ("num", "3"), ("num", "2")))),
        ("2 x", ("*", ("num", "2"), ("var", "x"))),
        ("3 ( 4 + 1 )", ("*", ("num", "3"), ("+", ("num", "4"), ("num", "1")))),
        ("2 sqrt ( 3 )", ("*", ("num", "2"), ("sqrt", ("num", "3")))),
        ("root ( 3 ) ( 8 )", ("root", ("num", "3"), ("num", "8"))),
        ("binom ( 5 ) ( 2 )", ("binom", ("num", "5"), ("num", "2"))),
        ("5 ! + 50 %", ("+", ("!", ("num", "5")), ("%", ("num", "50")))),
        ("- x ^ 2", ("neg", ("^", ("var", "x"), ("num", "2")))),
        ("[ 2 a + 5 d ]", ("+", ("*", ("num", "2"), ("var", "a")), ("*", ("num", "5"), ("var", "d")))),
        ("2 pi r", ("*", ("*", ("num", "2"), ("pi",)), ("var", "r"))),
    ],
)
def test_trees(text: str, tree: tuple[object, ...]) -> None:
    """Precedence, juxtaposition and functions give one tree per side."""
    assert parse(_tokens(text)) == tree


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("1 / 2 x", Ambiguous),  # (1/2)x or 1/(2x)
        ("6 / 2 ( 1 + 2 )", Ambiguous),
        ("- 2 ^ 2", Ambiguous),  # -(2^2) or (-2)^2
        ("( 1 + 2", GrammarError),
        ("( 1 + 2 ]", GrammarError),
        ("1 +", GrammarError),
        ("sqrt 4", GrammarError),
        ("2 3", GrammarError),
        ("x 2", GrammarError),
        ("( " * 50 + "1" + " )" * 50, GrammarError),  # nested too deeply
        ("- " * 50 + "1", GrammarError),
        (" ^ ".join(["2"] * 50), GrammarError),
    ],
)
def test_trees_refused(text: str, error: type[Exception]) -> None:
    """Readings people write two ways, and broken expressions, are refused."""
    with pytest.raises(error):
        parse(_tokens(text))


def test_tree_helpers() -> None:
    """Variables, node kinds and the JSON form of a tree."""
    tree = parse(_tokens("x ^ 2 + sqrt ( y ) / 2"))
    assert variables(tree) == frozenset({"x", "y"})
    assert has(tree, frozenset({"sqrt"}))
    assert not has(tree, frozenset({"!"}))
    assert to_json(parse(_tokens("2 x"))) == ["*", ["num", "2"], ["var", "x"]]


def _value(text: str, percent: bool = False) -> Fraction:
    return evaluate(parse(_tokens(text)), percent=percent, widen=None).exact


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("sqrt ( 16 )", Fraction(4)),
        ("sqrt ( 0.25 )", Fraction(1, 2)),
        ("sqrt ( ( 9 ) / ( 4 ) )", Fraction(3, 2)),
        ("root ( 3 ) ( 27 )", Fraction(3)),
        ("root ( 3 ) ( - 8 )", Fraction(-2)),
        ("8 ^ ( ( 2 ) / ( 3 ) )", Fraction(4)),
        ("( ( 1 ) / ( 4 ) ) ^ ( ( 1 ) / ( 2 ) )", Fraction(1, 2)),
        ("2 ^ 100", Fraction(2**100)),
        ("2 ^ - 3", Fraction(1, 8)),
        ("5 !", Fraction(120)),
        ("0 !", Fraction(1)),
        ("binom ( 6 ) ( 2 )", Fraction(15)),
        ("binom ( 3 ) ( 5 )", Fraction(0)),
        ("floor ( 3.7 ) + ceil ( 3.2 )", Fraction(7)),
        ("floor ( - 3.5 )", Fraction(-4)),
        ("3 ( 4 + 1 ) - 2", Fraction(13)),
    ],
)
def test_exact_values(text: str, value: Fraction) -> None:
    """Roots, powers, factorials and binomials are exact when rational."""
    assert _value(text) == value


def test_percent_is_read_both_ways() -> None:
    """``%`` divides by 100 in the percent reading, and is a mere sign in the other."""
    assert (_value("50 %", percent=True), _value("50 %")) == (Fraction(1, 2), Fraction(50))


@pytest.mark.parametrize("text", ["sqrt ( 2 )", "2 pi", "x + 1", "root ( 3 ) ( 9 )", "2 ^ ( ( 1 ) / ( 2 ) )"])
def test_irrational_or_symbolic_values_are_not_rational(text: str) -> None:
    """A variable, pi or an irrational root leaves exact arithmetic (for sympy)."""
    with pytest.raises(NotRational):
        _value(text)


@pytest.mark.parametrize(
    "text",
    ["1 / 0", "sqrt ( - 4 )", "2 ^ 100000", "3.5 !", "1000 !", "binom ( 2.5 ) ( 1 )", "root ( 1.5 ) ( 8 )"],
)
def test_values_refused(text: str) -> None:
    """Division by zero, even roots of negatives, huge or non-integer factorials are refused."""
    with pytest.raises(EvalError):
        _value(text)


def test_rounded_literals_carry_an_interval() -> None:
    """A literal with the widening number of places may be rounded: half a unit either side."""
    assert literal("0.333", widen=3) == Value(Fraction("0.333"), Fraction("0.3325"), Fraction("0.3335"))
    assert literal("0.33", widen=3).point
    wide = evaluate(parse(_tokens("0.333 * 3")), percent=False, widen=3)
    assert (wide.lo, wide.hi) == (Fraction("0.9975"), Fraction("1.0005"))
    with pytest.raises(EvalError):  # 3.0000 may be 2.99996: its floor is 2 or 3
        evaluate(parse(_tokens("floor ( 3.0000 )")), percent=False, widen=3)
