"""The equation checker: which equalities a step claims, and exact verdicts that abstain when unsure."""

from __future__ import annotations

import pytest

from prmforge.schemas.records import Problem
from prmforge.verifiers.base import StepVerifier
from prmforge.verifiers.equation_cues import step_mentions
from prmforge.verifiers.equation_text import extract_claims
from prmforge.verifiers.equations import TOOL, TOOL_VERSION, EquationVerifier, check_claim, check_text
from prmforge.verifiers.verdict import Verdict


@pytest.mark.parametrize(
    ("text", "claims"),
    [
        ("3 + 4 = 7", ["3+4 = 7"]),
        ("48/2 = 24", ["48/2 = 24"]),
        ("$5 * 3 = $15", ["5*3 = 15"]),
        ("2 x 3 = 6", ["2*3 = 6"]),
        ("60 x 60 = 3600 seconds", ["60*60 = 3600"]),
        ("50% of 80 = 40", ["50%*80 = 40"]),
        ("3/5 of 30 = 18", ["3/5*30 = 18"]),
        ("a = b: 3 + 4 = 7 = 7", ["3+4 = 7", "7 = 7"]),
        ("1,200 + 300 = 1,500", ["1200+300 = 1500"]),
        ("\\frac{3}{4} \\times 8 = 6", ["((3)/(4))*8 = 6"]),
        ("$3\\cdot 4=12$", ["3*4 = 12"]),
        ("\\( \\dfrac{10}{4} = 2.5 \\)", ["((10)/(4)) = 2.5"]),
        ("\\[ 25\\% \\text{ of } \\$2,000.00 = \\$500.00 \\]", ["25%*2000.00 = 500.00"]),
        ("20 \\(\\times\\) \\$2.00 = \\$40.00", ["20*2.00 = 40.00"]),
        ("<<48/2=24>>24 cookies", ["48/2 = 24"]),
        ("48/2 = <<48/2=24>>24", ["48/2 = 24", "48/2 = 24"]),
        ("Total cost = Cost per gallon * gallons = $3.5 * 4000 = $14,000.", ["3.5*4000 = 14000"]),
        ("2 books \u00d7 2 pounds/book = 4 pounds", ["2*2 = 4"]),
        ("100 (initially invited) + 200 (invited by others) = 300 guests", ["100+200 = 300"]),
        ("So his weight will be 97 \u2013 12 = 85 kilograms.", ["97-12 = 85"]),
        ("2 x $0.10 = $0.20 (20 cents).", ["2*0.10 = 0.20"]),
        ("3 + 4 = 7 * 2 = 14", ["3+4 = 7*2", "7*2 = 14"]),
        ("Step 1: 3 + 4 = 7", ["3+4 = 7"]),
        # nothing to claim: variables, functions, labels, ratios, clock times
        ("3x + 4 = 10", []),
        ("\\( 51 = 3x \\)", ["51 = 3x"]),  # in math a letter is a variable (a condition: ABSTAIN)
        ("(x + 3) * 2 = 10", []),
        ("\\sqrt{16} = 4", ["sqrt(16) = 4"]),
        ("\\log_2 16 = 4", []),
        ("Week 2 = 35", []),
        ("1:2 = 0.5", []),
        ("0900-0130 = 0730", []),
        ("1st - 5 = 6th", []),
        ("20 gallons = 160 pints", []),
        ("2 (3+4) = 14", []),
        ("on day 1 * 2 = 20 pages", []),
        ("12 x 1 and 1/4 = 15", []),
        ("They read 14, 400 / 80 = 180", []),
        ("We know that .1(Number of Minutes) + 1 = .15(Number of Minutes)", []),
    ],
)
def test_extraction(text: str, claims: list[str]) -> None:
    assert [c.shown for c in extract_claims(text)] == claims


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("3 + 4 = 7", Verdict.PASS),
        ("3 + 4 = 8", Verdict.FAIL),
        ("<<48/2=25>>25", Verdict.FAIL),
        ("2/5 * 4000 = 800 gallons.", Verdict.FAIL),
        ("\\frac{3}{4} \\times 8 = 6", Verdict.PASS),
        ("\\frac{3}{4} \\times 8 = 7", Verdict.FAIL),
        ("50% of 80 = 40", Verdict.PASS),
        ("25% = 0.25", Verdict.PASS),
        ("30/120 * 100 = 25%", Verdict.PASS),
        ("2^3 = 8", Verdict.PASS),
        ("3\u00b2 = 10", Verdict.FAIL),
        ("2(3+4) = 14", Verdict.PASS),
        ("4 pounds + 4 pounds = 9 pounds", Verdict.FAIL),
        ("495 students * $15/student = $7455.", Verdict.FAIL),
        ("3.5 * 4 = 14.2", Verdict.FAIL),
        ("$4.20 + $9.45 + $1.35 = $14.99.", Verdict.FAIL),
        ("10/3 = 3.33 * 3 = 9.99", Verdict.PASS),
        ("5 + 3 = 8, then 8 * 2 = 17.", Verdict.FAIL),
        ("25 / 1/3 = 75", Verdict.PASS),
        # abstentions: rounding, units, percent, approximation, ambiguity, nothing to check
        ("20/3600 = 0.0056", Verdict.ABSTAIN),
        ("100/3 = 33", Verdict.ABSTAIN),
        ("7/2 = 3", Verdict.ABSTAIN),
        ("0.33 * 900 = 300", Verdict.ABSTAIN),
        ("$0.05 / $0.75 = 0.0667", Verdict.ABSTAIN),
        ("2 hours = 120 minutes", Verdict.ABSTAIN),
        ("60 minutes = 1 hour", Verdict.ABSTAIN),
        ("So, Bea earned $2.50 - $2.24 = 26 cents more.", Verdict.ABSTAIN),
        ("losing 5 thousand dollars a day, so 5 * 3 = $15,000.", Verdict.ABSTAIN),
        ("The percentage is 30/120 = 25", Verdict.ABSTAIN),
        ("about 3.4 * 3 = 10.5", Verdict.ABSTAIN),
        ("14 / 1 / 5 = 60", Verdict.ABSTAIN),
        ("Let's add the apples.", Verdict.ABSTAIN),
        ("2^1000 = 5", Verdict.ABSTAIN),
        ("9^9^9 = 1", Verdict.ABSTAIN),
        ("__import__('os').system('true') = 0", Verdict.ABSTAIN),
    ],
)
def test_verdicts(text: str, verdict: Verdict) -> None:
    check, _ = check_text(text)
    assert check.verdict is verdict, check.reason


def test_fail_names_the_false_equality_and_the_true_value() -> None:
    check, results = check_text("First 18 - 6 = 12. Then 2/5 * 4000 = 800 gallons.")
    assert check.verdict is Verdict.FAIL
    assert check.reason == "false: 2/5*4000 = 800 (the left side is 1600)"
    assert [r.outcome for r in results] == ["holds", "false"]


def test_pass_lists_what_holds_and_abstain_says_why() -> None:
    check, _ = check_text("18 - 6 = 12. Then 100/3 = 33")
    assert check.verdict is Verdict.PASS
    assert check.reason == "1 of 2 equalities hold: 18-6 = 12"
    check, _ = check_text("100/3 = 33")
    assert check.reason == "nothing decidable: 100/3 = 33 (approx)"
    assert check_text("no numbers")[0].reason == "no checkable equality"


def test_outcomes_of_single_claims() -> None:
    (claim,) = extract_claims("2 hours * 60 = 100 minutes")
    assert check_claim(claim).outcome == "units"
    (claim,) = extract_claims("1/0 = 3")
    assert check_claim(claim).outcome == "unparseable"
    (claim,) = extract_claims("20/240 = 8.3")
    assert check_claim(claim, step_mentions("as a percentage")).outcome == "approx"
    assert check_claim(claim).outcome == "false"


def test_step_mentions() -> None:
    assert step_mentions("in the first round, 800-560 = 240").approximate is False
    assert step_mentions("round to two decimal places").approximate is True
    assert step_mentions("\u2248 5").approximate is True
    assert step_mentions("20 percent").percent is True
    assert step_mentions("5 thousand dollars").scale is True


def test_verifier_checks_every_step_with_provenance() -> None:
    verifier = EquationVerifier()
    assert isinstance(verifier, StepVerifier)
    problem = Problem("p", "math", "?", "", "test")
    checks = verifier.check_steps(problem, ["3 + 4 = 7", "words only", "3 + 4 = 9"])
    assert [c.verdict for c in checks] == [Verdict.PASS, Verdict.ABSTAIN, Verdict.FAIL]
    assert {(c.tool, c.tool_version) for c in checks} == {(TOOL, TOOL_VERSION)}
    assert checks[0].output_digest == verifier.check_step("3 + 4 = 7").output_digest
    assert checks[0].output_digest != checks[2].output_digest
    assert all(len(c.output_digest) == 16 for c in checks)


def test_long_inputs_stay_cheap() -> None:
    text = "1 + " * 5000 + "1 = 5001"
    check, _ = check_text(text)
    assert check.verdict in (Verdict.PASS, Verdict.ABSTAIN)
    assert check.seconds < 2.0


_FALSE_ALARMS_OF_ISSUE_8 = [
    "So 2ab + 2cd = 0.",  # a multi-letter coefficient used to be dropped: checked as 2+2 = 0
    "Then 2 - 3iz = 3 + 2iz.",  # ... as 2-3 = 3+2
    "We get 3\\frac{4}{5} = \\frac{19}{5}.",  # a mixed number used to be read as a product
    "Since \\log_2(4) = 2, we continue.",  # a subscripted function used to become 2(4)
    "Then f'(3) = 5.",  # a primed function used to leave (3) = 5
    "So q'(1)=0 at the turning point.",
    "and \\text{mod}_5(1) = 1 as well",
    "So S = 68 (1 + k) = 68.",  # a space used to drop a term: 68 = 68 (and 68 = 136 below)
    "So S = 68 (1 + k) = 136.",
    "S_{10} = \\frac{6}{2} [2a + 5d] = 3.",  # ... and a bracket: 6/2 = 3
    "S_{10} = \\frac{6}{2} [2a + 5d] = 6.",
    "The volume is 80 \\, \\text{cm}^3 = 80 cm^3.",  # a unit used to take the exponent: 80^3
    "The volume is 80 \\, \\text{cm}^3 = 512000.",
    "Check: 60 = 5^2 + 6^2 = 25 + 36 = 61 - This does not work.",  # the step rejects its own claim
]


@pytest.mark.parametrize("step", [*_FALSE_ALARMS_OF_ISSUE_8, *(f"${s}$" for s in _FALSE_ALARMS_OF_ISSUE_8)])
def test_false_alarms_of_issue_8_stay_fixed_in_prose_and_in_math(step: str) -> None:
    """Each false alarm listed in issue #8 is never flagged, written as prose or inside ``$...$``."""
    check, _ = check_text(step)
    assert check.verdict is not Verdict.FAIL, check.reason


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ("$68 (1 + k) = 68 + 68k$", "1 of 1 equalities hold: 68(1+k) = 68+68k"),
        ("$\\frac{6}{2} [2a + 5d] = 6a + 15d$", "1 of 1 equalities hold: ((6)/(2))[2a+5d] = 6a+15d"),
        ("$2ab + 2ab = 4ab$", "1 of 1 equalities hold: 2ab+2ab = 4ab"),
    ],
)
def test_in_math_a_spaced_bracket_is_a_factor_and_letters_are_variables(step: str, reason: str) -> None:
    """``68 (1 + k)`` is a product inside math, where it is checked as an identity in ``k``."""
    check, _ = check_text(step)
    assert (check.verdict, check.reason) == (Verdict.PASS, reason)


@pytest.mark.parametrize(
    "step",
    [
        "So 2ab + 2cd = 0.",  # a multi-letter coefficient used to be dropped: checked as 2+2 = 0
        "Then 2 - 3iz = 3 + 2iz.",  # ... as 2-3 = 3+2
        "We get 3\\frac{4}{5} = \\frac{19}{5}.",  # a mixed number used to be read as a product
        "Since \\log_2(4) = 2, we continue.",  # a subscripted function used to become 2(4)
        "Then f'(3) = 5.",  # a primed function used to leave (3) = 5
        "So q'(1)=0 at the turning point.",
        "The volume is 80 \\, \\text{cm}^3 = 80 cm^3.",  # a unit used to take the exponent: 80^3
        "Check: 60 = 5^2 + 6^2 = 25 + 36 = 61 - This does not work.",  # the step rejects its own claim
    ],
)
def test_competition_math_that_used_to_raise_false_alarms_is_never_flagged(step: str) -> None:
    check, _ = check_text(step)
    assert check.verdict is not Verdict.FAIL, check.reason


def test_glued_unit_abbreviations_are_still_checked() -> None:
    check, _ = check_text("He runs 20km + 5km = 26km.")
    assert (check.verdict, check.reason) == (Verdict.FAIL, "false: 20+5 = 26 (the left side is 25)")


def test_a_self_rejected_claim_says_so() -> None:
    check, _ = check_text("Check: 60 = 5^2 + 6^2 = 25 + 36 = 61 - This does not work.")
    assert check.verdict is Verdict.ABSTAIN
    assert check.reason == "the step rejects its own false claim: 60 = 5^2+6^2"


@pytest.mark.parametrize(
    ("step", "verdict", "reason"),
    [
        ("Let $x = 3$. Then $2x + 1 = 7$.", Verdict.PASS, "1 of 2 equalities hold: 2x+1 = 7"),
        (
            "When $t = 2$, $h = -16t^2 + 64t = 64$.",
            Verdict.PASS,
            "2 of 3 equalities hold: h = -16t^2+64t; -16t^2+64t = 64",
        ),
        # a value that does not fit is never a FAIL: x = 3 may be one case and the claim another
        (
            "Let $x = 3$. Then $2x + 1 = 8$.",
            Verdict.ABSTAIN,
            "nothing decidable: x = 3 (condition); 2x+1 = 8 (condition)",
        ),
        # a variable given two values is given none
        (
            "If $x = 2$ or $x = -2$, $x^3 = 8$.",
            Verdict.ABSTAIN,
            "nothing decidable: x = 2 (condition); x = -2 (condition); x^3 = 8 (condition)",
        ),
    ],
)
def test_values_given_in_the_step_are_substituted_only_to_pass(
    step: str, verdict: Verdict, reason: str
) -> None:
    """``x = 3`` earlier in the step lets ``2x + 1 = 7`` hold; a value that does not fit abstains."""
    check, _ = check_text(step)
    assert (check.verdict, check.reason) == (verdict, reason)


def test_problem_words_reach_every_step_of_the_verifier() -> None:
    """The verifier reads the problem once: a problem in base 7 leaves its integer claims undecided."""
    verifier = EquationVerifier()
    base7 = Problem("p", "math", "Compute $25_7 + 33_7$ in base 7.", "", "test")
    plain = Problem("q", "math", "Compute 25 + 33.", "", "test")
    assert verifier.check_steps(base7, ["$5 + 3 = 11$"])[0].verdict is Verdict.ABSTAIN
    assert verifier.check_steps(plain, ["$5 + 3 = 11$"])[0].verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("text", "base"),
    [
        ("Sam now has 180+37 = 207 baseball cards.", False),  # a word that starts with "base"
        ("the base of the triangle is 6", False),
        ("the basement has 3 rooms", False),
        ("in base 5, 12 = 7", True),
        ("convert to base-12", True),
        ("written in base ten", True),
        ("$1011_2 = 11$", True),
    ],
)
def test_a_number_base_is_named_not_guessed_from_a_word(text: str, base: bool) -> None:
    assert step_mentions(text).base is base


def test_a_false_sum_about_baseball_cards_is_flagged() -> None:
    problem = Problem("p", "math", "Priya has 40 baseball cards. How many baseball cards?", "", "test")
    step = "Sam now has 180+37 = <<180+37=207>>207 baseball cards."
    checks = EquationVerifier().check_steps(problem, [step])
    assert [c.verdict for c in checks] == [Verdict.FAIL]
