"""Outcome grading: final-answer extraction and exact, symbolic answer equivalence."""

from __future__ import annotations

import pytest

from prmforge.verifiers.answer import AnswerGrader, answers_equal, extract_final_answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("She makes 9 * 2 = 18 dollars. The answer is: 18.", "18"),
        ("The answer is 42", "42"),
        ("The answer is: 3\nThen again... The answer is: 4.", "4"),
        ("The final answer is **42**.", "42"),
        ("so x = \\boxed{\\frac{1}{\\sqrt{2}}}.", "\\frac{1}{\\sqrt{2}}"),
        ("first \\boxed{1}, finally \\boxed{2}", "2"),
        ("\\boxed{\\text{{(A)}}} wins", "\\text{{(A)}}"),
        ("complete \\boxed{3} then truncated \\boxed{4", "3"),
        ("The answer is: 7 but \\boxed{8}", "8"),
        ("Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72"),
        ("#### 1,000", "1,000"),
        ("The answer is: $18$.", "18"),
        ("The answer is: 18 dollars.", "18 dollars"),
        ("No conclusion here, 12 apples.", None),
        ("\\boxed{}", None),
        ("The answer is:", None),
    ],
)
def test_extract_final_answer(text: str, answer: str | None) -> None:
    """The last boxed answer, else the last 'The answer is', else '####'; cleaned, units kept."""
    assert extract_final_answer(text) == answer


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("18", "18.0"),
        ("1,000", "1000"),
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{3}{4}", "0.75"),
        ("-\\frac12", "-0.5"),
        ("3/4", "0.75"),
        ("7/2", "3.5"),
        ("x+1", "1+x"),
        ("(x+1)(x-1)", "x^2-1"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2"),
        ("2^{10}", "1024"),
        ("1e3", "1000"),
        ("50%", "50"),
        ("50\\%", "50%"),
        ("x = 5", "5"),
        ("\u22125", "-5"),
        ("$18", "18"),
        ("yes", "yes"),
        ("18 dollars", "18"),  # units are dropped (math-verify's behaviour)
        ("50%", "0.5"),  # a percentage is also read as its fraction (math-verify's behaviour)
    ],
)
def test_equivalent_answers(predicted: str, gold: str) -> None:
    """Numerically or symbolically equal answers match."""
    assert answers_equal(predicted, gold)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("12", "112"),  # never substring matching
        ("112", "12"),
        ("0.333", "1/3"),  # exact, not approximate
        ("\\pi", "3.14159"),
        ("x+1", "x-1"),
        ("\\frac{1}{0}", "0"),
        ("", "0"),
        ("9^9^9", "1"),  # refused: the exponent is too large to evaluate safely
        ("1e999999999", "1"),
        ("__import__('os')", "0"),  # outside the whitelist: never parsed
        ("x.real", "x"),
    ],
)
def test_different_answers(predicted: str, gold: str) -> None:
    """Different, unparseable or dangerous answers do not match."""
    assert not answers_equal(predicted, gold)


def test_none_never_equals() -> None:
    """A missing prediction is not equal to anything."""
    assert not answers_equal(None, "18")


def test_grader_grades_and_abstains() -> None:
    """True or False when the text states an answer, None when it states none."""
    grader = AnswerGrader()
    assert grader.grade("2+3 = 5. The answer is: 5.", "5") is True
    assert grader.grade("\\boxed{\\frac{1}{2}}", "0.5") is True
    assert grader.grade("The answer is: 112", "12") is False
    assert grader.grade("I am not sure.", "5") is None


def test_grader_expression_cap() -> None:
    """Expressions longer than the cap are not given to sympy."""
    assert AnswerGrader(max_expression_chars=9).grade("\\boxed{(x+1)(x+2)}", "x^2+3x+2") is False
    assert AnswerGrader().grade("\\boxed{(x+1)(x+2)}", "x^2+3x+2") is True
