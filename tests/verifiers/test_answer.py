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


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [
        ("0.333", "1/3", True),  # 1/3 rounded to the digits shown
        ("0.33", "\\frac{1}{3}", True),
        ("0.34", "1/3", False),  # neither rounded nor cut
        ("0.32", "1/3", False),
        ("2.6667", "8/3", True),  # rounded
        ("2.6666", "8/3", True),  # cut
        ("-2.6667", "-8/3", True),
        ("2.67", "8/3", True),
        ("2.7", "8/3", False),  # one fractional digit is not enough to say
        ("0.0833333333333333", "\\frac{1}{12}", True),
        ("0.13", "1/8", False),  # 1/8 has a finite expansion, 0.125: it must be written exactly
        ("0.125", "1/8", True),
        ("1/3", "0.333", True),  # either side may be the decimal
    ],
)
def test_rounded_decimals_of_numbers_without_a_finite_expansion(
    predicted: str, gold: str, expected: bool
) -> None:
    assert answers_equal(predicted, gold) is expected
    if expected and predicted.lstrip("-") not in ("0.125",) and "/" not in predicted:
        assert answers_equal(predicted, gold, rounded=False) is False


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [
        ("1,22", "1.22", True),  # a decimal comma
        ("1000,99", "1000.99", True),
        ("0,111", "0.111", True),  # no thousands grouping writes a lone zero first
        ("1,222", "1222", True),  # three digits after the comma: thousands
        ("1,222", "1.222", False),
        ("32, 349", "32349", False),  # a list, never a number
    ],
)
def test_decimal_commas_and_thousands(predicted: str, gold: str, expected: bool) -> None:
    assert answers_equal(predicted, gold) is expected


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Final Answer: The largest $n$ is 34.", "34"),  # a sentence states its last number
        ("Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.", "120"),
        ("Final Answer: the roots are $x = 3$", "x = 3"),  # its last math span
        ("Final Answer: $x^2+1$", "x^2+1"),
        ("The final answer is 12,000,023. I hope it is correct. <|im_start|>user", "12,000,023"),
        ("Final Answer: 7. I hope it is correct.\n\nProblem: next", "7"),
    ],
)
def test_final_answer_sentences(text: str, answer: str) -> None:
    assert extract_final_answer(text) == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("\\frac{10}{9}", "\\frac{10}{9}"),  # the whole text is one expression
        ("1 000", "1 000"),
        (".4", ".4"),
        ("the answer might be 5 or 6", "6"),  # prose: its last number
    ],
)
def test_last_math_reads_a_bare_expression_whole(text: str, answer: str) -> None:
    assert extract_final_answer(text, ("last_math",)) == answer
    assert extract_final_answer(text) is None or text.startswith("the")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("The final answer is that there are 12 distinct sequences. I hope it is correct.", "12"),
        ("The answer is 12 apples.", "12 apples"),  # a number and its unit is not a sentence
        ("The answer is $12$ dollars", "12"),
        ("The answer is: 42", "42"),
    ],
)
def test_the_answer_is_a_sentence(text: str, answer: str) -> None:
    assert extract_final_answer(text) == answer
