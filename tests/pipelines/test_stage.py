"""The stage base class: batching, poison-row isolation, quarantine vs excluded, counts; graph checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from prmforge.pipelines.graph import GraphError, check
from prmforge.pipelines.stage import RecordKind, Reject, Resources, RowResult, Stage


class Doubler(Stage):
    """Fails on rows equal to 13; rejects (excluded) negative rows; emits each row twice."""

    reads: ClassVar[tuple[RecordKind, ...]] = ("source",)
    writes: ClassVar[RecordKind] = "problem"
    resources: ClassVar[Resources] = Resources(batch_size=3)

    def __init__(self) -> None:
        super().__init__("double", ("source",), {})
        self.calls: list[list[int]] = []

    def describe(self, row: int) -> tuple[str, int, bytes | str]:
        return "numbers", row, str(row)

    def process(self, batch: Sequence[int], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        self.calls.append(list(batch))
        if 13 in batch:
            raise ValueError("unlucky")
        return [Reject("value", "negative", excluded=True) if r < 0 else [r, r] for r in batch]


def test_a_poison_row_is_isolated_and_its_batch_mates_survive() -> None:
    stage = Doubler()
    out = stage.run({"source": [1, 13, -2, 4]})
    assert stage.calls == [[1, 13, -2], [1], [13], [-2], [4]]
    assert out.records == [1, 1, 4, 4]
    assert (out.rows_in, out.accepted) == (4, 3)
    assert [(q.index, q.field, q.reason) for q in out.quarantined] == [(13, "<row>", "ValueError: unlucky")]
    assert [(q.index, q.field, q.reason) for q in out.excluded] == [(-2, "value", "negative")]


def test_a_lone_poison_row_is_quarantined_without_a_retry() -> None:
    stage = Doubler()
    out = stage.run({"source": [13]})
    assert stage.calls == [[13]]
    assert len(out.quarantined) == 1


class Reader(Stage):
    reads: ClassVar[tuple[RecordKind, ...]] = ("rollout",)
    writes: ClassVar[RecordKind] = "labels"

    def process(self, batch: Sequence[Any], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        return [[] for _ in batch]


def test_a_miswired_graph_fails_when_composed() -> None:
    with pytest.raises(
        GraphError, match=r"stage label reads rollout records from 'double', which writes problem"
    ):
        check([Doubler(), Reader("label", ("double",), {})])
    with pytest.raises(GraphError, match=r"stage label reads 'generate', which no earlier stage writes"):
        check([Reader("label", ("generate",), {})])
    with pytest.raises(GraphError, match=r"two stages are called 'double'"):
        check([Doubler(), Doubler()])


def test_declared_inputs_must_match_declared_kinds() -> None:
    with pytest.raises(ValueError, match=r"stage label: 2 inputs for 1 declared kinds"):
        Reader("label", ("a", "b"), {})
