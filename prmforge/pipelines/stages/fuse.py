"""fuse: every source's labels of a rollout become its trained label (rules in ``fusion``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from prmforge.annotators.prof_filter import ProfCandidate, prof_filter
from prmforge.pipelines.fusion import FusionParams, fuse
from prmforge.pipelines.fusion_rules import estimate_reliability
from prmforge.pipelines.stage import RecordKind, Reject, RowResult, Stage
from prmforge.schemas.config import ProfConfig
from prmforge.schemas.records import Rollout, StepLabels

BALANCED_OUT = "balance: its question has more agreeing rollouts on its side"


class FuseStage(Stage):
    """Joins the sources on ``rollout_id``; a rollout every source quarantined is excluded, with why."""

    writes = "fused"

    def __init__(
        self,
        rule: str,
        single_source: str,
        label_stages: Sequence[str],
        config: Mapping[str, Any],
        params: FusionParams | None = None,
        prof: ProfConfig | None = None,
    ) -> None:
        labels: tuple[RecordKind, ...] = tuple("labels" for _ in label_stages)
        self.reads = ("rollout", *labels)  # type: ignore[misc]  # one labels input per source
        super().__init__("fuse", ("generate", *label_stages), config)
        self.rule = rule
        self.single_source = single_source
        self.label_stages = tuple(label_stages)
        self.params = params or FusionParams()
        self.prof = prof

    def process(self, batch: Sequence[Rollout], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        by_source: list[dict[str, StepLabels]] = [
            {lab.rollout_id: lab for lab in side[name]} for name in self.label_stages
        ]
        out: list[RowResult] = []
        params = self._estimated(batch, by_source) if self.params.reliability_from else self.params
        for rollout in batch:
            labels = [m[rollout.rollout_id] for m in by_source if rollout.rollout_id in m]
            if not labels:
                out.append(Reject("labels", "every source quarantined this rollout", excluded=True))
                continue
            if self.rule == "single" and all(lab.source != self.single_source for lab in labels):
                out.append(Reject("labels", f"{self.single_source} quarantined this rollout", excluded=True))
                continue
            fused = fuse(
                self.rule,
                labels,
                len(rollout.steps),
                self.single_source,
                params=params,
                outcome=rollout.outcome,
            )
            out.append([fused])
        return self._prof(batch, out) if self.prof is not None else out

    def _estimated(self, batch: Sequence[Rollout], by_source: list[dict[str, StepLabels]]) -> FusionParams:
        """The params with each non-reference source's reliability estimated on this shard's rollouts
        (given reliabilities win)."""
        groups = [[m[r.rollout_id] for m in by_source if r.rollout_id in m] for r in batch]
        estimated = estimate_reliability([g for g in groups if g], set(self.params.reliability_from))
        merged = {name: rel.p for name, rel in estimated.items()}
        merged.update(dict(self.params.reliability))
        return dataclasses.replace(self.params, reliability=tuple(sorted(merged.items())))

    def _prof(self, batch: Sequence[Rollout], out: list[RowResult]) -> list[RowResult]:
        """PROF over each question's rollouts in the shard (a generated problem's rollouts share one)."""
        assert self.prof is not None
        groups: dict[str, list[ProfCandidate]] = {}
        for rollout, result in zip(batch, out, strict=True):
            if not isinstance(result, Reject):
                candidate = ProfCandidate(rollout.rollout_id, rollout.outcome, result[0].scores)
                groups.setdefault(rollout.problem_id, []).append(candidate)
        dropped: dict[str, str] = {}
        for group in groups.values():
            selection = prof_filter(
                group, aggregate=self.prof.aggregate, threshold=self.prof.threshold, balance=self.prof.balance
            )
            dropped.update(selection.dropped)
            kept = set(selection.kept)
            for candidate in group:  # balance leaves agreeing rollouts out without a reason of their own
                if candidate.rollout_id not in kept and candidate.rollout_id not in dropped:
                    dropped[candidate.rollout_id] = (
                        "balance: its question has more agreeing rollouts of its side"
                    )
        return [
            Reject("labels", f"PROF: {dropped[r.rollout_id]}", excluded=True)
            if r.rollout_id in dropped
            else res
            for r, res in zip(batch, out, strict=True)
        ]
