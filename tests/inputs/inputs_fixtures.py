"""Small input files written at test time (nothing is committed but these generators)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prmforge.inputs import ProblemReader, RawRow, RolloutReader, RowRange

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
GSM8K = SHARED / "gsm8k_train.jsonl"
PROCESSBENCH = SHARED / "processbench_gsm8k.json"

PROBLEMS: list[dict[str, Any]] = [
    {"question": "What is 2 + 3?", "answer": "5", "uid": "p-a", "kind": "math"},
    {"question": "What is 4 * 6?", "answer": "24", "uid": "p-b", "kind": "math"},
    {"question": "What is 2 + 3?", "answer": "5", "uid": "p-c", "kind": "logic"},
    {"question": "What is 10 - 7?", "answer": 3, "uid": 7, "kind": "code"},
    {"question": "What is 9 / 3?", "answer": "3", "uid": "p-e", "kind": "math"},
]

MATH_ROWS: list[dict[str, str]] = [
    {"problem": "Compute $\\frac{1}{2}+\\frac{1}{2}$.", "solution": "It is $\\boxed{1}$."},
    {
        "problem": "Simplify $\\sqrt{8}$.",
        "solution": "First $\\boxed{x}$ is a guess. Then $\\sqrt{8} = \\boxed{2\\sqrt{2}}$.",
    },
    {"problem": "Evaluate $\\frac{3}{4}$ of 8.", "solution": "We get $\\boxed{\\frac{12}{2}}$ or \\boxed{6"},
]


def write_jsonl(path: Path, rows: Sequence[object], *, blank_after: int | None = None) -> Path:
    """One JSON value per line; a blank line after row ``blank_after`` when given."""
    lines = []
    for k, row in enumerate(rows):
        lines.append(json.dumps(row))
        if blank_after == k:
            lines.append("   ")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_parquet(path: Path, rows: Sequence[dict[str, Any]], *, row_group_size: int = 2) -> Path:
    """A Parquet file with small row groups, so ranges cross row-group boundaries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows)), path, row_group_size=row_group_size)
    return path


def prm800k_step(texts_ratings: Sequence[tuple[str, int | None]], chosen: int | None) -> dict[str, Any]:
    return {
        "completions": [{"text": text, "rating": rating, "flagged": None} for text, rating in texts_ratings],
        "human_completion": None,
        "chosen_completion": chosen,
    }


def prm800k_line(
    problem: str, answer: str, steps: Sequence[dict[str, Any]], finish: str = "solution"
) -> dict[str, Any]:
    return {
        "labeler": "00000000-0000-0000-0000-000000000000",
        "timestamp": "2023-01-22T04:34:27.052924",
        "generation": 1,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {
            "problem": problem,
            "ground_truth_solution": "See the steps.",
            "ground_truth_answer": answer,
            "pre_generated_steps": None,
            "pre_generated_answer": None,
            "pre_generated_verifier_score": None,
        },
        "label": {"steps": list(steps), "total_time": 1000, "finish_reason": finish},
    }


def prm800k_lines() -> list[dict[str, Any]]:
    """Four lines: a clean solution, a found error (first completion taken), a give-up, a phase-1 choice."""
    return [
        prm800k_line(
            "What is $1+1$?",
            "2",
            [
                prm800k_step([("I add the numbers.", 0)], 0),
                prm800k_step([("$1+1=2$.\n\n# Answer\n\n2", 1)], 0),
            ],
        ),
        prm800k_line(
            "What is $3 \\cdot 4$?",
            "12",
            [
                prm800k_step([("I multiply.", 1)], 0),
                prm800k_step([("$3 \\cdot 4 = 7$.", -1), ("$3 \\cdot 4 = 12$.", 1)], None),
            ],
            finish="found_error",
        ),
        prm800k_line("What is $5-5$?", "0", [prm800k_step([("Hmm.", 0)], 0)], finish="give_up"),
        prm800k_line(
            "What is $2^3$?",
            "8",
            [
                prm800k_step([("$2^3 = 6$.", -1), ("$2^3 = 2 \\cdot 2 \\cdot 2$.", 1)], 1),
                prm800k_step([("That is $8$.", 1)], 0),
                prm800k_step([("I double it: $16$.", -1)], 0),
                prm800k_step([("# Answer\n\n16", 0)], 0),
            ],
        ),
    ]


def ranges_rows(
    reader: ProblemReader | RolloutReader, shard_size: int
) -> tuple[list[RowRange], list[RawRow]]:
    ranges = reader.plan(shard_size)
    return ranges, [row for rng in ranges for row in reader.read(rng)]


def whole(reader: ProblemReader | RolloutReader) -> list[RawRow]:
    """Every row in one range."""
    return ranges_rows(reader, 1 << 30)[1]


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle):
            yield number, line.rstrip(b"\r\n")
