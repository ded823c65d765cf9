"""The input config models: defaults, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from prmforge.schemas.inputs import (
    ProblemColumns,
    ProblemsInput,
    RolloutColumns,
    RolloutsInput,
    SegmentConfig,
)


def only_error(model: type[BaseModel], data: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    errors = info.value.errors()
    assert len(errors) == 1, errors
    return ".".join(str(p) for p in errors[0]["loc"]), errors[0]["msg"]


def test_defaults() -> None:
    problems = ProblemsInput(path=Path("p.jsonl"))
    assert (problems.kind, problems.format, problems.preset, problems.domain) == (
        "problems",
        "auto",
        None,
        "math",
    )
    assert (problems.offset, problems.limit, problems.split, problems.columns) == (0, None, None, None)
    rollouts = RolloutsInput(path=Path("r.jsonl"))
    assert rollouts.segment == SegmentConfig(mode="blank-lines", pattern=None, tag="ки")
    assert RolloutColumns() == RolloutColumns(question="question", steps="steps", text=None)
    assert ProblemColumns() == ProblemColumns(question="question", answer="answer", id=None, domain=None)


def test_every_field_is_described() -> None:
    for model in (ProblemColumns, ProblemsInput, SegmentConfig, RolloutColumns, RolloutsInput):
        missing = [name for name, field in model.model_fields.items() if not field.description]
        assert missing == [], model.__name__


def test_models_are_frozen_and_strict() -> None:
    cfg = RolloutsInput(path=Path("r.jsonl"))
    with pytest.raises(ValidationError):
        cfg.offset = 3  # type: ignore[misc]
    assert only_error(ProblemsInput, {"path": "p.jsonl", "colums": {}}) == (
        "colums",
        "Extra inputs are not permitted",
    )


def test_regex_mode_needs_a_pattern() -> None:
    where, msg = only_error(RolloutsInput, {"path": "r.jsonl", "segment": {"mode": "regex"}})
    assert (where, msg) == ("segment.pattern", "required when mode is 'regex'")
    with pytest.raises(ValidationError, match=r"segment\.pattern\n  required when mode is 'regex'"):
        RolloutsInput.model_validate({"path": "r.jsonl", "segment": {"mode": "regex"}})


def test_pattern_must_compile_and_not_match_empty() -> None:
    where, msg = only_error(SegmentConfig, {"mode": "regex", "pattern": "(unclosed"})
    assert where == "pattern"
    assert msg.startswith("does not compile: missing ), unterminated subpattern")
    where, msg = only_error(SegmentConfig, {"mode": "regex", "pattern": r"\n*"})
    assert where == "pattern"
    assert msg.startswith("matches the empty string between any two characters")
    for fine in (r"(?=Step \d)", r"(?m)^", r"(?m)$", r"\n\n+"):
        assert SegmentConfig(mode="regex", pattern=fine).pattern == fine


def test_pattern_only_in_regex_mode() -> None:
    where, msg = only_error(SegmentConfig, {"mode": "tags", "pattern": "x"})
    assert (where, msg) == ("pattern", "only used when mode is 'regex' (mode is 'tags')")
    where, _ = only_error(SegmentConfig, {"mode": "sentences", "pattern": "x"})
    assert where == "mode"


def test_tag_not_empty_and_bounds() -> None:
    assert only_error(SegmentConfig, {"mode": "tags", "tag": ""})[0] == "tag"
    assert only_error(ProblemsInput, {"path": "p", "offset": -1})[0] == "offset"
    assert only_error(RolloutsInput, {"path": "r", "limit": 0})[0] == "limit"
    assert only_error(ProblemsInput, {"path": "p", "preset": "aime"})[0] == "preset"
    assert only_error(RolloutsInput, {"path": "r", "format": "csv"})[0] == "format"


def test_steps_or_text_column() -> None:
    where, msg = only_error(RolloutsInput, {"path": "r", "columns": {"steps": None}})
    assert (where, msg) == ("columns.text", "steps and text are both null; map at least one of them")
    assert RolloutColumns(steps=None, text="solution").text == "solution"


def test_prm800k_takes_no_columns() -> None:
    where, msg = only_error(RolloutsInput, {"path": "r", "preset": "prm800k", "columns": {"question": "q"}})
    assert (where, msg) == ("columns", "not used with preset 'prm800k' (its fields are nested and fixed)")
