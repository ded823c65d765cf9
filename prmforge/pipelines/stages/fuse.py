"""fuse: every source's labels of a rollout become its trained label (rules in ``fusion``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prmforge.pipelines.fusion import FusionParams, fuse
from prmforge.pipelines.stage import RecordKind, Reject, RowResult, Stage
from prmforge.schemas.records import Rollout, StepLabels


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
    ) -> None:
        labels: tuple[RecordKind, ...] = tuple("labels" for _ in label_stages)
        self.reads = ("rollout", *labels)  # type: ignore[misc]  # one labels input per source
        super().__init__("fuse", ("generate", *label_stages), config)
        self.rule = rule
        self.single_source = single_source
        self.label_stages = tuple(label_stages)
        self.params = params or FusionParams()

    def process(self, batch: Sequence[Rollout], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        by_source: list[dict[str, StepLabels]] = [
            {lab.rollout_id: lab for lab in side[name]} for name in self.label_stages
        ]
        out: list[RowResult] = []
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
                params=self.params,
                outcome=rollout.outcome,
            )
            out.append([fused])
        return out
