"""GSM8K replay: real rows from the shared file, and every way a row can be refused."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from prmforge.schemas.errors import RowError
from prmforge.suites.gsm8k import iter_gsm8k_lines, load_gsm8k, parse_gsm8k_row
from prmforge.suites.plan import plan_of
from prmforge.suites.truth import exact_truth

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k_train.jsonl"
needs_data = pytest.mark.skipif(not SHARED.is_file(), reason=f"{SHARED} not present")


def _shared_rows(*numbers: int) -> dict[int, bytes]:
    wanted = set(numbers)
    return {n: raw for n, raw in iter_gsm8k_lines(SHARED) if n in wanted}


def _row(question: object = "Q?", answer: object = "He has 2+3=<<2+3=5>>5 pens.\n#### 5") -> bytes:
    return json.dumps({"question": question, "answer": answer}).encode()


def _parse(raw: bytes, **kwargs: int) -> tuple[str, ...]:
    problem = parse_gsm8k_row(raw, source="t", index=0, **kwargs)
    return plan_of(problem).reference_steps()


@needs_data
@pytest.mark.parametrize(
    ("line", "exprs", "steps", "gold"),
    [
        (
            0,
            ["48/2", "48+{c0}"],
            (
                "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
                "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\nThe answer is: 72",
            ),
            "72",
        ),
        (
            1,
            ["12/60", "{c0}*50"],
            (
                "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.",
                "Working 50 minutes, she earned 0.2*50 = $<<0.2*50=10>>10.\nThe answer is: 10",
            ),
            "10",
        ),
        (
            2,
            ["100/2", "15*2", "100-{c0}-{c1}-15"],
            (
                "In the beginning, Betty has only 100/2 = $<<100/2=50>>50.",
                "Betty's grandparents gave her 15*2 = $<<15*2=30>>30.",
                "This means, Betty needs 100-50-30-15 = $<<100-50-30-15=5>>5 more.\nThe answer is: 5",
            ),
            "5",
        ),
        (
            14,
            ["8*3", "120/{c0}"],
            (
                "In one hour, there are 3 sets of 20 minutes.\n"
                "So, Joy can read 8*3 = <<8*3=24>>24 pages in an hour.",
                "It will take her 120/24 = <<120/24=5>>5 hours to read 120 pages.\nThe answer is: 5",
            ),
            "5",
        ),
    ],
)
def test_real_rows_replay(line: int, exprs: list[str], steps: tuple[str, ...], gold: str) -> None:
    """Annotated lines become steps, results used later become references, the gold follows ####."""
    raw = _shared_rows(line)[line]
    problem = parse_gsm8k_row(raw, source="gsm8k:train", index=line)
    plan = plan_of(problem)
    assert problem.problem_id == f"gsm8k-{line}"
    assert (problem.domain, problem.source, problem.gold) == ("math", "gsm8k:train", gold)
    assert problem.question == json.loads(raw)["question"]
    assert [c.expr for c in plan.calcs] == exprs
    assert plan.reference_steps() == steps
    assert exact_truth(problem, steps).first_error == -1


@needs_data
def test_real_rows_that_cannot_replay() -> None:
    rows = _shared_rows(23, 29, 394)
    with pytest.raises(RowError) as missing_step:
        parse_gsm8k_row(rows[23], source="g", index=23)
    assert (missing_step.value.field, missing_step.value.reason) == (
        "answer",
        "last computed value 20 differs from the gold answer 5",
    )
    with pytest.raises(RowError, match="no calculator annotations"):
        parse_gsm8k_row(rows[29], source="g", index=29)
    with pytest.raises(RowError, match=r"<<560//10=56>> on answer line 4 cannot be evaluated: .*FloorDiv"):
        parse_gsm8k_row(rows[394], source="g", index=394)


@needs_data
def test_whole_shared_file_counts() -> None:
    """6,999 of 7,473 rows replay; the others lack annotations for the last step, lack any, or use //."""
    problems, rejected = load_gsm8k(SHARED)
    reasons = collections.Counter(
        "gold" if "differs from the gold" in e.reason else "none" if "no calculator" in e.reason else "unsafe"
        for _, e in rejected
    )
    assert len(problems) == 6999
    assert reasons == {"gold": 377, "none": 95, "unsafe": 2}


def test_iter_lines_numbers_lines_and_keeps_bytes(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n  \n\xff\xfe broken\n{"b": 2}')
    assert list(iter_gsm8k_lines(path)) == [(0, b'{"a": 1}'), (3, b"\xff\xfe broken"), (4, b'{"b": 2}')]


def test_literal_equal_to_an_earlier_result_refers_to_the_latest() -> None:
    answer = "A has 2+2=<<2+2=4>>4.\nB has 2*2=<<2*2=4>>4.\nThey have 4+1=<<4+1=5>>5.\n#### 5"
    problem = parse_gsm8k_row(_row(answer=answer), source="t", index=0)
    assert [c.expr for c in plan_of(problem).calcs] == ["2+2", "2*2", "{c1}+1"]


def test_lines_without_annotations_join_the_next_step_or_the_last() -> None:
    answer = "First, think.\nHe has 2 x 3 = $<<2*3=6>>6 now.\nSo that is all.\n#### 6"
    assert _parse(_row(answer=answer)) == (
        "First, think.\nHe has 2*3 = $<<2*3=6>>6 now.\nSo that is all.\nThe answer is: 6",
    )


def test_gold_strips_commas_and_a_bom_is_tolerated() -> None:
    raw = b"\xef\xbb\xbf" + _row(answer="So 1000+200=<<1000+200=1200>>1,200 in all.\n#### 1,200")
    problem = parse_gsm8k_row(raw, source="t", index=4)
    assert problem.gold == "1200"
    assert plan_of(problem).reference_steps() == (
        "So 1000+200 = <<1000+200=1200>>1200 in all.\nThe answer is: 1200",
    )


BIG = 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (
            b'{"question": "caf\xe9", "answer": "x"}',
            "<row>",
            r"invalid UTF-8 at byte offset 17 \(bytes e9\): invalid continuation byte",
        ),
        (
            b'{"question": "Q?", "answer": ',
            "<row>",
            r"invalid JSON at line 1 column 30 \(char 29\): Expecting value",
        ),
        (b"[1, 2]", "<row>", r"expected a JSON object, found array$"),
        (b'"text"', "<row>", r"expected a JSON object, found string$"),
        (b'{"answer": "#### 1"}', "question", r"missing required field"),
        (b'{"question": "Q?"}', "answer", r"missing required field"),
        (_row(question=5), "question", r"expected a string, found number$"),
        (_row(answer=None), "answer", r"expected a string, found null$"),
        (_row(answer=["x"]), "answer", r"expected a string, found array$"),
        (_row(question="  "), "question", r"question is empty"),
        (_row(answer="He has 2+3=<<2+3=5>>5 pens."), "answer", r"no final '#### N' line"),
        (
            _row(answer="2+3=<<2+3=5>>5\n#### five"),
            "answer",
            r"gold answer 'five' after '####' is not a number",
        ),
        (_row(answer="He has five pens.\n#### 5"), "answer", r"no calculator annotations"),
        (
            _row(answer="<<2**3=8>>8\n#### 8"),
            "answer",
            r"<<2\*\*3=8>> on answer line 1 cannot be evaluated: .*Pow",
        ),
        (
            _row(answer="<<__import__('os')=0>>\n#### 0"),
            "answer",
            r"cannot be evaluated: unexpected character",
        ),
        (_row(answer="<<2+3>>5\n#### 5"), "answer", r"<<2\+3>> on answer line 1 has no '=value'"),
        (_row(answer="ok 1+1=<<1+1=2>>2\nbad <<2+2=5>>5\n#### 5"), "answer", r"line 2: 2\+2 is 4, not 5"),
        (
            _row(answer="<<2+2=4>>4\n#### 5"),
            "answer",
            r"last computed value 4 differs from the gold answer 5",
        ),
    ],
)
def test_bad_rows_raise_row_errors(raw: bytes, field: str, reason: str) -> None:
    """Each malformed row names the field and says what is wrong."""
    with pytest.raises(RowError) as caught:
        parse_gsm8k_row(raw, source="t", index=0)
    assert caught.value.field == field
    assert re.search(reason, caught.value.reason), caught.value.reason


def test_a_50_mb_question_is_refused_with_its_size() -> None:
    raw = _row(question="a" * BIG)
    with pytest.raises(RowError) as caught:
        parse_gsm8k_row(raw, source="t", index=0)
    assert caught.value.field == "question"
    assert caught.value.reason == f"question is {BIG} bytes, above the limit of 65536 bytes"
    with pytest.raises(RowError, match="question is 4 bytes, above the limit of 3 bytes"):
        parse_gsm8k_row(_row(question="é?!"), source="t", index=0, max_question_bytes=3)
