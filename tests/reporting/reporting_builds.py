"""Small real builds for the report, quarantine and Hub tests, built once per test process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from prmforge.pipelines.config import parse_config
from prmforge.pipelines.runners.local import LocalRunner

_BUILT: dict[str, Path] = {}

# Two sources (Monte Carlo and the equation check) on inputs with exact truth; GSM8K lines 23 and 29 are
# quarantined at load; balance and near dedup on; 12 rows per file so train and validation have 2 shards.
TWO_SOURCES: dict[str, Any] = {
    "name": "two-sources",
    "seed": 3,
    "inputs": [
        {"kind": "arith", "count": 12, "min_steps": 2, "max_steps": 6},
        {"kind": "gsm8k", "offset": 20, "limit": 12},
    ],
    "generate": {"rollouts_per_problem": 3},
    "annotate": [{"kind": "mc", "n": 4}, {"kind": "equations"}],
    "fuse": {"rule": "earliest"},
    "split": {
        "validation": 0.2,
        "test": 0.1,
        "dedup": True,
        "near_dedup": {},
        "balance": {"unit": "rollout", "target": 0.5},
        "rows_per_file": 12,
    },
    "runner": {"workers": 0, "shard_size": 8},
}

# One source, imported rollouts without truth; two of the four lines are quarantined (a null text,
# a line that is not JSON and holds a real tab, NUL and an invalid UTF-8 byte).
ROLLOUT_LINES = (
    b'{"question": "Ann has 3 boxes of 4 pens and gives away 5 pens. How many pens does she have left?", '
    b'"text": "Step 1: Ann has 3 * 4 = 12 pens.\\nStep 2: After giving away 5 she has 12 - 5 = 7 pens. '
    b'The answer is 7.", "answer": "7"}\n'
    b'{"question": "A train travels 60 km per hour for 2.5 hours. How far does it go?", "text": "Step 1: '
    b"It travels 60 * 2 = 120 km in two hours.\\nStep 2: In all 120 + 60 * 0.5 = 140 km. The answer is "
    b'140.", "answer": "150"}\n'
    b'{"question": "Broken", "text": null, "answer": "1"}\n'
    b"not json\tat all \x00 \xff [red]markup[/red]\n"
)


def _build(name: str, factory: pytest.TempPathFactory, data: dict[str, Any]) -> Path:
    if name not in _BUILT:
        out = factory.mktemp(name) / "build"
        result = LocalRunner().run(parse_config(data), out, workers=0)
        assert result.problems == ()
        _BUILT[name] = out
    return _BUILT[name]


def two_sources(factory: pytest.TempPathFactory) -> Path:
    return _build("two-sources", factory, TWO_SOURCES)


def one_source(factory: pytest.TempPathFactory) -> Path:
    if "one-source" not in _BUILT:
        rollouts = factory.mktemp("rollouts") / "rollouts.jsonl"
        rollouts.write_bytes(ROLLOUT_LINES)
        data = {
            "name": "one-source",
            "inputs": [
                {
                    "kind": "rollouts",
                    "path": str(rollouts),
                    "columns": {"question": "question", "steps": None, "text": "text", "answer": "answer"},
                    "segment": {"mode": "step-headers"},
                }
            ],
            "annotate": [{"kind": "equations"}],
            "runner": {"workers": 0},
            "limits": {"max_quarantine_share": 0.9},
        }
        return _build("one-source", factory, data)
    return _BUILT["one-source"]


def cli() -> typer.Typer:
    """The commands under test in one app (``prmforge.pipelines.cli`` registers them the same way)."""
    from prmforge.pipelines.cli_export import export_app
    from prmforge.pipelines.cli_report import report_app

    app = typer.Typer(add_completion=False)
    app.add_typer(report_app)
    app.add_typer(export_app)
    return app
