"""Record kinds <-> Arrow tables, and which columns stay out of content hashes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from prmforge.schemas import arrow, arrow_fused, arrow_trees

# Wall time and cache hits differ between an interrupted and an uninterrupted
# build of the same config; they are reported, never hashed.
VOLATILE: dict[str, tuple[str, ...]] = {"labels": ("cost.seconds", "cost.cached_completions")}

_ENCODE: dict[str, Callable[[Sequence[Any]], pa.Table]] = {
    "problem": arrow.problems_to_table,
    "rollout": arrow.rollouts_to_table,
    "labels": arrow.step_labels_to_table,
    "fused": arrow_fused.fused_to_table,
    "example": arrow.prm_examples_to_table,
    "quarantine": arrow.quarantine_to_table,
    "tree": arrow_trees.tree_rows_to_table,  # search-tree node rows (an annotator's side output)
}
_DECODE: dict[str, Callable[[pa.Table], list[Any]]] = {
    "problem": arrow.problems_from_table,
    "rollout": arrow.rollouts_from_table,
    "labels": arrow.step_labels_from_table,
    "fused": arrow_fused.fused_from_table,
    "example": arrow.prm_examples_from_table,
    "quarantine": arrow.quarantine_from_table,
    "tree": arrow_trees.tree_rows_from_table,
}


RECORD_KINDS = frozenset(_ENCODE)


def encode(kind: str, records: Sequence[Any]) -> pa.Table:
    return _ENCODE[kind](records)


def decode(kind: str, table: pa.Table) -> list[Any]:
    return _DECODE[kind](table)


def table_hash(kind: str, table: pa.Table) -> str:
    return arrow.content_hash(table, exclude=VOLATILE.get(kind, ()))
