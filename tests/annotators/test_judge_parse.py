"""Reading a judge's answers: every form, the precedence between them, ranges and abstentions, exactly."""

from __future__ import annotations

import doctest

import pytest

from prmforge.annotators import judge_parse
from prmforge.annotators.judge_parse import (
    Parsed,
    find_json_objects,
    last_boxed,
    parse_critique,
    parse_verdict,
)

NO_CRITIQUE = "no \\boxed{} answer, JSON index, or phrase naming the earliest wrong step"
NO_VERDICT = "no \\boxed{} verdict, JSON verdict, or verdict word"
OUT_4 = "is out of range: -1 or 0..3 for 4 steps (0-based)"


def test_doctests() -> None:
    assert doctest.testmod(judge_parse).failed == 0


@pytest.mark.parametrize(
    ("text", "content"),
    [
        (r"\boxed{2}", "2"),
        (r"a \boxed{1} b \boxed{3} c", "3"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed {x}", "x"),
        (r"\boxed{}", ""),
        ("no box here", None),
    ],
)
def test_last_boxed(text: str, content: str | None) -> None:
    assert last_boxed(text) == content


def test_an_unclosed_last_box_raises() -> None:
    with pytest.raises(ValueError, match=r"the last \\boxed\{ is never closed"):
        last_boxed(r"\boxed{1} and then \boxed{2")


def test_find_json_objects_reads_nested_and_fenced_objects_in_order() -> None:
    text = 'x {"a": 1} y ```json\n{"b": {"c": [ {"d": 2} ]}}\n``` {not json} {"e": 3}'
    assert find_json_objects(text) == [
        {"a": 1},
        {"b": {"c": [{"d": 2}]}},
        {"c": [{"d": 2}]},
        {"d": 2},
        {"e": 3},
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # boxed: the last box decides, with any index spelling
        (r"\boxed{2}", Parsed(2, "boxed")),
        (r"\boxed{-1}", Parsed(-1, "boxed")),
        (r"\boxed{ 0 }", Parsed(0, "boxed")),
        (r"\boxed{\text{2}}", Parsed(2, "boxed")),
        (r"\boxed{\textbf{Paragraph 3}}", Parsed(3, "boxed")),
        (r"\boxed{paragraph_2}", Parsed(2, "boxed")),
        (r"\boxed{Step 1.}", Parsed(1, "boxed")),
        (r"$\boxed{−1}$", Parsed(-1, "boxed")),
        (r"\boxed{none}", Parsed(-1, "boxed")),
        (r"\boxed{No error}", Parsed(-1, "boxed")),
        (r"first \boxed{1} then \boxed{3}", Parsed(3, "boxed")),
        # the box outranks JSON and prose
        (r'{"first_error": 1} but finally \boxed{2}', Parsed(2, "boxed")),
        (r"paragraph 1 is wrong, so \boxed{2}", Parsed(2, "boxed")),
        # an unreadable last box abstains; earlier boxes and prose are not read instead
        (
            r"\boxed{1} ... \boxed{two}",
            Parsed(None, "boxed", "the last \\boxed{} holds 'two', not an index or -1"),
        ),
        (
            r"\boxed{\frac{1}{2}}",
            Parsed(None, "boxed", "the last \\boxed{} holds '\\\\frac{1}{2}', not an index or -1"),
        ),
        (r"\boxed{}", Parsed(None, "boxed", "the last \\boxed{} holds '', not an index or -1")),
        (
            r"The earliest error is in paragraph 1. \boxed{1",
            Parsed(None, "boxed", "the last \\boxed{ is never closed (a truncated response?)"),
        ),
        # JSON: the last object holding a known key
        ('{"first_error": 2}', Parsed(2, "json")),
        ('```json\n{"earliest_error_step": 1}\n```', Parsed(1, "json")),
        ('{"First Error": 3}', Parsed(3, "json")),
        ('{"earliest-error-paragraph": "2"}', Parsed(2, "json")),
        ('{"answer": {"first_error": 1}}', Parsed(1, "json")),
        ('{"first_error": 1} then {"first_error": 0}', Parsed(0, "json")),
        ('{"first_error": 1} then {"other": 0}', Parsed(1, "json")),
        ('{"first_error": -1}', Parsed(-1, "json")),
        ('{"first_error": null}', Parsed(-1, "json")),
        ('{"first_error": "none"}', Parsed(-1, "json")),
        ('{"first_error": 1, "earliest_error": 1}', Parsed(1, "json")),
        (
            '{"first_error": 1, "earliest_error": 2}',
            Parsed(None, "json", 'JSON keys disagree: {"earliest_error": 2, "first_error": 1}'),
        ),
        ('{"first_error": true}', Parsed(None, "json", "JSON key 'first_error' holds True, not an index")),
        ('{"first_error": "two"}', Parsed(None, "json", "JSON key 'first_error' holds 'two', not an index")),
        # bare: the whole answer is an index or a no-error word
        ("2", Parsed(2, "bare")),
        ("  -1\n", Parsed(-1, "bare")),
        ("Paragraph 2.", Parsed(2, "bare")),
        ("None", Parsed(-1, "bare")),
        ("No errors.", Parsed(-1, "bare")),
        # phrases
        ("The earliest error is in paragraph 2.", Parsed(2, "phrase")),
        ("The first incorrect step is step 3.", Parsed(3, "phrase")),
        ("The first mistake occurs in Step 1, where 3 + 4 is taken as 8.", Parsed(1, "phrase")),
        ("Paragraph 0 is correct. Paragraph 2 is incorrect. Paragraph 1 is also wrong.", Parsed(1, "phrase")),
        ("Step 2 contains an error.", Parsed(2, "phrase")),
        ("Paragraph 3 is not correct.", Parsed(3, "phrase")),
        ("The earliest error is in paragraph 1. Paragraph 0 is wrong too.", Parsed(1, "phrase")),
        ("All steps are correct.", Parsed(-1, "phrase")),
        ("I checked: all of the paragraphs are correct!", Parsed(-1, "phrase")),
        ("The entire solution is correct.", Parsed(-1, "phrase")),
        ("There are no errors in the solution.", Parsed(-1, "phrase")),
        ("None of the steps are wrong.", Parsed(-1, "phrase")),
        (
            "All the paragraphs are correct, but paragraph 2 is wrong.",
            Parsed(
                None, "phrase", "ambiguous: names step 2 as wrong and says 'All the paragraphs are correct'"
            ),
        ),
        (
            "The first error is in paragraph 1. Later: the first mistake is in step 2.",
            Parsed(None, "phrase", "ambiguous: earliest-error phrases name steps [1, 2]"),
        ),
        # nothing to read
        ("Paragraph 2 has no error.", Parsed(None, "", NO_CRITIQUE)),
        ("Paragraph 1 is correct.", Parsed(None, "", NO_CRITIQUE)),
        ("I like turtles 2 3.", Parsed(None, "", NO_CRITIQUE)),
        ("", Parsed(None, "", NO_CRITIQUE)),
    ],
)
def test_parse_critique(text: str, expected: Parsed[int]) -> None:
    assert parse_critique(text, 4) == expected


@pytest.mark.parametrize(
    ("text", "via", "raw"),
    [
        (r"\boxed{4}", "boxed", 4),
        (r"\boxed{-2}", "boxed", -2),
        ('{"first_error": 7}', "json", 7),
        ("4", "bare", 4),
        ("The first error occurs at Step 9.", "phrase", 9),
    ],
)
def test_an_index_out_of_range_abstains_in_every_form(text: str, via: str, raw: int) -> None:
    assert parse_critique(text, 4) == Parsed(None, via, f"index {raw} {OUT_4}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{1}", Parsed(0, "boxed")),
        (r"\boxed{4}", Parsed(3, "boxed")),
        (r"\boxed{-1}", Parsed(-1, "boxed")),
        ("The earliest error is in paragraph 2.", Parsed(1, "phrase")),
        (r"\boxed{0}", Parsed(None, "boxed", "index 0 is out of range: -1 or 1..4 for 4 steps (1-based)")),
        (r"\boxed{5}", Parsed(None, "boxed", "index 5 is out of range: -1 or 1..4 for 4 steps (1-based)")),
    ],
)
def test_one_based_answers_become_zero_based(text: str, expected: Parsed[int]) -> None:
    assert parse_critique(text, 4, index_base=1) == expected


def test_critique_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="n_steps must be >= 1, got 0"):
        parse_critique("1", 0)
    with pytest.raises(ValueError, match="index_base must be 0 or 1, got 2"):
        parse_critique("1", 3, index_base=2)


def test_a_one_step_solution_accepts_only_0_and_minus_1() -> None:
    assert [parse_critique(rf"\boxed{{{i}}}", 1).value for i in (-1, 0, 1)] == [-1, 0, None]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{correct}", Parsed(True, "boxed")),
        (r"\boxed{Incorrect}", Parsed(False, "boxed")),
        (r"\boxed{\text{yes}}", Parsed(True, "boxed")),
        (r"\boxed{No}", Parsed(False, "boxed")),
        (r"\boxed{true}", Parsed(True, "boxed")),
        (r"\boxed{False.}", Parsed(False, "boxed")),
        (r"\boxed{valid}", Parsed(True, "boxed")),
        (r"\boxed{wrong}", Parsed(False, "boxed")),
        (r"It is incorrect, I think... \boxed{correct}", Parsed(True, "boxed")),
        (r"\boxed{correct} no wait \boxed{incorrect}", Parsed(False, "boxed")),
        (r"\boxed{maybe}", Parsed(None, "boxed", "the last \\boxed{} holds 'maybe', not correct/incorrect")),
        (r"\boxed{cor", Parsed(None, "boxed", "the last \\boxed{ is never closed (a truncated response?)")),
        ('{"correct": true}', Parsed(True, "json")),
        ('{"correct": false}', Parsed(False, "json")),
        ('{"is_correct": "yes"}', Parsed(True, "json")),
        ('{"verdict": "Incorrect"}', Parsed(False, "json")),
        ('The step is wrong. {"correct": true}', Parsed(True, "json")),
        ('{"correct": 1}', Parsed(None, "json", "JSON key 'correct' holds 1, not a verdict")),
        (
            '{"correct": true, "verdict": "incorrect"}',
            Parsed(None, "json", 'JSON keys disagree: {"correct": true, "verdict": "incorrect"}'),
        ),
        ("Yes", Parsed(True, "words")),
        ("No.", Parsed(False, "words")),
        ("True", Parsed(True, "words")),
        ("The step is correct.", Parsed(True, "words")),
        ("The step is incorrect.", Parsed(False, "words")),
        ("The step is not correct.", Parsed(False, "words")),
        ("This step isn't valid.", Parsed(False, "words")),
        ("There are no errors here.", Parsed(True, "words")),
        ("No errors: the step is correct.", Parsed(True, "words")),
        ("correct, correct, correct", Parsed(True, "words")),
        ("Yes, but it is also wrong.", Parsed(None, "words", "ambiguous: says both 'Yes' and 'wrong'")),
        (
            "Incorrect. Well, correct.",
            Parsed(None, "words", "ambiguous: says both 'Incorrect' and 'correct'"),
        ),
        ("Hmm.", Parsed(None, "", NO_VERDICT)),
        ("I cannot say.", Parsed(None, "", NO_VERDICT)),
        ("", Parsed(None, "", NO_VERDICT)),
    ],
)
def test_parse_verdict(text: str, expected: Parsed[bool]) -> None:
    assert parse_verdict(text) == expected
