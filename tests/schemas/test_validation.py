"""Validation of user rows: every RowError names its field and says what is wrong."""

from __future__ import annotations

import pytest

from prmforge.schemas.errors import RowError
from prmforge.schemas.records import Problem
from prmforge.schemas.validation import decode_json_line, problem_from_row

GOOD: dict[str, object] = {
    "problem_id": "gsm8k-0",
    "domain": "math",
    "question": "Natalia sold clips to 48 friends in April and half as many in May. How many in all?",
    "gold": "72",
    "source": "gsm8k",
    "meta": {"split": "train", "tags": ["arith"]},
}


def test_good_row_becomes_a_problem() -> None:
    """A complete row gives the matching Problem."""
    assert problem_from_row(GOOD) == Problem(
        problem_id="gsm8k-0",
        domain="math",
        question=str(GOOD["question"]),
        gold="72",
        source="gsm8k",
        meta={"split": "train", "tags": ["arith"]},
    )


def test_meta_is_optional() -> None:
    """Without meta the problem gets an empty mapping."""
    row = {k: v for k, v in GOOD.items() if k != "meta"}
    assert problem_from_row(row).meta == {}


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"question": None}, "question", "expected a string, found null"),
        ({"gold": 72}, "gold", "expected a string, found number"),
        ({"problem_id": True}, "problem_id", "expected a string, found boolean"),
        ({"source": ["a"]}, "source", "expected a string, found array"),
        ({"meta": "x"}, "meta", "expected an object, found string"),
        ({"meta": {"when": {1, 2}}}, "meta", "is not JSON-serialisable"),
        ({"domain": "algebra"}, "domain", "must be one of 'math', 'logic', 'code'; found 'algebra'"),
        ({"question": ""}, "question", "is empty"),
        ({"question": " \n\t"}, "question", "is empty"),
        ({"gold": ""}, "gold", "is empty"),
        ({"problem_id": ""}, "problem_id", "is empty"),
        ({"question": "caf\ud800"}, "question", "contains an unpaired surrogate '\\ud800' at character 3"),
        ({"meta": {"k": "\udfff"}}, "meta", "unpaired surrogate"),
        (
            {"answer": "72"},
            "answer",
            "unknown field (allowed: problem_id, domain, question, gold, source, meta)",
        ),
    ],
)
def test_bad_field_is_named(change: dict[str, object], field: str, reason: str) -> None:
    """Each wrong value raises a RowError with the field and the reason."""
    with pytest.raises(RowError) as err:
        problem_from_row({**GOOD, **change})
    assert err.value.field == field
    assert reason in err.value.reason


@pytest.mark.parametrize("missing", ["problem_id", "domain", "question", "gold", "source"])
def test_missing_field_is_named(missing: str) -> None:
    """Leaving out a required field names it."""
    row = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(RowError) as err:
        problem_from_row(row)
    assert (err.value.field, err.value.reason) == (missing, "missing required field")


def test_question_size_limit_is_in_bytes() -> None:
    """The limit counts UTF-8 bytes, and the error says the size."""
    row = {**GOOD, "question": "é" * 6}  # 12 bytes
    assert problem_from_row(row, max_question_bytes=12).question == "é" * 6
    with pytest.raises(RowError) as err:
        problem_from_row(row, max_question_bytes=11)
    assert err.value.field == "question"
    assert err.value.reason == "is 12 bytes, above the limit of 11 bytes"
    with pytest.raises(RowError, match="is 65537 bytes, above the limit of 65536 bytes"):
        problem_from_row({**GOOD, "question": "x" * 65537})


def test_decode_json_line_accepts_an_object_and_a_bom() -> None:
    """A JSON object (with a trailing newline or a leading BOM) decodes to a dict."""
    assert decode_json_line(b'{"a": 1, "b": "\xc3\xa9"}\n') == {"a": 1, "b": "é"}
    assert decode_json_line(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a": "caf\xe9"}', "invalid UTF-8 at byte offset 10 (bytes e9)"),
        (b'{"a": 1,}', "invalid JSON at line 1 column 9 (char 8): Expecting property name"),
        (b'{"a": 1}\n{"b"', "invalid JSON at line 2 column 1 (char 9): Extra data"),
        (b"", "invalid JSON at line 1 column 1 (char 0): Expecting value"),
        (b"[1, 2]", "expected a JSON object, found array"),
        (b'"text"', "expected a JSON object, found string"),
        (b"null", "expected a JSON object, found null"),
        (b'{"a": 1, "a": 2}', "key 'a' appears twice in one object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", "invalid JSON: Exceeds the limit"),
    ],
)
def test_decode_json_line_errors_are_row_errors(raw: bytes, reason: str) -> None:
    """Undecodable lines raise RowError('<row>', ...) saying where and why."""
    with pytest.raises(RowError) as err:
        decode_json_line(raw)
    assert err.value.field == "<row>"
    assert reason in err.value.reason
