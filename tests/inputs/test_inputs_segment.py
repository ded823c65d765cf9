"""Step segmentation: each mode's exact output."""

from __future__ import annotations

import pytest

from prmforge.inputs import segment_steps
from prmforge.inputs.segment import STEP_SEPARATOR, join_steps
from prmforge.policies import base
from prmforge.schemas.inputs import SegmentConfig


def seg(text: str, **cfg: str) -> tuple[str, ...]:
    return segment_steps(text, SegmentConfig.model_validate(cfg))


def test_blank_lines() -> None:
    text = "  First step.\nStill first.\n\nSecond step.\r\n\r\nThird.\n \t \n\n\nFourth.\n\n"
    assert seg(text) == ("First step.\nStill first.", "Second step.", "Third.", "Fourth.")
    assert seg("") == ()
    assert seg("\n\n  \n") == ()


@pytest.mark.parametrize("text", ["a\n\nb", "a\n\n\n\nb\n\nc", "  x  \n\n\n y", "one"])
def test_blank_lines_agree_with_the_policies(text: str) -> None:
    assert seg(text) == base.split_steps(text)
    assert STEP_SEPARATOR == base.STEP_SEPARATOR
    assert join_steps(seg(text)) == base.STEP_SEPARATOR.join(base.split_steps(text))


def test_step_headers_keep_the_header() -> None:
    text = (
        "Let me think.\n"
        "Step 1: Add 2 and 3 to get 5.\n"
        "It is 5.\n"
        "step 2:Double it: 10.\n"
        "  STEP 10 : Subtract 1: 9.\n"
        "## Step 11: A heading.\n"
        "**Step 12:** Bold. The answer is 9.\n"
        "A step 13: mid-line is not a header."
    )
    assert seg(text, mode="step-headers") == (
        "Let me think.",
        "Step 1: Add 2 and 3 to get 5.\nIt is 5.",
        "step 2:Double it: 10.",
        "STEP 10 : Subtract 1: 9.",
        "## Step 11: A heading.",
        "**Step 12:** Bold. The answer is 9.\nA step 13: mid-line is not a header.",
    )
    assert seg("No headers here.\n\nAt all.", mode="step-headers") == ("No headers here.\n\nAt all.",)
    assert seg("Step one: words are not numbers.", mode="step-headers") == (
        "Step one: words are not numbers.",
    )


def test_regex_drops_separators_and_ignores_groups() -> None:
    assert seg("a ;; b;;c ;;  ;; d", mode="regex", pattern=r"\s*(;;)\s*") == ("a", "b", "c", "d")
    assert seg("Step 1: x. Step 2: y.", mode="regex", pattern=r"(?=Step \d)") == ("Step 1: x.", "Step 2: y.")
    assert seg("line one\nline two\n", mode="regex", pattern=r"(?m)$") == ("line one", "line two")


def test_tags() -> None:
    shepherd = "Step 1: 2 + 3 = 5 ки\nStep 2: 5 * 2 = 10 ки\nStep 3: The answer is: 10 ки"
    assert seg(shepherd, mode="tags") == (
        "Step 1: 2 + 3 = 5",
        "Step 2: 5 * 2 = 10",
        "Step 3: The answer is: 10",
    )
    qwen = "First.<extra_0>Second.<extra_0>"
    assert seg(qwen, mode="tags", tag="<extra_0>") == ("First.", "Second.")
    assert seg("a ки ки b", mode="tags") == ("a", "b")
    assert seg("a ки trailing words", mode="tags") == ("a", "trailing words")
