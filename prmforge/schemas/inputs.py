"""Configuration of the data users bring: problem files and rollout files.

Two input kinds, each a pydantic model with ``kind`` as its discriminator:

- :class:`ProblemsInput`: questions with gold answers (JSONL, Parquet, or a
  directory ``datasets`` loads offline), with a column mapping and the
  ``gsm8k`` / ``math`` presets;
- :class:`RolloutsInput`: already-written solutions (JSONL, a JSON array or
  Parquet), as a steps list or raw text plus a :class:`SegmentConfig`, with
  optional human labels; the ``processbench`` / ``prm800k`` presets.

Errors name the field (``segment.pattern: required when mode is 'regex'``)
through the location pydantic reports, not a prefix in the message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

InputDomain = Literal["math", "logic", "code"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


class ProblemColumns(_Strict):
    """Which column holds what in a problems file. Unset fields keep the preset's (or these) defaults."""

    question: str = Field("question", min_length=1, description="column with the question text")
    answer: str = Field(
        "answer", min_length=1, description="column with the gold answer (the preset decides how it is read)"
    )
    id: str | None = Field(None, min_length=1, description="column with a problem id; default '<stem>-<row>'")
    domain: str | None = Field(
        None,
        min_length=1,
        description="column with the domain (math, logic, code); default: the input's `domain`",
    )


class ProblemsInput(_Strict):
    """A file (or `datasets` directory) of problems with gold answers; rollouts are generated for them."""

    kind: Literal["problems"] = Field("problems", description="the input kind")
    path: Path = Field(
        ...,
        description="a .jsonl/.json file, a .parquet file, or a directory `datasets` loads offline "
        "(save_to_disk output, or a Hub-layout folder such as data/train-00000-of-00001.parquet)",
    )
    format: Literal["auto", "jsonl", "parquet", "datasets"] = Field(
        "auto",
        description="auto: .parquet is Parquet, a directory is `datasets`, .jsonl/.ndjson/.json are JSON "
        "lines (a .json file whose first character is '[' is read whole as a JSON array)",
    )
    preset: Literal["gsm8k", "math"] | None = Field(
        None,
        description="gsm8k: question/answer, the gold after '#### ' (commas removed) and a calculator "
        "plan for the simulated policy; math: problem/solution, the gold is the last \\boxed{} answer",
    )
    columns: ProblemColumns | None = Field(
        None, description="column names; fields set here override the preset's columns"
    )
    domain: InputDomain = Field("math", description="the domain of every problem when no domain column")
    split: str | None = Field(
        None,
        min_length=1,
        description="the split of a `datasets` DatasetDict (default: its only split, else 'train')",
    )
    offset: int = Field(0, ge=0, description="first row to read (0-based row index in the file)")
    limit: int | None = Field(None, ge=1, description="number of rows to read; all when omitted")


class SegmentConfig(_Strict):
    """How raw solution text becomes steps (only for rows that give text, not a steps list)."""

    mode: Literal["blank-lines", "step-headers", "regex", "tags"] = Field(
        "blank-lines",
        description="blank-lines: split on empty lines; step-headers: a new step at each line starting "
        "'Step k:' (header kept); regex: split on `pattern`; tags: each step ends with `tag`",
    )
    pattern: str | None = Field(
        None,
        validate_default=True,
        description="regex mode: a Python regular expression matching the separator between steps",
    )
    tag: str = Field(
        "ки", min_length=1, description="tags mode: the tag that ends each step (e.g. ки or <extra_0>)"
    )

    @field_validator("pattern")
    @classmethod
    def _pattern_fits_mode(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "mode" not in info.data:  # the mode itself is invalid; that error is reported
            return value
        mode = info.data["mode"]
        if mode == "regex" and value is None:
            raise _error("pattern_required", "required when mode is 'regex'")
        if mode != "regex" and value is not None:
            raise _error("pattern_unused", f"only used when mode is 'regex' (mode is {mode!r})")
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as err:
            raise _error("pattern_invalid", f"does not compile: {err}") from None
        inside = compiled.search("aa", 1)
        if inside is not None and inside.span() == (1, 1):
            raise _error(
                "pattern_empty",
                "matches the empty string between any two characters, so it would split every character "
                "apart; make it match at least one character, or anchor it",
            )
        return value


class RolloutColumns(_Strict):
    """Which column holds what in a rollouts file. Unset fields keep the preset's (or these) defaults."""

    question: str = Field("question", min_length=1, description="column with the question text")
    steps: str | None = Field("steps", min_length=1, description="column with the steps, an array of strings")
    text: str | None = Field(
        None,
        min_length=1,
        validate_default=True,
        description="column with raw solution text, segmented by `segment`",
    )
    answer: str | None = Field(None, min_length=1, description="column with the gold answer; default unknown")
    id: str | None = Field(
        None, min_length=1, description="column with a rollout id; default '<source>#<row>'"
    )
    labels: str | None = Field(
        None,
        min_length=1,
        description="column with per-step human labels: booleans (true = correct), '+'/'-', or PRM800K "
        "ratings -1/0/1 (only -1 is an error)",
    )
    first_error: str | None = Field(
        None, min_length=1, description="column with the human first-error step index (0-based, -1 none)"
    )
    final_answer: str | None = Field(
        None,
        min_length=1,
        description="column with the rollout's final answer; default: extracted from its last steps",
    )
    outcome: str | None = Field(
        None, min_length=1, description="column with a boolean: whether the rollout's final answer is right"
    )
    generator: str | None = Field(
        None, min_length=1, description="column naming the model that wrote the rollout"
    )

    @field_validator("text")
    @classmethod
    def _steps_or_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("steps") is None:
            raise _error("no_steps_column", "steps and text are both null; map at least one of them")
        return value


class RolloutsInput(_Strict):
    """Written solutions to import: they enter after `generate` and are labelled like generated ones."""

    kind: Literal["rollouts"] = Field("rollouts", description="the input kind")
    path: Path = Field(..., description="a .jsonl file, a .json file (JSON array or JSON lines), or .parquet")
    format: Literal["auto", "jsonl", "json", "parquet"] = Field(
        "auto",
        description="auto: by suffix; a .json file whose first character is '[' is a JSON array (read "
        "whole, not streamed), otherwise JSON lines",
    )
    preset: Literal["processbench", "prm800k"] | None = Field(
        None,
        description="processbench: problem/steps/label/id/final_answer_correct/generator; prm800k: "
        "OpenAI's nested PRM800K lines (the chosen completion of each step, rating -1 is an error)",
    )
    columns: RolloutColumns | None = Field(
        None, description="column names; fields set here override the preset's columns"
    )
    segment: SegmentConfig = Field(
        default_factory=SegmentConfig, description="how a row's raw text is split into steps"
    )
    domain: InputDomain = Field("math", description="the domain of every imported rollout's problem")
    offset: int = Field(0, ge=0, description="first row to read (0-based row index in the file)")
    limit: int | None = Field(None, ge=1, description="number of rows to read; all when omitted")

    @field_validator("columns")
    @classmethod
    def _columns_fit_preset(cls, value: RolloutColumns | None, info: ValidationInfo) -> RolloutColumns | None:
        if value is not None and info.data.get("preset") == "prm800k":
            raise _error("columns_unused", "not used with preset 'prm800k' (its fields are nested and fixed)")
        return value


InputConfig = ProblemsInput | RolloutsInput
