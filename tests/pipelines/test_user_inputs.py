"""Builds from users' own data: problem files (JSONL, Parquet, a `datasets` folder) and rollout files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import committed, gsm8k_lines, processbench_items, write_jsonl
from typer.testing import CliRunner

from prmforge.annotators.metrics import processbench_f1
from prmforge.pipelines.cli import app
from prmforge.pipelines.config import BuildConfig, parse_config
from prmforge.pipelines.runners.local import LocalRunner
from prmforge.pipelines.stats import summarize
from prmforge.schemas.records import PRMExample, Problem, Rollout, StepLabels, prefix_labels

runner = CliRunner()


def _config(inputs: list[dict[str, Any]], annotate: list[dict[str, Any]], **more: Any) -> BuildConfig:
    return parse_config(
        {
            "name": "users",
            "seed": 5,
            "inputs": inputs,
            "generate": {"rollouts_per_problem": 2},
            "annotate": annotate,
            "runner": {"workers": 0, "shard_size": 4},
            **more,
        }
    )


def _golds(path: Path) -> list[str]:
    return [json.loads(line)["answer"].rsplit("####", 1)[1].strip().replace(",", "") for line in path.open()]


def test_a_gsm8k_format_problems_file_builds_with_mc(tmp_path: Path) -> None:
    data = gsm8k_lines(tmp_path / "mine.jsonl", 6)
    config = _config([{"kind": "problems", "path": str(data), "preset": "gsm8k"}], [{"kind": "mc", "n": 2}])
    result = LocalRunner().run(config, tmp_path / "b")
    assert result.problems == ()
    problems: list[Problem] = committed(tmp_path / "b", "stages/load/", "problem")
    assert [p.problem_id for p in problems] == [f"mine-{i}" for i in range(6)]
    assert [p.gold for p in problems] == _golds(data)
    assert all("plan" in p.meta for p in problems)  # the calculator plan the simulated policy replays
    s = summarize(tmp_path / "b")
    assert s["rows"] == 12
    assert s["quality"]["rows"] == 12  # the plan gives exact truth
    assert s["quality_by_suite"] == {"problems": s["quality"]}


def test_a_parquet_problems_file_with_a_column_mapping(tmp_path: Path) -> None:
    lines = gsm8k_lines(tmp_path / "g.jsonl", 5, start=10)
    rows = [json.loads(line) for line in lines.open()]
    path = tmp_path / "mine.parquet"
    table = [{"uid": f"q{i}", "text": r["question"], "worked": r["answer"]} for i, r in enumerate(rows)]
    pq.write_table(pa.Table.from_pylist(table), path, row_group_size=2)
    spec = {"kind": "problems", "path": str(path), "preset": "gsm8k",
            "columns": {"question": "text", "answer": "worked", "id": "uid"}}  # fmt: skip
    result = LocalRunner().run(_config([spec], [{"kind": "mc", "n": 2}]), tmp_path / "b")
    assert result.problems == ()
    problems: list[Problem] = committed(tmp_path / "b", "stages/load/", "problem")
    assert [(p.problem_id, p.question, p.gold) for p in problems] == [
        (f"q{i}", r["question"], gold) for i, (r, gold) in enumerate(zip(rows, _golds(lines), strict=True))
    ]
    assert summarize(tmp_path / "b")["rows"] == 10


def test_a_datasets_folder_saved_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    lines = gsm8k_lines(tmp_path / "g.jsonl", 4)
    rows = [json.loads(line) for line in lines.open()]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    spec = {"kind": "problems", "path": str(tmp_path / "saved"), "preset": "gsm8k"}
    result = LocalRunner().run(_config([spec], [{"kind": "mc", "n": 2}]), tmp_path / "b")
    assert result.problems == ()
    problems: list[Problem] = committed(tmp_path / "b", "stages/load/", "problem")
    assert [p.gold for p in problems] == _golds(lines)
    assert summarize(tmp_path / "b")["rows"] == 8


MATH_ROWS = [
    {"problem": "Compute $1 + 1$.", "solution": "It is $\\boxed{2}$."},
    {"problem": "Compute $2 \\cdot 3$.", "solution": "We get $\\boxed{6}$."},
]
NO_PLAN = (
    "no reference plan: the simulated policy cannot solve it (it solves the built-in suites and GSM8K "
    "answers with calculator annotations); import written solutions with `kind: rollouts` to label them"
)


def test_math_problems_without_a_plan_are_quarantined_and_fail_the_build(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "math.jsonl", MATH_ROWS)
    spec = {"kind": "problems", "path": str(path), "preset": "math"}
    result = LocalRunner().run(_config([spec], [{"kind": "equations"}]), tmp_path / "b")
    problems: list[Problem] = committed(tmp_path / "b", "stages/load/", "problem")
    assert [p.gold for p in problems] == ["2", "6"]
    s = summarize(tmp_path / "b")
    assert s["quarantine_reasons"] == {f"generate: plan: {NO_PLAN[:80]}": 2}
    assert result.problems == (
        f"stage generate quarantined 2 of 2 rows (more than limits.max_quarantine_share = 0.5): "
        f"2 x generate: plan: {NO_PLAN[:100]}",
        "the build has 0 training rows: no rows reached assemble; quarantined: 2 x generate: plan: "
        + NO_PLAN[:100],
    )
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "m", "inputs": [spec], "annotate": [{"kind": "equations"}], "runner": {"workers": 0},
    }))  # fmt: skip
    cli = runner.invoke(app, ["build", str(config), "-o", str(tmp_path / "cli")])
    assert cli.exit_code == 1
    flat = " ".join(cli.output.split())
    assert "error the build has 0 training rows" in flat
    assert "Traceback" not in cli.output


def _human_score(rows: list[PRMExample], truth: dict[str, int]) -> dict[str, Any]:
    """ProcessBench scores and step accuracy, restated from the human first errors."""
    errors = [(r.first_error, truth[r.example_id]) for r in rows if truth[r.example_id] != -1]
    corrects = [r.first_error for r in rows if truth[r.example_id] == -1]
    steps = [
        pair
        for r in rows
        for pair in zip(r.labels, prefix_labels(truth[r.example_id], len(r.labels)), strict=True)
    ]
    return {
        "rows": len(rows),
        "error_acc": round(sum(p == y for p, y in errors) / len(errors), 4) if errors else None,
        "correct_acc": round(sum(p == -1 for p in corrects) / len(corrects), 4) if corrects else None,
        "step_accuracy": round(sum(a == b for a, b in steps) / len(steps), 4),
        "false_positives": sum(a and not b for a, b in steps),
        "false_negatives": sum(b and not a for a, b in steps),
    }


def test_processbench_rollouts_labelled_by_equations_are_scored_against_the_human_labels(
    tmp_path: Path,
) -> None:
    items = processbench_items(30)
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    spec = {"kind": "rollouts", "path": str(path), "preset": "processbench"}
    result = LocalRunner().run(_config([spec], [{"kind": "equations"}]), tmp_path / "b")
    assert result.problems == ()
    rollouts: list[Rollout] = committed(tmp_path / "b", "stages/generate/", "rollout")
    assert [r.steps for r in rollouts] == [tuple(item["steps"]) for item in items]
    # Imported as written: no policy ran; the rollout names the model that wrote it.
    assert [r.policy for r in rollouts] == [f"imported:{item['generator']}" for item in items]
    human = {r.rollout_id: item["label"] for r, item in zip(rollouts, items, strict=True)}
    labels: list[StepLabels] = committed(tmp_path / "b", "stages/annotate-equations/", "labels")
    decided = {lab.rollout_id for lab in labels if lab.first_error is not None}
    rows: list[PRMExample] = committed(tmp_path / "b", "data/", "example")
    assert {r.example_id for r in rows} == decided
    assert len(rows) == 6
    assert all(r.truth_first_error == human[r.example_id] for r in rows)
    s = summarize(tmp_path / "b")
    assert s["rows"] == 6
    assert s["excluded"] == 24
    assert s["generation"] == {"rollouts": 30, "generated_rollouts": 0, "completion_tokens": 0}
    expected = _human_score(rows, human)
    assert expected == {"rows": 6, "error_acc": 0.3333, "correct_acc": None, "step_accuracy": 0.4,
                        "false_positives": 15, "false_negatives": 0}  # fmt: skip
    f1 = processbench_f1([r.first_error for r in rows], [human[r.example_id] for r in rows])
    for quality in (s["quality"], s["quality_by_source"]["equations"]):
        assert {k: quality[k] for k in expected} == expected
        assert quality["first_error_f1"] is None  # no correct solution was decided: F1 is nan
    assert math.isnan(f1.f1)
    assert s["quality_by_source"]["equations"]["coverage"] == 0.2
    assert s["quality_by_source"]["equations"]["decided"] == 6


def test_mc_on_imported_rollouts_alone_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(processbench_items(3)), encoding="utf-8")
    config = tmp_path / "c.yaml"
    spec = {"kind": "rollouts", "path": str(path), "preset": "processbench"}
    config.write_text(yaml.safe_dump({"name": "pb", "inputs": [spec], "annotate": [{"kind": "mc"}]}))
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        f"error {config}: 1 problem(s) in the configuration annotate.0: 'mc' continues each step's prefix "
        "with the policy, which only the math inputs that generate their rollouts allow; inputs (rollouts) "
        "need a tool method (equations, z3, compile-test, lsp-reward)"
    )


LAST_21, LAST_20 = "21 + 0 = 21, so the answer is 21.", "20 + 0 = 20, so the answer is 20."
HEADERS = f"Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 21\nStep 3: {LAST_21}"
TAGS = f"2 + 3 = 5 ки 5 * 4 = 20 ки {LAST_20} ки"
BLANK = f"2 + 3 = 5\n\n5 * 4 = 20\n   \n{LAST_20}"
REGEX = f"2 + 3 = 5 || 5 * 4 = 21 || {LAST_21}"


@pytest.mark.parametrize(
    ("segment", "text", "steps", "first_error"),
    [
        (
            {"mode": "step-headers"},
            HEADERS,
            ("Step 1: 2 + 3 = 5", "Step 2: 5 * 4 = 21", f"Step 3: {LAST_21}"),
            1,
        ),
        ({"mode": "tags", "tag": "ки"}, TAGS, ("2 + 3 = 5", "5 * 4 = 20", LAST_20), -1),
        ({"mode": "blank-lines"}, BLANK, ("2 + 3 = 5", "5 * 4 = 20", LAST_20), -1),
        ({"mode": "regex", "pattern": r"\s*\|\|\s*"}, REGEX, ("2 + 3 = 5", "5 * 4 = 21", LAST_21), 1),
    ],
    ids=["step-headers", "tags", "blank-lines", "regex"],
)
def test_raw_text_rollouts_are_segmented_as_configured(
    tmp_path: Path, segment: dict[str, str], text: str, steps: tuple[str, ...], first_error: int
) -> None:
    rows = [
        {
            "question": "What is (2 + 3) * 4?",
            "solution": text,
            "gold": "20",
            "human": [True, first_error != 1, first_error != 1],
        },
        {
            "question": "What is 2 + 3?",
            "solution": "2 + 3 = 5, so the answer is 5.",
            "gold": "5",
            "human": None,
        },
    ]
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    spec = {"kind": "rollouts", "path": str(path), "segment": segment,
            "columns": {"steps": None, "text": "solution", "answer": "gold", "labels": "human"}}  # fmt: skip
    LocalRunner().run(_config([spec], [{"kind": "equations"}]), tmp_path / "b")
    rollouts: list[Rollout] = committed(tmp_path / "b", "stages/generate/", "rollout")
    assert rollouts[0].steps == steps
    assert rollouts[0].outcome is (first_error == -1)  # graded against the gold answer
    assert rollouts[0].truth is not None
    assert rollouts[0].truth.first_error == first_error
    examples: list[PRMExample] = committed(tmp_path / "b", "data/", "example")
    assert examples[0].completions == steps
    assert examples[0].first_error == first_error
    assert summarize(tmp_path / "b")["quality"]["rows"] == 1  # only the first row has human labels


def test_imported_rollouts_above_the_step_limit_are_quarantined(tmp_path: Path) -> None:
    rows = [{"question": "q1", "steps": ["1 + 1 = 2", "2 + 2 = 4", "The answer is 4."]},
            {"question": "q2", "steps": ["1 + 1 = 2", "2 + 0 = 2, so the answer is 2."]}]  # fmt: skip
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    LocalRunner().run(
        _config([{"kind": "rollouts", "path": str(path)}], [{"kind": "equations"}], limits={"max_steps": 2}),
        tmp_path / "b",
    )
    s = summarize(tmp_path / "b")
    assert s["quarantine_reasons"] == {"load: steps: 3 steps exceed limits.max_steps (2)": 1}
    assert s["rows"] == 1


def test_several_imported_rollouts_of_one_question_in_one_shard_are_all_labelled(tmp_path: Path) -> None:
    """A problem with many solutions (PRM800K, ProcessBench): one problem id, every rollout kept."""
    rows = tmp_path / "r.jsonl"
    write_jsonl(
        rows,
        [
            {"question": "What is 2 + 3?", "steps": ["2 + 3 = 5", "The answer is 5"], "answer": "5"},
            {"question": "What is 2 + 3?", "steps": ["2 + 3 = 6", "The answer is 6"], "answer": "5"},
            {"question": "What is  2 + 3?", "steps": ["So 5"], "answer": "5"},  # same question, spaced
        ],
    )
    config = parse_config(
        {
            "name": "t",
            "inputs": [{"kind": "rollouts", "path": str(rows)}],
            "annotate": [{"kind": "equations"}],
            "runner": {"workers": 0, "shard_size": 8},
        }
    )
    LocalRunner().run(config, tmp_path / "b")
    rollouts: list[Rollout] = committed(tmp_path / "b", "stages/generate/", "rollout")
    assert len(rollouts) == 3
    assert len({r.problem_id for r in rollouts}) == 1
    assert len({r.rollout_id for r in rollouts}) == 3
    labels: list[StepLabels] = committed(tmp_path / "b", "stages/annotate-equations/", "labels")
    assert [lab.first_error for lab in labels][:2] == [None, 0]  # "The answer is 5" has no equation
    assert summarize(tmp_path / "b")["quarantined"] == 0
