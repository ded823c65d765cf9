"""The global stages: after every shard is committed, ``dedup`` then ``write`` see all of them.

``dedup`` finds rows whose (prompt, completions) repeat an earlier row (in shard
order) and questions that appear under several problem ids; it drops the
repeats when ``split.dedup`` is on. ``write`` streams the kept rows, shard by
shard, into ``data/{split}-{i:05d}-of-{n:05d}.parquet`` with ``n`` counted per
split and never an empty file. Both commit a marker of their config hash and
resume like the shard stages; memory holds one shard's rows and one hash per row.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from prmforge.pipelines import tables
from prmforge.pipelines.graph import Graph
from prmforge.pipelines.runners.builddir import GLOBAL, BuildDir, FileEntry, Marker, StageCounts
from prmforge.pipelines.runners.stream import ParquetStream
from prmforge.pipelines.stages.assemble import normalised_question
from prmforge.schemas.arrow import PRM_EXAMPLE_SCHEMA, QuarantineEntry, quarantine_entry
from prmforge.schemas.records import PRMExample

SPLITS = ("train", "validation", "test")
DEDUP, WRITE = "dedup", "write"


@dataclass(frozen=True, slots=True)
class DedupResult:
    repeated_rows: int
    conflicting_labels: int
    dropped: int
    duplicate_questions: int
    clashing_ids: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "repeated_rows": self.repeated_rows,
            "conflicting_labels": self.conflicting_labels,
            "dropped": self.dropped,
            "duplicate_questions": self.duplicate_questions,
            "clashing_ids": self.clashing_ids,
        }


def _drop_entry(shard: int, e: PRMExample, field: str, reason: str) -> QuarantineEntry:
    """A dropped row: ``index`` is its shard, the preview its example id (what `write` skips)."""
    return quarantine_entry(
        stage=DEDUP, source=e.problem_id, index=shard, field=field, reason=reason, raw=e.example_id
    )


def _key(e: PRMExample) -> bytes:
    return hashlib.sha256(json.dumps([e.prompt, list(e.completions)]).encode()).digest()


class Finalizer:
    def __init__(
        self, graph: Graph, build: BuildDir, num_shards: int, drop: bool, rows_per_file: int, run_id: str
    ) -> None:
        self.graph = graph
        self.build = build
        self.num_shards = num_shards
        self.drop = drop
        self.rows_per_file = rows_per_file
        self.run_id = run_id
        self._inputs: dict[str, str] = {}

    def _examples(self) -> Iterator[tuple[int, list[PRMExample]]]:
        for shard in range(self.num_shards):
            marker = self.build.committed("assemble", shard, self.graph.hashes["assemble"])
            if marker is None:
                raise RuntimeError(f"assemble shard {shard} is not committed")
            for entry in marker.files:
                if entry.path.startswith("stages/"):
                    yield shard, tables.decode("example", self.build.read_table(entry))

    def _assembled(self) -> str:
        """One hash of every shard's assembled rows, in shard order: what the global stages read."""
        digest = hashlib.sha256()
        for shard in range(self.num_shards):
            marker = self.build.committed("assemble", shard, self.graph.hashes["assemble"])
            if marker is None:
                raise RuntimeError(f"assemble shard {shard} is not committed")
            digest.update(f"{shard}:{marker.records_hash}\n".encode())
        return digest.hexdigest()

    def run(self) -> tuple[Marker, Marker, tuple[bool, bool]]:
        """The two global markers, and whether each was reused (made from the current rows)."""
        self._inputs = {"assemble": self._assembled()}
        dedup = self.build.committed(DEDUP, GLOBAL, self.graph.global_hash)
        dedup_resumed = dedup is not None and dedup.inputs == self._inputs
        if dedup is None or not dedup_resumed:
            dedup = self._dedup()
        write_inputs = {**self._inputs, DEDUP: dedup.records_hash}
        committed = self.build.committed(WRITE, GLOBAL, self.graph.global_hash)
        if committed is not None and committed.inputs == write_inputs:
            return dedup, committed, (dedup_resumed, True)
        return dedup, self._write(self._dropped(dedup), write_inputs), (dedup_resumed, False)

    def _dedup(self) -> Marker:
        seen: dict[bytes, tuple[str, tuple[bool, ...]]] = {}
        questions: dict[bytes, str] = {}
        duplicate_questions: set[bytes] = set()
        entries = []
        ids: dict[str, int] = {}
        total = repeated = conflicting = clashes = 0
        for shard, examples in self._examples():
            for e in examples:
                total += 1
                first_shard = ids.setdefault(e.example_id, shard)
                if first_shard != shard:
                    # Two input rows share a problem id: their rollouts share ids, and every join by id
                    # would confuse them. The later copy is dropped and the build reports the clash.
                    clashes += 1
                    reason = (
                        f"problem id {e.problem_id!r} is used by rows of shards {first_shard} and {shard}"
                    )
                    entries.append(_drop_entry(shard, e, "problem_id", reason))
                    continue
                q = hashlib.sha256(normalised_question(e.prompt).encode()).digest()
                first_pid = questions.setdefault(q, e.problem_id)
                if first_pid != e.problem_id:
                    duplicate_questions.add(q)
                key = _key(e)
                if key not in seen:
                    seen[key] = (e.example_id, e.labels)
                    continue
                repeated += 1
                kept_id, kept_labels = seen[key]
                differs = kept_labels != e.labels
                conflicting += differs
                if self.drop:
                    reason = f"repeats row {kept_id}" + (" with different labels" if differs else "")
                    entries.append(_drop_entry(shard, e, "completions", reason))
        result = DedupResult(repeated, conflicting, len(entries), len(duplicate_questions), clashes)
        table = tables.encode("quarantine", entries)
        path = self.build.global_file(DEDUP, "dropped.parquet")
        entry = self.build.write_table(path, table, tables.table_hash("quarantine", table))
        counts = StageCounts(total, total, 0, total - len(entries), len(entries))
        return self.build.commit_marker(
            DEDUP,
            GLOBAL,
            counts,
            [entry],
            self.graph.global_hash,
            self.run_id,
            result.as_dict(),
            self._inputs,
        )

    def _dropped(self, dedup: Marker) -> set[tuple[int, str]]:
        """``(shard, example_id)`` of every row dedup dropped."""
        entry = next(f for f in dedup.files if f.path.endswith("dropped.parquet"))
        return {(q.index, q.preview) for q in tables.decode("quarantine", self.build.read_table(entry))}

    def _write(self, dropped: set[tuple[int, str]], inputs: dict[str, str]) -> Marker:
        counts = dict.fromkeys(SPLITS, 0)
        for shard, examples in self._examples():
            for e in examples:
                if (shard, e.example_id) not in dropped:
                    counts[e.split] += 1
        files_per_split = {s: math.ceil(n / self.rows_per_file) for s, n in counts.items() if n}
        data_dir = self.build.root / "data"
        # The manifest and the card of a previous write name its files: they go first, so an interrupted
        # write never leaves a manifest pointing at deleted files (readers say "not finished" instead).
        for stale in (self.build.manifest_file, self.build.root / "README.md"):
            stale.unlink(missing_ok=True)
        if data_dir.exists():  # a previous write of another config: readers of the folder must not see it
            for old in data_dir.iterdir():
                old.unlink()
        # Rows per file: as even as possible, never an empty file; each file is streamed shard by shard.
        sizes = {s: _sizes(counts[s], files_per_split[s]) for s in files_per_split}
        index = dict.fromkeys(files_per_split, 0)
        filled = dict.fromkeys(files_per_split, 0)
        streams: dict[str, ParquetStream] = {}
        files: list[FileEntry] = []
        for shard, examples in self._examples():
            pieces: dict[str, list[PRMExample]] = {}
            for e in examples:
                if (shard, e.example_id) in dropped:
                    continue
                split = e.split
                if split not in streams:
                    path = self.build.data_file(split, index[split], files_per_split[split])
                    streams[split] = ParquetStream(self.build, path, "example", PRM_EXAMPLE_SCHEMA)
                pieces.setdefault(split, []).append(e)
                filled[split] += 1
                if filled[split] == sizes[split][index[split]]:
                    streams[split].write(tables.encode("example", pieces.pop(split)))
                    files.append(streams.pop(split).close())
                    index[split] += 1
                    filled[split] = 0
            for rest, rows in pieces.items():
                streams[rest].write(tables.encode("example", rows))
        files.sort(key=lambda f: f.path)
        total = sum(counts.values())
        stage_counts = StageCounts(total + len(dropped), total + len(dropped), 0, total, len(dropped))
        return self.build.commit_marker(
            WRITE, GLOBAL, stage_counts, files, self.graph.global_hash, self.run_id, inputs=inputs
        )


def _sizes(rows: int, files: int) -> list[int]:
    base, extra = divmod(rows, files)
    return [base + (1 if i < extra else 0) for i in range(files)]
