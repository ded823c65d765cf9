"""Evaluation: first-error F1 at a threshold (run_eval.py's), threshold tuning on another file, Best-of-N."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from prmforge.schemas.errors import ConfigError, RowError
from prmforge.training.bestofn import aggregate, best_of_n, pick
from prmforge.training.eval_metrics import f1_at, predicted_first_error, threshold_candidates, tune_threshold
from prmforge.training.evaluate import evaluate_build, evaluate_files, load_first_error_items
from prmforge.training.scoring import StepScores


class TableScorer:
    """Scores each step by a table keyed on the step text (a fake PRM)."""

    def __init__(self, table: dict[str, float | None], default: float = 0.9) -> None:
        self.table = table
        self.default = default
        self.calls = 0

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[StepScores]:
        self.calls += 1
        return [
            StepScores(tuple(self.table.get(s, self.default) for s in steps), 10 * len(steps))
            for _, steps in items
        ]


def _items(path: Path, rows: list[tuple[list[str], int]], *, jsonl: bool = False) -> Path:
    items = [
        {"id": f"i{n}", "problem": "p", "steps": steps, "label": label, "final_answer_correct": label == -1}
        for n, (steps, label) in enumerate(rows)
    ]
    path.write_text("".join(json.dumps(i) + "\n" for i in items) if jsonl else json.dumps(items))
    return path


def test_the_first_error_is_the_first_scored_step_below_the_threshold() -> None:
    assert predicted_first_error([0.9, 0.49, 0.1], 0.5) == 1
    assert predicted_first_error([0.9, 0.5], 0.5) == -1  # at the threshold is not below it
    assert predicted_first_error([None, 0.2], 0.5) == 1
    assert predicted_first_error([], 0.5) == -1


def test_f1_at_a_threshold_is_run_eval_pys() -> None:
    scores = [[0.9, 0.2], [0.9, 0.8], [0.3, 0.9], [0.8, 0.4]]
    labels = [1, -1, 1, -1]
    s = f1_at(scores, labels, 0.5)  # predictions 1, -1, 0, 1
    assert (s.error_acc, s.correct_acc, s.f1) == (0.5, 0.5, 0.5)
    s = f1_at(scores, labels, 0.35)  # predictions 1, -1, 0, -1
    assert (s.error_acc, s.correct_acc) == (0.5, 1.0)
    assert s.f1 == pytest.approx(2 / 3)


def test_threshold_candidates_and_tuning() -> None:
    assert threshold_candidates([[0.2, 0.8], [0.8, None]]) == [0.0, 0.5, 0.9]
    assert threshold_candidates([[1.0]]) == [0.0, math.nextafter(1.0, 2.0)]
    assert threshold_candidates([[None]]) == [0.0]
    scores = [[0.9, 0.2], [0.9, 0.8], [0.3, 0.9], [0.8, 0.4]]
    choice = tune_threshold(scores, [1, -1, 1, -1])
    # candidates 0, .25, .35, .6, .85, .95; .25 and .35 both reach F1 2/3, .35 is nearer 0.5
    assert choice.score.f1 == pytest.approx(2 / 3)
    assert choice.threshold == 0.35
    assert choice.candidates == 6


def test_tuning_breaks_ties_nearest_one_half() -> None:
    choice = tune_threshold([[0.1], [0.9]], [0, -1])  # every threshold in (0.1, 0.9] is perfect
    assert choice.threshold == 0.5
    assert choice.score.f1 == 1.0


def test_evaluate_files_reports_each_subset_and_tunes_on_another_file(tmp_path: Path) -> None:
    scorer = TableScorer({"bad": 0.3, "meh": 0.45})
    test = _items(tmp_path / "gsm8k.json", [(["ok", "bad"], 1), (["ok", "meh"], -1), (["ok", "ok"], -1)])
    tune = _items(tmp_path / "tune.jsonl", [(["ok", "meh"], 1), (["ok", "bad"], 1), (["ok"], -1)], jsonl=True)
    report = evaluate_files(scorer, [test], threshold=0.5, tune_on=tune)
    (subset,) = report.subsets
    assert (subset.name, subset.items, subset.steps, subset.unscored_steps) == ("gsm8k", 3, 6, 0)
    assert (subset.score.error_acc, subset.score.correct_acc) == (1.0, 0.5)  # "meh" 0.45 < 0.5 flags a step
    assert report.tuned is not None
    assert report.tuned.threshold == 0.675
    assert subset.tuned_score is not None
    assert subset.tuned_score.f1 == pytest.approx(2 / 3)
    assert report.mean_f1 == subset.score.f1


def test_tuning_on_the_test_file_is_refused(tmp_path: Path) -> None:
    scorer = TableScorer({})
    test = _items(tmp_path / "test.json", [(["ok"], -1)])
    with pytest.raises(ConfigError, match="tuning on the test data"):
        evaluate_files(scorer, [test], tune_on=test)
    copy = tmp_path / "copy.json"
    copy.write_bytes(test.read_bytes())
    with pytest.raises(ConfigError, match="Tune on a separate file"):
        evaluate_files(scorer, [test], tune_on=copy)
    assert scorer.calls == 0


def test_first_error_files_name_a_bad_item(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "p", "steps": ["a"], "label": 1}) + "\n")
    with pytest.raises(RowError, match=r"item 0\.label: 1 is not -1 or a step index below 1"):
        load_first_error_items(path)
    path.write_text("{}\nnot json\n")
    with pytest.raises(RowError, match="line 2"):
        load_first_error_items(path)


def test_the_shared_processbench_file_loads(tmp_path: Path) -> None:
    from training_data import PROCESSBENCH

    items = load_first_error_items(PROCESSBENCH)
    assert len(items) == 400
    assert items[0].item_id == "gsm8k-0"
    assert items[0].label == 1


def test_best_of_n_by_min_last_and_product() -> None:
    assert aggregate([0.9, 0.5, None], "min") == 0.5
    assert aggregate([None], "product") == -math.inf
    assert pick([0.1, 0.3, 0.3]) == 1
    groups = {
        "p1": [([0.9, 0.1], True), ([0.6, 0.7], False)],  # min and product pick 2 (wrong); last picks 2 too
        "p2": [
            ([0.5, 0.9], True),
            ([0.95, 0.4], False),
        ],  # min 0.5 vs 0.4 -> 1; last -> 1; product .45/.38 -> 1
        "p3": [([0.2], False), ([0.1], False)],
    }
    r = best_of_n(groups)
    assert r.accuracy == {"min": 1 / 3, "last": 1 / 3, "product": 1 / 3}
    assert (r.problems, r.rollouts, r.oracle, r.random) == (3, 6, 2 / 3, (0.5 + 0.5 + 0) / 3)


def test_best_of_n_on_a_build_reads_its_rollouts_and_outcomes(build_dir: Path) -> None:
    from prmforge.training.builds import build_rollouts

    data = build_rollouts(build_dir)
    correct = {s for r in data.rollouts if r.outcome for s in r.steps}

    class OutcomeScorer:  # an oracle PRM: every step of a correct rollout scores 1
        def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[StepScores]:
            return [
                StepScores(tuple(1.0 if all(x in correct for x in steps) else 0.0 for _ in steps), 1)
                for _, steps in items
            ]

    report = evaluate_build(OutcomeScorer(), build_dir)
    problems = {r.problem_id for r in data.rollouts}
    oracle = sum(any(r.outcome for r in data.rollouts if r.problem_id == p) for p in problems) / len(problems)
    assert report.result.problems == len(problems)
    assert report.result.rollouts == len(data.rollouts)
    assert report.result.oracle == oracle
    assert report.result.accuracy["min"] == oracle
    assert report.result.random <= oracle
