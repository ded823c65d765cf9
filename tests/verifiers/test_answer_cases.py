"""Outcome grading on the failure classes of issue 8: math-verify behind our grader, plus what it lacks.

Each case is (model output, gold, expected verdict). The outputs are written here, in the forms models
produce them; none is copied from math-verify's own suite.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prmforge.verifiers import answer as answer_module
from prmforge.verifiers._mathverify_worker import equal as worker_equal
from prmforge.verifiers._mathverify_worker import parse_gold
from prmforge.verifiers.answer import AnswerGrader, answers_equal, extract_final_answer

CASES: list[tuple[str, str, bool]] = [
    # boxed intermediate results, then Minerva's final statement: the statement is the answer
    (
        "Step one gives $\\boxed{40}$ and step two $\\boxed{12}$, so $40 + 12 = 52$.\n"
        "Final Answer: The final answer is $52$. I hope it is correct.",
        "52",
        True,
    ),
    ("Hence $\\boxed{12}$. The final answer is $12$. I hope it is correct.", "12", True),
    # a "final answer is $" with no "I hope" does not swallow the later statement
    (
        "I think the final answer is $3 + $4 more. "
        "Final Answer: The final answer is $7$. I hope it is correct.",
        "7",
        True,
    ),
    # "I hope it is correct" closing a sentence that states the answer
    ("So there are 15 ways to do it. I hope it is correct.", "15", True),
    ("So there are 15 ways to do it. I hope it is correct.", "16", False),
    # several boxes for several parts or unknowns
    ("$\\boxed{(2, 5)}$ \\text{ for part (a) and } $\\boxed{(4, 4)}$", "(2, 5), (4, 4)", True),
    ("\\( a = \\boxed{x + 1} \\) and \\( b = \\boxed{2x} \\)", "a=x+1, b=2x", True),
    # decimals rounded inside a structure
    ("\\boxed{[0.67, 1.25)}", "[\\frac{2}{3}, \\frac{5}{4})", True),
    ("\\boxed{[0.66, 1.25)}", "[\\frac{2}{3}, \\frac{5}{4})", True),
    ("\\boxed{[0.65, 1.25)}", "[\\frac{2}{3}, \\frac{5}{4})", False),
    ("\\boxed{(0.13, 1)}", "(\\frac{1}{8}, 1)", False),
    (
        "\\boxed{\\begin{pmatrix} 0.143 \\\\ 2 \\end{pmatrix}}",
        "\\begin{pmatrix} \\frac17 \\\\ 2 \\end{pmatrix}",
        True,
    ),
    # a chained inequality in one unknown is an interval; "x \\in S" is S
    ("\\boxed{-1 \\le t < 4}", "[-1, 4)", True),
    ("\\boxed{-1 < t < 4}", "[-1, 4)", False),
    ("\\boxed{t \\in (0, \\infty)}", "(0,\\infty)", True),
    # a gold written as a whole solution
    ("\\boxed{9}", "First add 4 and 5. Final Answer: The final answer is $9$. I hope it is correct.", True),
    ("\\boxed{8}", "First add 4 and 5. Final Answer: The final answer is $9$. I hope it is correct.", False),
    # minerva's format
    (
        "So the total is 14916.\nFinal Answer: The final answer is $14{,}916$. I hope it is correct.",
        "14916",
        True,
    ),
    ("The final answer is $\\frac{3}{4}$. I hope it is correct.", "0.75", True),
    ("The final answer is $7$. I hope it is correct.", "8", False),
    # {,} thousands; a comma list is not a number
    ("\\boxed{1{,}250{,}000}", "1250000", True),
    ("\\boxed{32, 349}", "32349", False),
    ("\\boxed{32,349}", "32349", True),
    # \text{} / \textbf{} / \mathrm{} unwrapping
    ("\\boxed{\\text{(B)}}", "B", True),
    ("\\boxed{\\textbf{Tuesday}}", "\\text{Tuesday}", True),
    ("\\boxed{\\mathrm{east}}", "\\text{east}", True),
    # units
    ("The answer is: 18 dollars.", "18", True),
    ("\\boxed{12\\text{ cm}}", "12", True),
    ("\\boxed{45^\\circ}", "45", True),
    ("\\boxed{5 \\text{ meters}}", "6", False),
    # percent
    ("\\boxed{25\\%}", "25", True),
    ("\\boxed{25 \\text{ percent}}", "25\\%", True),
    ("\\boxed{30\\%}", "25", False),
    # \cfrac, \tfrac, also inside intervals
    ("\\boxed{\\cfrac{1}{2}}", "0.5", True),
    ("\\boxed{\\left( \\tfrac{1}{2}, 3 \\right]}", "(\\frac12, 3]", True),
    ("\\boxed{[\\tfrac{1}{3}, \\infty)}", "[\\frac{1}{3},\\infty)", True),
    ("\\boxed{(\\tfrac{1}{2}, 3)}", "(\\frac12, 3]", False),
    # sets and tuples element by element
    ("\\boxed{\\{3, 1, 2\\}}", "\\{1,2,3\\}", True),
    ("\\boxed{(1, 2)}", "(2, 1)", False),
    ("\\boxed{(\\frac{1}{2}, 0.25)}", "(0.5, \\frac14)", True),
    ("The solutions are $\\boxed{2}$ and $\\boxed{-3}$.", "-3, 2", True),
    # assignments with several letters on the left
    ("\\boxed{(p,q)=(3,2)}", "(3,2)", True),
    ("\\boxed{(3,2)}", "(p,q)=(3,2)", True),
    ("\\boxed{x = 5}", "5", True),
    # matrices, with a row break followed by a space
    (
        "\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}",
        "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
        True,
    ),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", False),
    # inequalities and equations as answers
    ("\\boxed{x \\ge 2}", "x \\geq 2", True),
    ("\\boxed{2 \\le x}", "x \\geq 2", True),
    ("\\boxed{x > 2}", "x \\geq 2", False),
    ("\\boxed{y = 2x + 1}", "y=1+2x", True),
    # symbolic
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", True),
    ("The answer is: 12", "112", False),
]


@pytest.mark.parametrize(("text", "gold", "expected"), CASES)
def test_failure_classes(text: str, gold: str, expected: bool) -> None:
    """Each failure class of issue 8 is graded as a careful human would."""
    assert AnswerGrader().grade(text, gold) is expected


@pytest.mark.parametrize(
    ("text", "modes", "answer"),
    [
        ("The final answer is $14{,}916$. I hope it is correct.", ("minerva",), "14{,}916"),
        ("The final answer is $14{,}916$. I hope it is correct.", ("answer_is",), "14{,}916"),
        ("Final Answer: 42", ("final_answer",), "42"),
        ("**Final Answer:** $\\frac{1}{2}$", ("final_answer",), "\\frac{1}{2}"),
        ("so #### 7", ("hashes",), "7"),
        ("so #### 7", ("boxed",), None),
        ("We get $x = 3$ and then $y=4$ apples.", ("last_math",), "y=4"),
        ("Adding, 3 + 4 gives 7 apples.", ("last_math",), "7"),
        ("Adding, 3 + 4 gives 7 apples.", ("boxed", "answer_is"), None),
        ("$\\boxed{1}, \\boxed{2}$", ("boxed",), "1, 2"),
        ("$\\boxed{1}$ and $\\boxed{2}$", ("boxed",), "1, 2"),
        ("first \\boxed{1}, finally \\boxed{2}", ("boxed",), "2"),
        ("The answer is 5.\n\\boxed{6}", ("answer_is", "boxed"), "5"),
        ("The answer is 5.\n\\boxed{6}", ("boxed", "answer_is"), "6"),
    ],
)
def test_extraction_modes(text: str, modes: tuple[str, ...], answer: str | None) -> None:
    """Each mode reads its own form; the first mode in the order that finds an answer wins."""
    assert extract_final_answer(text, modes) == answer
    assert AnswerGrader(extraction=modes).extract(text) == answer


def test_unknown_extraction_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="extraction modes"):
        AnswerGrader(extraction=("boxed", "guess"))


def test_tolerance() -> None:
    """A relative tolerance, 0 (exact) by default; on the fast path and in math-verify alike."""
    assert answers_equal("3.1416", "3.14159") is False
    assert AnswerGrader(tolerance=1e-4).grade("\\boxed{3.1416}", "3.14159") is True
    assert AnswerGrader(tolerance=1e-4).grade("\\boxed{3.2}", "3.14159") is False
    assert AnswerGrader(tolerance=1e-4).grade("\\boxed{3.1416}", "\\pi") is True
    assert AnswerGrader().grade("\\boxed{3.1416}", "\\pi") is False
    with pytest.raises(ValueError, match="tolerance"):
        AnswerGrader(tolerance=-1)


def test_fast_path_never_calls_math_verify() -> None:
    """Plain integers, decimals and fractions against a numeric gold are decided without the child."""
    engine = answer_module._ENGINE
    before = engine.calls
    grader = AnswerGrader()
    assert grader.grade("The answer is: 42", "42") is True
    assert grader.grade("The answer is: 41", "42") is False
    assert grader.grade("\\boxed{\\frac{7}{2}}", "3.5") is True
    assert grader.grade("#### 1,000", "1000") is True
    assert grader.grade("The final answer is $14{,}916$. I hope it is correct.", "14916") is True
    assert engine.calls == before
    assert grader.grade("\\boxed{\\sqrt{4}}", "2") is True  # not a plain number: math-verify decides
    assert engine.calls == before + 1


def test_timeout_is_undecided_off_the_main_thread() -> None:
    """Past the deadline a comparison is None (never False), bounded in time, no signals, in a thread."""
    answers_equal("\\sqrt{4}", "2")  # start the child outside the measured time
    results: list[bool | None] = []
    elapsed: list[float] = []

    def grade() -> None:
        start = time.monotonic()
        results.append(AnswerGrader(timeout_s=1.0).grade("\\boxed{2^{2^{40}}}", "3"))
        elapsed.append(time.monotonic() - start)

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert results == [None]
    assert elapsed[0] < 5
    assert AnswerGrader().grade("\\boxed{\\sqrt{9}}", "3") is True  # the child was restarted


def test_gold_is_parsed_once() -> None:
    """The parsed gold is cached per gold string."""
    gold = "\\frac{\\sqrt{2}}{7}"
    parse_gold.cache_clear()
    for pred in ("\\frac{\\sqrt2}{7}", "\\sqrt{2}/7", "1/7"):
        worker_equal(pred, gold)
    info = parse_gold.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_provenance_names_the_engine() -> None:
    provenance = AnswerGrader().provenance
    assert provenance["engine"] == "math-verify"
    assert provenance["math_verify_version"] == "0.9.0"
    assert provenance["extraction"] == "boxed,minerva,answer_is,final_answer,hashes"


def test_grade_command_writes_each_line_back(tmp_path: Path) -> None:
    from prmforge.pipelines.cli_grade import grade_app

    cases = tmp_path / "cases.jsonl"
    out = tmp_path / "out.jsonl"
    cases.write_text(
        '{"prediction": "The answer is: 18 dollars.", "gold": "18", "id": 1}\n'
        '{"prediction": "\\\\boxed{32, 349}", "gold": "32349"}\n'
        "\n"
        '{"prediction": "I am not sure.", "gold": "5"}\n'
    )
    result = CliRunner().invoke(grade_app, ["--input", str(cases), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == [
        '{"prediction": "The answer is: 18 dollars.", "gold": "18", "id": 1, '
        '"correct": true, "extracted": "18 dollars"}',
        '{"prediction": "\\\\boxed{32, 349}", "gold": "32349", "correct": false, "extracted": "32, 349"}',
        '{"prediction": "I am not sure.", "gold": "5", "correct": null, "extracted": null}',
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prediction": "1"}', "line 2: field 'gold'"),
        ('{"prediction": 1, "gold": "1"}', "line 2: field 'prediction'"),
        ("not json", "line 2: not a JSON object"),
    ],
)
def test_grade_command_bad_line(tmp_path: Path, line: str, message: str) -> None:
    from prmforge.pipelines.cli_grade import grade_app

    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"prediction": "1", "gold": "1"}) + "\n" + line + "\n")
    result = CliRunner().invoke(grade_app, ["--input", str(cases)])
    assert result.exit_code == 2
    assert message in result.output
