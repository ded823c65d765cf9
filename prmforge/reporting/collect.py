"""What the HTML report plots, read from the files a build's manifest lists (never a directory listing).

:func:`collect` starts from :func:`prmforge.pipelines.stats.summarize` (the numbers ``prmforge stats``
prints) and adds what a plot needs beyond them: label counts by step position, first-error
histograms, label quality per suite for every source and the fused label, and quarantined or
excluded rows counted by stage and reason.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prmforge.annotators.metrics import processbench_f1, step_confusion
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.stats import summarize
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.records import FusedLabels, PRMExample, Problem, Rollout, StepLabels, StepTruth
from prmforge.schemas.records import prefix_labels as prefix

__all__ = ["ALL_SUITES", "FUSED", "QualityCell", "ReportData", "collect", "score"]

FUSED = "fused"
ALL_SUITES = "all"


@dataclass(frozen=True, slots=True)
class QualityCell:
    """One label source (or the fused label) against truth on the rollouts of one suite."""

    suite: str
    source: str
    rollouts: int  # rollouts of the suite whose truth is known
    decided: int  # of them, those the source named a first error (or -1) for
    first_error_f1: float | None  # ProcessBench F1 on the decided ones (None: undefined)
    step_accuracy: float | None  # prefix labels from its first error against prefix truth


@dataclass(frozen=True, slots=True)
class ReportData:
    summary: dict[str, Any]
    fusion_rule: str  # the rule the fuse stage records, "" when no rollout was fused
    positions: tuple[tuple[int, int], ...]  # per step position: (positive, negative) training labels
    first_errors: dict[int, int]  # fused first error of the training rows (-1: no error) -> rows
    truth_first_errors: dict[int, int]  # true first error of the training rows whose truth is known
    quality: tuple[QualityCell, ...]  # empty when no rollout has truth
    quarantined: dict[tuple[str, str], int]  # (stage, "field: reason") -> rows
    excluded: dict[tuple[str, str], int]


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def score(suite: str, source: str, pairs: Sequence[tuple[int | None, StepTruth]]) -> QualityCell:
    """First-error F1 and step accuracy of predicted first errors (None: undecided) against truth."""
    decided = [(fe, t) for fe, t in pairs if fe is not None]
    if not decided:
        return QualityCell(suite, source, len(pairs), 0, None, None)
    f1 = processbench_f1([fe for fe, _ in decided], [t.first_error for _, t in decided]).f1
    confusion = step_confusion(
        [list(prefix(fe, len(t.step_correct))) for fe, t in decided],
        [list(t.prefix_labels()) for _, t in decided],
    )
    return QualityCell(suite, source, len(pairs), len(decided), _finite(f1), _finite(confusion.accuracy))


def _positions(examples: Sequence[PRMExample]) -> tuple[tuple[int, int], ...]:
    positive: Counter[int] = Counter()
    negative: Counter[int] = Counter()
    for e in examples:
        for t, good in enumerate(e.labels):
            (positive if good else negative)[t] += 1
    last = max([*positive, *negative], default=-1)
    return tuple((positive[t], negative[t]) for t in range(last + 1))


def _by_stage(entries: Sequence[QuarantineEntry]) -> dict[tuple[str, str], int]:
    counts = Counter((q.stage, f"{q.field}: {q.reason[:80]}") for q in entries)
    return dict(sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])))


def _quality(
    suite_of: dict[str, str],
    truth: dict[str, StepTruth],
    by_source: dict[str, list[StepLabels]],
    fused: list[FusedLabels],
) -> tuple[QualityCell, ...]:
    if not truth:
        return ()
    suites = [ALL_SUITES, *sorted({suite_of[rid] for rid in truth})]
    predictions: dict[str, dict[str, int | None]] = {
        source: {lab.rollout_id: lab.first_error for lab in labels} for source, labels in by_source.items()
    }
    predictions[FUSED] = {f.rollout_id: f.first_error for f in fused}
    cells = []
    for suite in suites:
        known = [rid for rid in truth if suite in (ALL_SUITES, suite_of[rid])]
        for source, predicted in predictions.items():
            pairs = [(predicted[rid], truth[rid]) for rid in known if rid in predicted]
            cells.append(score(suite, source, pairs))
    return tuple(cells)


def collect(root: Path) -> ReportData:
    """Everything the report shows, from the build in ``root`` (a clear error if it is not one)."""
    summary = summarize(root)
    build = BuildDir(root)
    manifest = Manifest.read(root)
    examples: list[PRMExample] = manifest.records(build, "data/", "example")
    problems: list[Problem] = manifest.records(build, "stages/load/", "problem")
    rollouts: list[Rollout] = manifest.records(build, "stages/generate/", "rollout")
    fused: list[FusedLabels] = manifest.records(build, "stages/fuse/", "fused")
    by_source = {s: manifest.records(build, f"stages/annotate-{s}/", "labels") for s in manifest.sources}
    quarantined: list[QuarantineEntry] = manifest.records(build, "quarantine/", "quarantine")
    excluded: list[QuarantineEntry] = manifest.records(build, "excluded/", "quarantine")
    suite_by_problem = {p.problem_id: p.source.split(":")[0] for p in problems}
    suite_of = {r.rollout_id: suite_by_problem.get(r.problem_id, "?") for r in rollouts}
    truth = {r.rollout_id: r.truth for r in rollouts if r.truth is not None}
    truth_first: Counter[int] = Counter(
        e.truth_first_error for e in examples if e.truth_first_error is not None
    )
    by_rule: defaultdict[str, int] = defaultdict(int)
    for f in fused:
        by_rule[f.rule] += 1
    return ReportData(
        summary=summary,
        fusion_rule=max(sorted(by_rule), key=lambda r: by_rule[r]) if by_rule else "",
        positions=_positions(examples),
        first_errors=dict(sorted(Counter(e.first_error for e in examples).items())),
        truth_first_errors=dict(sorted(truth_first.items())),
        quality=_quality(suite_of, truth, by_source, fused),
        quarantined=_by_stage(quarantined),
        excluded=_by_stage(excluded),
    )
