"""Rollouts inputs: ProcessBench and PRM800K presets, generic columns, segmentation, limits, bad rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from inputs_fixtures import PROCESSBENCH, prm800k_lines, ranges_rows, whole, write_jsonl, write_parquet

from prmforge.inputs import ImportedRollout, RawRow, RolloutReader, open_rollouts
from prmforge.schemas.errors import ConfigError, RowError
from prmforge.schemas.inputs import RolloutsInput
from prmforge.schemas.records import StepTruth

ROWS: list[dict[str, Any]] = [
    {
        "question": "What is 2 + 3 * 4?",
        "steps": ["3 * 4 = 12.", "2 + 12 = 14. The answer is 14."],
        "gold": "14",
        "rid": "r-1",
        "good": [True, True],
    },
    {
        "question": "What is 2 + 3 * 4?",
        "steps": ["2 + 3 = 5.", "5 * 4 = 20.", "So \\boxed{20}."],
        "gold": "14",
        "rid": "r-2",
        "good": [False, False, False],
    },
    {"question": "What is 1 + 1?", "steps": ["  1 + 1 = 2.  "], "gold": "2", "rid": "r-3", "good": None},
]
GENERIC = {"columns": {"answer": "gold", "id": "rid", "labels": "good"}}


def reader(path: Path, **cfg: Any) -> RolloutReader:
    return open_rollouts(RolloutsInput.model_validate({"path": str(path), **cfg}), 1)


def parse_all(r: RolloutReader, shard_size: int = 2, max_steps: int = 256) -> list[ImportedRollout]:
    return [r.parse(row, 65536, max_steps, 65536) for row in ranges_rows(r, shard_size)[1]]


def row_error(
    r: RolloutReader, payload: object, max_steps: int = 256, max_answer_bytes: int = 65536
) -> RowError:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(RowError) as info:
        r.parse(RawRow(r.source, 0, raw), 65536, max_steps, max_answer_bytes)
    return info.value


def test_processbench_first_20() -> None:
    r = reader(PROCESSBENCH, preset="processbench", limit=20)
    got = parse_all(r, shard_size=6)
    assert len(got) == 20
    assert sum(x.human is not None and x.human.first_error != -1 for x in got) == 20
    items = json.loads(PROCESSBENCH.read_text(encoding="utf-8"))[:20]
    for rollout, item in zip(got, items, strict=True):
        label = item["label"]
        assert rollout.rollout_key == item["id"]
        assert rollout.steps == tuple(step.strip() for step in item["steps"])
        assert rollout.text == "\n\n".join(rollout.steps)
        assert rollout.human == StepTruth(
            label, tuple(t < label or label == -1 for t in range(len(item["steps"])))
        )
        assert rollout.outcome is item["final_answer_correct"]
        assert rollout.generator == item["generator"]
        assert rollout.problem.question == item["problem"]
        assert rollout.problem.gold == ""
        assert rollout.problem.source == r.source == "rollouts:processbench_gsm8k.json"
    assert got[0].final_answer == "30"
    assert [rng.cursor for rng in r.plan(6)] == [None] * 4


def test_processbench_whole_file() -> None:
    got = parse_all(reader(PROCESSBENCH, preset="processbench"), shard_size=64)
    assert len(got) == 400
    assert sum(x.human is not None and x.human.first_error != -1 for x in got) == 207
    assert len({x.problem.problem_id for x in got}) == len({x.problem.question for x in got})


def test_processbench_as_parquet_and_jsonl(tmp_path: Path) -> None:
    items = json.loads(PROCESSBENCH.read_text(encoding="utf-8"))[:7]
    from_json = parse_all(reader(PROCESSBENCH, preset="processbench", limit=7))
    for path in (write_parquet(tmp_path / "pb.parquet", items), write_jsonl(tmp_path / "pb.json", items)):
        got = parse_all(reader(path, preset="processbench"), shard_size=3)
        assert [(x.rollout_key, x.steps, x.human, x.outcome) for x in got] == [
            (x.rollout_key, x.steps, x.human, x.outcome) for x in from_json
        ]


def test_processbench_optional_columns_may_be_absent(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "pb.jsonl", [{"problem": "Q?", "steps": ["a", "b"], "label": -1}])
    (x,) = parse_all(reader(path, preset="processbench"))
    assert (x.rollout_key, x.outcome, x.generator) == ("rollouts:pb.jsonl#0", None, None)
    assert x.human == StepTruth(-1, (True, True))
    r = reader(path, preset="processbench")
    nulls = {"problem": "Q?", "steps": ["a"], "label": 0, "id": None, "final_answer_correct": None}
    x = r.parse(RawRow(r.source, 5, json.dumps(nulls).encode()), 99, 9, 99)
    assert (x.rollout_key, x.outcome, x.human) == ("rollouts:pb.jsonl#5", None, StepTruth(0, (False,)))
    mapped = reader(path, preset="processbench", columns={"id": "id"})
    assert row_error(mapped, {"problem": "Q?", "steps": ["a"], "label": 0}).field == "id"


def test_prm800k_preset(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "prm.jsonl", prm800k_lines()), preset="prm800k")
    rows = whole(r)
    assert [row.index for row in rows] == [0, 1, 2, 3]
    first = r.parse(rows[0], 65536, 256, 65536)
    assert first.steps == ("I add the numbers.", "$1+1=2$.\n\n# Answer\n\n2")
    assert (first.final_answer, first.problem.gold, first.problem.question) == ("2", "2", "What is $1+1$?")
    assert first.human == StepTruth(-1, (True, True))
    assert first.rollout_key == "rollouts:prm.jsonl#0"
    second = r.parse(rows[1], 65536, 256, 65536)
    assert second.steps == ("I multiply.", "$3 \\cdot 4 = 7$.")
    assert second.human == StepTruth(1, (True, False))
    assert second.final_answer is None
    err = row_error(r, json.loads(rows[2].payload))
    assert (err.field, err.reason) == (
        "label.finish_reason",
        "is 'give_up': the labeller gave up, so the steps' labels are incomplete",
    )
    fourth = r.parse(rows[3], 65536, 256, 65536)
    assert fourth.steps[0] == "$2^3 = 2 \\cdot 2 \\cdot 2$."
    assert fourth.human == StepTruth(2, (True, True, False, True))
    assert fourth.final_answer == "16"


def test_prm800k_bad_rows(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "prm.jsonl", prm800k_lines()), preset="prm800k")
    line = prm800k_lines()[0]

    def broken(edit: Any) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(line))
        edit(copy)
        return copy

    cases = [
        (lambda c: c.pop("question"), "question", "expected an object, found null"),
        (lambda c: c["question"].pop("problem"), "question.problem", "missing required field"),
        (lambda c: c["label"].update(steps=[]), "label.steps", "has no steps"),
        (
            lambda c: c["label"]["steps"][1].update(chosen_completion=3),
            "label.steps.1.chosen_completion",
            "is 3, not an index below 1",
        ),
        (
            lambda c: c["label"]["steps"][0]["completions"][0].update(rating=None),
            "label.steps.0.completions.0.rating",
            "is None; expected -1, 0 or 1",
        ),
        (
            lambda c: c["label"]["steps"][0]["completions"][0].update(text=""),
            "label.steps.0.completions.0.text",
            "is empty",
        ),
        (
            lambda c: c["label"].update(finish_reason="found_error"),
            "label.finish_reason",
            "is 'found_error' but no step of the trajectory is rated -1",
        ),
        (
            lambda c: c["label"].update(finish_reason="bad_problem"),
            "label.finish_reason",
            "is 'bad_problem': the labeller reported the problem as broken",
        ),
    ]
    for edit, field, reason in cases:
        err = row_error(r, broken(edit))
        assert (err.field, err.reason) == (field, reason)
    err = row_error(r, line, max_steps=1)
    assert str(err) == "label.steps: 2 steps exceed limits.max_steps (1)"


def test_generic_columns(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "mine.jsonl", ROWS), **GENERIC)
    got = parse_all(r)
    assert [x.rollout_key for x in got] == ["r-1", "r-2", "r-3"]
    assert [x.final_answer for x in got] == ["14", "20", None]
    assert [x.human for x in got] == [
        StepTruth(-1, (True, True)),
        StepTruth(0, (False, False, False)),
        None,
    ]
    assert got[2].steps == ("1 + 1 = 2.",)
    assert got[0].problem.problem_id == got[1].problem.problem_id != got[2].problem.problem_id
    assert got[0].problem.problem_id.startswith("mine-")
    assert (got[0].problem.gold, got[0].problem.domain, got[0].outcome) == ("14", "math", None)
    default = parse_all(reader(tmp_path / "mine.jsonl", domain="logic"))
    assert [(x.rollout_key, x.problem.gold, x.human) for x in default] == [
        (f"rollouts:mine.jsonl#{k}", "", None) for k in range(3)
    ]
    assert {x.problem.domain for x in default} == {"logic"}


def test_plan_then_read_and_offset_limit(tmp_path: Path) -> None:
    rows = [{**ROWS[k % 3], "rid": f"r-{k}"} for k in range(11)]
    for path in (write_jsonl(tmp_path / "many.jsonl", rows), write_parquet(tmp_path / "many.parquet", rows)):
        r = reader(path, **GENERIC)
        everything = whole(r)
        for shard_size in (1, 4, 11, 12):
            assert ranges_rows(r, shard_size)[1] == everything
        sliced = reader(path, offset=3, limit=5, **GENERIC)
        ranges, part = ranges_rows(sliced, 2)
        assert [(rng.start, rng.stop) for rng in ranges] == [(3, 5), (5, 7), (7, 8)]
        assert [row.index for row in part] == [3, 4, 5, 6, 7]
        assert [x.rollout_key for x in parse_all(sliced)] == [f"r-{k}" for k in range(3, 8)]


def test_raw_text_is_segmented(tmp_path: Path) -> None:
    rows = [
        {"question": "Q1?", "solution": "Step 1: a ки\nStep 2: b ки", "marks": ["+", "-"]},
        {"question": "Q2?", "steps": ["given", "as a list"], "marks": ["+", "+"]},
    ]
    cfg = {
        "columns": {"text": "solution", "labels": "marks"},
        "segment": {"mode": "tags"},
    }
    got = parse_all(reader(write_jsonl(tmp_path / "shep.jsonl", rows), **cfg))
    assert got[0].steps == ("Step 1: a", "Step 2: b")
    assert got[0].text == rows[0]["solution"]
    assert got[0].human == StepTruth(1, (True, False))
    assert got[1].steps == ("given", "as a list")
    assert got[1].text == "given\n\nas a list"
    only_text = {"columns": {"steps": None, "text": "solution"}, "segment": {"mode": "step-headers"}}
    (x,) = parse_all(reader(write_jsonl(tmp_path / "t.jsonl", rows[:1]), **only_text))
    assert x.steps == ("Step 1: a ки", "Step 2: b ки")


def test_final_answer_and_outcome_columns(tmp_path: Path) -> None:
    rows = [{"question": "Q?", "steps": ["x = 3", "\\boxed{3}"], "fa": "three", "ok": False, "model": "m1"}]
    cfg = {"columns": {"final_answer": "fa", "outcome": "ok", "generator": "model"}}
    (x,) = parse_all(reader(write_jsonl(tmp_path / "f.jsonl", rows), **cfg))
    assert (x.final_answer, x.outcome, x.generator) == ("three", False, "m1")
    r = reader(tmp_path / "f.jsonl", **cfg)
    assert row_error(r, {**rows[0], "ok": "yes"}).field == "ok"
    assert row_error(r, {k: v for k, v in rows[0].items() if k != "model"}).field == "model"


def test_labels_and_first_error_must_agree(tmp_path: Path) -> None:
    cfg = {"columns": {"labels": "good", "first_error": "fe"}}
    r = reader(write_jsonl(tmp_path / "a.jsonl", ROWS[:1]), **cfg)
    base = {"question": "Q?", "steps": ["a", "b", "c"]}
    (x,) = [
        r.parse(
            RawRow(r.source, 0, json.dumps({**base, "good": [1, 0, -1], "fe": 2}).encode()), 9999, 9, 9999
        )
    ]
    assert x.human == StepTruth(2, (True, True, False))
    err = row_error(r, {**base, "good": [1, -1, 1], "fe": 2})
    assert (err.field, err.reason) == ("fe", "is 2 but the labels' first wrong step is 1")
    assert (
        r.parse(
            RawRow(r.source, 0, json.dumps({**base, "good": None, "fe": None}).encode()), 9999, 9, 9999
        ).human
        is None
    )


ROLLOUT_BAD_ROWS = [
    (b"7", "<row>", "expected a JSON object, found number"),
    ({"steps": ["a"]}, "question", "missing required field"),
    ({"question": "", "steps": ["a"]}, "question", "is empty"),
    ({"question": "Q?"}, "steps", "missing required field"),
    ({"question": "Q?", "steps": None}, "steps", "is null; expected an array of strings"),
    (
        {"question": "Q?", "steps": "one\n\ntwo"},
        "steps",
        "expected an array of strings, found string (map raw text as columns.text)",
    ),
    ({"question": "Q?", "steps": {"a": 1}}, "steps", "expected an array of strings, found object"),
    ({"question": "Q?", "steps": ["a", 2]}, "steps", "step 1 is number, not a string"),
    ({"question": "Q?", "steps": ["a", " "]}, "steps", "step 1 is empty"),
    ({"question": "Q?", "steps": []}, "steps", "has no steps"),
    ({"question": "Q?", "steps": ["a"], "gold": 1.5, "rid": "x", "good": [True]}, None, None),
    (
        {"question": "Q?", "steps": ["a"], "gold": [], "rid": "x", "good": None},
        "gold",
        "expected a string or a number, found array",
    ),
    ({"question": "Q?", "steps": ["a"], "gold": "1", "rid": "", "good": None}, "rid", "is empty"),
    (
        {"question": "Q?", "steps": ["a"], "gold": "1", "rid": "x", "good": "+"},
        "good",
        "expected an array of labels, found string",
    ),
    (
        {"question": "Q?", "steps": ["a"], "gold": "1", "rid": "x", "good": [True, False]},
        "good",
        "has 2 labels for 1 steps",
    ),
    (
        {"question": "Q?", "steps": ["a"], "gold": "1", "rid": "x", "good": [2]},
        "good",
        "label 0 is 2; expected true/false, '+'/'-' or a rating -1/0/1",
    ),
]


@pytest.mark.parametrize(("payload", "field", "reason"), ROLLOUT_BAD_ROWS)
def test_bad_rows_name_the_column(
    tmp_path: Path, payload: object, field: str | None, reason: str | None
) -> None:
    full = isinstance(payload, dict) and "rid" in payload
    r = reader(write_jsonl(tmp_path / "r.jsonl", ROWS[:1]), **(GENERIC if full else {}))
    if field is None:
        x = r.parse(RawRow(r.source, 0, json.dumps(payload).encode()), 65536, 256, 65536)
        assert x.problem.gold == "1.5"
        return
    err = row_error(r, payload)
    assert (err.field, err.reason) == (field, reason)


def test_first_error_column_checks(tmp_path: Path) -> None:
    r = reader(
        write_jsonl(tmp_path / "pb.jsonl", [{"problem": "Q?", "steps": ["a"], "label": 0}]),
        preset="processbench",
    )
    for value, reason in [
        (1, "is 1; expected -1 (no error) or a step index below 1"),
        (-2, "is -2; expected -1 (no error) or a step index below 1"),
        (True, "expected an integer step index, found boolean"),
        ("0", "expected an integer step index, found string"),
    ]:
        err = row_error(r, {"problem": "Q?", "steps": ["a"], "label": value})
        assert (err.field, err.reason) == ("label", reason)
    assert row_error(r, {"problem": "Q?", "steps": ["a"]}).field == "label"


def test_limits_name_the_field(tmp_path: Path) -> None:
    r = reader(write_jsonl(tmp_path / "r.jsonl", ROWS[:1]), columns={"text": "body", "answer": "gold"})
    err = row_error(r, {"question": "Q?", "steps": ["s"] * 5000})
    assert str(err) == "steps: 5000 steps exceed limits.max_steps (256)"
    err = row_error(r, {"question": "Q?", "body": "\n\n".join(["s"] * 300)})
    assert str(err) == "body: 300 steps exceed limits.max_steps (256)"
    err = row_error(r, {"question": "Q?", "body": "x" * 101}, max_answer_bytes=100)
    assert str(err) == "body: is 101 bytes, above limits.max_answer_bytes (100)"
    err = row_error(r, {"question": "Q?", "steps": ["x" * 60, "y" * 60]}, max_answer_bytes=100)
    assert str(err) == "steps: is 122 bytes, above limits.max_answer_bytes (100)"
    err = row_error(r, {"question": "Q?", "steps": ["x"], "gold": "9" * 101}, max_answer_bytes=100)
    assert str(err) == "gold: is 101 bytes, above limits.max_answer_bytes (100)"


def test_missing_parquet_column_is_a_config_error(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "r.parquet", [{"question": "Q?", "steps": ["a"]}])
    expected = (
        r"^inputs\.1\.columns\.labels: Parquet file .* has no column 'good' \(its columns: question, steps\)$"
    )
    with pytest.raises(ConfigError, match=expected):
        reader(path, columns={"labels": "good"})
    pb = write_parquet(tmp_path / "pb.parquet", [{"problem": "Q?", "steps": ["a"], "label": 0}])
    (x,) = parse_all(reader(pb, preset="processbench"))
    assert x.rollout_key == "rollouts:pb.parquet#0"
