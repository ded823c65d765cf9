"""Rollouts users bring: written solutions, as a steps list or raw text, with optional human labels.

Each row becomes an :class:`ImportedRollout`. A row gives its steps as an
array of strings (the ``steps`` column) or as raw text (the ``text`` column,
split by the input's :class:`~prmforge.schemas.inputs.SegmentConfig`); when
both columns are mapped, a row with a non-null steps array uses it and any
other row its text.

The rollout's problem is keyed by its question: every row with the same
(whitespace-normalised) question gets the same ``problem_id``,
``<file stem>-<16 hex digits of its sha256>``. Its gold answer is the answer
column's, or ``""`` (unknown) when there is none.

Presets: ``processbench`` (``problem``/``steps``/``label``, the label is the
human first error; ``id``, ``final_answer_correct`` and ``generator`` are read
when present) and ``prm800k`` (see :mod:`prmforge.inputs.prm800k`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from prmforge.inputs.fields import (
    MISSING,
    check_size,
    get,
    human_truth,
    id_field,
    optional_bool,
    optional_text,
    question_key,
    string_list,
    text_field,
)
from prmforge.inputs.opening import Opened, resolve, row_source
from prmforge.inputs.prm800k import parse_prm800k
from prmforge.inputs.rows import RawRow, RowReader, RowSource
from prmforge.inputs.segment import join_steps, segment_steps
from prmforge.schemas.errors import RowError
from prmforge.schemas.inputs import RolloutColumns, RolloutsInput
from prmforge.schemas.records import Problem, StepTruth
from prmforge.schemas.validation import decode_json_line, string_field
from prmforge.verifiers.answer import extract_final_answer

PROCESSBENCH_COLUMNS: Final = RolloutColumns(
    question="problem",
    steps="steps",
    first_error="label",
    id="id",
    outcome="final_answer_correct",
    generator="generator",
)
# Preset columns a row may lack (the value is then unknown), unless the user maps them explicitly.
_PROCESSBENCH_OPTIONAL: Final = frozenset({"id", "outcome", "generator"})
_PRM800K_COLUMNS: Final = (("preset", "question"), ("preset", "label"))
_LIMIT: Final = "max_answer_bytes"
_EXTRA_COLUMNS: Final = ("final_answer", "outcome", "generator")


@dataclass(frozen=True, slots=True)
class ImportedRollout:
    """One imported solution with its problem, steps and (when the file has them) human labels.

    ``final_answer`` is the file's own column when mapped, else what the last
    step that states one says (:func:`~prmforge.verifiers.answer.extract_final_answer`).
    ``outcome`` is the file's verdict on that answer (ProcessBench's
    ``final_answer_correct``), None when it gives none; ``generator`` the model
    that wrote it, when the file says.
    """

    problem: Problem
    rollout_key: str
    steps: tuple[str, ...]
    text: str
    final_answer: str | None
    human: StepTruth | None
    outcome: bool | None = None
    generator: str | None = None


def rollout_columns(cfg: RolloutsInput) -> tuple[RolloutColumns, frozenset[str]]:
    """The preset's columns overridden by every field the user set, and the fields a row may lack."""
    if cfg.preset == "processbench":
        base, optional = PROCESSBENCH_COLUMNS, _PROCESSBENCH_OPTIONAL
    else:
        base, optional = RolloutColumns(), frozenset[str]()
    if cfg.columns is None:
        return base, optional
    chosen = cfg.columns.model_fields_set
    columns = base.model_copy(update={name: getattr(cfg.columns, name) for name in chosen})
    return columns, optional - chosen


def stated_final_answer(steps: tuple[str, ...]) -> str | None:
    """The final answer stated by the last step that states one."""
    for step in reversed(steps):
        answer = extract_final_answer(step)
        if answer is not None:
            return answer
    return None


class RolloutReader(RowReader):
    """Plans, reads and parses one rollouts input (built by :func:`open_rollouts`)."""

    def __init__(
        self,
        cfg: RolloutsInput,
        opened: Opened,
        rows: RowSource,
        columns: RolloutColumns,
        optional: frozenset[str],
    ) -> None:
        super().__init__(rows, opened.source)
        self._cfg, self._opened = cfg, opened
        self.columns, self._optional = columns, optional

    def _problem(self, question: str, gold: str) -> Problem:
        return Problem(
            problem_id=f"{self._opened.stem}-{question_key(question)}",
            domain=self._cfg.domain,
            question=question,
            gold=gold,
            source=self.source,
        )

    def parse(
        self, row: RawRow, max_question_bytes: int, max_steps: int, max_answer_bytes: int
    ) -> ImportedRollout:
        """The rollout in one row; RowError naming the column (or nested field) when it cannot be one."""
        data = decode_json_line(row.payload)
        if self._cfg.preset == "prm800k":
            parsed = parse_prm800k(data, max_question_bytes, max_steps, max_answer_bytes)
            return ImportedRollout(
                problem=self._problem(parsed.question, parsed.gold),
                rollout_key=f"{self.source}#{row.index}",
                steps=parsed.steps,
                text=join_steps(parsed.steps),
                final_answer=parsed.final_answer,
                human=parsed.truth,
            )
        cols = self.columns
        question = text_field(data, cols.question, max_bytes=max_question_bytes, limit="max_question_bytes")
        steps, text = self._steps(data, max_steps, max_answer_bytes)
        gold = optional_text(data, cols.answer, optional=False) or ""
        if cols.answer is not None:
            check_size(cols.answer, gold, max_answer_bytes, _LIMIT)
        key = f"{self.source}#{row.index}"
        if cols.id is not None:
            lenient = "id" in self._optional  # a preset's id column: absent or null means "no id"
            value = get(data, cols.id, optional=lenient)
            if not (lenient and (value is MISSING or value is None)):
                key = id_field(data, cols.id)
        final = optional_text(data, cols.final_answer, optional=False)
        if cols.final_answer is not None and final is not None:
            check_size(cols.final_answer, final, max_answer_bytes, _LIMIT)
        else:
            final = stated_final_answer(steps)
        return ImportedRollout(
            problem=self._problem(question, gold),
            rollout_key=key,
            steps=steps,
            text=text,
            final_answer=final,
            human=human_truth(data, len(steps), cols.labels, cols.first_error, self._optional),
            outcome=optional_bool(data, cols.outcome, optional="outcome" in self._optional),
            generator=optional_text(data, cols.generator, optional="generator" in self._optional),
        )

    def _steps(
        self, data: Mapping[str, object], max_steps: int, max_answer_bytes: int
    ) -> tuple[tuple[str, ...], str]:
        """The steps and the text of a row, from its steps array or its segmented raw text."""
        cols = self.columns
        if cols.steps is not None:
            value = get(data, cols.steps, optional=cols.text is not None)
            if value is None and cols.text is None:
                raise RowError(cols.steps, "is null; expected an array of strings")
            if value is not MISSING and value is not None:
                steps = string_list(cols.steps, value)
                self._check_steps(cols.steps, steps, max_steps)
                text = join_steps(steps)
                check_size(cols.steps, text, max_answer_bytes, _LIMIT)
                return steps, text
        if cols.text is None:  # unreachable: RolloutColumns maps steps or text
            raise RowError(cols.steps or "<row>", "missing required field")
        text = string_field(data, cols.text)
        check_size(cols.text, text, max_answer_bytes, _LIMIT)
        steps = segment_steps(text, self._cfg.segment)
        self._check_steps(cols.text, steps, max_steps)
        return steps, text

    @staticmethod
    def _check_steps(field: str, steps: tuple[str, ...], max_steps: int) -> None:
        if not steps:
            raise RowError(field, "has no steps")
        if len(steps) > max_steps:
            raise RowError(field, f"{len(steps)} steps exceed limits.max_steps ({max_steps})")


def open_rollouts(cfg: RolloutsInput, position: int) -> RolloutReader:
    """A reader for ``inputs.<position>``; ConfigError naming the field when the path or format is wrong."""
    opened = resolve(cfg.path, cfg.format, position, "rollouts", ("jsonl", "json", "parquet"))
    columns, optional = rollout_columns(cfg)
    if cfg.preset == "prm800k":
        wanted: list[tuple[str, str]] = list(_PRM800K_COLUMNS)
    else:
        names = ("question", "steps", "text", "answer", "id", "labels", "first_error", *_EXTRA_COLUMNS)
        wanted = [(f"columns.{name}", col) for name in names if (col := getattr(columns, name))]
    absent_ok = {f"columns.{name}" for name in optional}
    if columns.steps is not None and columns.text is not None:
        absent_ok |= {"columns.steps", "columns.text"}  # each row uses whichever it has
    rows = row_source(opened, position, cfg.offset, cfg.limit, wanted, frozenset(absent_ok))
    return RolloutReader(cfg, opened, rows, columns, optional)
