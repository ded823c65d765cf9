"""Exporters: golden rows in each external format, written and read back exactly."""

from __future__ import annotations

import dataclasses

import pytest

from prmforge.schemas.errors import RowError
from prmforge.schemas.exporters import (
    QWEN_PRM_SYSTEM_PROMPT,
    from_math_shepherd,
    from_qwen_messages,
    from_trl,
    to_math_shepherd,
    to_qwen_messages,
    to_trl,
)
from prmforge.schemas.records import PRMExample, Vote

# The first GSM8K row of peiyi9979/Math-Shepherd, copied by hand in the layout of ECOSYSTEM.md §1.6:
# question, a space, "Step k: <step> ки" joined by newlines; label = input with ки -> +/-.
JANET_QUESTION = (
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
    "for her friends every day with four. She sells the remainder at the farmers' market daily for $2 "
    "per fresh duck egg. How much in dollars does she make every day at the farmers' market?"
)
JANET_STEPS = [
    "Janet's ducks lay 16 eggs per day.",
    "She eats three for breakfast every morning, so she has 16 - 3 = 13 eggs left.",
    "She bakes muffins for her friends every day with four eggs, so she has 13 - 4 = 9 eggs left.",
    "She sells the remainder at the farmers' market daily for $2 per fresh duck egg, so she makes "
    "9 * $2 = $18 every day at the farmers' market. The answer is: 18",
]
JANET_ROW = {
    "input": JANET_QUESTION + " Step 1: Janet's ducks lay 16 eggs per day. ки\n"
    "Step 2: She eats three for breakfast every morning, so she has 16 - 3 = 13 eggs left. ки\n"
    "Step 3: She bakes muffins for her friends every day with four eggs, "
    "so she has 13 - 4 = 9 eggs left. ки\n"
    "Step 4: She sells the remainder at the farmers' market daily for $2 per fresh duck egg, so she makes "
    "9 * $2 = $18 every day at the farmers' market. The answer is: 18 ки",
    "label": JANET_QUESTION + " Step 1: Janet's ducks lay 16 eggs per day. +\n"
    "Step 2: She eats three for breakfast every morning, so she has 16 - 3 = 13 eggs left. +\n"
    "Step 3: She bakes muffins for her friends every day with four eggs, "
    "so she has 13 - 4 = 9 eggs left. +\n"
    "Step 4: She sells the remainder at the farmers' market daily for $2 per fresh duck egg, so she makes "
    "9 * $2 = $18 every day at the farmers' market. The answer is: 18 +",
    "task": "GSM8K",
}

# A MATH-style row whose steps contain "+" and "-" themselves, with a bad second and third step.
SIGNS_PROMPT = "Simplify $(x+1)-(x-1)$."
SIGNS_STEPS = ["$(x+1)-(x-1) = x + 1 - x - 1$", "$= 0 -$ so the +1 and -1 cancel", "The answer is: 0"]
SIGNS_ROW = {
    "input": "Simplify $(x+1)-(x-1)$. Step 1: $(x+1)-(x-1) = x + 1 - x - 1$ ки\n"
    "Step 2: $= 0 -$ so the +1 and -1 cancel ки\nStep 3: The answer is: 0 ки",
    "label": "Simplify $(x+1)-(x-1)$. Step 1: $(x+1)-(x-1) = x + 1 - x - 1$ +\n"
    "Step 2: $= 0 -$ so the +1 and -1 cancel -\nStep 3: The answer is: 0 -",
    "task": "MATH",
}

EXAMPLE = PRMExample(
    example_id="e1",
    problem_id="p1",
    prompt="What is 2+3?",
    completions=("2+3=6", "The answer is: 6"),
    labels=(False, False),
    scores=(0.0, 0.0),
    first_error=0,
    votes=(Vote("mc", 0),),
    agreement=1.0,
    weight=1.0,
    split="train",
    gold="5",
    final_answer="6",
    outcome=False,
)


def test_math_shepherd_golden_row_is_written_exactly() -> None:
    """Our writer reproduces the real dataset's row byte for byte."""
    assert to_math_shepherd(JANET_QUESTION, JANET_STEPS, [True] * 4) == JANET_ROW


def test_math_shepherd_golden_row_is_read_exactly() -> None:
    """Reading the real row gives the question, the bare steps and four positives."""
    assert from_math_shepherd(JANET_ROW) == (JANET_QUESTION, JANET_STEPS, [True] * 4)


def test_math_shepherd_steps_with_plus_and_minus_round_trip() -> None:
    """'+' and '-' inside the steps are not mistaken for labels, either way."""
    labels = [True, False, False]
    assert to_math_shepherd(SIGNS_PROMPT, SIGNS_STEPS, labels, task="MATH") == SIGNS_ROW
    assert from_math_shepherd(SIGNS_ROW) == (SIGNS_PROMPT, SIGNS_STEPS, labels)


def test_math_shepherd_round_trips_awkward_steps() -> None:
    """Steps with newlines, edge spaces, 'Step 1:' text or nothing at all come back unchanged."""
    steps = ["Step 1: a\n\nb", " padded ", "", "Step 9: x"]
    row = to_math_shepherd("Q? Step 1:x", steps, [True, False, True, False])
    assert from_math_shepherd(row) == ("Q? Step 1:x", steps, [True, False, True, False])


@pytest.mark.parametrize(
    ("prompt", "steps", "labels", "field", "reason"),
    [
        ("Q", ["a", "b"], [True], "labels", "has 1 entries for 2 completions"),
        ("Q", ["a ки b"], [True], "completions", "step 0 contains the step tag 'ки'"),
        ("Q ки", ["a"], [True], "prompt", "contains the step tag 'ки'"),
        ("Q Step 1: x", ["a"], [True], "prompt", "would be read back as the first step"),
        ("Q", [], [], "completions", "is empty"),
    ],
)
def test_math_shepherd_refuses_what_it_cannot_write(
    prompt: str, steps: list[str], labels: list[bool], field: str, reason: str
) -> None:
    """Rows that could not be read back exactly are errors naming the field."""
    with pytest.raises(RowError) as err:
        to_math_shepherd(prompt, steps, labels)
    assert err.value.field == field
    assert reason in err.value.reason


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (
            {"input": "Q Step 1: a ки", "label": "Q Step 1: a ?"},
            "label",
            "expected '+' or '-' at character 12",
        ),
        ({"input": "Q Step 1: a ки", "label": "Q Step 1: b +"}, "label", "differs from input"),
        ({"input": "Q Step 1: a ки", "label": "Q Step 1: a + extra"}, "label", "after the last step tag"),
        ({"input": "Q Step 1: a", "label": "Q Step 1: a"}, "input", "does not end with the step tag"),
        ({"input": "Q a ки", "label": "Q a +"}, "input", "has no ' Step 1: '"),
        ({"input": "Q Step 1: a ки\nStep 3: b ки", "label": "x"}, "input", "step 2 is not laid out"),
        ({"input": 3, "label": ""}, "input", "expected a string, found number"),
        ({"input": "Q Step 1: a ки"}, "label", "missing required field"),
    ],
)
def test_math_shepherd_malformed_rows_name_the_field(row: dict[str, object], field: str, reason: str) -> None:
    """Each malformed row is a RowError naming input or label."""
    with pytest.raises(RowError) as err:
        from_math_shepherd(row)
    assert err.value.field == field
    assert reason in err.value.reason


def test_trl_golden_row_both_ways() -> None:
    """TRL's row is exactly prompt/completions/labels, and reads back to the same triple."""
    row = to_trl(EXAMPLE)
    assert row == {
        "prompt": "What is 2+3?",
        "completions": ["2+3=6", "The answer is: 6"],
        "labels": [False, False],
    }
    assert from_trl(row) == ("What is 2+3?", ["2+3=6", "The answer is: 6"], [False, False])


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({"prompt": "Q", "completions": ["a"], "labels": [0.7]}, "labels", "item 0 is a number"),
        ({"prompt": "Q", "completions": ["a"], "labels": [True, False]}, "labels", "has 2 entries for 1"),
        ({"prompt": [{"role": "user"}], "completions": [], "labels": []}, "prompt", "found array"),
        ({"prompt": "Q", "completions": "a", "labels": [True]}, "completions", "found string"),
        ({"prompt": "Q", "labels": []}, "completions", "missing required field"),
    ],
)
def test_trl_malformed_rows_name_the_field(row: dict[str, object], field: str, reason: str) -> None:
    """Soft float labels, mismatched lengths and the conversational form are refused."""
    with pytest.raises(RowError) as err:
        from_trl(row)
    assert err.value.field == field
    assert reason in err.value.reason


def test_trl_refuses_an_example_with_mismatched_labels() -> None:
    """An example whose labels do not cover its steps cannot be exported."""
    with pytest.raises(RowError, match="labels: has 1 entries for 2 completions"):
        to_trl(dataclasses.replace(EXAMPLE, labels=(True,)))


def test_qwen_golden_messages_both_ways() -> None:
    """Qwen2.5-Math-PRM's messages: model-card system prompt, <extra_0> after every step."""
    messages = to_qwen_messages("What is 2+3?", ["2+3=5", "The answer is 5"])
    assert messages == [
        {
            "role": "system",
            "content": "Please reason step by step, and put your final answer within \\boxed{}.",
        },
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "2+3=5<extra_0>The answer is 5<extra_0>"},
    ]
    assert messages[0]["content"] == QWEN_PRM_SYSTEM_PROMPT
    assert from_qwen_messages(messages) == ("What is 2+3?", ["2+3=5", "The answer is 5"])


def test_qwen_without_system_prompt_and_with_empty_steps() -> None:
    """system=None drops the system turn; empty steps survive the round trip."""
    messages = to_qwen_messages("Q", ["", "b", ""], system=None)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == "<extra_0>b<extra_0><extra_0>"
    assert from_qwen_messages(messages) == ("Q", ["", "b", ""])


def test_qwen_errors_name_the_field() -> None:
    """A step or prompt holding the tag, and malformed messages, are RowErrors naming the field."""
    with pytest.raises(RowError) as step:
        to_qwen_messages("Q", ["a<extra_0>b"])
    assert (step.value.field, step.value.reason) == (
        "completions",
        "step 0 contains the step tag '<extra_0>'",
    )
    with pytest.raises(RowError) as prompt:
        to_qwen_messages("Q<extra_0>", ["a"])
    assert prompt.value.field == "prompt"
    with pytest.raises(RowError) as roles:
        from_qwen_messages([{"role": "assistant", "content": "a<extra_0>"}])
    assert roles.value.field == "messages"
    with pytest.raises(RowError) as content:
        from_qwen_messages([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "a"}])
    assert content.value.field == "content"
