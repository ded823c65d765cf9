"""Problems users bring: a file of questions with gold answers, read in shards.

Presets:

- ``gsm8k``: columns ``question``/``answer``; the gold is what follows the
  last ``####`` (commas removed). When the answer carries GSM8K's calculator
  annotations, ``meta["plan"]`` holds the replay plan
  :func:`prmforge.suites.gsm8k.parse_gsm8k_row` derives, which the built-in
  simulated policy needs to solve the problem; when it cannot be replayed the
  problem is still read (any policy that writes text can solve it) and
  ``meta["plan_error"]`` says why there is no plan.
- ``math``: columns ``problem``/``solution``; the gold is the content of the
  solution's last complete ``\\boxed{...}``, cleaned like a stated answer.

Without a preset the answer column is the gold as it stands (a number is
written as text). Problem ids are the id column when mapped, else
``<file stem>-<row index>``; two rows with the same question stay two problems.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from prmforge.inputs.fields import get, id_field, scalar_text, text_field
from prmforge.inputs.opening import Opened, resolve, row_source
from prmforge.inputs.rows import RawRow, RowReader, RowSource
from prmforge.schemas.errors import RowError
from prmforge.schemas.inputs import ProblemColumns, ProblemsInput
from prmforge.schemas.records import Domain, Problem
from prmforge.schemas.validation import decode_json_line, parse_domain
from prmforge.suites.gsm8k import parse_gsm8k_row
from prmforge.verifiers.answer import extract_final_answer

PRESET_COLUMNS: Final[Mapping[str | None, ProblemColumns]] = {
    None: ProblemColumns(),
    "gsm8k": ProblemColumns(question="question", answer="answer"),
    "math": ProblemColumns(question="problem", answer="solution"),
}
_HASHES: Final = re.compile(r"^####(.*)$", re.MULTILINE)
_BOXED: Final = re.compile(r"\\(?:boxed|fbox)\s*\{")


def problem_columns(cfg: ProblemsInput) -> ProblemColumns:
    """The preset's columns, with every field the user set in ``columns`` replacing the preset's."""
    base = PRESET_COLUMNS[cfg.preset]
    if cfg.columns is None:
        return base
    return base.model_copy(update={name: getattr(cfg.columns, name) for name in cfg.columns.model_fields_set})


def gsm8k_gold(answer: str, column: str) -> str:
    """The gold answer after a GSM8K answer's last ``####`` line, commas removed."""
    matches = list(_HASHES.finditer(answer))
    if not matches:
        raise RowError(column, "no final '#### N' line with the gold answer")
    gold = matches[-1].group(1).strip().replace(",", "")
    if not gold:
        raise RowError(column, "the '####' line states no gold answer")
    return gold


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``."""
    for match in reversed(list(_BOXED.finditer(text))):
        depth = 1
        for i in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[match.end() : i]
    return None


def math_gold(solution: str, column: str) -> str:
    content = last_boxed(solution)
    if content is None:
        raise RowError(column, "no complete \\boxed{...} answer in the solution")
    gold = extract_final_answer(f"\\boxed{{{content}}}") or content.strip()
    if not gold:
        raise RowError(column, "the last \\boxed{} is empty")
    return gold


class ProblemReader(RowReader):
    """Plans, reads and parses one problems input (built by :func:`open_problems`)."""

    def __init__(self, cfg: ProblemsInput, opened: Opened, rows: RowSource, columns: ProblemColumns) -> None:
        super().__init__(rows, opened.source)
        self._cfg, self._opened, self.columns = cfg, opened, columns

    def parse(
        self,
        row: RawRow,
        max_question_bytes: int,
        max_answer_bytes: int | None = None,
        max_steps: int | None = None,
    ) -> Problem:
        """The problem in one row; RowError naming the column when the row cannot be one.

        ``max_answer_bytes`` and ``max_steps`` (calculator steps of a GSM8K answer) are checked before
        the answer is replayed, so an oversized row costs time linear in its size.
        """
        cols = self.columns
        data = decode_json_line(row.payload)
        question = text_field(data, cols.question, max_bytes=max_question_bytes, limit="max_question_bytes")
        problem_id = id_field(data, cols.id) if cols.id else f"{self._opened.stem}-{row.index}"
        domain: Domain = (
            parse_domain(get(data, cols.domain), cols.domain) if cols.domain else self._cfg.domain
        )
        meta: dict[str, Any] = {}
        if self._cfg.preset == "gsm8k":
            answer = text_field(data, cols.answer, max_bytes=max_answer_bytes, limit="max_answer_bytes")
            steps = sum(1 for line in answer.splitlines() if "<<" in line)
            if max_steps is not None and steps > max_steps:
                raise RowError(cols.answer, f"{steps} calculator steps exceed limits.max_steps ({max_steps})")
            gold = gsm8k_gold(answer, cols.answer)
            replay = json.dumps({"question": question, "answer": answer}).encode("utf-8")
            try:
                planned = parse_gsm8k_row(
                    replay, source=self.source, index=row.index, max_question_bytes=max_question_bytes
                )
            except RowError as err:
                meta["plan_error"] = err.reason
            else:
                meta["plan"] = planned.meta["plan"]
        elif self._cfg.preset == "math":
            solution = text_field(data, cols.answer, max_bytes=max_answer_bytes, limit="max_answer_bytes")
            gold = math_gold(solution, cols.answer)
        else:
            gold = scalar_text(cols.answer, get(data, cols.answer))
            if not gold.strip():
                raise RowError(cols.answer, "is empty")
        return Problem(
            problem_id=problem_id, domain=domain, question=question, gold=gold, source=self.source, meta=meta
        )


def open_problems(cfg: ProblemsInput, position: int) -> ProblemReader:
    """A reader for ``inputs.<position>``; ConfigError naming the field when the path or format is wrong."""
    opened = resolve(cfg.path, cfg.format, position, "problems", ("jsonl", "json", "parquet", "datasets"))
    columns = problem_columns(cfg)
    wanted = [("columns.question", columns.question), ("columns.answer", columns.answer)]
    wanted += [(f"columns.{name}", col) for name in ("id", "domain") if (col := getattr(columns, name))]
    rows = row_source(opened, position, cfg.offset, cfg.limit, wanted, frozenset(), cfg.split)
    return ProblemReader(cfg, opened, rows, columns)
