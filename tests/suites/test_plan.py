"""Plans, the safe exact evaluator, and exact step truth."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from prmforge.schemas.records import Problem, StepTruth
from prmforge.suites.plan import (
    Calc,
    ExprError,
    Plan,
    PlanError,
    PlanStep,
    canonical,
    evaluate,
    fill,
    format_value,
    parse_annotations,
    parse_answer_line,
    parse_value,
    plan_of,
    tokenize,
)
from prmforge.suites.truth import exact_truth

# Ava has 12*3 = 36 marbles; Ben has 5 more (41); together 36+41 = 77 (uses c0, not only the previous result).
PLAN = Plan(
    (
        PlanStep(("Ava has ", " marbles."), (Calc("12*3"),)),
        PlanStep(("Ben has ", " marbles."), (Calc("{c0}+5"),)),
        PlanStep(("Together they have ", " marbles."), (Calc("{c0}+{c1}"),)),
    )
)
PROBLEM = Problem("toy-0", "math", "Ava has 12 bags of 3 marbles ...", "77", "test", {"plan": PLAN.to_dict()})
GOOD = (
    "Ava has 12*3 = <<12*3=36>>36 marbles.",
    "Ben has 36+5 = <<36+5=41>>41 marbles.",
    "Together they have 36+41 = <<36+41=77>>77 marbles.\nThe answer is: 77",
)


# ------------------------------------------------------------------ evaluator


@pytest.mark.parametrize(
    ("expr", "refs", "expected"),
    [
        ("48/2", (), Fraction(24)),
        ("0.1+0.2", (), Fraction(3, 10)),
        ("10/3*3", (), Fraction(10)),
        ("{c0}*.01", (Fraction(150),), Fraction(3, 2)),
        ("-(3-5) * (2 + {c1})", (Fraction(0), Fraction(1, 2)), Fraction(5)),
        ("100 - 50 - 30 - 15", (), Fraction(5)),
    ],
)
def test_evaluate_is_exact(expr: str, refs: tuple[Fraction, ...], expected: Fraction) -> None:
    """Fraction arithmetic: 0.1 + 0.2 is exactly 3/10 and references read earlier results."""
    assert evaluate(expr, refs) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("x + 1", "Name is not allowed"),
        ("abs(-3)", "Call is not allowed"),
        ("__import__('os').system('true')", "Call is not allowed"),
        ("(3).real", "Attribute is not allowed"),
        ("2**3", "Pow is not allowed"),
        ("2^3", "BitXor is not allowed"),
        ("7//2", "FloorDiv is not allowed"),
        ("7%2", "Mod is not allowed"),
        ("1 < 2", "Compare is not allowed"),
        ("'a'", "is not a number"),
        ("True", "is not a number"),
        ("1j", "is not a number"),
        ("[1][0]", "Subscript is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("1e999", "not a finite number"),
        ("_ref0_", "names are not allowed"),
        ("{c3}", "reference {c3} is not defined"),
        ("1 +", "not a valid arithmetic expression"),
        ("1\x00", "not a valid arithmetic expression"),
        ("5/(2-2)", "division by zero"),
        ("1+" * 300 + "1", "above the limit"),
    ],
)
def test_evaluate_rejects_everything_but_arithmetic(expr: str, message: str) -> None:
    """Names, calls, attributes, powers and other syntax raise ExprError saying what was refused."""
    with pytest.raises(ExprError, match=message.replace("(", r"\(").replace("{", r"\{")):
        evaluate(expr, (Fraction(1),))


def test_canonical_ignores_order_and_spacing_but_not_numbers() -> None:
    """Sums and products compare up to order; different numbers or operators differ."""
    assert canonical("2*3+1") == canonical(" 1 + 3 * 2 ")
    assert canonical("100-50-30") == canonical("100-30-50")
    assert canonical("36+41") == canonical("(41+36)")
    assert canonical("48/2") != canonical("2/48")
    assert canonical("48/2") != canonical("48*0.5")
    assert canonical("36+5") != canonical("36-5")
    assert canonical("5--2") == canonical("5+2")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Fraction(24), "24"),
        (Fraction(-3), "-3"),
        (Fraction(7, 2), "3.5"),
        (Fraction(-1, 4), "-0.25"),
        (Fraction(1, 5), "0.2"),
        (Fraction(10, 3), "10/3"),
        (Fraction(-7, 3), "-7/3"),
    ],
)
def test_format_and_parse_values(value: Fraction, text: str) -> None:
    """Integers, terminating decimals, else reduced fractions; parse_value reads each back."""
    assert format_value(value) == text
    assert parse_value(text) == value


def test_parse_value_reads_gsm8k_forms_and_rejects_others() -> None:
    assert parse_value(".4") == Fraction(2, 5)
    assert parse_value("1,200") == 1200
    for bad in ("abc", "1/0", "", "2+2"):
        with pytest.raises(ExprError):
            parse_value(bad)


def test_fill_parenthesises_negative_and_fractional_values() -> None:
    """So ``2/{c0}`` with c0 = 10/3 reads 2/(10/3), not (2/10)/3."""
    assert fill("2/{c0}+{c1}*{c2}", [Fraction(10, 3), Fraction(-3), Fraction(5, 2)]) == "2/(10/3)+(-3)*2.5"
    assert evaluate(fill("2/{c0}", [Fraction(10, 3)])) == Fraction(3, 5)


def test_tokenize_and_annotation_parsing() -> None:
    assert tokenize(" {c0} * .5- (3)") == ["{c0}", "*", ".5", "-", "(", "3", ")"]
    with pytest.raises(ExprError, match="unexpected character 'x'"):
        tokenize("8 x 3")
    assert parse_annotations("a 2+2 = <<2+2=4>>4 and <<4*3=12>>12, <<oops>>") == [
        ("2+2", "4"),
        ("4*3", "12"),
        ("oops", ""),
    ]
    assert parse_answer_line("x\nThe answer is: 1,250.") == "1,250"
    assert parse_answer_line("The answer is 7/2") == "7/2"
    assert parse_answer_line("no answer here") is None


# ---------------------------------------------------------------------- plans


def test_plan_json_round_trip() -> None:
    """to_dict is JSON-able and from_dict restores an equal plan."""
    plan = Plan(
        (
            PlanStep(("He pays ", " in all."), (Calc("5*7", echo=True, lead="$"),)),
            PlanStep(("x ", " and ", "."), (Calc("{c0}/2", echo=False), Calc("{c1}+.5"))),
        )
    )
    restored = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert restored == plan
    assert restored.true_values() == (Fraction(35), Fraction(35, 2), Fraction(18))


def test_reference_steps_render_the_calculator_convention() -> None:
    assert PLAN.reference_steps() == GOOD
    lead = Plan((PlanStep(("He pays ", "."), (Calc("5*7", lead="$"),)),))
    assert lead.reference_steps() == ("He pays 5*7 = $<<5*7=35>>35.\nThe answer is: 35",)
    quiet = Plan((PlanStep(("He pays $", "."), (Calc("5*7", echo=False),)),))
    assert quiet.reference_steps() == ("He pays $<<5*7=35>>35.\nThe answer is: 35",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": []}, "at least one step"),
        ({"steps": "x"}, "'steps' must be a list"),
        ({"steps": [{"text": ["a"], "calcs": []}]}, "step 0 has no calc"),
        ({"steps": [{"text": ["a"], "calcs": [{"expr": "1"}]}]}, "1 calcs but 1 text parts"),
        ({"steps": [{"text": ["a", "b"], "calcs": [{"expr": "{c0}+1"}]}]}, r"references \{c0\}"),
        ({"steps": [{"text": ["a", "b"], "calcs": [{"expr": "2**2"}]}]}, "Pow is not allowed"),
        ({"steps": [{"text": ["a", "b"], "calcs": [{"expr": "1/(2-2)"}]}]}, "calc 0 .*division by zero"),
        ({"steps": [{"text": ["a\n\nb", "c"], "calcs": [{"expr": "1"}]}]}, "blank line"),
        ({"steps": [{"text": ["a", "b"], "calcs": [{"expr": 1}]}]}, "'expr' \\(string\\)"),
        ({"steps": [{"text": "ab", "calcs": []}]}, "'text' must be a list of strings"),
    ],
)
def test_plan_validation(data: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        Plan.from_dict(data)


def test_plan_of_names_the_problem() -> None:
    with pytest.raises(PlanError, match="problem p-9 has no plan"):
        plan_of(Problem("p-9", "math", "q", "1", "test"))
    with pytest.raises(PlanError, match="problem p-9: plan: 'steps' must be a list"):
        plan_of(Problem("p-9", "math", "q", "1", "test", {"plan": {"steps": None}}))


# ---------------------------------------------------------------- exact_truth


def _steps(*edits: tuple[int, str]) -> list[str]:
    steps = list(GOOD)
    for index, text in edits:
        steps[index] = text
    return steps


@pytest.mark.parametrize(
    ("steps", "first_error", "correct"),
    [
        pytest.param(GOOD, -1, (True, True, True), id="correct"),
        pytest.param(
            _steps((0, "Ava has 3*12 = <<3*12=36>>36 marbles.")),
            -1,
            (True, True, True),
            id="commuted-operands",
        ),
        pytest.param(
            _steps(
                (1, "Ben has 36+5 = <<36+5=42>>42 marbles."),
                (2, "Together they have 36+42 = <<36+42=78>>78 marbles.\nThe answer is: 78"),
            ),
            1,
            (True, False, False),
            id="slip-carried",
        ),
        pytest.param(
            _steps(
                (0, "Ava has 12*4 = <<12*4=48>>48 marbles."),
                (1, "Ben has 48+5 = <<48+5=53>>53 marbles."),
                (2, "Together they have 48+53 = <<48+53=101>>101 marbles.\nThe answer is: 101"),
            ),
            0,
            (False, False, False),
            id="wrong-operand-carried",
        ),
        pytest.param(
            _steps((1, "Ben has 36-5 = <<36-5=31>>31 marbles.")), 1, (True, False, True), id="wrong-operation"
        ),
        pytest.param(
            _steps(
                (0, "Ava has 12*3 = <<12*3=37>>37 marbles."),
                (1, "Ben has 36+5 = <<36+5=41>>41 marbles."),
            ),
            0,
            (False, True, True),
            id="self-corrected",
        ),
        pytest.param(
            _steps((2, "Together they have 36+41 = <<36+41=77>>77 marbles.\nThe answer is: 78")),
            2,
            (True, True, False),
            id="wrong-answer-line",
        ),
        pytest.param(
            _steps((1, "Ben has 36+5 = <<36+5=41>>41 marbles.\nThe answer is: 41")),
            1,
            (True, False, True),
            id="premature-answer",
        ),
        pytest.param(_steps((0, "Ava has 36 marbles.")), 0, (False, True, True), id="missing-annotation"),
        pytest.param(_steps((0, "Ava has <<12 x 3=36>>36.")), 0, (False, True, True), id="unparsable-claim"),
        pytest.param([*GOOD, "And one more thing."], 3, (True, True, True, False), id="extra-step"),
        pytest.param(GOOD[:2], 1, (True, False), id="missing-steps"),
        pytest.param(
            [*GOOD[:2], "Together they have 36+41 = <<36+41=77>>77 marbles."],
            -1,
            (True, True, True),
            id="no-answer",
        ),
        pytest.param([], 0, (), id="empty"),
    ],
)
def test_judge_truth(steps: list[str], first_error: int, correct: tuple[bool, ...]) -> None:
    """A step is correct iff each claimed calc has the plan's expression on TRUE values and the TRUE value."""
    assert exact_truth(PROBLEM, steps) == StepTruth(first_error=first_error, step_correct=correct)
