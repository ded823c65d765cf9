"""The stage contract every runner relies on (DESIGN.md, "The stage graph").

A :class:`Stage` declares the record kinds it reads and writes, its resources,
and implements ``process(batch)`` over its primary input rows. The base class
owns what every stage repeats: batching, isolating a poison row by retrying a
failed batch row by row, routing rejected rows to quarantine (a failure) or to
the excluded list (a decision, e.g. an undecided fused label), counting rows in
= accepted + quarantined, and timing. Stages hold no I/O: the runner reads their
inputs and commits their outputs.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

from prmforge.schemas.arrow import QuarantineEntry, quarantine_entry
from prmforge.schemas.errors import PrmforgeError, RowError

T = TypeVar("T")
RecordKind = Literal["source", "problem", "rollout", "labels", "fused", "example"]
ROW_ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, ArithmeticError, IndexError)


@dataclass(frozen=True, slots=True)
class Resources:
    """What one worker of a stage needs; a runner sizes its pools from it."""

    cpus: float = 1.0
    gpus: float = 0.0
    batch_size: int | None = None  # None: the whole shard in one batch
    holds_engine: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """A row the stage did not turn into records: ``excluded`` rows are decisions, not failures."""

    field: str
    reason: str
    excluded: bool = False


@dataclass(slots=True)
class StageOutput(Generic[T]):
    records: list[T] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    excluded: list[QuarantineEntry] = field(default_factory=list)
    rows_in: int = 0
    seconds: float = 0.0
    artifacts: dict[str, list[Any]] = field(default_factory=dict)  # side tables by record kind ("tree")

    @property
    def accepted(self) -> int:
        return self.rows_in - len(self.quarantined)


RowResult = list[Any] | Reject


class Stage(ABC):
    """One box of the graph. ``inputs`` names the upstream stages, the first being the primary input.

    Subclasses set ``reads`` (the record kind of each input, in order) and
    ``writes``; the graph checks them against the upstream stages' ``writes``
    when it is composed.
    """

    reads: ClassVar[tuple[RecordKind, ...]]
    writes: ClassVar[RecordKind]
    resources: ClassVar[Resources] = Resources()

    def __init__(self, name: str, inputs: tuple[str, ...], config: Mapping[str, Any]) -> None:
        if len(inputs) != len(self.reads):
            raise ValueError(f"stage {name}: {len(inputs)} inputs for {len(self.reads)} declared kinds")
        self.name = name
        self.inputs = inputs
        self.config = dict(config)  # what of the build config decides this stage's output (hashed)
        # The side records of the run in progress, by thread: a worker may run several shards of one
        # stage at once (pipelines/overlap.py), each on its own thread.
        self._artifacts: dict[int, dict[str, list[Any]]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self, env: Any) -> None:  # noqa: B027 - optional hook
        """Once per worker, before any shard (build an engine, a sandbox, a language server)."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Once per worker, after its last shard."""

    @abstractmethod
    def process(self, batch: Sequence[Any], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        """One result per row of ``batch``: its output records, or a :class:`Reject`.

        ``side`` holds every input by upstream stage name (the primary one too).
        """

    def describe(self, row: Any) -> tuple[str, int, bytes | str]:
        """``(source, index, raw)`` of a row, for its quarantine entry: a record is named by its id."""
        rollout_id = getattr(row, "rollout_id", None)
        if isinstance(rollout_id, str):
            return "?", -1, json.dumps({"rollout_id": rollout_id})
        problem_id, source = getattr(row, "problem_id", None), getattr(row, "source", None)
        if isinstance(problem_id, str) and isinstance(source, str):
            return source, -1, json.dumps({"problem_id": problem_id})
        return "?", -1, repr(row)

    # -- the loop ----------------------------------------------------------------------------------
    def add_artifact(self, kind: str, records: Sequence[Any]) -> None:
        """Side records of this run (a search annotator's trees), committed beside the stage's own file
        under ``<kind>s/<stage>/``; only rows of a batch that succeeded may add them."""
        self._artifacts[threading.get_ident()].setdefault(kind, []).extend(records)

    def run(self, inputs: Mapping[str, Sequence[Any]]) -> StageOutput[Any]:
        started = time.perf_counter()
        rows = inputs[self.inputs[0]]
        out: StageOutput[Any] = StageOutput(rows_in=len(rows))
        thread = threading.get_ident()
        self._artifacts[thread] = {}
        size = self.resources.batch_size or max(len(rows), 1)
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            for row, result in zip(batch, self._isolated(batch, inputs), strict=True):
                if isinstance(result, Reject):
                    source, index, raw = self.describe(row)
                    entry = quarantine_entry(
                        stage=self.name, source=source, index=index, field=result.field,
                        reason=result.reason, raw=raw,
                    )  # fmt: skip
                    (out.excluded if result.excluded else out.quarantined).append(entry)
                else:
                    out.records.extend(result)
        out.seconds = time.perf_counter() - started
        out.artifacts = self._artifacts.pop(thread)
        return out

    def _isolated(self, batch: Sequence[Any], inputs: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        """The batch's results; on a row error, each row alone, so only the poison rows fail."""
        try:
            results = self.process(batch, inputs)
        except ROW_ERRORS as err:
            _reraise_if_not_a_row_error(err)
            if len(batch) == 1:
                return [Reject("<row>", f"{type(err).__name__}: {err}")]
            results = []
            for row in batch:
                try:
                    results.extend(self.process([row], inputs))
                except ROW_ERRORS as row_err:
                    _reraise_if_not_a_row_error(row_err)
                    results.append(Reject("<row>", f"{type(row_err).__name__}: {row_err}"))
        if len(results) != len(batch):
            raise RuntimeError(f"stage {self.name}: {len(results)} results for {len(batch)} rows")
        return results


def _reraise_if_not_a_row_error(err: Exception) -> None:
    """A configuration or build-state error is the build's, not a row's: it must stop the build."""
    if isinstance(err, PrmforgeError) and not isinstance(err, RowError):
        raise err
