"""Run the spine's stages over one shard, committing each stage and resuming committed ones.

This is the unit of work of every runner: it reads nothing but its own input
rows and committed files, and derives every seed from the build seed and
record ids, so its output does not depend on which worker runs it, or when.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prmforge.pipelines import tables
from prmforge.pipelines.builddir import BuildDir, StageCounts
from prmforge.pipelines.components import build_annotator, build_compile_test, build_policy
from prmforge.pipelines.domains import RolloutGrader, judge, segment
from prmforge.pipelines.sources import parse_row
from prmforge.pipelines.stages import (
    GenerateSettings,
    SourceRow,
    StageOutput,
    annotate_stage,
    assemble_stage,
    generate_stage,
    load_stage,
)
from prmforge.policies.base import GenerationRequest, GenerationResult, Policy
from prmforge.policies.cache import RequestCache
from prmforge.schemas.config import BuildConfig
from prmforge.schemas.records import Problem, Rollout, StepLabels
from prmforge.verifiers.compile_test import CompileTestVerifier

SPLITS = ("train", "validation")


def annotate_stage_name(config: BuildConfig) -> str:
    return f"annotate-{config.annotate.method}"


def stages_of(config: BuildConfig) -> tuple[str, ...]:
    """The build's stages in order; the annotate stage is named after the labelling method."""
    return ("load", "generate", annotate_stage_name(config), "assemble")


def active_splits(config: BuildConfig) -> tuple[str, ...]:
    return SPLITS if config.split.validation > 0 else ("train",)


@dataclass(frozen=True, slots=True)
class ShardTask:
    root: str
    config: dict[str, Any]
    shard: int
    num_shards: int
    rows: tuple[SourceRow, ...]


@dataclass(frozen=True, slots=True)
class StageEvent:
    shard: int
    stage: str
    counts: StageCounts
    resumed: bool
    seconds: float
    generate_seconds: float = 0.0


EventSink = Callable[[StageEvent], None]


class _TimedPolicy:
    """Wraps a policy to measure the wall time spent inside ``generate``."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.seconds = 0.0

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        start = time.perf_counter()
        try:
            return self.inner.generate(requests)
        finally:
            self.seconds += time.perf_counter() - start


class ShardRunner:
    def __init__(self, task: ShardTask, emit: EventSink) -> None:
        self.task = task
        self.config = BuildConfig.model_validate(task.config)
        self.build = BuildDir(Path(task.root))
        self.emit = emit
        self._policy: _TimedPolicy | None = None
        self._cache: RequestCache | None = None
        self._programs: CompileTestVerifier | None = None

    def _compile_test(self) -> CompileTestVerifier:
        """One compile-and-test verifier per shard: the outcome grader and the annotator share its
        run cache, so a program graded once is not executed again when its lines are labelled."""
        if self._programs is None:
            self._programs = build_compile_test(self.config)
        return self._programs

    def _policy_for(self, problems: list[Problem]) -> _TimedPolicy:
        if self._policy is None:
            if self.config.runner.cache:
                self._cache = RequestCache(self.build.cache_file)
            self._policy = _TimedPolicy(build_policy(self.config, problems, self._cache))
        return self._policy

    def _stage(self, stage: str, kind: str, compute: Callable[[], StageOutput[Any]]) -> list[Any]:
        shard = self.task.shard
        start = time.perf_counter()
        marker = self.build.committed(stage, shard)
        if marker is not None:
            records = [
                r
                for entry in marker.files
                if not entry.path.startswith("quarantine/")
                for r in tables.decode(kind, self.build.read_table(entry))
            ]
            self.emit(StageEvent(shard, stage, marker.counts, True, time.perf_counter() - start))
            return records
        gen_before = self._policy.seconds if self._policy else 0.0
        out = compute()
        counts = StageCounts(out.rows_in, out.accepted, len(out.quarantined), len(out.records))
        files = self._outputs(stage, kind, out.records)
        q_table = tables.encode("quarantine", out.quarantined)
        files.append(
            (self.build.quarantine_file(stage, shard), q_table, tables.table_hash("quarantine", q_table))
        )
        self.build.commit(stage, shard, counts, files)
        gen = (self._policy.seconds if self._policy else 0.0) - gen_before
        self.emit(StageEvent(shard, stage, counts, False, time.perf_counter() - start, gen))
        return out.records

    def _outputs(self, stage: str, kind: str, records: list[Any]) -> list[tuple[Path, Any, str]]:
        if stage != "assemble":
            table = tables.encode(kind, records)
            return [(self.build.stage_file(stage, self.task.shard), table, tables.table_hash(kind, table))]
        files = []
        for split in active_splits(self.config):
            table = tables.encode(kind, [r for r in records if r.split == split])
            path = self.build.data_file(split, self.task.shard, self.task.num_shards)
            files.append((path, table, tables.table_hash(kind, table)))
        return files

    def run(self) -> None:
        try:
            self._run_stages()
        finally:
            if self._cache is not None:
                self._cache.close()

    def _annotate(
        self, by_id: dict[str, Problem], rollouts: list[Rollout], problems: list[Problem]
    ) -> StageOutput[StepLabels]:
        built = build_annotator(self.config, self._policy_for(problems), self._compile_test)
        try:
            return annotate_stage(by_id, rollouts, built.annotator)
        finally:
            built.close()

    def _run_stages(self) -> None:
        cfg = self.config
        max_q = cfg.limits.max_question_bytes
        problems: list[Problem] = self._stage(
            "load", "problem", lambda: load_stage(self.task.rows, lambda row: parse_row(row, max_q))
        )
        by_id = {p.problem_id: p for p in problems}
        settings = GenerateSettings(
            cfg.generate.rollouts_per_problem, cfg.policy.sampling.to_params(), cfg.seed
        )
        rollouts = self._stage(
            "generate",
            "rollout",
            lambda: generate_stage(
                problems,
                self._policy_for(problems),
                settings,
                RolloutGrader(self._compile_test).grade,
                segment,
                judge,
            ),
        )
        labels = self._stage(
            annotate_stage_name(cfg), "labels", lambda: self._annotate(by_id, rollouts, problems)
        )
        self._stage(
            "assemble",
            "example",
            lambda: assemble_stage(
                by_id, rollouts, labels, cfg.labels.after_first_error, cfg.seed, cfg.split.validation
            ),
        )


def run_shard(task: ShardTask, emit: EventSink) -> None:
    ShardRunner(task, emit).run()
