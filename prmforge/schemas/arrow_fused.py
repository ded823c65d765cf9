"""Arrow schema and exact conversions of :class:`~prmforge.schemas.records.FusedLabels`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pyarrow as pa

from prmforge.schemas.arrow import VOTE_TYPE, _build, _list, _opt, _req, _rows
from prmforge.schemas.records import FusedLabels, Vote

FUSED_SCHEMA: Final = pa.schema(
    [
        _req("rollout_id", pa.string()),
        _req("rule", pa.string()),
        _opt("first_error", pa.int32()),
        _req("scores", _list(pa.float64(), nullable_items=True)),
        _req("votes", _list(VOTE_TYPE)),
        _req("agreement", pa.float64()),
        _req("reason", pa.string()),
    ]
)


def fused_to_table(records: Sequence[FusedLabels]) -> pa.Table:
    rows = [
        {
            "rollout_id": f.rollout_id,
            "rule": f.rule,
            "first_error": f.first_error,
            "scores": list(f.scores),
            "votes": [{"source": v.source, "first_error": v.first_error} for v in f.votes],
            "agreement": f.agreement,
            "reason": f.reason,
        }
        for f in records
    ]
    return _build(rows, FUSED_SCHEMA)


def fused_from_table(table: pa.Table) -> list[FusedLabels]:
    return [
        FusedLabels(
            rollout_id=r["rollout_id"],
            rule=r["rule"],
            first_error=r["first_error"],
            scores=tuple(r["scores"]),
            votes=tuple(Vote(v["source"], v["first_error"]) for v in r["votes"]),
            agreement=r["agreement"],
            reason=r["reason"],
        )
        for r in _rows(table, FUSED_SCHEMA)
    ]
