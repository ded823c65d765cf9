"""Reading math in a step: where the math spans are, and what each LaTeX construct becomes."""

from __future__ import annotations

import pytest

from prmforge.verifiers.equation_latex import FN, VAR, normalize_math, pieces, split_math
from prmforge.verifiers.equation_text import extract_claims

_SHOWN = {VAR: "$", **{marker: f"<{name}>" for name, marker in FN.items()}}


def _shown(text: str) -> str:
    """A normalised math span with its markers spelled out and runs of spaces closed up."""
    for marker, name in _SHOWN.items():
        text = text.replace(marker, name)
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("So $x + 1 = 3$.", [(False, "So "), (True, "x + 1 = 3"), (False, ".")]),
        ("\\(a\\) and \\[b\\]", [(True, "a"), (False, " and "), (True, "b")]),
        ("$$3 + 4$$ done", [(True, "3 + 4"), (False, " done")]),
        ("\\begin{align*} a &= b \\end{align*}", [(True, " a &= b ")]),
        # currency, not math: an amount, a span ending in a space, prose between the signs
        ("$5 * 3 = $15", [(False, "$5 * 3 = $15")]),
        ("It costs $5 and then $3 more.", [(False, "It costs $5 and then $3 more.")]),
        ("pay $2 for the big apples and $1", [(False, "pay $2 for the big apples and $1")]),
        ("an unclosed $ sign", [(False, "an unclosed $ sign")]),
        ("two\n\nparagraphs $x\n\ny$", [(False, "two\n\nparagraphs $x\n\ny$")]),
    ],
)
def test_math_spans_and_currency(text: str, found: list[tuple[bool, str]]) -> None:
    """Math delimiters open spans; a ``$`` before an amount is currency."""
    assert split_math(text) == found


@pytest.mark.parametrize(
    ("math", "shown"),
    [
        ("\\frac{1}{2}x + 3", "((1)/(2))$x + 3"),
        ("\\dfrac{\\sqrt{2}}{2}", "((<sqrt>(2))/(2))"),
        ("\\frac12 + \\tfrac{1}3", "((1)/(2)) + ((1)/(3))"),
        ("\\sqrt[3]{27} + \\sqrt{2} + \\sqrt5", "<root>(3)(27) + <sqrt>(2) + <sqrt>(5)"),
        ("\\binom{5}{2} + {50\\choose3}", "<binom>(5)(2) + <binom>(50)(3)"),
        ("\\lfloor 3.7 \\rfloor + \\left\\lceil x \\right\\rceil", "<floor>( 3.7 ) + <ceil>( $x )"),
        ("5! + n!", "5<!> + $n<!>"),
        ("\\pi r^2", "<pi> $r^2"),
        ("2^{10} \\cdot 3 \\times 4 \\div 2", "2^(10) * 3 * 4 / 2"),
        ("x_1 + a_{n+1} - a_{n-1}", "$x_1 + $a_np1 - $a_nm1"),
        ("2ab + \\alpha", "2$a$b + $α"),
        ("1,\\!000 + 1{,}000 + 1\\,000", "1,000 + 1,000 + 1000"),
        ("x &= 3 \\\\ &= 4", "$x = 3 = 4"),
        ("\\boxed{42}", "42"),
        ("20\\% \\text{ of } \\$50", "20% of 50"),
        # words stay words: \text, units after a number, stop words, long runs
        ("80 \\text{ cm}^3", "80 cm"),
        ("80 cm^3 + 5 km", "80 cm + 5 km"),
        ("Area = 5", "Area = 5"),
        ("180^\\circ - 60^{\\circ}", "180 degrees - 60 degrees"),
        # poison: functions, e and i, other bases, decorations, |x|, ratios, mixed numbers
        ("f(x) = x(x+1)", "§ ($x) = $x($x+1)"),
        ("f'(3) + f^{-1}(0)", "§ (3) + § ^(-1)(0)"),
        ("2 - 3iz + e^x", "2 - 3 § + § ^$x"),
        ("\\sin x + \\log_2 8", "§ $x + § _2 8"),
        ("1011_2 + 123_{4}", "§ + §"),
        ("\\vec{v} + \\overline{AB} + \\mathbf{0}", "§ + § + §"),
        ("|x| + \\{1\\}", "§ $x § + § 1 §"),
        ("3:4", "3 § 4"),
        ("3\\frac{1}{2}", "3 § ((1)/(2))"),
        ("\\frac{d}{dx} x^2", "§ $x^2"),
        ("\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "§"),
        ("9 \\& 2 = 7", "9 § 2 = 7"),
    ],
)
def test_math_normalisation(math: str, shown: str) -> None:
    """Each LaTeX construct has one rewriting; what cannot be read soundly becomes poison ``§``."""
    assert _shown(normalize_math(math)) == shown


def test_prose_keeps_word_problem_rules_and_reads_roots() -> None:
    """Outside math letters are words, so ``2x`` is never a product; roots still read."""
    assert [c.shown for c in extract_claims("so 2x + 3 = 7 here")] == []
    assert [c.shown for c in extract_claims("\\sqrt{49} = 7")] == ["sqrt(49) = 7"]
    assert [p for p, _ in pieces("a $b$ c")] == [False, True, False]


@pytest.mark.parametrize(
    ("text", "claims"),
    [
        ("$(x+1)^2 = x^2 + 2x + 1$", ["(x+1)^2 = x^2+2x+1"]),
        ("$a = b = c$", ["a = b", "b = c"]),
        ("\\[ \\sqrt{50} = 5\\sqrt{2} \\approx 7.07 \\]", ["sqrt(50) = 5sqrt(2)"]),
        ("$\\frac{1}{3}(30)(6.5) = 65$", ["((1)/(3))(30)(6.5) = 65"]),
        ("\\( 2 \\times 0.10 = 0.20 (20 \\text{ cents}) \\)", ["2*0.10 = 0.20"]),
        ("$\\frac{7}{30} @ \\frac{10}{21} = 49$", []),
        ("$|3 - 5| = 2$", []),
        ("$20\\%$ of 50 = 10", ["20%*50 = 10"]),
        ("\\begin{align*} x &= 2 + 3 \\\\ &= 5 \\\\ y &= 7 \\end{align*}", ["x = 2+3", "2+3 = 5", "y = 7"]),
        ("$\\Rightarrow p = 9$ and $\\Rightarrow 0 = -12$", ["p = 9"]),
        ("- 2 + 5 = 3 at a line start is a list item; \\[ - 2 + 5 = 3 \\] is left out", ["2+5 = 3"]),
    ],
)
def test_claims_read_in_math(text: str, claims: list[str]) -> None:
    """Chains, roots, spaced factors and align rows in math; doubtful operands are left out."""
    assert [c.shown for c in extract_claims(text)] == claims


def test_claims_know_their_chain_link_and_math() -> None:
    """A claim records its chain, its place in it, and whether it was read in math."""
    a, b, c = extract_claims("$x = 1 + 2 = 3$ and 4 + 5 = 9")
    assert [(k.chain, k.link, k.math) for k in (a, b, c)] == [(0, 0, True), (0, 1, True), (1, 0, False)]
