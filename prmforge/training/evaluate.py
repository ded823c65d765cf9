"""``prmforge eval``: a PRM against human first-error labels, and as a Best-of-N selector on a build.

**First-error files** (ProcessBench's format: a JSON list, or JSON lines, of ``{"id", "problem",
"steps": [str], "label", "final_answer_correct", ...}``, ``label`` -1 for a correct solution, else the
0-based index of its first wrong step): every item's steps are scored, and
:mod:`~prmforge.training.eval_metrics` predicts and scores the first error. Each ``--input`` file is a
subset (ProcessBench: gsm8k, math, olympiadbench, omnimath) reported on its own, with the mean F1 of
the subsets. Reported at ``threshold`` (default 0.5) and, with ``tune_on``, at the threshold tuned on
that other file; the tuning file may not be one of the inputs (same path or same bytes).

**Best-of-N on a build** (:func:`evaluate_build`): every generated rollout of the build is scored;
:func:`~prmforge.training.bestofn.best_of_n` picks each problem's best rollout by min, last and product
and reports the share whose pick reached the correct answer (the rollout's graded ``outcome``; an
ungraded one counts as not correct), beside the oracle and random baselines. It uses every rollout:
give a build the PRM was not trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prmforge.annotators.metrics import ProcessBenchScore
from prmforge.schemas.errors import ConfigError, RowError
from prmforge.training.bestofn import BestOfN, best_of_n
from prmforge.training.eval_metrics import ThresholdChoice, f1_at, tune_threshold
from prmforge.training.scoring import StepScores

__all__ = [
    "BuildReport",
    "FileReport",
    "FirstErrorItem",
    "Scorer",
    "SubsetReport",
    "evaluate_build",
    "evaluate_files",
    "load_first_error_items",
]


class Scorer(Protocol):
    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[StepScores]: ...


@dataclass(frozen=True, slots=True)
class FirstErrorItem:
    item_id: str
    problem: str
    steps: tuple[str, ...]
    label: int


def _item(row: Any, index: int) -> FirstErrorItem:
    where = f"item {index}"
    if not isinstance(row, dict):
        raise RowError(where, f"expected an object, found {type(row).__name__}")
    problem, steps, label = row.get("problem"), row.get("steps"), row.get("label")
    if not isinstance(problem, str):
        raise RowError(f"{where}.problem", "expected a string")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise RowError(f"{where}.steps", "expected a list of strings")
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
        raise RowError(f"{where}.label", f"{label!r} is not -1 or a step index below {len(steps)}")
    return FirstErrorItem(str(row.get("id", index)), problem, tuple(steps), label)


def load_first_error_items(path: Path) -> list[FirstErrorItem]:
    """The items of a JSON list or JSON-lines file; a :class:`RowError` names the item and field."""
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise RowError(f"line {number}", f"not valid JSON ({err.msg})") from None
    return [_item(row, i) for i, row in enumerate(rows)]


@dataclass(frozen=True, slots=True)
class SubsetReport:
    """One input file: its F1 at the given threshold and, when tuned, at the tuned one."""

    name: str
    items: int
    steps: int
    unscored_steps: int
    threshold: float
    score: ProcessBenchScore
    tuned_score: ProcessBenchScore | None = None


@dataclass(frozen=True, slots=True)
class FileReport:
    subsets: list[SubsetReport]
    threshold: float
    tuned: ThresholdChoice | None = None
    tune_file: str | None = None
    mean_f1: float = math.nan
    mean_tuned_f1: float | None = None
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scores(scorer: Scorer, items: Sequence[FirstErrorItem]) -> list[tuple[float | None, ...]]:
    return [s.scores for s in scorer.score([(item.problem, item.steps) for item in items])]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def evaluate_files(
    scorer: Scorer,
    inputs: Sequence[Path],
    *,
    threshold: float = 0.5,
    tune_on: Path | None = None,
    model: dict[str, Any] | None = None,
) -> FileReport:
    """Score every input file (a subset each) at ``threshold`` and at the threshold tuned on ``tune_on``."""
    if not inputs:
        raise ConfigError("--input: give at least one file with first-error labels")
    tuned: ThresholdChoice | None = None
    if tune_on is not None:
        for path in inputs:
            if tune_on.resolve() == path.resolve() or _digest(tune_on) == _digest(path):
                raise ConfigError(
                    f"--tune-on: {tune_on} is the evaluated file {path}; tuning on the test data reports "
                    "an oracle threshold. Tune on a separate file"
                )
        tune_items = load_first_error_items(tune_on)
        tuned = tune_threshold(_scores(scorer, tune_items), [i.label for i in tune_items])
    subsets = []
    for path in inputs:
        items = load_first_error_items(path)
        scores = _scores(scorer, items)
        labels = [i.label for i in items]
        subsets.append(
            SubsetReport(
                name=path.stem,
                items=len(items),
                steps=sum(len(s) for s in scores),
                unscored_steps=sum(v is None for s in scores for v in s),
                threshold=threshold,
                score=f1_at(scores, labels, threshold),
                tuned_score=f1_at(scores, labels, tuned.threshold) if tuned else None,
            )
        )
    return FileReport(
        subsets=subsets,
        threshold=threshold,
        tuned=tuned,
        tune_file=str(tune_on) if tune_on else None,
        mean_f1=_mean([s.score.f1 for s in subsets]),
        mean_tuned_f1=_mean([s.tuned_score.f1 for s in subsets if s.tuned_score]) if tuned else None,
        model=dict(model or {}),
    )


@dataclass(frozen=True, slots=True)
class BuildReport:
    build: str
    result: BestOfN
    ungraded: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_build(scorer: Scorer, build: Path) -> BuildReport:
    """Best-of-N selection accuracy over a build's generated rollouts (see the module docstring)."""
    from prmforge.training.builds import build_rollouts

    data = build_rollouts(build)
    rollouts = data.rollouts
    scored = scorer.score([(data.problems[r.problem_id].question, r.steps) for r in rollouts])
    groups: dict[str, list[tuple[Sequence[float | None], bool]]] = defaultdict(list)
    for rollout, scores in zip(rollouts, scored, strict=True):
        groups[rollout.problem_id].append((scores.scores, rollout.outcome is True))
    return BuildReport(str(build), best_of_n(groups), sum(r.outcome is None for r in rollouts))
