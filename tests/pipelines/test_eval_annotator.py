"""eval-annotator: ProcessBench F1, flags and coverage of a tool annotator on human first-error labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from prmforge.annotators.tool import ToolAnnotator
from prmforge.pipelines.cli_eval import eval_app
from prmforge.pipelines.eval_annotator import (
    build_annotator,
    evaluate_annotator,
    item_records,
    load_processbench,
)
from prmforge.schemas.errors import RowError
from prmforge.verifiers.equations import check_text

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "processbench_gsm8k.json"


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    """80 items read from the shared file at test time: 40 from the head (erroneous) and 40 from the tail."""
    if not SHARED.is_file():
        pytest.fail(f"the shared ProcessBench GSM8K file is missing at {SHARED}")
    rows = json.loads(SHARED.read_text(encoding="utf-8"))
    return [*rows[:40], *rows[300:340]]


@pytest.fixture
def subset(tmp_path: Path, items: list[dict[str, Any]]) -> Path:
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def _first_error(verdicts: list[str]) -> int | None:
    """The annotator's rule, restated: first FAIL with only PASS before it, -1 if all PASS, else unknown."""
    for t, verdict in enumerate(verdicts):
        if verdict == "FAIL":
            return t
        if verdict != "PASS":
            return None
    return -1


def test_f1_of_the_equation_checker_matches_an_independent_count(
    subset: Path, items: list[dict[str, Any]]
) -> None:
    report = evaluate_annotator(subset, build_annotator("equations"))
    verdicts = [[check_text(s)[0].verdict.value for s in item["steps"]] for item in items]
    predicted = [_first_error(v) for v in verdicts]
    predicted = [-1 if p is None else p for p in predicted]
    labels = [item["label"] for item in items]
    errors = [(p, y) for p, y in zip(predicted, labels, strict=True) if y != -1]
    corrects = [(p, y) for p, y in zip(predicted, labels, strict=True) if y == -1]
    error_acc = sum(p == y for p, y in errors) / len(errors)
    correct_acc = sum(p == -1 for p, _ in corrects) / len(corrects)
    f1 = 2 * error_acc * correct_acc / (error_acc + correct_acc)
    assert report.predictions == tuple(predicted)
    assert (report.score.error_acc, report.score.correct_acc, report.score.f1) == (error_acc, correct_acc, f1)
    # Pinned: 42 erroneous and 38 correct items; 2 first errors found exactly, every correct item kept clean.
    assert (report.score.n_error, report.score.n_correct) == (42, 38)
    assert (report.score.error_hits, report.score.correct_hits) == (2, 38)
    assert report.score.f1 == pytest.approx(2 * (2 / 42) / (2 / 42 + 1))
    flagged = [
        (t, item["label"])
        for item, v in zip(items, verdicts, strict=True)
        for t, x in enumerate(v)
        if x == "FAIL"
    ]
    assert report.steps_flagged == len(flagged) == 6
    assert report.flagged_exact == sum(t == y for t, y in flagged) == 6
    assert (report.flagged_after, report.flagged_before, report.flagged_in_correct) == (0, 0, 0)
    assert report.step_flag_precision == 1.0
    first_flags = [next((t for t, x in enumerate(v) if x == "FAIL"), -1) for v in verdicts]
    assert report.flag_predictions == tuple(first_flags)
    assert report.flag_score.error_hits == 6
    assert report.flag_score.f1 == pytest.approx(0.25)
    assert (report.flags.flagged, report.flags.exact) == (2, 2)
    checked = sum(x in ("PASS", "FAIL") for v in verdicts for x in v)
    assert (report.steps, report.steps_checked) == (sum(len(v) for v in verdicts), checked)
    assert report.coverage == checked / report.steps
    assert report.cost.tool_calls == report.steps
    assert report.unknown_first_error == sum(_first_error(v) is None for v in verdicts)


def test_unknown_first_errors_can_count_as_misses(subset: Path) -> None:
    report = evaluate_annotator(subset, build_annotator("equations"), none_as=None)
    assert (report.score.error_hits, report.score.correct_hits) == (2, 3)


def test_limit_and_records(subset: Path, items: list[dict[str, Any]]) -> None:
    report = evaluate_annotator(subset, build_annotator("equations"), limit=5)
    assert report.items == 5
    assert report.labels == tuple(item["label"] for item in items[:5])
    (item,) = load_processbench(subset, limit=1)
    problem, rollout = item_records(item)
    assert (problem.problem_id, problem.gold, problem.domain) == (items[0]["id"], "", "math")
    assert "label" not in problem.meta
    assert rollout.steps == tuple(items[0]["steps"])
    assert rollout.truth is None
    assert rollout.outcome is items[0]["final_answer_correct"]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"id": "a", "problem": "?", "steps": ["x"], "label": 3}, "item 0.label"),
        ({"id": "a", "problem": "?", "steps": "x", "label": -1}, "item 0.steps"),
        ({"id": "a", "problem": "?", "steps": ["x"], "label": True}, "item 0.label"),
        ({"id": "a", "steps": ["x"], "label": -1}, "item 0.problem"),
    ],
)
def test_malformed_items_are_named(tmp_path: Path, row: dict[str, Any], field: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([row]), encoding="utf-8")
    with pytest.raises(RowError) as err:
        load_processbench(path)
    assert err.value.field == field


def test_build_annotator() -> None:
    assert isinstance(build_annotator("equations"), ToolAnnotator)
    z3 = build_annotator("z3", z3_rlimit=1000)
    assert z3.name == "z3"
    with pytest.raises(ValueError, match="unknown annotator 'mc'"):
        build_annotator("mc")


def test_cli_command(subset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "report.json"
    args = ["--input", str(subset), "--annotator", "equations", "--limit", "10", "--json-out", str(out)]
    result = runner.invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    assert "ProcessBench F1" in result.output
    assert json.loads(out.read_text())["items"] == 10
    bad = runner.invoke(eval_app, ["--input", str(subset), "--annotator", "nope"])
    assert bad.exit_code == 2
    missing = runner.invoke(eval_app, ["--input", str(tmp_path / "none.json"), "--annotator", "equations"])
    assert missing.exit_code == 2


def test_the_command_mounts_on_another_app(subset: Path) -> None:
    import typer

    app = typer.Typer()

    @app.command()
    def build() -> None:
        """Another command, as the main app has."""

    app.add_typer(eval_app)
    result = CliRunner().invoke(app, ["eval-annotator", "--input", str(subset), "--annotator", "equations"])
    assert result.exit_code == 0, result.output
    assert "80 items" in result.output


def test_each_precision_figure_says_what_it_divides() -> None:
    """Exact step precision beside at-or-after precision, each as hits/total; the rollout-level figure
    names its count (it used to read "100.0 of 8")."""
    result = CliRunner().invoke(eval_app, ["--input", str(SHARED), "--annotator", "equations"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "step flag precision: exact / at or after the first error │ 19/22 = 0.864 / 22/22 = 1.000" in text
    assert "rollouts whose predicted first error is a step │ 8, 8 of them the labelled one (100.0)" in text
