"""What every runner shares: planning a build, a worker's life, and finishing (global stages, manifest).

A runner only schedules :class:`ShardTask` s on :class:`Worker` s and calls
:func:`finish` once every shard is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prmforge.pipelines.config import BuildConfig, Reconfiguration, growth_of, input_domains
from prmforge.pipelines.engines import WorkerEnv, check_policy
from prmforge.pipelines.graph import Graph, compose
from prmforge.pipelines.overlap import run_threads
from prmforge.pipelines.runners.builddir import BuildDir
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.runners.shard import (
    EventSink,
    ShardExecutor,
    StageEvent,
    setup_stages,
    shard_is_current,
    teardown_stages,
)
from prmforge.pipelines.sources import (
    InputReader,
    ShardSpec,
    input_digests,
    open_inputs,
    parsers_of,
    plan_shards,
)
from prmforge.pipelines.stages.load import SourceRow


@dataclass(frozen=True, slots=True)
class ShardTask:
    shard: int
    spec: ShardSpec


Failures = list[tuple[ShardTask, BaseException]]
"""The shards of a run that raised, with what they raised."""


@dataclass(frozen=True, slots=True)
class BuildResult:
    root: Path
    content_hash: str
    resumed: bool
    shards_run: int
    shards_skipped: int
    manifest: Manifest
    grown: tuple[str, ...]  # the sources this run added to a finished build
    problems: tuple[str, ...]  # why the build must exit non-zero (no rows, too much quarantined)
    warnings: tuple[str, ...] = ()  # what the user should know (an input range with 0 rows)
    reconfigured: tuple[str, ...] = ()  # the sections this run changed in place (annotate, fuse, split)


def domains_of(config: BuildConfig) -> frozenset[str]:
    return frozenset().union(*(input_domains(s) for s in config.inputs))


class Worker:
    """One worker: engines and stages set up once, then any number of shards."""

    def __init__(
        self,
        config: BuildConfig,
        graph: Graph,
        build: BuildDir,
        readers: list[InputReader],
        run_id: str,
        emit: EventSink,
    ) -> None:
        self.graph = graph
        self.readers = {r.position: r for r in readers}
        cache = build.cache_file if config.runner.cache else None
        self.env = WorkerEnv(config, domains_of(config), cache)
        self.shards_at_once = config.shards_per_worker
        baton = self.env.baton

        def emit_then_check(event: StageEvent) -> None:
            emit(event)
            baton.check()  # a cancelled shard thread stops at a stage boundary

        self.executor = ShardExecutor(graph, build, self.env, run_id, emit_then_check)
        setup_stages(graph.stages, self.env)

    @classmethod
    def from_json(cls, config_json: dict[str, Any], root: Path, run_id: str, emit: EventSink) -> Worker:
        config = BuildConfig.model_validate(config_json)
        readers = open_inputs(config)
        return cls(config, compose(config, parsers_of(readers)), BuildDir(root), readers, run_id, emit)

    def run(self, task: ShardTask) -> None:
        reader = self.readers[task.spec.position]
        poison = self.executor.build.poisoned(task.shard)

        def rows() -> list[SourceRow]:
            read = list(reader.read(task.spec.rows))
            return read if poison is None else [replace(r, poison=poison) for r in read]

        self.executor.run(task.shard, rows)

    def run_all(
        self, tasks: Sequence[ShardTask], *, stop_on_error: bool
    ) -> list[tuple[ShardTask, BaseException]]:
        """Run ``tasks``, :attr:`shards_at_once` at a time on threads (pipelines/overlap.py): the shards
        that raised, with what they raised. One at a time runs them here, in the calling thread."""
        if self.shards_at_once == 1 or len(tasks) == 1:
            failures: Failures = []
            for task in tasks:
                try:
                    self.run(task)
                except Exception as err:
                    if stop_on_error:
                        raise
                    failures.append((task, err))
            return failures
        threads = min(self.shards_at_once, len(tasks))
        return run_threads(tasks, threads, self.run, self.env.baton, stop_on_error=stop_on_error)

    def close(self) -> None:
        teardown_stages(self.graph.stages)
        self.env.close()


@dataclass(slots=True)
class BuildPlan:
    config: BuildConfig
    graph: Graph
    build: BuildDir
    readers: list[InputReader]
    shards: list[ShardSpec]
    resumed: bool
    grown: tuple[str, ...]
    emit: EventSink
    committed_before: int = 0
    warnings: tuple[str, ...] = ()
    reconfigured: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def pending(self) -> list[ShardTask]:
        """Shards with a stage to run (see :func:`shard_is_current`); the others are reported resumed."""
        out = []
        for spec in self.shards:
            final = shard_is_current(self.graph, self.build, spec.index)
            if final is None:
                out.append(ShardTask(spec.index, spec))
            else:
                self.emit(StageEvent(spec.index, final.stage, final.counts, True, 0.0))
        self.committed_before = len(self.shards) - len(out)
        return out


def prepare(config: BuildConfig, output: Path, restart: bool, emit: EventSink) -> BuildPlan:
    """Open the inputs, plan the shards, compose the graph and open (or check) the build directory."""
    check_policy(config)  # a bad engine setting is the build's error, not every row's
    readers = open_inputs(config)
    shards = plan_shards(readers, config.runner.shard_size)
    graph = compose(config, parsers_of(readers))
    build = BuildDir(output)
    hashed = config.hashed()

    changes: list[Reconfiguration] = []

    def grow(stored: dict[str, Any]) -> list[str] | None:
        try:
            old = BuildConfig.model_validate(stored).hashed()
        except ValueError:
            return None
        change = growth_of(old, hashed)
        if change is None:
            return None
        changes.append(change)
        return list(change.added)

    config_json = config.model_dump(mode="json")
    try:
        resumed = build.open(
            config_json, config.content_hash(), len(shards), restart, input_digests(readers), grow
        )
        if changes:  # the global stages (and a later resume) read the configuration in build.json
            build.record_config(config_json, config.content_hash())
    except BaseException:
        build.close()  # a refused (or interrupted) run never keeps the directory locked
        raise
    grown = changes[0].added if changes else ()
    reconfigured = changes[0].changed if changes else ()
    used = {spec.position for spec in shards}
    warnings = tuple(
        f"inputs.{r.position}: its range holds 0 rows" for r in readers if r.position not in used
    )
    return BuildPlan(
        config,
        graph,
        build,
        readers,
        shards,
        resumed,
        grown,
        emit,
        warnings=warnings,
        reconfigured=reconfigured,
    )
