"""load: raw input rows become problems, or quarantined rows naming the bad field."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prmforge.pipelines.stage import Reject, RowResult, Stage
from prmforge.schemas.errors import RowError
from prmforge.schemas.records import Problem

IMPORTED = "imported_rollout"  # Problem.meta key of a rollout that entered from a file


@dataclass(frozen=True, slots=True)
class SourceRow:
    """An input row before validation: raw bytes from a file, or a generated problem.

    ``position`` is the input's index in ``inputs:``; ``index`` the row's index in that input.
    """

    position: int
    source: str
    index: int
    payload: bytes | Problem
    poison: str | None = None  # why the runner quarantines this row unread (its shard kept killing workers)


Parser = Callable[[SourceRow], Problem]


def plan_steps(problem: Problem) -> int:
    """Steps of a problem's reference plan or imported rollout (0 when it has neither)."""
    imported = problem.meta.get(IMPORTED)
    if isinstance(imported, Mapping):
        return len(imported.get("steps", ()))
    plan = problem.meta.get("plan")
    if isinstance(plan, Mapping):
        return len(plan.get("steps", ()))
    return 0


class LoadStage(Stage):
    """Validates each row with its input's parser and applies ``limits``."""

    reads = ("source",)
    writes = "problem"

    def __init__(
        self, parsers: Mapping[int, Parser], max_row_bytes: int, max_steps: int, config: Mapping[str, Any]
    ) -> None:
        super().__init__("load", ("source",), config)
        self._parsers = parsers
        self._max_row_bytes = max_row_bytes
        self._max_steps = max_steps

    def describe(self, row: SourceRow) -> tuple[str, int, bytes | str]:
        if isinstance(row.payload, Problem):
            return row.source, row.index, json.dumps({"problem_id": row.payload.problem_id})
        return row.source, row.index, row.payload

    def process(self, batch: Sequence[SourceRow], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        seen: dict[str, int] = {}
        out: list[RowResult] = []
        for row in batch:
            result = self._one(row)
            # Imported rollouts of one question share its problem id by design (a problem, many
            # solutions); only a repeated generated problem is a clash.
            if not isinstance(result, Reject) and IMPORTED not in result[0].meta:
                problem_id = result[0].problem_id
                first = seen.setdefault(problem_id, row.index)
                if first != row.index:
                    result = Reject("problem_id", f"{problem_id!r} repeats the id of row {first}")
            out.append(result)
        return out

    def _one(self, row: SourceRow) -> RowResult:
        if row.poison is not None:
            return Reject("<shard>", row.poison)
        if isinstance(row.payload, bytes) and len(row.payload) > self._max_row_bytes:
            return Reject(
                "<row>",
                f"row is {len(row.payload)} bytes, above limits.max_question_bytes + "
                f"limits.max_answer_bytes ({self._max_row_bytes})",
            )
        try:
            problem = self._parsers[row.position](row)
        except RowError as err:
            return Reject(err.field, err.reason)
        steps = plan_steps(problem)
        if steps > self._max_steps:
            return Reject("steps", f"{steps} steps exceed limits.max_steps ({self._max_steps})")
        return [problem]
