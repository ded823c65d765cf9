"""Number grounding: which operands of a step's claims nothing before them gives, with exact expectations."""

from __future__ import annotations

from fractions import Fraction

import pytest

from prmforge.verifiers.grounding import (
    CONSTANTS,
    first_ungrounded,
    question_numbers,
    text_numbers,
    ungrounded_operands,
)

F = Fraction


def test_question_numbers_in_digits_and_words() -> None:
    question = "Ann has 1,200 stamps and 2.5 kg of tea. Bo has three times as many, half of a dozen."
    assert question_numbers(question) == {F(1200), F(5, 2), F(3), F(2), F(12)}
    assert question_numbers("A fifth of the 35 shells and a quarter of them") == {F(5), F(35), F(4)}
    assert text_numbers("-9 and .5 and 10,000") == {F(9), F(1, 2), F(10000)}


def test_a_silent_self_correction_uses_a_number_nothing_derived() -> None:
    """Step 2 claims Ava has 9 (wrong: Pablo kept 3), step 3 computes with the true 15."""
    question = (
        "Pablo has 9 pencils. Emma has twice as many pencils as Pablo. Pablo splits his pencils into 3 "
        "equal piles and keeps one. Ava has as many as Emma has more than Pablo. Wei has Ava's and Emma's."
    )
    steps = [
        "Emma has 9*2 = <<9*2=18>>18 pencils.",
        "Each pile has 9/3 = <<9/3=3>>3 pencils, so Pablo keeps that many.",
        "Ava has 18-9 = <<18-9=9>>9 pencils.",
        "Wei has 15+18 = <<15+18=33>>33 pencils.",
    ]
    assert ungrounded_operands(question, steps) == [(), (), (), (F(15),)]
    assert first_ungrounded(question, steps) == 3


def test_results_ground_later_steps_and_earlier_claims_of_the_same_step() -> None:
    question = "Sam has 35 shells and gives a fifth away."
    steps = [
        "A fifth is 35/5 = <<35/5=7>>7, so he keeps 35-7 = <<35-7=28>>28.",
        "Then (-28)+7 = -21, and 34/6 = <<34/6=17/3>>17/3.",
        "So 17/3*3 = <<17/3*3=17>>17 and 21-17 = <<21-17=4>>4.",
    ]
    # 6 is no number of the question; 17 and 3 come from the result 17/3, 21 from -21 (signs ignored)
    assert ungrounded_operands(question, steps) == [(), (F(34), F(6)), ()]
    assert ungrounded_operands(question, steps, constants={*CONSTANTS, F(6)}) == [(), (F(34),), ()]


def test_prose_numbers_ground_only_when_not_strict() -> None:
    """Step 0 writes 72 in prose without computing it: strict reading leaves step 1's 72 ungrounded."""
    question = "The party has 12 people and each wants a 6-ounce cup; 8 ounces take one ounce of tea."
    steps = ["She makes 72 ounces because 12+6 = <<12+6=18>>18", "She needs 72/8 = <<72/8=9>>9 ounces."]
    assert ungrounded_operands(question, steps) == [(), ()]
    assert ungrounded_operands(question, steps, strict=True) == [(), (F(72),)]
    assert first_ungrounded(question, steps, strict=True) == 1


def test_constants_and_each_operand_once() -> None:
    question = "A job pays 7 dollars an hour."
    steps = ["In a day, 7*24 = 168; in minutes, 60*7 = 420; and 5*5*5 = 125."]
    assert ungrounded_operands(question, steps) == [(F(5),)]
    assert ungrounded_operands(question, steps, constants=()) == [(F(24), F(60), F(5))]


@pytest.mark.parametrize("steps", [[], ["No equation here, just 41 words."], ["x + 4 = 10"]])
def test_steps_without_numeric_claims_have_nothing_ungrounded(steps: list[str]) -> None:
    assert first_ungrounded("Nothing.", steps) is None
