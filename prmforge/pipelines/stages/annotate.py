"""annotate:<source>: one source labels every rollout, or abstains on those it cannot label."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from prmforge.annotators.base import LabelReader
from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator
from prmforge.pipelines.stage import RecordKind, Resources, RowResult, Stage
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
        self.earlier = tuple(stage_name(s) for s in spec.defer_to)
        self.given = {stage_name(s): s for s in spec.reads_labels_of()}  # stage -> source it reads
        inputs = tuple(dict.fromkeys((*self.earlier, *self.given)))
        labels: tuple[RecordKind, ...] = tuple("labels" for _ in inputs)
        self.reads = ("rollout", "problem", *labels)  # type: ignore[misc,assignment]  # one per earlier source
        super().__init__(stage_name(spec.source), ("generate", "load", *inputs), config)
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

    def _decided_earlier(self, side: Mapping[str, Sequence[Any]]) -> dict[str, str]:
        """Rollouts in which an earlier source of the cascade located the first error: left to it."""
        out: dict[str, str] = {}
        for stage in self.earlier:
            for labels in side[stage]:
                error = labels.first_error
                if error is not None and error >= 0 and labels.rollout_id not in out:
                    out[labels.rollout_id] = f"{labels.source} found the first error at step {error}; cascade"
        return out

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
        decided = self._decided_earlier(side)
        todo = []
        for rollout in batch:
            reason = decided.get(rollout.rollout_id) or self._cannot(loaded[rollout.problem_id])
            if reason is None:
                todo.append(rollout.redacted())
            else:
                results[rollout.rollout_id] = abstention(self.spec.source, rollout, reason)
        if todo:
            annotator = self._annotator().annotator
            if self.given:  # a method that reads earlier sources' labels (vouch)
                if not isinstance(annotator, LabelReader):
                    raise TypeError(f"{self.name}: its config reads earlier labels, its annotator cannot")
                earlier = {src: {lab.rollout_id: lab for lab in side[st]} for st, src in self.given.items()}
                labelled = annotator.annotate_given(problems, todo, earlier)
            else:
                labelled = annotator.annotate(problems, todo)
            for labels in labelled:
                results[labels.rollout_id] = labels
            trees = getattr(annotator, "trees", None)  # a search annotator's trees are data too
            if trees:
                self.add_artifact("tree", [row for tree in trees.values() for row in tree.to_rows()])
        return [[results[r.rollout_id]] for r in batch]
