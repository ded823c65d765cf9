"""The summary of a build directory: rows, steps, balance, cost and, where truth is known, label quality."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prmforge.annotators.metrics import processbench_f1, step_confusion
from prmforge.pipelines import tables
from prmforge.pipelines.builddir import BuildDir, FileEntry
from prmforge.schemas.records import PRMExample, Problem, StepLabels


@dataclass(frozen=True, slots=True)
class Quality:
    """Labels against exact truth for the rows whose suite knows it."""

    rows: int
    first_error_f1: float
    error_acc: float
    correct_acc: float
    step_accuracy: float
    false_positives: int
    false_negatives: int
    fp_after_first_error: int
    fn_before_first_error: int


def quality(examples: list[PRMExample]) -> Quality | None:
    known = [e for e in examples if e.truth_first_error is not None and e.truth_step_correct is not None]
    if not known:
        return None
    score = processbench_f1(
        [e.first_error for e in known],
        [e.truth_first_error for e in known if e.truth_first_error is not None],
    )
    truth = []
    for e in known:
        fe = e.truth_first_error if e.truth_first_error is not None else -1
        truth.append([fe < 0 or t < fe for t in range(len(e.labels))])
    conf = step_confusion([list(e.labels) for e in known], truth)
    return Quality(
        rows=len(known),
        first_error_f1=score.f1,
        error_acc=score.error_acc,
        correct_acc=score.correct_acc,
        step_accuracy=conf.accuracy,
        false_positives=conf.fp,
        false_negatives=conf.fn,
        fp_after_first_error=conf.fp_after_first_error,
        fn_before_first_error=conf.fn_before_first_error,
    )


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _quality_json(q: Quality | None) -> dict[str, Any] | None:
    if q is None:
        return None
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in asdict(q).items()}


def _read(build: BuildDir, manifest: dict[str, Any], prefix: str, kind: str) -> list[Any]:
    out: list[Any] = []
    for f in manifest["files"]:
        if f["path"].startswith(prefix):
            entry = FileEntry(f["path"], f["rows"], f["sha256"], f["content_hash"])
            out.extend(tables.decode(kind, build.read_table(entry)))
    return out


def summarize(root: Path) -> dict[str, Any]:
    """Everything ``prmforge stats`` prints, as JSON-ready data."""
    build = BuildDir(root)
    manifest = build.read_manifest()
    examples: list[PRMExample] = _read(build, manifest, "data/", "example")
    labels: list[StepLabels] = _read(build, manifest, "stages/annotate-", "labels")
    problems: list[Problem] = _read(build, manifest, "stages/load/", "problem")
    quarantined = _read(build, manifest, "quarantine/", "quarantine")
    source_of = {p.problem_id: p.source.split(":")[0] for p in problems}

    steps = sum(len(e.labels) for e in examples)
    positive = sum(sum(e.labels) for e in examples)
    cost = {
        "completions": sum(lab.cost.completions for lab in labels),
        "generated_tokens": sum(lab.cost.generated_tokens for lab in labels),
        "cached_completions": sum(lab.cost.cached_completions for lab in labels),
        "tool_calls": sum(lab.cost.tool_calls for lab in labels),
        "seconds": round(sum(lab.cost.seconds for lab in labels), 3),
    }
    cost["completions_per_step"] = round(cost["completions"] / steps, 3) if steps else 0.0
    by_suite: dict[str, list[PRMExample]] = defaultdict(list)
    for e in examples:
        by_suite[source_of.get(e.problem_id, "?")].append(e)
    reasons = Counter(f"{q.stage}: {q.field}: {q.reason[:80]}" for q in quarantined)
    return {
        "name": manifest["name"],
        "content_hash": manifest["content_hash"],
        "rows": len(examples),
        "splits": {k: v["rows"] for k, v in manifest["splits"].items()},
        "steps": steps,
        "positive_steps": positive,
        "negative_steps": steps - positive,
        "positive_share": round(positive / steps, 4) if steps else None,
        "rollouts_correct": sum(1 for e in examples if e.outcome),
        "cost": cost,
        "stages": manifest["stages"],
        "quarantined": sum(reasons.values()),
        "quarantine_reasons": dict(reasons.most_common(10)),
        "quality": _quality_json(quality(examples)),
        "quality_by_suite": {k: _quality_json(quality(v)) for k, v in sorted(by_suite.items())},
    }
