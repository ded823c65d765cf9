"""Arrow schema of search-tree node rows (``SearchTree.to_rows()``): one row per node, exact round trip.

A node's sampled rollouts are stored as one canonical JSON string (sorted keys, no spaces), so the
table keeps a flat schema and the rows decode to exactly the dicts they came from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import pyarrow as pa

from prmforge.schemas.arrow import _build, _list, _opt, _req, _rows

TREE_NODE_SCHEMA: Final = pa.schema(
    [
        _req("problem_id", pa.string()),
        _req("source", pa.string()),
        _req("node_id", pa.int64()),
        _opt("parent_id", pa.int64()),
        _req("depth", pa.int64()),
        _req("step", pa.string()),
        _req("prefix", _list(pa.string())),
        _opt("mc", pa.float64()),
        _req("visits", pa.int64()),
        _req("rollouts", pa.string()),
    ]
)


def tree_rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    encoded = [
        {**row, "rollouts": json.dumps(row["rollouts"], sort_keys=True, separators=(",", ":"))}
        for row in rows
    ]
    return _build(encoded, TREE_NODE_SCHEMA)


def tree_rows_from_table(table: pa.Table) -> list[dict[str, Any]]:
    return [{**row, "rollouts": json.loads(row["rollouts"])} for row in _rows(table, TREE_NODE_SCHEMA)]
