"""The Beam runner's exact dedup: the global ``dedup`` stage's cross-shard decisions as GroupByKeys.

Once every shard is committed, every assembled row is read (one shard per element, spread over the
workers) and keyed three ways:

* by example id: the rows of an id whose first shard is an earlier one are *clashing ids* (two input
  rows with one id in different shards) and are dropped;
* by (prompt, completions), among the other rows: every row after the first, in (shard, row) order, is
  a *repeat* (dropped when ``split.dedup`` is on; ``conflicting_labels`` when its labels differ from the
  kept row's);
* by normalised question, among the same rows: a question under several problem ids is a
  *duplicate question*.

These are exactly the decisions :class:`~prmforge.pipelines.runners.finalize.Finalizer` takes row by
row in shard order (near duplicates and balancing are order-dependent and stay there). The decision is
written to the run's side directory; the driver then runs the same ``finish`` as every runner (so the
data files, the manifest and the card are the local runner's) and :func:`check_agreement` requires the
committed ``dedup`` stage to have made the same counts and dropped the same rows with the same reasons.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import combiners

from prmforge.pipelines import tables
from prmforge.pipelines.runners.builddir import BuildDir, atomic_write_json
from prmforge.pipelines.runners.finalize import DEDUP
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.pipelines.stages.assemble import normalised_question
from prmforge.schemas.arrow import QuarantineEntry, quarantine_entry
from prmforge.schemas.errors import BuildStateError

# mypy: disable-error-code="no-untyped-call"
# (apache_beam 2.77 declares py.typed but leaves most of its API unannotated.)

COUNTS = ("repeated_rows", "conflicting_labels", "dropped", "duplicate_questions", "clashing_ids")
CLASH = "clash"


@dataclass(frozen=True, slots=True)
class RowKeys:
    """What dedup decides on, for one assembled row at ``(shard, pos)``."""

    shard: int
    pos: int
    example_id: str
    problem_id: str
    content: str  # sha256 of (prompt, completions), as the Finalizer keys exact repeats
    question: str  # sha256 of the normalised question
    labels: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str  # clash | repeat | question
    shard: int = 0
    pos: int = 0
    entry: dict[str, Any] | None = None  # the dropped row's entry (asdict of a QuarantineEntry)
    conflicting: bool = False


def _content(prompt: str, completions: Iterable[str]) -> str:
    return hashlib.sha256(json.dumps([prompt, list(completions)]).encode()).hexdigest()


def _entry(row: RowKeys, field: str, reason: str) -> dict[str, Any]:
    q = quarantine_entry(
        stage=DEDUP, source=row.problem_id, index=row.shard, field=field, reason=reason, raw=row.example_id
    )
    return asdict(q)


class FanOut(beam.DoFn):
    """The barrier's one element (every shard committed) becomes the shard indices."""

    def __init__(self, num_shards: int) -> None:
        super().__init__()
        self.num_shards = num_shards

    def process(self, _committed: int) -> Iterator[int]:
        yield from range(self.num_shards)


class ReadAssembled(beam.DoFn):
    def __init__(self, root: str, assemble_hash: str) -> None:
        super().__init__()
        self.root = root
        self.assemble_hash = assemble_hash

    def process(self, shard: int) -> Iterator[RowKeys]:
        build = BuildDir(Path(self.root))
        marker = build.committed("assemble", shard, self.assemble_hash)
        if marker is None:
            raise BuildStateError(f"{self.root}: assemble shard {shard} is not committed")
        pos = 0
        for entry in marker.files:
            if not entry.path.startswith("stages/"):
                continue
            for e in tables.decode("example", build.read_table(entry)):
                question = hashlib.sha256(normalised_question(e.prompt).encode()).hexdigest()
                content = _content(e.prompt, e.completions)
                yield RowKeys(shard, pos, e.example_id, e.problem_id, content, question, tuple(e.labels))
                pos += 1


class FirstShard(beam.DoFn):
    """The rows of one example id: those of a later shard than its first are clashing ids."""

    def process(self, group: tuple[str, Iterable[RowKeys]]) -> Iterator[Any]:
        rows = sorted(group[1], key=lambda r: (r.shard, r.pos))
        first = rows[0].shard
        for row in rows:
            if row.shard == first:
                yield row
                continue
            reason = f"problem id {row.problem_id!r} is used by rows of shards {first} and {row.shard}"
            yield TaggedOutput(CLASH, Decision(CLASH, row.shard, row.pos, _entry(row, "problem_id", reason)))


class Repeats(beam.DoFn):
    """The rows of one (prompt, completions): all but the first repeat it."""

    def __init__(self, drop: bool) -> None:
        super().__init__()
        self.drop = drop

    def process(self, group: tuple[str, Iterable[RowKeys]]) -> Iterator[Decision]:
        rows = sorted(group[1], key=lambda r: (r.shard, r.pos))
        kept = rows[0]
        for row in rows[1:]:
            differs = row.labels != kept.labels
            reason = f"repeats row {kept.example_id}" + (" with different labels" if differs else "")
            entry = _entry(row, "completions", reason) if self.drop else None
            yield Decision("repeat", row.shard, row.pos, entry, differs)


class SharedQuestion(beam.DoFn):
    def process(self, group: tuple[str, Iterable[RowKeys]]) -> Iterator[Decision]:
        if len({r.problem_id for r in group[1]}) > 1:
            yield Decision("question")


class WriteDecision(beam.DoFn):
    """Every decision (one list): the counts and the dropped rows' entries, written atomically."""

    def __init__(self, path: str, drop: bool) -> None:
        super().__init__()
        self.path = path
        self.drop = drop

    def process(self, decisions: list[Decision]) -> Iterator[None]:
        kinds = [d.kind for d in decisions]
        repeats = kinds.count("repeat")
        counts = {
            "repeated_rows": repeats,
            "conflicting_labels": sum(d.conflicting for d in decisions),
            "dropped": kinds.count(CLASH) + (repeats if self.drop else 0),
            "duplicate_questions": kinds.count("question"),
            "clashing_ids": kinds.count(CLASH),
        }
        dropped = sorted((d for d in decisions if d.entry is not None), key=lambda d: (d.shard, d.pos))
        atomic_write_json(Path(self.path), {"counts": counts, "entries": [d.entry for d in dropped]})
        yield from ()


def expand_dedup(
    done: Any, root: str, num_shards: int, assemble_hash: str, drop: bool, decision_path: str
) -> None:
    """After every shard is committed (``done`` is complete), decide exact dedup into ``decision_path``."""
    rows = (
        done
        | "AllShardsCommitted" >> combiners.Count.Globally()
        | "ShardIndices" >> beam.ParDo(FanOut(num_shards))
        | "SpreadShards" >> beam.Reshuffle()
        | "ReadAssembled" >> beam.ParDo(ReadAssembled(root, assemble_hash))
    )
    firsts = (
        rows
        | "ByExampleId" >> beam.Map(lambda r: (r.example_id, r))
        | "GroupExampleIds" >> beam.GroupByKey()
        | "FirstShard" >> beam.ParDo(FirstShard()).with_outputs(CLASH, main="kept")
    )
    kept = firsts["kept"]
    repeats = (
        kept
        | "ByContent" >> beam.Map(lambda r: (r.content, r))
        | "GroupContents" >> beam.GroupByKey()
        | "Repeats" >> beam.ParDo(Repeats(drop))
    )
    questions = (
        kept
        | "ByQuestion" >> beam.Map(lambda r: (r.question, r))
        | "GroupQuestions" >> beam.GroupByKey()
        | "SharedQuestion" >> beam.ParDo(SharedQuestion())
    )
    _ = (
        (firsts[CLASH], repeats, questions)
        | "AllDecisions" >> beam.Flatten()
        | "OneList" >> combiners.ToList()
        | "WriteDecision" >> beam.ParDo(WriteDecision(decision_path, drop))
    )


def check_agreement(decision_path: Path, build: BuildDir, manifest: Manifest) -> dict[str, int]:
    """The Beam decision equals the committed dedup stage's (counts, and the rows dropped as clashing
    ids or exact repeats with their reasons, in order); returns the counts."""
    try:
        decision = json.loads(decision_path.read_text())
    except (OSError, ValueError) as err:
        raise BuildStateError(f"{decision_path}: the Beam dedup decision is missing ({err})") from None
    counts = {k: int(v) for k, v in decision["counts"].items()}
    committed = {k: manifest.dedup.get(k) for k in COUNTS}
    beam_entries = [QuarantineEntry(**e) for e in decision["entries"]]
    stage_entries = [
        q
        for q in manifest.records(build, f"stages/{DEDUP}/", "quarantine")
        if q.field == "problem_id" or q.reason.startswith("repeats row ")
    ]
    if counts != committed or beam_entries != stage_entries:
        differ = [q for q in beam_entries if q not in stage_entries] + [
            q for q in stage_entries if q not in beam_entries
        ]
        raise BuildStateError(
            f"{build.root}: the Beam dedup (GroupByKey over example ids, contents and questions) "
            f"disagrees with the committed dedup stage: {counts} != {committed}; rows differing: "
            f"{[(q.index, q.preview, q.reason) for q in differ[:5]]}"
        )
    return counts
