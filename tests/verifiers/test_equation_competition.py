"""Competition-style (MATH-like) steps, written for these tests: correct LaTeX computations are never
flagged, wrong ones are, and equations, definitions, approximations and notation are left alone."""

from __future__ import annotations

import pytest

from prmforge.schemas.records import Problem
from prmforge.verifiers.equation_cues import problem_mentions
from prmforge.verifiers.equations import EquationVerifier, check_text
from prmforge.verifiers.verdict import Verdict

CORRECT = [
    "The side length is $\\sqrt{169} = 13$.",
    "So $\\sqrt{50} = \\sqrt{25 \\cdot 2} = 5\\sqrt{2}$.",
    "Rationalising, $\\frac{1}{\\sqrt{2}} = \\frac{\\sqrt{2}}{2}$.",
    "We get $\\sqrt[3]{-27} = -3$ and $\\sqrt[4]{81} = 3$.",
    "Then $8^{2/3} = (\\sqrt[3]{8})^2 = 4$.",
    "The sum is $\\frac{3}{4} + \\frac{5}{6} = \\frac{9}{12} + \\frac{10}{12} = \\frac{19}{12}$.",
    "Hence $\\dfrac{2}{3} \\div \\dfrac{4}{9} = \\dfrac{2}{3} \\cdot \\dfrac{9}{4} = \\dfrac{3}{2}$.",
    "There are $\\binom{6}{2} = \\frac{6 \\cdot 5}{2} = 15$ pairs.",
    "So the count is $5! = 120$, and $\\frac{7!}{5!\\,2!} = 21$.",
    "We have $2^{10} = 1024$ and $3^5 = 243$.",
    "Its area is $\\frac{1}{2} \\cdot 6 \\cdot 8 = 24$.",
    "By Pythagoras, $\\sqrt{5^2 + 12^2} = \\sqrt{169} = 13$.",
    "The circle's area is $\\pi \\cdot 3^2 = 9\\pi$.",
    "So $\\frac{4}{3}\\pi (3)^3 = 36\\pi$.",
    "The discriminant is $b^2 - 4ac = (-5)^2 - 4(1)(6) = 25 - 24 = 1$.",
    "Then $(\\sqrt{3})^2 + (\\sqrt{6})^2 = 3 + 6 = 9$.",
    "We get $\\sqrt{2} \\cdot \\sqrt{8} = \\sqrt{16} = 4$.",
    "Therefore $\\lfloor \\sqrt{50} \\rfloor = 7$.",
    "So $\\left\\lceil \\frac{17}{5} \\right\\rceil = 4$.",
    "The probability is $\\frac{3}{36} = \\frac{1}{12}$.",
    "That is $25\\%$ of $80$, which is $0.25 \\times 80 = 20$.",
    "Expanding, $(x+1)^2 = x^2 + 2x + 1$.",
    "Factoring, $x^2 - 5x + 6 = (x-2)(x-3)$.",
    "By the difference of squares, $a^2 - b^2 = (a-b)(a+b)$.",
    "Completing the square, $x^2 + 6x + 5 = (x+3)^2 - 4$.",
    "Combining, $\\frac{x}{x-1} + 1 = \\frac{2x - 1}{x - 1}$.",
    "So $n + (n+1) + (n+2) = 3n + 3$.",
    "Simplifying, $\\frac{x^2 - 1}{x - 1} = x + 1$ for $x \\neq 1$.",
    "\\begin{align*} (2x+3)(x-4) &= 2x^2 - 8x + 3x - 12 \\\\ &= 2x^2 - 5x - 12. \\end{align*}",
    "Hence $\\angle C = 180^\\circ - 50^\\circ - 60^\\circ = 70^\\circ$.",
    "So $(-2)^3 = -8$ and $|{-8}|$ is 8.",
    "The mean is $\\frac{2 + 4 + 9}{3} = 5$.",
    "We need $\\frac{10!}{8!} = 90$.",
    "$3 \\times 10^8 \\times 2 = 6 \\times 10^8$",
    "$\\frac{1}{3} \\approx 0.333$, and $\\frac{2}{3} = 0.67$ to two places.",
    "Using $\\pi \\approx 3.14$, the area is $\\pi \\cdot 10^2 = 314.16$.",
    "So $\\sqrt{2} = 1.414$ and $2\\sqrt{3} = 3.46$.",
    "That is $20\\% \\text{ of } 50 = 10$, and \\(25\\%\\) of 80 = 20.",
    "So $\\frac{30}{120} \\times 100\\% = 25\\%$ and $\\frac{1}{4} = 25\\%$.",
]

WRONG = [
    ("So $\\sqrt{12} = 3\\sqrt{2}$.", "false: sqrt(12) = 3sqrt(2) (the left side is 3.464101615)"),
    ("The sum is $\\frac{3}{4} + \\frac{1}{6} = \\frac{4}{10}$.", "false: ((3)/(4))+((1)/(6)) = ((4)/(10))"),
    ("We have $2^{10} = 1000$.", "false: 2^(10) = 1000 (the left side is 1024)"),
    ("There are $\\binom{6}{2} = 30$ pairs.", "false: binom(6)(2) = 30 (the left side is 15)"),
    ("So $\\sqrt[3]{27} = 9$.", "false: root(3)(27) = 9 (the left side is 3)"),
    ("Thus $6! = 620$.", "false: 6! = 620 (the left side is 720)"),
    ("Then $(\\sqrt{7})^6 = 49$.", "false: (sqrt(7))^6 = 49 (the left side is 343)"),
    (
        "So $\\sqrt{9 + 144 + 9} = \\sqrt{156}$.",
        "false: sqrt(9+144+9) = sqrt(156) (the left side is 12.72792206)",
    ),
    (
        "Hence $\\dfrac{15}{6} = \\dfrac{5}{3}$.",
        "false: ((15)/(6)) = ((5)/(3)) (the left side is 5/2 (~2.5))",
    ),
    ("The area is $\\frac{1}{2} \\cdot 8^{2/3} = 4$.", "false: ((1)/(2))*8^(2/3) = 4 (the left side is 2)"),
    ("So $3 \\times 4 \\div 2 = 8$.", "false: 3*4/2 = 8 (the left side is 6)"),
    ("The mean is $\\frac{2 + 4 + 9}{3} = 6$.", "false: ((2+4+9)/(3)) = 6 (the left side is 5)"),
    ("$x = 3 + 4 = 8$", "false: 3+4 = 8 (the left side is 7)"),
    ("That is $20\\% \\text{ of } 50 = 15$.", "false: 20%*50 = 15 (the left side is 10)"),
    ("So $0.4 \\cdot 50 = 2$.", "false: 0.4*50 = 2 (the left side is 20)"),
    (
        "Expanding, $(x+1)^2 = x^2 + x + 1$.",
        "false: (x+1)^2 = x^2+x+1 (rewrites an expression but is not one (its sides differ in lower terms))",
    ),
    (
        "Factoring, $6r^2 - 19r - 7 = (6r + 1)(r - 7)$.",
        "false: 6r^2-19r-7 = (6r+1)(r-7) (rewrites an expression but is not one",
    ),
    (
        "So $x(x+3) - 2 = x^2 + 3x - 2 = x^2 + 3x + 2$.",
        "false: x^2+3x-2 = x^2+3x+2 (the sides differ by -4 whatever the variables are)",
    ),
    (
        "Then $(x+2)(x-2) + 4 = x^2 - 4 + 4 = x^2 + 4$.",
        "false: x^2-4+4 = x^2+4 (the sides differ by -4 whatever the variables are)",
    ),
    (
        "So $f(15) = 3(15) - 4p - 15 = 45 - 4p$.",
        "false: 3(15)-4p-15 = 45-4p (the sides differ by -15 whatever the variables are)",
    ),
    (
        "\\begin{align*} (x+2)^3 &= (x+2)(x^2 + 4x + 4) \\\\ &= x^3 + 6x^2 + 8x + 8. \\end{align*}",
        "false: (x+2)(x^2+4x+4) = x^3+6x^2+8x+8 (continues an identity but is not one (its sides differ",
    ),
]

NOT_FLAGGED = [
    # equations to solve, conditions, substitutions, definitions
    "Solving $2x + 3 = 7$ gives $x = 2$.",
    "We set $3x - 5 = 2x + 1$, so $x = 6$.",
    "Subtracting, $x^2 + 3x = x^2 + 6$, hence $3x = 6$.",
    "Cross-multiplying, $x(x+1) = (x+3)(x-1)$.",
    "Expanding both sides of the equation $(x+1)^2 = x^2 + 5$ gives $2x = 4$.",
    "We need $x^2 - 5x + 6 = 0$, i.e. $(x-2)(x-3) = 0$.",
    "We want $a + b = 10$ and $a - b = 2$.",
    "Now $x_1 + x_2 = 5$ and $x_1 x_2 = 6$.",
    "$a_{n+1} = a_n + 2$, so $a_{n+1} - a_n = 2$.",
    "$x^2 + y^2 = 25$ is a circle.",
    "The line is $y = mx + b$ with $m = 2$.",
    "Let $x = 3$. Then $2x + 1 = 7$.",
    "Let $x = 3$. Then we need $2x + 1 = 8$, which fails.",
    "Let $f(x) = x^2 + 1$. Then $f(2) = 5$.",
    "Define $a_n = 2n + 1$, so $a_3 = 7$.",
    "Since $n = 2k + 1$, we get $n^2 = 4k^2 + 4k + 1$.",
    "We see that $x = 0$ works. Otherwise $\\frac{1}{x} + x = 2$.",
    "If $b = 2$, then $4a = 4(a - 3) \\Rightarrow 0 = -12$, so $b \\neq 2$.",
    "Then $x + 1 = x + 2$, which is impossible, so there is no solution.",
    "Try $n = 5$: $n^2 + 1 = 26$, not 25.",
    "Suppose $x = 4$: then $x^2 = 16 \\neq 15$.",
    "Wait, $3 \\times 4 = 13$? No, $3 \\times 4 = 12$.",
    "Recalculating: $17 \\cdot 3 = 41$ was a slip, it is $51$.",
    "$5^2 + 5^2 = 6^2$? We get $25 + 25 = 50 \\neq 36$.",
    # approximations and rounding
    "$\\sqrt{2} \\approx 1.414$, so $\\sqrt{2} = 1.41$ to two places.",
    "The area is $\\pi r^2 = \\pi \\cdot 3^2 = 28.27$.",
    "So $\\pi \\cdot 7^2 = 154$ using $\\pi \\approx 22/7$.",
    "Rounding, $\\frac{100}{3} = 33.33$.",
    "$\\frac{2}{3} = 0.667$",
    "The answer is about $\\sqrt{10} = 3.2$.",
    # inequalities, sets, intervals
    "For $0 < x < 1$ we have $x^2 < x$.",
    "The set is $\\{1, 2, 3\\} = \\{3, 2, 1\\}$.",
    "So $x \\in (2, 5]$ and the interval $[0, 1] = [0, 1)$ is wrong notation.",
    "$|3 - 5| = 2$ and $|x| = 3$.",
    # units, ratios, times, ranges, numbering, exponents of units
    "The distance is $5 \\text{ km} = 5000 \\text{ m}$.",
    "Convert: $2 \\text{ hours} = 120 \\text{ minutes}$.",
    "The ratio is $3:4 = 6:8$.",
    "The meeting is at 3:45 = quarter to four.",
    "Pages 1-5 = 5 pages.",
    "1. First, 3 + 4 = 7.\n2. Then 7 + 1 = 8.",
    "The volume is $80 \\text{ cm}^3 = 80 \\, \\text{cm}^3$.",
    "The area is $(5\\text{ cm})(3\\text{ cm}) = 15\\text{ cm}^2$.",
    # dates and typos in prose
    "On 12/25/2023 = Christmas day we met.",
    "The date 2024-03-15 = 3 days later.",
    "from 9am-5pm = 8 hours, and on 3/4 = March 4th",
    "a total of 12 - the 5 we gave = 7, so 2x + 3 = 8 in words",
    # modular arithmetic, digits, bases, custom operations
    "$2^{10} \\equiv 4 \\pmod{10}$, so $2^{10} = 1024 = 4 \\pmod{10}$.",
    "Modulo 7, $3^3 = 27 = 6$.",
    "In base 5, $3 + 4 = 12$.",
    "$1011_2 = 11$.",
    "The units digit of $7^2 = 9$.",
    "$a * b = a^b + b^a$ means $2 * 3 = 8 + 9 = 17$.",
    "$\\frac{7}{30} @ \\frac{10}{21} = 49$",
    # notation the checker does not read
    "$x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a} = \\frac{5 \\pm 1}{2}$.",
    "$f'(x) = 2x + 3 = 7$ at $x = 2$.",
    "$\\log_2 8 = 3$ and $\\sin 30^\\circ = \\frac{1}{2}$.",
    "$3\\frac{1}{2} = \\frac{7}{2}$.",
    "$-2^2 = 4$ is a common slip; $(-2)^2 = 4$.",
    "$1/2x = 3$ so $x = 1/6$.",
    "$\\frac{d}{dx} x^3 = 3x^2$ and $\\int_0^1 x \\, dx = \\frac{1}{2}$.",
    "$\\sum_{k=1}^{10} k = 55$ and $1 + 2 + \\cdots + 10 = 55$.",
    "$\\lim_{x \\to 0} \\frac{\\sin x}{x} = 1$.",
    "The vectors satisfy $\\vec{u} \\cdot \\vec{v} = 3$.",
    "$\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix} = A$.",
    "$z = 3 + 4i$ so $|z| = 5$, and $e^{i\\pi} = -1$.",
    "$P(A) = \\frac{1}{2}$ and $\\gcd(12, 18) = 6$.",
    "$0.\\overline{3} = \\frac{1}{3}$.",
    "\\[ \\sqrt{x^2} = |x| \\]",
    "Polynomial long division: $(x^6 - 3x^4 - 3) - (x^6 + x^5) = -x^5 - 3x^4$, bring down the rest.",
    "The answer is $\\boxed{5}$.",
]


@pytest.mark.parametrize("step", CORRECT)
def test_correct_competition_computations_are_never_flagged(step: str) -> None:
    """Correct roots, fractions, powers, binomials, expansions and chains pass (or are left undecided)."""
    check, _ = check_text(step)
    assert check.verdict is not Verdict.FAIL, check.reason


def test_most_correct_computations_are_decided() -> None:
    """Widening is the point: nearly every correct computation above is checked and holds."""
    verdicts = [check_text(step)[0].verdict for step in CORRECT]
    assert verdicts.count(Verdict.PASS) >= len(CORRECT) - 5


@pytest.mark.parametrize(("step", "reason"), WRONG)
def test_wrong_competition_computations_are_flagged(step: str, reason: str) -> None:
    """A false root, fraction, power, binomial, expansion or chain link fails, and the reason names it."""
    check, _ = check_text(step)
    assert check.verdict is Verdict.FAIL
    assert check.reason.startswith(reason)


@pytest.mark.parametrize("step", NOT_FLAGGED)
def test_equations_approximations_and_notation_are_never_flagged(step: str) -> None:
    """Equations being solved, values given or tried, approximations, inequalities, sets, units,
    ratios, times, ranges, numbering, other bases, modular arithmetic and unread notation."""
    check, _ = check_text(step)
    assert check.verdict is not Verdict.FAIL, check.reason


def test_a_problem_that_only_says_operation_changes_nothing() -> None:
    """ "Operation costs" is no operation of the problem's own: its steps' ``*`` stays a product."""
    mentions = problem_mentions("He spends 2/5 of the total operation costs of $4000 on salaries.")
    assert check_text("So 2/5*4000 = 1500", mentions)[0].verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("question", "step"),
    [
        ("What is $25_7 + 33_7$ in base 7?", "Adding digits, $5 + 3 = 11$."),
        ("Find the remainder when $2^{100}$ is divided by 7.", "Since $2^3 = 8 = 1$, we get $2^{99} = 1$."),
        ("Let $a * b = 2a + b$. Find $3 * 4$.", "So $3 * 4 = 2 \\cdot 3 + 4 = 10$."),
    ],
)
def test_the_problem_changes_what_a_step_means(question: str, step: str) -> None:
    """A problem in another base, about remainders, or defining ``*`` makes such claims undecidable."""
    assert check_text(step)[0].verdict is Verdict.FAIL
    assert check_text(step, problem_mentions(question))[0].verdict is not Verdict.FAIL
    problem = Problem("p", "math", question, "", "test")
    assert EquationVerifier().check_steps(problem, [step])[0].verdict is not Verdict.FAIL
