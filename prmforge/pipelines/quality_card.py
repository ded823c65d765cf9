"""The dataset card's label-quality table: every source and the fused label against truth, streamed.

For builds whose inputs know the truth (the built-in suites, or human labels of imported rollouts):
per source and for the fused label, the rollouts decided (coverage), ProcessBench first-error F1 on
them, bad-step precision and recall (``invalid`` the positive class, as ``prmforge stats``), and
policy completions per step. Shards are read one at a time; what is kept across them is two small
integers per decided rollout and a handful of counters, so memory does not grow with the rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from prmforge.annotators.metrics import processbench_f1
from prmforge.pipelines import tables
from prmforge.pipelines.agreement import error_confusion
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.records import FusedLabels, Rollout, StepLabels, StepTruth

__all__ = ["QualityRow", "label_quality", "render_quality"]

FUSED = "fused label"


@dataclass(slots=True)
class _Tally:
    predicted: list[int] = field(default_factory=list)
    truth: list[int] = field(default_factory=list)
    seen: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    completions: int = 0


@dataclass(frozen=True, slots=True)
class QualityRow:
    source: str
    rollouts: int
    decided: int
    first_error_f1: float | None
    bad_precision: float | None
    bad_recall: float | None
    completions_per_step: float


def _files_by_shard(manifest: Manifest, prefix: str) -> dict[int, list[object]]:
    out: dict[int, list[object]] = defaultdict(list)
    for f in manifest.under(prefix):
        out[f.shard].append(f)
    return out


def _read(build: BuildDir, files: Sequence[object], kind: str) -> list[object]:
    return [r for f in files for r in tables.decode(kind, build.read_table(f.entry))]  # type: ignore[attr-defined]


def _count(tally: _Tally, first_error: int | None, truth: StepTruth) -> None:
    tally.seen += 1
    if first_error is not None:
        tally.predicted.append(first_error)
        tally.truth.append(truth.first_error)


def label_quality(build: BuildDir, manifest: Manifest) -> list[QualityRow]:
    """One row per source, then the fused label; empty when no rollout has truth."""
    rollouts_by = _files_by_shard(manifest, "stages/generate/")
    labels_by = {s: _files_by_shard(manifest, f"stages/annotate-{s}/") for s in manifest.sources}
    fused_by = _files_by_shard(manifest, "stages/fuse/")
    tallies: dict[str, _Tally] = {s: _Tally() for s in (*manifest.sources, FUSED)}
    steps = 0
    for shard, files in sorted(rollouts_by.items()):
        rollouts: list[Rollout] = _read(build, files, "rollout")  # type: ignore[assignment]
        truth = {r.rollout_id: r.truth for r in rollouts if r.truth is not None}
        if not truth:
            continue
        steps += sum(len(r.steps) for r in rollouts if r.rollout_id in truth)
        prefix = {rid: t.prefix_labels() for rid, t in truth.items()}
        for source in manifest.sources:
            labels: list[StepLabels] = _read(build, labels_by[source].get(shard, []), "labels")  # type: ignore[assignment]
            known = [lab for lab in labels if lab.rollout_id in truth]
            tally = tallies[source]
            for lab in known:
                _count(tally, lab.first_error, truth[lab.rollout_id])
                tally.completions += lab.cost.completions
            confusion = error_confusion(known, prefix)
            tally.tp, tally.fp, tally.fn = (
                tally.tp + confusion.tp,
                tally.fp + confusion.fp,
                tally.fn + confusion.fn,
            )
        fused: list[FusedLabels] = _read(build, fused_by.get(shard, []), "fused")  # type: ignore[assignment]
        for f in fused:
            if f.rollout_id in truth:
                _count(tallies[FUSED], f.first_error, truth[f.rollout_id])
    if steps == 0:
        return []
    rows = []
    for source, t in tallies.items():
        score = processbench_f1(t.predicted, t.truth) if t.predicted else None
        f1 = None if score is None or math.isnan(score.f1) else score.f1
        rows.append(
            QualityRow(
                source=source,
                rollouts=t.seen,
                decided=len(t.predicted),
                first_error_f1=f1,
                bad_precision=t.tp / (t.tp + t.fp) if t.tp + t.fp else None,
                bad_recall=t.tp / (t.tp + t.fn) if t.tp + t.fn else None,
                completions_per_step=t.completions / steps,
            )
        )
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_quality(rows: Sequence[QualityRow]) -> str:
    """The card's section (empty when the build knows no truth)."""
    if not rows:
        return ""
    lines = [
        "## Label quality against truth",
        "",
        "Scored on the rollouts whose truth the inputs know (exact for the built-in suites, human labels of "
        "imported rollouts). `decided`: rollouts whose whole first error the source named; F1 is "
        "ProcessBench's first-error F1 on those; bad-step precision and recall take an invalid step as "
        "the positive class (the fused label's are in `prmforge stats`).",
        "",
        "| source | decided | first-error F1 | bad-step precision | bad-step recall | completions / step |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        fused = r.source == FUSED
        precision, recall = ("-", "-") if fused else (_fmt(r.bad_precision), _fmt(r.bad_recall))
        completions = "-" if fused else f"{r.completions_per_step:.2f}"
        lines.append(
            f"| {r.source} | {r.decided} of {r.rollouts} | {_fmt(r.first_error_f1)} | {precision} | "
            f"{recall} | {completions} |"
        )
    return "\n".join(lines) + "\n"
