"""The command line: help everywhere, config errors that name the field, stats of a build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from prmforge.pipelines.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def base() -> dict[str, Any]:
    return {"name": "t", "inputs": [{"kind": "arith", "count": 3}], "runner": {"workers": 0}}


@pytest.mark.parametrize("command", [[], ["build"], ["stats"], ["validate"]])
def test_help_everywhere(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_validate_accepts_the_quickstart() -> None:
    result = runner.invoke(app, ["validate", str(ROOT / "configs" / "quickstart.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid (2 input(s), 96 input rows" in result.output


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"runner": {"wokers": 2}}, "runner.wokers: is not a known field; did you mean 'workers'?"),
        (
            {"labels": {"after_first_error": "drop"}},
            "labels.after_first_error: must be one of 'negative', 'truncate' (got 'drop')",
        ),
        (
            {"inputs": [{"kind": "sudoku"}]},
            "inputs.0: unknown kind 'sudoku'; allowed: arith, gsm8k, logic, code, problems, rollouts",
        ),
        ({"inputs": [{"kind": "arith", "count": 0}]}, "inputs.0.count: must be >= 1 (got 0)"),
        ({"annotate": [{"kind": "mc", "n": "eight"}]}, "annotate.0.n: must be an integer (got 'eight')"),
        ({"annotate": {"mc": {"n": 8}}}, "annotate: must be a list (got a mapping)"),
        (
            {"annotate": [{"n": 8}]},
            "annotate.0: needs a 'kind' (one of mc, omegaprm, scan, vouch, equations, z3, compile-test, "
            "lsp-reward, judge, prm)",
        ),
        ({"inputs": []}, "inputs: must have at least 1 item (got 0)"),
        (
            {"fuse": {"rule": "vote"}},
            "fuse.rule: must be one of 'single', 'earliest', 'majority', 'consensus', 'weighted', "
            "'grounded' (got 'vote')",
        ),
        ({"fuse": {"source": "z3"}}, "fuse.source: 'z3' is not an annotator; sources: ['mc']"),
    ],
)
def test_validate_names_the_bad_field(tmp_path: Path, patch: dict[str, Any], expected: str) -> None:
    result = runner.invoke(app, ["validate", str(write(tmp_path, {**base(), **patch}))])
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())


def test_validate_names_an_unknown_policy_parameter(tmp_path: Path) -> None:
    config = {**base(), "policy": {"params": {"eror_rate": 0.1}}}
    result = runner.invoke(app, ["validate", str(write(tmp_path, config))])
    assert result.exit_code == 2
    assert (
        "policy.params: unknown parameter(s) ['eror_rate']; did you mean 'error_rate'? allowed: ["
        in " ".join(result.output.split())
    )


def test_validate_names_a_missing_gsm8k_file(tmp_path: Path) -> None:
    config = {**base(), "inputs": [{"kind": "gsm8k", "path": str(tmp_path / "nope.jsonl")}]}
    result = runner.invoke(app, ["validate", str(write(tmp_path, config))])
    assert result.exit_code == 2
    assert f"inputs.0.path: {tmp_path / 'nope.jsonl'} does not exist" in " ".join(result.output.split())


def test_build_then_stats(tmp_path: Path) -> None:
    config = write(tmp_path, base())
    built = runner.invoke(app, ["build", str(config), "--output", str(tmp_path / "b")])
    assert built.exit_code == 0, built.output
    assert "built" in built.output
    assert "first-error F1" in built.output
    stats = runner.invoke(app, ["stats", str(tmp_path / "b"), "--json"])
    assert stats.exit_code == 0, stats.output
    summary = json.loads(stats.output)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert summary["content_hash"] == manifest["content_hash"]
    assert summary["rows"] == 3 * 4  # 3 problems, 4 rollouts each by default


def test_stats_of_an_unfinished_build_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stats", str(tmp_path)])
    assert result.exit_code == 1
    assert "no manifest.json" in result.output


def test_build_without_output_says_which_field(tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", str(write(tmp_path, base()))])
    assert result.exit_code == 2
    assert "output:" in result.output


@pytest.mark.parametrize("fmt", ["trl", "math-shepherd", "qwen"])
def test_export_round_trips_through_the_format(tmp_path: Path, fmt: str) -> None:
    from prmforge.pipelines.export import iter_examples
    from prmforge.schemas.exporters import from_math_shepherd, from_qwen_messages, from_trl

    runner.invoke(app, ["build", str(write(tmp_path, base())), "--output", str(tmp_path / "b")])
    out = tmp_path / f"{fmt}.jsonl"
    result = runner.invoke(app, ["export", str(tmp_path / "b"), "--format", fmt, "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    examples = list(iter_examples(tmp_path / "b", "train"))
    assert len(rows) == len(examples) == 12
    for row, example in zip(rows, examples, strict=True):
        if fmt == "trl":
            assert from_trl(row) == (example.prompt, list(example.completions), list(example.labels))
        elif fmt == "math-shepherd":
            assert from_math_shepherd(row) == (
                example.prompt,
                list(example.completions),
                list(example.labels),
            )
        else:
            assert from_qwen_messages(row["messages"]) == (example.prompt, list(example.completions))
            assert row["labels"] == list(example.labels)


def test_export_rejects_an_unknown_format(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(tmp_path), "--format", "csv", "--output", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "--format: must be one of trl, math-shepherd, qwen (got 'csv')" in result.output


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (
            [{"kind": "arith", "count": 2}, {"kind": "arith", "count": 3, "max_steps": 9}],
            "inputs.1: generates the same problem ids as inputs.0 (arith with seed 0); give one of them "
            "another seed",
        ),
        (
            [{"kind": "gsm8k", "limit": 10}, {"kind": "gsm8k", "offset": 5, "limit": 10}],
            "inputs.1: its rows overlap those of inputs.0 (both read the default GSM8K file); two inputs of "
            "one file must read disjoint row ranges",
        ),
    ],
)
def test_inputs_that_would_share_problem_ids_are_refused(
    tmp_path: Path, inputs: list[dict[str, Any]], expected: str
) -> None:
    result = runner.invoke(app, ["validate", str(write(tmp_path, {**base(), "inputs": inputs}))])
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())


def test_disjoint_gsm8k_ranges_and_distinct_seeds_are_fine(tmp_path: Path) -> None:
    inputs = [
        {"kind": "gsm8k", "limit": 5},
        {"kind": "gsm8k", "offset": 5, "limit": 5},
        {"kind": "arith", "count": 2},
        {"kind": "arith", "count": 2, "seed": 1},
    ]
    result = runner.invoke(app, ["validate", str(write(tmp_path, {**base(), "inputs": inputs}))])
    assert result.exit_code == 0, result.output
    assert "valid (4 input(s), 14 input rows" in result.output


def test_grade_is_a_command_of_the_main_app(tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"prediction": "The answer is 12.", "gold": "12"}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["grade", "--input", str(cases)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {
        "prediction": "The answer is 12.", "gold": "12", "correct": True, "extracted": "12",
    }  # fmt: skip
