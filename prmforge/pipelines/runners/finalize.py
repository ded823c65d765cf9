"""The global stages: after every shard is committed, ``dedup`` then ``write`` see all of them.

``dedup`` finds rows whose (prompt, completions) repeat an earlier row (in shard
order) and questions that appear under several problem ids; it drops the
repeats when ``split.dedup`` is on. With ``split.near_dedup`` it also drops a
row whose MinHash-estimated Jaccard with an earlier kept row *of the same
problem* reaches the threshold (:mod:`prmforge.pipelines.near_dedup`); with
``split.balance`` it then drops rows of the majority class of each balanced
split, in the order of a seeded hash of their ``example_id``
(:mod:`prmforge.pipelines.balance`). Every dropped row is listed with its reason
in ``stages/dedup/dropped.parquet``; the counts, the balance target and the
shares reached are in the marker's summary (the manifest's ``dedup``).
``write`` streams the kept rows, shard by shard, into
``data/{split}-{i:05d}-of-{n:05d}.parquet`` with ``n`` counted per split and
never an empty file. Both commit a marker of their config hash (the global hash,
which covers every ``split`` setting) and resume like the shard stages. The shard
stages' hashes leave ``split.dedup``, ``near_dedup``, ``balance`` and
``rows_per_file`` out, so with other values of these only the two global stages
are recomputed over the committed shards (a build directory still refuses a
changed configuration that does not only grow it: ``growth_of``).

Memory holds one shard's rows and, per row, a hash (exact dedup), the balance
key and counts of a row of a balanced split, and per problem the MinHash
signatures of its kept rows until its last shard. Rows of one *generated*
problem are in one shard (a shard is a range of input rows, one problem per
row; load quarantines an id repeated within a shard, and an id repeated across
shards is a clash that ``dedup`` drops). Imported rollouts are one row per
rollout, keyed by question, so one problem's rollouts can lie in several shards:
``dedup`` first reads the ``problem_id`` column of every shard to know each
problem's last shard, and forgets a problem's signatures after it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prmforge.pipelines import tables
from prmforge.pipelines.balance import BalanceReport, Candidate, SplitBalance, order_key, select, units
from prmforge.pipelines.graph import Graph
from prmforge.pipelines.near_dedup import NearDuplicates, Signer, minhash_seed
from prmforge.pipelines.runners.builddir import GLOBAL, BuildDir, FileEntry, Marker, StageCounts
from prmforge.pipelines.runners.stream import ParquetStream
from prmforge.pipelines.stages.assemble import normalised_question
from prmforge.schemas.arrow import PRM_EXAMPLE_SCHEMA, QuarantineEntry, quarantine_entry
from prmforge.schemas.config import BalanceConfig, NearDedupConfig, SplitConfig
from prmforge.schemas.records import PRMExample

SPLITS = ("train", "validation", "test")
DEDUP, WRITE = "dedup", "write"


@dataclass(frozen=True, slots=True)
class DedupResult:
    repeated_rows: int
    conflicting_labels: int
    dropped: int  # exact repeats (when `split.dedup` is on) and rows of clashing ids
    duplicate_questions: int
    clashing_ids: int = 0
    near_duplicates: int | None = None  # None: `split.near_dedup` is off
    balance: BalanceReport | None = None  # None: `split.balance` is off

    def as_dict(self) -> dict[str, int]:
        """The marker's (and the manifest's) summary: integers only; the keys of an option that is off
        are absent, so a build using neither keeps the summary it always had."""
        out = {
            "repeated_rows": self.repeated_rows,
            "conflicting_labels": self.conflicting_labels,
            "dropped": self.dropped,
            "duplicate_questions": self.duplicate_questions,
            "clashing_ids": self.clashing_ids,
        }
        if self.near_duplicates is not None:
            out["near_duplicates"] = self.near_duplicates
        if self.balance is not None:
            out.update(self.balance.as_summary())
        return out


@dataclass(frozen=True, slots=True)
class Settings:
    """What the global stages do beyond exact dedup (``split.near_dedup``, ``split.balance``)."""

    near_dedup: NearDedupConfig | None = None
    balance: BalanceConfig | None = None
    seed: int = 0

    @classmethod
    def of(cls, split: SplitConfig, seed: int) -> Settings:
        return cls(split.near_dedup, split.balance, seed)

    @classmethod
    def from_build(cls, build: BuildDir) -> Settings:
        """From ``build.json``: the configuration this run opened the directory with (a grown build
        records its grown configuration before the global stages run)."""
        config: dict[str, Any] = build.read_build().get("config", {})
        return cls.of(SplitConfig.model_validate(config.get("split", {})), int(config.get("seed", 0)))


def _drop_entry(shard: int, e: PRMExample, field: str, reason: str) -> QuarantineEntry:
    """A dropped row: ``index`` is its shard, the preview its example id (what `write` skips)."""
    return quarantine_entry(
        stage=DEDUP, source=e.problem_id, index=shard, field=field, reason=reason, raw=e.example_id
    )


def _key(e: PRMExample) -> bytes:
    return hashlib.sha256(json.dumps([e.prompt, list(e.completions)]).encode()).digest()


class _DedupPass:
    """What ``dedup`` decides, fed every assembled row in shard order, then row order: clashing ids,
    exact repeats, near duplicates (per problem), then, once every row is seen, the balance."""

    def __init__(self, drop: bool, settings: Settings, ending: dict[int, list[str]]) -> None:
        self.drop = drop
        self.settings = settings
        self.ending = ending  # per shard, the problems whose last rows it holds (near dedup only)
        self.total = self.repeated = self.conflicting = self.clashes = self.near_count = self.exact = 0
        self._seen: dict[bytes, tuple[str, tuple[bool, ...]]] = {}
        self._questions: dict[bytes, str] = {}
        self._duplicate_questions: set[bytes] = set()
        self._ids: dict[str, int] = {}
        near = settings.near_dedup
        self._near = (
            NearDuplicates(near.threshold, Signer(near.num_perm, minhash_seed(settings.seed)))
            if near is not None
            else None
        )
        # Per balanced split, each kept row's candidate, with its position, shard, id and problem.
        balance = settings.balance
        self._balanced: dict[str, list[tuple[Candidate, int, int, str, str]]] = (
            {split: [] for split in balance.splits} if balance is not None else {}
        )

    def row(self, shard: int, e: PRMExample) -> QuarantineEntry | None:
        """The row's drop entry, or None when it is kept (so far: balancing comes at the end)."""
        self.total += 1
        dropped = self._clash(shard, e) or self._repeat(shard, e) or self._near_duplicate(shard, e)
        if dropped is None and e.split in self._balanced and self.settings.balance is not None:
            pos, neg = units(e.labels, e.first_error, self.settings.balance.unit)
            candidate = Candidate(order_key(self.settings.seed, e.example_id), pos, neg)
            self._balanced[e.split].append((candidate, self.total, shard, e.example_id, e.problem_id))
        return dropped

    def _clash(self, shard: int, e: PRMExample) -> QuarantineEntry | None:
        first_shard = self._ids.setdefault(e.example_id, shard)
        if first_shard == shard:
            return None
        # Two input rows share a problem id: their rollouts share ids, and every join by id would
        # confuse them. The later copy is dropped and the build reports the clash.
        self.clashes += 1
        self.exact += 1
        reason = f"problem id {e.problem_id!r} is used by rows of shards {first_shard} and {shard}"
        return _drop_entry(shard, e, "problem_id", reason)

    def _repeat(self, shard: int, e: PRMExample) -> QuarantineEntry | None:
        q = hashlib.sha256(normalised_question(e.prompt).encode()).digest()
        first_pid = self._questions.setdefault(q, e.problem_id)
        if first_pid != e.problem_id:
            self._duplicate_questions.add(q)
        key = _key(e)
        if key not in self._seen:
            self._seen[key] = (e.example_id, e.labels)
            return None
        self.repeated += 1
        kept_id, kept_labels = self._seen[key]
        differs = kept_labels != e.labels
        self.conflicting += differs
        if not self.drop:
            return None
        self.exact += 1
        reason = f"repeats row {kept_id}" + (" with different labels" if differs else "")
        return _drop_entry(shard, e, "completions", reason)

    def _near_duplicate(self, shard: int, e: PRMExample) -> QuarantineEntry | None:
        config = self.settings.near_dedup
        if self._near is None or config is None:
            return None
        match = self._near.check_text(e.problem_id, e.example_id, e.completions, config.shingle)
        if match is None:
            return None
        self.near_count += 1
        reason = (
            f"near-duplicate of row {match.kept_id} (estimated Jaccard {match.estimate:.4f} "
            f">= {config.threshold})"
        )
        return _drop_entry(shard, e, "completions", reason)

    def end_of_shard(self, shard: int) -> None:
        """Problems whose last rows were in this shard: their signatures go."""
        if self._near is not None:
            for pid in self.ending.get(shard, ()):
                self._near.forget(pid)

    def finish(self) -> tuple[DedupResult, list[QuarantineEntry]]:
        """The counts, and the entries of the rows balancing drops."""
        report: BalanceReport | None = None
        out: list[QuarantineEntry] = []
        if self.settings.balance is not None:
            report, out = _balance(self._balanced, self.settings.balance)
        result = DedupResult(
            self.repeated,
            self.conflicting,
            self.exact,
            len(self._duplicate_questions),
            self.clashes,
            self.near_count if self.settings.near_dedup is not None else None,
            report,
        )
        return result, out


class Finalizer:
    def __init__(
        self,
        graph: Graph,
        build: BuildDir,
        num_shards: int,
        drop: bool,
        rows_per_file: int,
        run_id: str,
        settings: Settings | None = None,
    ) -> None:
        """``settings`` default to those of the configuration in ``build.json``."""
        self.graph = graph
        self.build = build
        self.num_shards = num_shards
        self.drop = drop
        self.rows_per_file = rows_per_file
        self.run_id = run_id
        self.settings = settings if settings is not None else Settings.from_build(build)
        self._inputs: dict[str, str] = {}

    def _assemble_files(self) -> Iterator[tuple[int, FileEntry]]:
        for shard in range(self.num_shards):
            marker = self.build.committed("assemble", shard, self.graph.hashes["assemble"])
            if marker is None:
                raise RuntimeError(f"assemble shard {shard} is not committed")
            for entry in marker.files:
                if entry.path.startswith("stages/"):
                    yield shard, entry

    def _examples(self) -> Iterator[tuple[int, list[PRMExample]]]:
        for shard, entry in self._assemble_files():
            yield shard, tables.decode("example", self.build.read_table(entry))

    def _last_shards(self) -> dict[int, list[str]]:
        """Per shard, the problems whose last rows it holds (from the ``problem_id`` column alone)."""
        last: dict[str, int] = {}
        for shard, entry in self._assemble_files():
            column = self.build.read_table(entry, columns=["problem_id"]).column(0)
            for pid in column.to_pylist():
                last[pid] = shard
        ending: dict[int, list[str]] = defaultdict(list)
        for pid, shard in last.items():
            ending[shard].append(pid)
        return ending

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
        near = self.settings.near_dedup
        decide = _DedupPass(self.drop, self.settings, self._last_shards() if near is not None else {})
        entries: list[QuarantineEntry] = []
        for shard, examples in self._examples():
            for e in examples:
                dropped = decide.row(shard, e)
                if dropped is not None:
                    entries.append(dropped)
            decide.end_of_shard(shard)
        result, balanced_out = decide.finish()
        entries.extend(balanced_out)
        table = tables.encode("quarantine", entries)
        path = self.build.global_file(DEDUP, "dropped.parquet")
        entry = self.build.write_table(path, table, tables.table_hash("quarantine", table))
        total = decide.total
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


def _balance(
    balanced: dict[str, list[tuple[Candidate, int, int, str, str]]], config: BalanceConfig
) -> tuple[BalanceReport, list[QuarantineEntry]]:
    """Balance each split on its own; the dropped rows' entries in shard order, then row order."""
    splits = []
    dropped: list[tuple[int, QuarantineEntry]] = []
    for split in SPLITS:
        if split not in balanced:
            continue
        rows = balanced[split]
        outcome = select([r[0] for r in rows], config.target)
        reason = (
            f"balance: a {outcome.majority} row of {split} dropped toward a positive {config.unit} share "
            f"of {config.target}"
        )
        for i in outcome.dropped:
            _, position, shard, example_id, problem_id = rows[i]
            entry = quarantine_entry(
                stage=DEDUP, source=problem_id, index=shard, field="labels", reason=reason, raw=example_id
            )
            dropped.append((position, entry))
        splits.append(SplitBalance.of(split, outcome))
    dropped.sort(key=lambda d: d[0])
    return BalanceReport(config.unit, config.target, tuple(splits)), [d[1] for d in dropped]


def _sizes(rows: int, files: int) -> list[int]:
    base, extra = divmod(rows, files)
    return [base + (1 if i < extra else 0) for i in range(files)]
