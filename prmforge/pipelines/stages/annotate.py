"""annotate:<source>: one source labels every rollout, or abstains on those it cannot label."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator
from prmforge.pipelines.stage import Resources, RowResult, Stage
from prmforge.pipelines.stages.load import IMPORTED
from prmforge.schemas.records import Cost, Problem, Rollout, StepLabels


def stage_name(source: str) -> str:
    return f"annotate-{source}"


def abstention(source: str, rollout: Rollout, reason: str) -> StepLabels:
    """The labels of a source that cannot label this rollout: every step unknown, ``first_error`` None."""
    steps = len(rollout.steps)
    return StepLabels(
        source=source,
        rollout_id=rollout.rollout_id,
        values=(None,) * steps,
        hard=(None,) * steps,
        first_error=None,
        cost=Cost(),
        meta={"abstained": reason},
    )


def _redacted(problem: Problem) -> Problem:
    """The problem annotators see: an imported rollout's human labels are truth, never shown."""
    if IMPORTED not in problem.meta:
        return problem
    return dataclasses.replace(problem, meta={k: v for k, v in problem.meta.items() if k != IMPORTED})


class AnnotateStage(Stage):
    """Labels rollouts with the annotator its config builds; annotators only see redacted rollouts."""

    reads = ("rollout", "problem")
    writes = "labels"

    def __init__(
        self,
        spec: AnnotatorConfig,
        seed: int,
        isolation: str,
        config: Mapping[str, Any],
        *,
        model_policy: bool = False,
    ) -> None:
        super().__init__(stage_name(spec.source), ("generate", "load"), config)
        if spec.continues_prefixes or spec.samples_a_model:  # MC and judges hold a model engine
            self.resources = Resources(holds_engine=True)  # type: ignore[misc]
        self.spec = spec
        self.seed = seed
        self.isolation = isolation
        self.model_policy = model_policy  # a model continues any prefix, imported rollouts included
        self._built: BuiltAnnotator | None = None
        self._env: Any = None

    def setup(self, env: Any) -> None:
        self._env = env

    def _annotator(self) -> BuiltAnnotator:
        if self._built is None:
            if self._env is None:
                raise RuntimeError(f"{self.name}: setup() was not called")
            env = self._env
            engines = getattr(env, "engine", None)  # a worker env builds judges' engines; a bare one does not
            context = AnnotatorContext(env.policy, self.seed, self.isolation, env.programs)
            if engines is not None:
                context = dataclasses.replace(context, engine=engines)
            self._built = self.spec.build(context)
        return self._built

    def teardown(self) -> None:
        if self._built is not None:
            self._built.close()
            self._built = None

    def _cannot(self, problem: Problem) -> str | None:
        if problem.domain not in self.spec.domains:
            return f"labels {', '.join(sorted(self.spec.domains))} problems only, not {problem.domain}"
        if self.spec.continues_prefixes and IMPORTED in problem.meta and not self.model_policy:
            return "an imported rollout cannot be continued by the built-in policy"
        return None

    def process(self, batch: Sequence[Rollout], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        loaded = {p.problem_id: p for p in side["load"]}
        problems = {pid: _redacted(p) for pid, p in loaded.items()}
        results: dict[str, StepLabels] = {}
        todo = []
        for rollout in batch:
            reason = self._cannot(loaded[rollout.problem_id])  # before redaction: it drops IMPORTED
            if reason is None:
                todo.append(rollout.redacted())
            else:
                results[rollout.rollout_id] = abstention(self.spec.source, rollout, reason)
        if todo:
            annotator = self._annotator().annotator
            for labels in annotator.annotate(problems, todo):
                results[labels.rollout_id] = labels
            trees = getattr(annotator, "trees", None)  # a search annotator's trees are data too
            if trees:
                self.add_artifact("tree", [row for tree in trees.values() for row in tree.to_rows()])
        return [[results[r.rollout_id]] for r in batch]
