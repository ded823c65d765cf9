"""Run the graph's shard-local stages over one shard: commit each stage, reuse committed ones.

This is the unit of work of every runner. It reads nothing but its own input
rows and committed files, and every seed derives from the build seed and record
ids, so its output does not depend on which worker runs it, or when. A stage
whose marker (of its current config hash) verifies is not recomputed, and its
records are read only when a stage that must run needs them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prmforge.pipelines import tables
from prmforge.pipelines.config import digest
from prmforge.pipelines.graph import SOURCE, Graph
from prmforge.pipelines.runners.builddir import BuildDir, Marker, StageCounts
from prmforge.pipelines.stage import Stage, StageOutput
from prmforge.schemas.errors import BuildStateError


@dataclass(frozen=True, slots=True)
class StageEvent:
    shard: int
    stage: str
    counts: StageCounts
    resumed: bool
    seconds: float
    generate_seconds: float = 0.0


EventSink = Callable[[StageEvent], None]


class ShardExecutor:
    """Executes one shard's stages against a build directory, on behalf of a worker."""

    def __init__(self, graph: Graph, build: BuildDir, env: Any, run_id: str, emit: EventSink) -> None:
        self.graph = graph
        self.build = build
        self.env = env
        self.run_id = run_id
        self.emit = emit

    def run(self, shard: int, rows: Callable[[], list[Any]]) -> None:
        """Each stage is reused when a marker of its config was made from exactly the current content of
        its inputs; otherwise it runs (so a stage that reruns with new output reruns what reads it, and one
        that reruns with the same output does not)."""
        records: dict[str, list[Any]] = {}
        made: dict[str, str] = {}  # stage -> content hash of its current records

        def get(name: str) -> list[Any]:
            if name not in records:
                records[name] = rows() if name == SOURCE else self._read(self.graph.stage(name), shard)
            return records[name]

        for stage in self.graph.stages:
            expected = expected_inputs(stage, made, self.build, shard)
            marker = self.build.committed(stage.name, shard, self.graph.hashes[stage.name])
            if marker is not None and marker.inputs == expected:
                made[stage.name] = marker.records_hash
                self.emit(StageEvent(shard, stage.name, marker.counts, True, 0.0))
                continue
            inputs = {name: get(name) for name in stage.inputs}
            gen_before = self.env.generate_seconds()
            try:
                out = stage.run(inputs)
                committed = self._commit(stage, shard, out, expected)
            except sqlite3.OperationalError as err:
                if _disk_full(err):  # the request cache shares the build's disk
                    raise BuildStateError(
                        f"{self.build.root}: no space left on the device ({err}); nothing half-written "
                        "was committed: free some space and rerun to resume"
                    ) from None
                raise
            records[stage.name] = out.records
            made[stage.name] = committed.records_hash
            counts = _counts(out)
            self.emit(
                StageEvent(
                    shard, stage.name, counts, False, out.seconds, self.env.generate_seconds() - gen_before
                )
            )

    def _read(self, stage: Stage, shard: int) -> list[Any]:
        marker = self.build.committed(stage.name, shard, self.graph.hashes[stage.name])
        if marker is None:
            raise BuildStateError(
                f"{self.build.root}: stage {stage.name} shard {shard} vanished while running"
            )
        return [
            r
            for entry in marker.files
            if entry.path.startswith("stages/")
            for r in tables.decode(stage.writes, self.build.read_table(entry))
        ]

    def _commit(self, stage: Stage, shard: int, out: StageOutput[Any], inputs: dict[str, str]) -> Marker:
        b = self.build
        table = tables.encode(stage.writes, out.records)
        files = [(b.stage_file(stage.name, shard), table, tables.table_hash(stage.writes, table))]
        for path, entries in ((b.quarantine_file(stage.name, shard), out.quarantined),
                              (b.excluded_file(stage.name, shard), out.excluded)):  # fmt: skip
            q = tables.encode("quarantine", entries)
            files.append((path, q, tables.table_hash("quarantine", q)))
        for kind, side in sorted(out.artifacts.items()):
            t = tables.encode(kind, side)
            files.append((b.artifact_file(kind, stage.name, shard), t, tables.table_hash(kind, t)))
        return b.commit(
            stage.name, shard, _counts(out), files, self.graph.hashes[stage.name], self.run_id, inputs
        )


# SQLite says "disk I/O error" (SQLITE_IOERR_SHMSIZE) when a full disk leaves no room to grow the WAL
# index, and "database or disk is full" (SQLITE_FULL) when the database or its log cannot grow.
_SQLITE_IOERR_SHMSIZE = 4874


def _disk_full(err: sqlite3.OperationalError) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return code == _SQLITE_IOERR_SHMSIZE or (code is not None and code & 0xFF == sqlite3.SQLITE_FULL)


def _counts(out: StageOutput[Any]) -> StageCounts:
    return StageCounts(out.rows_in, out.accepted, len(out.quarantined), len(out.records), len(out.excluded))


def setup_stages(stages: Iterable[Stage], env: Any) -> None:
    for stage in stages:
        stage.setup(env)


def teardown_stages(stages: Iterable[Stage]) -> None:
    for stage in stages:
        stage.teardown()


def expected_inputs(stage: Stage, made: dict[str, str], build: BuildDir, shard: int) -> dict[str, str]:
    """What a reusable marker of ``stage`` must have been made from: the records hash of each upstream
    stage, and for the stage reading the raw rows, whether the shard is poisoned (and why)."""
    expected = {name: made[name] for name in stage.inputs if name != SOURCE}
    if SOURCE in stage.inputs:
        reason = build.poisoned(shard)
        if reason is not None:
            expected[SOURCE] = digest({"poisoned": reason})
    return expected


def shard_is_current(graph: Graph, build: BuildDir, shard: int) -> Marker | None:
    """The final stage's marker when every stage of ``shard`` is reusable as it stands, else None."""
    made: dict[str, str] = {}
    marker: Marker | None = None
    for stage in graph.stages:
        marker = build.committed(stage.name, shard, graph.hashes[stage.name])
        if marker is None or marker.inputs != expected_inputs(stage, made, build, shard):
            return None
        made[stage.name] = marker.records_hash
    return marker
