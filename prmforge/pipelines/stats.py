"""The summary of a build directory: rows, steps, balance, cost and, where truth is known, label quality."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prmforge.annotators.metrics import processbench_f1, step_confusion
from prmforge.pipelines.balance import BalanceReport
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.arrow import QuarantineEntry
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.records import PRMExample, Problem, Rollout, StepLabels, StepTruth, prefix_labels


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
        truth.append(list(prefix_labels(fe, len(e.labels))))
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


def quality_of_source(labels: list[StepLabels], truth: dict[str, StepTruth]) -> dict[str, Any] | None:
    """One source's labels against truth, on the rollouts it decided; ``coverage`` is the share decided."""
    known = [lab for lab in labels if lab.rollout_id in truth]
    if not known:
        return None
    decided = [lab for lab in known if lab.first_error is not None]
    examples = [
        _scored(lab.first_error, truth[lab.rollout_id]) for lab in decided if lab.first_error is not None
    ]
    q = _quality_json(quality(examples)) if examples else None
    return {"coverage": round(len(decided) / len(known), 4), "decided": len(decided), **(q or {})}


def _confusion(labels: list[StepLabels], truth: dict[str, StepTruth]) -> dict[str, Any]:
    """A source's step labels against truth, "invalid" the positive class (see ``agreement``)."""
    from prmforge.pipelines.agreement import error_confusion

    return asdict(error_confusion(labels, {rid: t.prefix_labels() for rid, t in truth.items()}))


def _kappas(by_source: dict[str, list[StepLabels]]) -> list[dict[str, Any]]:
    """Cohen's kappa of every pair of sources over the steps both labelled (None where undefined)."""
    from prmforge.pipelines.agreement import kappa_table

    return [
        {"a": a, "b": b, "kappa": k.kappa, "steps": k.n, "observed": k.observed, "reason": k.reason}
        for (a, b), k in kappa_table(by_source).items()
    ]


def _scored(first_error: int, truth: StepTruth) -> PRMExample:
    n = len(truth.step_correct)
    return PRMExample(
        example_id="", problem_id="", prompt="", completions=("",) * n,
        labels=prefix_labels(first_error, n), scores=(None,) * n, first_error=first_error,
        votes=(), agreement=1.0, weight=1.0, split="train", gold="", final_answer=None, outcome=None,
        truth_first_error=truth.first_error, truth_step_correct=truth.step_correct,
    )  # fmt: skip


def _cost(labels: list[StepLabels], steps: int) -> dict[str, Any]:
    cost: dict[str, Any] = {
        "completions": sum(lab.cost.completions for lab in labels),
        "generated_tokens": sum(lab.cost.generated_tokens for lab in labels),
        "prompt_tokens": sum(lab.cost.prompt_tokens for lab in labels),
        "cached_completions": sum(lab.cost.cached_completions for lab in labels),
        "tool_calls": sum(lab.cost.tool_calls for lab in labels),
        "seconds": round(sum(lab.cost.seconds for lab in labels), 3),
    }
    cost["completions_per_step"] = round(cost["completions"] / steps, 3) if steps else 0.0
    return cost


def _reasons(entries: list[QuarantineEntry]) -> dict[str, int]:
    return dict(Counter(q.summary(80) for q in entries).most_common(10))


def summarize(root: Path, reliability_from: Sequence[str] = ()) -> dict[str, Any]:
    """Everything ``prmforge stats`` prints, as JSON-ready data; with ``reliability_from`` also the
    other sources' reliabilities over the whole build on the steps those are certain of."""
    build = BuildDir(root)
    manifest = Manifest.read(root)
    unknown = sorted(set(reliability_from) - set(manifest.sources))
    if unknown:
        raise ConfigError(
            f"--reliability-from: {unknown} named; the build's sources are {', '.join(manifest.sources)}"
        )
    examples: list[PRMExample] = manifest.records(build, "data/", "example")
    problems: list[Problem] = manifest.records(build, "stages/load/", "problem")
    rollouts: list[Rollout] = manifest.records(build, "stages/generate/", "rollout")
    quarantined: list[QuarantineEntry] = manifest.records(build, "quarantine/", "quarantine")
    excluded: list[QuarantineEntry] = manifest.records(build, "excluded/", "quarantine")
    by_source = {
        src: manifest.records(build, f"stages/annotate-{src}/", "labels") for src in manifest.sources
    }
    source_of = {p.problem_id: p.source.split(":")[0] for p in problems}
    truth = {r.rollout_id: r.truth for r in rollouts if r.truth is not None}

    steps = sum(len(e.labels) for e in examples)
    positive = sum(sum(e.labels) for e in examples)
    all_labels = [lab for labels in by_source.values() for lab in labels]
    by_suite: dict[str, list[PRMExample]] = defaultdict(list)
    for e in examples:
        by_suite[source_of.get(e.problem_id, "?")].append(e)
    return {
        "name": manifest.name,
        "content_hash": manifest.content_hash,
        "rows": len(examples),
        "splits": dict(manifest.splits),
        "steps": steps,
        "positive_steps": positive,
        "negative_steps": steps - positive,
        "positive_share": round(positive / steps, 4) if steps else None,
        "rollouts_correct": sum(1 for e in examples if e.outcome),
        "cost": _cost(all_labels, steps),
        "cost_by_source": {src: _cost(labels, steps) for src, labels in by_source.items()},
        "generation": {
            "rollouts": len(rollouts),
            "generated_rollouts": sum(1 for r in rollouts if not r.policy.startswith("imported:")),
            "completion_tokens": sum(
                r.completion_tokens for r in rollouts if not r.policy.startswith("imported:")
            ),
        },
        "stages": {k: asdict(v) for k, v in manifest.stages.items()},
        "quarantined": len(quarantined),
        "quarantine_reasons": _reasons(quarantined),
        "excluded": len(excluded),
        "excluded_reasons": _reasons(excluded),
        "dedup": dict(manifest.dedup),
        "balance": balance.as_json() if (balance := BalanceReport.from_summary(manifest.dedup)) else None,
        "quality": _quality_json(quality(examples)),
        "quality_by_suite": {k: _quality_json(quality(v)) for k, v in sorted(by_suite.items())},
        "quality_by_source": {src: quality_of_source(labels, truth) for src, labels in by_source.items()},
        "confusion_by_source": {
            src: _confusion(labels, truth) for src, labels in by_source.items() if truth and labels
        },
        "agreement": _kappas(by_source),
        **({"reliability": _reliability(by_source, reliability_from)} if reliability_from else {}),
    }


def _reliability(by_source: dict[str, list[StepLabels]], references: Sequence[str]) -> dict[str, Any]:
    """Each other source's reliability over the whole build, on the steps ``references`` are certain
    of (:func:`~prmforge.pipelines.fusion_rules.estimate_reliability`; a build's ``weighted`` rule with
    ``reliability_from`` estimates per shard). ``p`` is rounded to 4 places inside (0, 1), as
    ``fuse.reliability`` takes it (the references' own are the user's to give); changing ``fuse:``
    refuses nothing: the build is fused again in place, with no generation."""
    from prmforge.pipelines.fusion_rules import estimate_reliability

    groups: dict[str, list[StepLabels]] = defaultdict(list)
    for labels in by_source.values():
        for lab in labels:
            groups[lab.rollout_id].append(lab)
    estimated = estimate_reliability(groups.values(), set(references))
    return {
        "references": list(references),
        "rollouts": len(groups),
        "sources": {
            name: {"agreed": r.agreed, "compared": r.compared, "p": min(max(round(r.p, 4), 0.0001), 0.9999)}
            for name, r in sorted(estimated.items())
        },
    }
