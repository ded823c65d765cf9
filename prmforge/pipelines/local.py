"""The local runner: shards over a process pool, then the manifest and dataset card.

Shards are fixed by the input order and ``runner.shard_size``; every seed
derives from the build seed and record ids. The number of workers therefore
changes only the wall time, never the content hash.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prmforge.pipelines.builddir import BuildDir, Marker, atomic_write_bytes, atomic_write_json
from prmforge.pipelines.card import render_card
from prmforge.pipelines.components import verification_provenance
from prmforge.pipelines.shard import SPLITS, ShardTask, StageEvent, run_shard, stages_of
from prmforge.pipelines.sources import input_digests, iter_source_rows
from prmforge.pipelines.stages import SourceRow
from prmforge.schemas.config import BuildConfig
from prmforge.schemas.errors import BuildStateError


@dataclass(frozen=True, slots=True)
class BuildResult:
    root: Path
    content_hash: str
    resumed: bool
    shards_run: int
    shards_skipped: int
    manifest: dict[str, Any]


def plan_shards(rows: list[SourceRow], shard_size: int) -> list[tuple[SourceRow, ...]]:
    return [tuple(rows[i : i + shard_size]) for i in range(0, len(rows), shard_size)] or [()]


_worker_events: Any = None


def _init_worker(events: Any) -> None:
    global _worker_events  # noqa: PLW0603 - the pool initializer is the only way to hand a queue to workers
    _worker_events = events


def _worker_run(task: ShardTask) -> int:
    run_shard(task, _worker_events.put)
    return task.shard


class LocalRunner:
    """Runs a build in this process (``workers == 0``) or in a pool of worker processes."""

    def __init__(
        self,
        on_event: Callable[[StageEvent], None] | None = None,
        on_plan: Callable[[int], None] | None = None,
    ) -> None:
        self.on_event = on_event or (lambda event: None)
        self.on_plan = on_plan or (lambda num_shards: None)

    def run(
        self, config: BuildConfig, output: Path, restart: bool = False, workers: int | None = None
    ) -> BuildResult:
        rows = list(iter_source_rows(config))
        shards = plan_shards(rows, config.runner.shard_size)
        self.on_plan(len(shards))
        build = BuildDir(output)
        config_json = config.model_dump(mode="json")
        n_workers = config.runner.workers if workers is None else workers
        try:
            inputs = input_digests(config)
            resumed = build.open(config_json, config.content_hash(), len(shards), restart, inputs)
            pending = []
            for index, shard in enumerate(shards):
                # A shard is done only when every stage is committed: a lost file of an earlier stage
                # reruns the shard (committed stages are skipped, generations come from the cache).
                markers = [build.committed(stage, index) for stage in stages_of(config)]
                final = markers[-1]
                if any(m is None for m in markers) or final is None:
                    pending.append(ShardTask(str(output), config_json, index, len(shards), shard))
                else:
                    self.on_event(StageEvent(index, final.stage, final.counts, True, 0.0))
            if n_workers == 0 or len(pending) <= 1:
                for task in pending:
                    run_shard(task, self.on_event)
            else:
                self._run_pool(pending, min(n_workers, len(pending)))
            manifest = write_manifest(build, config, len(shards))
        finally:
            build.close()
        skipped = len(shards) - len(pending)
        return BuildResult(output, manifest["content_hash"], resumed, len(pending), skipped, manifest)

    def _run_pool(self, tasks: list[ShardTask], workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set() or not events.empty():
                try:
                    self.on_event(events.get(timeout=0.1))
                except queue.Empty:
                    continue

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            with ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_init_worker, initargs=(events,)
            ) as pool:
                futures = {pool.submit(_worker_run, task): task.shard for task in tasks}
                for future in as_completed(futures):
                    future.result()
        finally:
            stop.set()
            reader.join()


def _stage_totals(markers: list[Marker]) -> dict[str, int]:
    return {
        "rows_in": sum(m.counts.rows_in for m in markers),
        "accepted": sum(m.counts.accepted for m in markers),
        "quarantined": sum(m.counts.quarantined for m in markers),
        "rows_out": sum(m.counts.rows_out for m in markers),
    }


def write_manifest(build: BuildDir, config: BuildConfig, num_shards: int) -> dict[str, Any]:
    """The manifest lists every committed file; its content hash covers the data files in shard order."""
    stages: dict[str, Any] = {}
    files: list[dict[str, Any]] = []
    for stage in stages_of(config):
        markers = []
        for shard in range(num_shards):
            marker = build.committed(stage, shard)
            if marker is None:
                raise BuildStateError(f"{build.root}: stage {stage} shard {shard} is not committed")
            markers.append(marker)
            files.extend({"stage": stage, "shard": shard, **asdict(f)} for f in marker.files)
        stages[stage] = _stage_totals(markers)
    data = [f for f in files if f["path"].startswith("data/")]
    digest = hashlib.sha256()
    for f in data:
        digest.update(f"{f['path']}:{f['content_hash']}\n".encode())
    splits = {
        split: {"rows": sum(f["rows"] for f in data if f["path"].startswith(f"data/{split}-"))}
        for split in SPLITS
    }
    manifest = {
        "name": config.name,
        "config_hash": config.content_hash(),
        "num_shards": num_shards,
        "content_hash": digest.hexdigest(),
        "splits": splits,
        "stages": stages,
        "verification": verification_provenance(config),
        "files": files,
    }
    atomic_write_json(build.manifest_file, manifest)
    atomic_write_bytes(build.root / "README.md", render_card(config, manifest).encode())
    return manifest
