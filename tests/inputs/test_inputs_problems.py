"""Problems inputs: every format, both presets, column mapping, offset/limit, shards, bad rows."""

from __future__ import annotations

import itertools
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from inputs_fixtures import GSM8K, MATH_ROWS, PROBLEMS, ranges_rows, whole, write_jsonl, write_parquet

from prmforge.inputs import ProblemReader, RawRow, RowRange, open_problems
from prmforge.policies.base import GenerationRequest
from prmforge.policies.simulated import SimulatedPolicy
from prmforge.schemas.errors import ConfigError, RowError
from prmforge.schemas.inputs import ProblemsInput
from prmforge.schemas.records import Problem, SamplingParams
from prmforge.suites.gsm8k import iter_gsm8k_lines, parse_gsm8k_row
from prmforge.suites.plan import plan_of
from prmforge.verifiers.answer import AnswerGrader

MAPPED = {"columns": {"id": "uid", "domain": "kind"}}


def reader(path: Path, **cfg: Any) -> ProblemReader:
    return open_problems(ProblemsInput.model_validate({"path": str(path), **cfg}), 0)


def problems(r: ProblemReader, shard_size: int = 2) -> list[Problem]:
    return [r.parse(row, 65536) for row in ranges_rows(r, shard_size)[1]]


def row_error(r: ProblemReader, payload: object, max_question_bytes: int = 65536) -> RowError:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(RowError) as info:
        r.parse(RawRow(r.source, 0, raw), max_question_bytes)
    return info.value


@pytest.fixture(params=["jsonl", "parquet", "save_to_disk", "dict_to_disk", "hub"])
def any_format(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The PROBLEMS rows in each format a problems input reads."""
    kind = request.param
    if kind == "jsonl":
        return write_jsonl(tmp_path / "probs.jsonl", PROBLEMS)
    rows = [{**row, "answer": str(row["answer"]), "uid": str(row["uid"])} for row in PROBLEMS]
    if kind == "parquet":
        return write_parquet(tmp_path / "probs.parquet", rows)
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    if kind == "hub":
        write_parquet(tmp_path / "probs" / "data" / "train-00000-of-00001.parquet", rows)
        return tmp_path / "probs"
    dataset = datasets.Dataset.from_list(rows)
    if kind == "save_to_disk":
        dataset.save_to_disk(str(tmp_path / "probs"))
    else:
        datasets.DatasetDict({"train": dataset, "test": dataset.select([0])}).save_to_disk(
            str(tmp_path / "probs")
        )
    return tmp_path / "probs"


def test_every_format_reads_the_same_problems(any_format: Path) -> None:
    r = reader(any_format, **MAPPED)
    got = problems(r)
    assert r.source == f"problems:{any_format.name}"
    assert [(p.problem_id, p.domain, p.question, p.gold) for p in got] == [
        ("p-a", "math", "What is 2 + 3?", "5"),
        ("p-b", "math", "What is 4 * 6?", "24"),
        ("p-c", "logic", "What is 2 + 3?", "5"),
        ("7", "code", "What is 10 - 7?", "3"),
        ("p-e", "math", "What is 9 / 3?", "3"),
    ]
    assert {p.source for p in got} == {r.source}
    assert all(p.meta == {} for p in got)


def test_plan_then_read_reproduces_a_whole_read(any_format: Path) -> None:
    r = reader(any_format, **MAPPED)
    everything = whole(r)
    for shard_size in (1, 2, 3, 5, 7):
        ranges, rows = ranges_rows(r, shard_size)
        assert rows == everything
        assert len(ranges) == -(-5 // shard_size)
        for rng in ranges:
            assert isinstance(rng, RowRange)
            assert {type(rng.start), type(rng.stop)} == {int}
            assert rng.cursor is None or isinstance(rng.cursor, int)
            assert len(pickle.dumps(rng)) < 200


def test_offset_and_limit(any_format: Path) -> None:
    r = reader(any_format, offset=1, limit=3, **MAPPED)
    ranges, rows = ranges_rows(r, 2)
    assert [row.index for row in rows] == [1, 2, 3]
    assert [(rng.start, rng.stop) for rng in ranges] == [(1, 3), (3, 4)]
    assert [p.problem_id for p in problems(r)] == ["p-b", "p-c", "7"]
    assert ranges_rows(reader(any_format, offset=9, **MAPPED), 2) == ([], [])


def test_default_ids_keep_duplicate_questions(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "probs.jsonl", PROBLEMS))
    got = problems(r)
    assert [p.problem_id for p in got] == [f"probs-{k}" for k in range(5)]
    assert got[0].question == got[2].question
    assert {p.domain for p in got} == {"math"}
    assert [p.problem_id for p in problems(reader(tmp_path / "probs.jsonl", domain="logic"))][:1] == [
        "probs-0"
    ]
    assert {p.domain for p in problems(reader(tmp_path / "probs.jsonl", domain="logic"))} == {"logic"}


def test_jsonl_blank_lines_are_skipped_but_numbered(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "probs.jsonl", PROBLEMS, blank_after=1))
    ranges, rows = ranges_rows(r, 2)
    assert [row.index for row in rows] == [0, 1, 3, 4, 5]
    assert [(rng.start, rng.stop) for rng in ranges] == [(0, 2), (3, 5), (5, 6)]
    lines = (tmp_path / "probs.jsonl").read_bytes().split(b"\n")
    assert [row.payload for row in rows] == [lines[k] for k in (0, 1, 3, 4, 5)]
    assert ranges[1].cursor == len(lines[0]) + len(lines[1]) + len(lines[2]) + 3


def test_parquet_cursor_is_the_row_group(tmp_path: Path) -> None:
    rows = [{"question": f"q{k}?", "answer": str(k)} for k in range(7)]
    r = reader(write_parquet(tmp_path / "p.parquet", rows, row_group_size=3))
    ranges = r.plan(2)
    assert [(rng.start, rng.stop, rng.cursor) for rng in ranges] == [
        (0, 2, 0),
        (2, 4, 0),
        (4, 6, 1),
        (6, 7, 2),
    ]
    assert [json.loads(row.payload) for row in r.read(ranges[1])] == [rows[2], rows[3]]


def test_parquet_payload_holds_only_the_mapped_columns(tmp_path: Path) -> None:
    rows = [{"question": "q?", "answer": "1", "blob": "x" * 100, "when": None}]
    r = reader(write_parquet(tmp_path / "p.parquet", rows))
    assert json.loads(whole(r)[0].payload) == {"question": "q?", "answer": "1"}


def test_datasets_split_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    rows = [{"question": "a?", "answer": "1"}, {"question": "b?", "answer": "2"}]
    dd = datasets.DatasetDict(
        {"validation": datasets.Dataset.from_list(rows[:1]), "test": datasets.Dataset.from_list(rows[1:])}
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    assert [p.question for p in problems(reader(tmp_path / "dd", split="test"))] == ["b?"]
    with pytest.raises(
        ConfigError, match=r"inputs\.0\.split: .* has splits \['validation', 'test'\]; choose one"
    ):
        reader(tmp_path / "dd").plan(2)
    with pytest.raises(
        ConfigError, match=r"inputs\.0\.split: no split 'train' in .*\(splits: \['validation', 'test'\]\)"
    ):
        reader(tmp_path / "dd", split="train").plan(2)


def test_gsm8k_preset_carries_the_suite_plan(tmp_path: Path) -> None:
    lines = [raw for _, raw in itertools.islice(iter_gsm8k_lines(GSM8K), 25)]
    path = tmp_path / "mine.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    r = reader(path, preset="gsm8k")
    got = problems(r, shard_size=4)
    assert len(got) == 25
    planned = 0
    for index, (problem, raw) in enumerate(zip(got, lines, strict=True)):
        assert problem.problem_id == f"mine-{index}"
        if "plan" not in problem.meta:  # the suite refuses the line; the preset keeps it, without a plan
            with pytest.raises(RowError) as refused:
                parse_gsm8k_row(raw, source="gsm8k", index=index)
            assert problem.meta == {"plan_error": refused.value.reason}
            continue
        suite = parse_gsm8k_row(raw, source="gsm8k", index=index)
        planned += 1
        assert problem.meta["plan"] == suite.meta["plan"]
        assert (problem.question, problem.gold) == (suite.question, suite.gold)
    assert planned == 24
    assert plan_of(got[0]).steps
    request = GenerationRequest(got[0], (), 4, SamplingParams(), seed=1)
    completions = SimulatedPolicy(seed=3).generate([request])[0].completions
    assert len(completions) == 4
    assert all(AnswerGrader().grade(c.text, got[0].gold) is not None for c in completions)


def test_gsm8k_preset_without_annotations_keeps_the_problem(tmp_path: Path) -> None:
    rows = [
        {"question": "How many legs do 2 cats have?", "answer": "Each has 4 legs, so 8.\n#### 8"},
        {"question": "Price?", "answer": "It costs 1,200 dollars.\n#### 1,200"},
    ]
    got = problems(reader(write_jsonl(tmp_path / "g.jsonl", rows), preset="gsm8k"))
    assert [p.gold for p in got] == ["8", "1200"]
    assert got[0].meta == {"plan_error": "no calculator annotations <<expr=value>> to replay"}
    assert "plan" not in got[1].meta


def test_gsm8k_preset_with_mapped_columns(tmp_path: Path) -> None:
    rows = [{"q": "What is 2+2?", "a": "2+2=<<2+2=4>>4\n#### 4", "n": 41}]
    r = reader(
        write_jsonl(tmp_path / "g.jsonl", rows),
        preset="gsm8k",
        columns={"question": "q", "answer": "a", "id": "n"},
    )
    (problem,) = problems(r)
    assert (problem.problem_id, problem.gold, problem.question) == ("41", "4", "What is 2+2?")
    assert problem.meta["plan"]["steps"]
    assert row_error(r, {"q": "x?", "a": "no gold line", "n": 1}).field == "a"
    assert row_error(r, {"question": "x?", "a": "#### 3", "n": 1}).field == "q"


def test_math_preset_takes_the_last_boxed_answer(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "m.jsonl", MATH_ROWS), preset="math")
    got = problems(r)
    assert [p.gold for p in got] == ["1", "2\\sqrt{2}", "\\frac{12}{2}"]
    assert got[0].question == MATH_ROWS[0]["problem"]
    err = row_error(r, {"problem": "x?", "solution": "The answer is 4."})
    assert (err.field, err.reason) == ("solution", "no complete \\boxed{...} answer in the solution")
    assert row_error(r, {"problem": "x?", "solution": "$\\boxed{ }$"}).field == "solution"


def test_preset_columns_are_overridden_field_by_field(tmp_path: Path) -> None:
    rows = [{"problem": "Find x.", "worked": "So $x=\\boxed{3}$.", "level": "Level 1"}]
    r = reader(write_jsonl(tmp_path / "m.jsonl", rows), preset="math", columns={"answer": "worked"})
    assert (r.columns.question, r.columns.answer) == ("problem", "worked")
    assert [p.gold for p in problems(r)] == ["3"]


BAD_ROWS = [
    (b"[1, 2]", "<row>", "expected a JSON object, found array"),
    (
        b"{not json",
        "<row>",
        "invalid JSON at line 1 column 2 (char 1): Expecting property name enclosed in double quotes",
    ),
    ({"answer": "1"}, "question", "missing required field"),
    ({"question": 3, "answer": "1"}, "question", "expected a string, found number"),
    ({"question": None, "answer": None}, "question", "expected a string, found null"),
    ({"question": "  ", "answer": "1"}, "question", "is empty"),
    ({"question": "q?"}, "answer", "missing required field"),
    ({"question": "q?", "answer": True}, "answer", "expected a string or a number, found boolean"),
    ({"question": "q?", "answer": None}, "answer", "expected a string or a number, found null"),
    ({"question": "q?", "answer": ""}, "answer", "is empty"),
]


@pytest.mark.parametrize(("payload", "field", "reason"), BAD_ROWS)
def test_bad_rows_name_the_field(tmp_path: Path, payload: object, field: str, reason: str) -> None:
    r = reader(write_jsonl(tmp_path / "p.jsonl", PROBLEMS[:1]))
    err = row_error(r, payload)
    assert (err.field, err.reason) == (field, reason)


def test_bad_mapped_rows_name_the_column(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "p.jsonl", PROBLEMS[:1]), **MAPPED)
    good = dict(PROBLEMS[0])
    assert row_error(r, {**good, "kind": "poetry"}).field == "kind"
    assert (
        row_error(r, {**good, "kind": "poetry"}).reason
        == "must be one of 'math', 'logic', 'code'; found 'poetry'"
    )
    assert (row_error(r, {**good, "uid": " "}).field, row_error(r, {**good, "uid": " "}).reason) == (
        "uid",
        "is empty",
    )
    assert row_error(r, {**good, "uid": 1.5}).field == "uid"
    missing = {k: v for k, v in good.items() if k != "uid"}
    assert (row_error(r, missing).field, row_error(r, missing).reason) == ("uid", "missing required field")


def test_question_over_the_limit(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "p.jsonl", PROBLEMS[:1]))
    err = row_error(r, {"question": "é" * 10, "answer": "1"}, max_question_bytes=19)
    assert (err.field, err.reason) == ("question", "is 20 bytes, above limits.max_question_bytes (19)")


def test_parquet_values_json_lacks_are_written_as_text(tmp_path: Path) -> None:
    import datetime

    rows = [{"question": "q?", "answer": datetime.date(2024, 5, 1)}]
    (problem,) = problems(reader(write_parquet(tmp_path / "p.parquet", rows)))
    assert problem.gold == "2024-05-01"


def test_missing_datasets_package_gives_an_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError) as info:
        reader(tmp_path / "d")
    assert str(info.value) == (
        "inputs.0.path: reading a `datasets` directory needs the datasets package: pip install 'datasets>=3'"
    )


def test_a_json_array_of_problems(tmp_path: Path) -> None:
    path = tmp_path / "probs.json"
    path.write_text(json.dumps(PROBLEMS), encoding="utf-8")
    r = reader(path, **MAPPED)
    assert [rng.cursor for rng in r.plan(2)] == [None] * 3
    assert [p.problem_id for p in problems(r)] == ["p-a", "p-b", "p-c", "7", "p-e"]
