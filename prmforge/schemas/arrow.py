"""Arrow schemas for the records, exact record <-> table conversions, and content hashes.

Conventions:

- A column is nullable exactly where the record field may be ``None``; the
  conversions check it both ways and raise :class:`RowError` naming the
  column (or nested field, ``"cost.seconds"``) when a null sits where none may.
- ``meta`` mappings travel as a ``meta_json`` string column written with
  :func:`meta_to_json` (sorted keys, ASCII-only, so the bytes are
  deterministic and any Python string survives); JSON has no tuples, so a
  tuple inside ``meta`` comes back as a list.
- :func:`content_hash` hashes the rows, not the file: the same rows give the
  same hash whatever the Parquet encoding, chunking or row-group layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from prmforge.schemas.errors import RowError
from prmforge.schemas.records import (
    Cost,
    PRMExample,
    Problem,
    Rollout,
    SamplingParams,
    StepLabels,
    StepTruth,
    Vote,
)
from prmforge.schemas.validation import parse_domain, parse_split

PREVIEW_CHARS: Final = 512


def _req(name: str, dtype: pa.DataType) -> pa.Field:
    return pa.field(name, dtype, nullable=False)


def _opt(name: str, dtype: pa.DataType) -> pa.Field:
    return pa.field(name, dtype, nullable=True)


def _list(item: pa.DataType, *, nullable_items: bool = False) -> pa.DataType:
    return pa.list_(pa.field("item", item, nullable=nullable_items))


_STR, _I32, _I64, _F64, _BOOL = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()

SAMPLING_TYPE: Final = pa.struct([_req("temperature", _F64), _req("top_p", _F64), _req("max_tokens", _I64)])
TRUTH_TYPE: Final = pa.struct([_req("first_error", _I32), _req("step_correct", _list(_BOOL))])
COST_TYPE: Final = pa.struct(
    [
        _req("completions", _I64),
        _req("generated_tokens", _I64),
        _req("tool_calls", _I64),
        _req("seconds", _F64),
        _req("cached_completions", _I64),
        _req("prompt_tokens", _I64),
    ]
)
VOTE_TYPE: Final = pa.struct([_req("source", _STR), _opt("first_error", _I32)])

PROBLEM_SCHEMA: Final = pa.schema(
    [
        _req("problem_id", _STR),
        _req("domain", _STR),
        _req("question", _STR),
        _req("gold", _STR),
        _req("source", _STR),
        _req("meta_json", _STR),
    ]
)
ROLLOUT_SCHEMA: Final = pa.schema(
    [
        _req("rollout_id", _STR),
        _req("problem_id", _STR),
        _req("policy", _STR),
        _req("sampling", SAMPLING_TYPE),
        _req("seed", _I64),
        _req("text", _STR),
        _req("steps", _list(_STR)),
        _opt("final_answer", _STR),
        _opt("outcome", _BOOL),
        _req("prompt_tokens", _I64),
        _req("completion_tokens", _I64),
        _opt("truth", TRUTH_TYPE),
    ]
)
STEP_LABELS_SCHEMA: Final = pa.schema(
    [
        _req("source", _STR),
        _req("rollout_id", _STR),
        _req("values", _list(_F64, nullable_items=True)),
        _req("hard", _list(_BOOL, nullable_items=True)),
        _opt("first_error", _I32),
        _req("cost", COST_TYPE),
        _req("meta_json", _STR),
    ]
)
PRM_EXAMPLE_SCHEMA: Final = pa.schema(
    [
        _req("example_id", _STR),
        _req("problem_id", _STR),
        _req("prompt", _STR),
        _req("completions", _list(_STR)),
        _req("labels", _list(_BOOL)),
        _req("scores", _list(_F64, nullable_items=True)),
        _req("first_error", _I32),
        _req("votes", _list(VOTE_TYPE)),
        _req("agreement", _F64),
        _req("weight", _F64),
        _req("split", _STR),
        _req("gold", _STR),
        _opt("final_answer", _STR),
        _opt("outcome", _BOOL),
        _opt("truth_first_error", _I32),
        _opt("truth_step_correct", _list(_BOOL)),
    ]
)
QUARANTINE_SCHEMA: Final = pa.schema(
    [
        _req("stage", _STR),
        _req("source", _STR),
        _req("index", _I64),
        _req("field", _STR),
        _req("reason", _STR),
        _req("byte_length", _I64),
        _req("sha256", _STR),
        _req("preview", _STR),
    ]
)


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One row that a stage could not process: where it came from, why, and a fingerprint of it."""

    stage: str
    source: str
    index: int
    field: str
    reason: str
    byte_length: int
    sha256: str
    preview: str

    def summary(self, width: int = 100) -> str:
        """``stage: field: reason`` (the reason cut at ``width``): how rows are counted by reason."""
        return f"{self.stage}: {self.field}: {self.reason[:width]}"


def quarantine_entry(
    *, stage: str, source: str, index: int, field: str, reason: str, raw: bytes | str
) -> QuarantineEntry:
    """Describe a rejected raw row; ``preview`` is its first 512 characters, bad UTF-8 as ``\\xNN``."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return QuarantineEntry(
        stage=stage,
        source=source,
        index=index,
        field=field,
        reason=reason,
        byte_length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        preview=preview_text(data),
    )


def preview_text(raw: bytes) -> str:
    """The first 512 characters of ``raw`` decoded as UTF-8, invalid bytes shown as ``\\xNN``."""
    return raw[: 4 * PREVIEW_CHARS].decode("utf-8", "backslashreplace")[:PREVIEW_CHARS]


def meta_to_json(meta: Mapping[str, Any]) -> str:
    """Deterministic JSON for a ``meta`` mapping: sorted keys, ASCII only, compact."""
    return json.dumps(dict(meta), sort_keys=True, ensure_ascii=True, separators=(",", ":"))


# --- record -> table ----------------------------------------------------------------------------------


def problems_to_table(records: Sequence[Problem]) -> pa.Table:
    return _build([_with_meta_json(p) for p in records], PROBLEM_SCHEMA)


def rollouts_to_table(records: Sequence[Rollout]) -> pa.Table:
    return _build([_as_row(r) for r in records], ROLLOUT_SCHEMA)


def step_labels_to_table(records: Sequence[StepLabels]) -> pa.Table:
    return _build([_with_meta_json(s) for s in records], STEP_LABELS_SCHEMA)


def prm_examples_to_table(records: Sequence[PRMExample]) -> pa.Table:
    return _build([_as_row(e) for e in records], PRM_EXAMPLE_SCHEMA)


def quarantine_to_table(records: Sequence[QuarantineEntry]) -> pa.Table:
    return _build([_as_row(q) for q in records], QUARANTINE_SCHEMA)


def _as_row(record: Any) -> dict[str, Any]:
    """A record's fields as a row, nested records as dicts: ``dataclasses.asdict`` without its deep copy
    of every string and number (which made writing a build's final files take seconds)."""
    return {f.name: _as_value(getattr(record, f.name)) for f in dataclasses.fields(record)}


def _as_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _as_row(value)
    if isinstance(value, (tuple, list)) and value and dataclasses.is_dataclass(value[0]):
        return [_as_value(v) for v in value]
    return value


def _with_meta_json(record: Problem | StepLabels) -> dict[str, Any]:
    """The record's fields as a row, ``meta`` replaced by its ``meta_json`` string."""
    row = {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name != "meta"}
    if isinstance(record, StepLabels):
        row["cost"] = dataclasses.asdict(record.cost)
    return {**row, "meta_json": meta_to_json(record.meta)}


# --- table -> record ----------------------------------------------------------------------------------


def problems_from_table(table: pa.Table) -> list[Problem]:
    return [
        Problem(
            problem_id=r["problem_id"],
            domain=parse_domain(r["domain"]),
            question=r["question"],
            gold=r["gold"],
            source=r["source"],
            meta=json.loads(r["meta_json"]),
        )
        for r in _rows(table, PROBLEM_SCHEMA)
    ]


def rollouts_from_table(table: pa.Table) -> list[Rollout]:
    return [
        Rollout(
            rollout_id=r["rollout_id"],
            problem_id=r["problem_id"],
            policy=r["policy"],
            sampling=SamplingParams(**r["sampling"]),
            seed=r["seed"],
            text=r["text"],
            steps=tuple(r["steps"]),
            final_answer=r["final_answer"],
            outcome=r["outcome"],
            prompt_tokens=r["prompt_tokens"],
            completion_tokens=r["completion_tokens"],
            truth=None
            if r["truth"] is None
            else StepTruth(r["truth"]["first_error"], tuple(r["truth"]["step_correct"])),
        )
        for r in _rows(table, ROLLOUT_SCHEMA)
    ]


def step_labels_from_table(table: pa.Table) -> list[StepLabels]:
    return [
        StepLabels(
            source=r["source"],
            rollout_id=r["rollout_id"],
            values=tuple(r["values"]),
            hard=tuple(r["hard"]),
            first_error=r["first_error"],
            cost=Cost(**r["cost"]),
            meta=json.loads(r["meta_json"]),
        )
        for r in _rows(table, STEP_LABELS_SCHEMA)
    ]


def prm_examples_from_table(table: pa.Table) -> list[PRMExample]:
    return [
        PRMExample(
            example_id=r["example_id"],
            problem_id=r["problem_id"],
            prompt=r["prompt"],
            completions=tuple(r["completions"]),
            labels=tuple(r["labels"]),
            scores=tuple(r["scores"]),
            first_error=r["first_error"],
            votes=tuple(Vote(v["source"], v["first_error"]) for v in r["votes"]),
            agreement=r["agreement"],
            weight=r["weight"],
            split=parse_split(r["split"]),
            gold=r["gold"],
            final_answer=r["final_answer"],
            outcome=r["outcome"],
            truth_first_error=r["truth_first_error"],
            truth_step_correct=None if r["truth_step_correct"] is None else tuple(r["truth_step_correct"]),
        )
        for r in _rows(table, PRM_EXAMPLE_SCHEMA)
    ]


def quarantine_from_table(table: pa.Table) -> list[QuarantineEntry]:
    return [QuarantineEntry(**r) for r in _rows(table, QUARANTINE_SCHEMA)]


def _build(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=schema)
    _check_non_nullable(table)
    return table


def _rows(table: pa.Table, schema: pa.Schema) -> list[dict[str, Any]]:
    """``table``'s rows after selecting and casting its columns to ``schema`` (extra columns are ignored)."""
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            raise RowError(field.name, "column missing from the table")
        column = table.column(field.name)
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
            raise RowError(field.name, f"cannot read {column.type} as {field.type}: {err}") from None
    conformed = pa.Table.from_arrays(columns, schema=schema)
    _check_non_nullable(conformed)
    rows: list[dict[str, Any]] = conformed.to_pylist()
    return rows


def _check_non_nullable(table: pa.Table) -> None:
    for field in table.schema:
        for chunk in table.column(field.name).chunks:
            _check_array(chunk, field, field.name)


def _check_array(array: pa.Array, field: pa.Field, path: str) -> None:
    if array.null_count:
        if not field.nullable:
            raise RowError(path, f"{array.null_count} null value(s) in a non-nullable column")
        array = array.filter(array.is_valid())
    dtype = field.type
    if pa.types.is_struct(dtype):
        for i, child in enumerate(array.flatten()):
            _check_array(child, dtype.field(i), f"{path}.{dtype.field(i).name}")
    elif pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        _check_array(array.flatten(), dtype.value_field, path)


# --- content hash -------------------------------------------------------------------------------------


def content_hash(table: pa.Table, exclude: Collection[str] = ()) -> str:
    """sha256 over a canonical serialisation of ``table``'s rows, in its schema's column order.

    Covers the column names, a canonical spelling of their types (list field
    names, nullability, large/dictionary encodings do not count) and every
    row, floats by ``repr``. Chunking, row groups and Parquet encoding do not
    change it. ``exclude`` drops columns or nested struct fields by dotted
    path (``"cost.seconds"``, also through lists: ``"votes.source"``).
    """
    hasher = ContentHasher(table.schema, exclude)
    hasher.update(table)
    return hasher.hexdigest()


class ContentHasher:
    """:func:`content_hash` over tables fed in turn (one schema): the hash of their concatenation."""

    def __init__(self, schema: pa.Schema, exclude: Collection[str] = ()) -> None:
        self._drops = [tuple(path.split(".")) for path in exclude]
        header = []
        for field in schema:
            rest = [d[1:] for d in self._drops if d[0] == field.name]
            if () not in rest:
                header.append([field.name, _describe(field.type, rest, field.name)])
        unknown = [".".join(d) for d in self._drops if d[0] not in schema.names]
        if unknown:
            raise ValueError(f"exclude: no column {unknown[0]!r} in the table")
        self._kept = [name for name, _ in header]
        self._digest = hashlib.sha256(json.dumps(header).encode("ascii") + b"\n")
        self._rows = 0

    def update(self, table: pa.Table) -> None:
        for batch in table.select(self._kept).to_batches():
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for name, values in zip(self._kept, columns, strict=True):
                for drop in self._drops:
                    if drop[0] == name:
                        for value in values:
                            _drop(value, drop[1:])
            for row in zip(*columns, strict=True):
                self._digest.update(
                    json.dumps(list(row), default=_json_default, separators=(",", ":")).encode("ascii")
                )
                self._digest.update(b"\n")
        self._rows += table.num_rows

    def hexdigest(self) -> str:
        digest = self._digest.copy()
        digest.update(f"rows={self._rows}".encode("ascii"))
        return digest.hexdigest()


def _describe(dtype: pa.DataType, drops: list[tuple[str, ...]], path: str) -> str:
    """Canonical type spelling with the ``drops`` sub-paths removed; raises for paths that do not exist."""
    if pa.types.is_dictionary(dtype):
        return _describe(dtype.value_type, drops, path)
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype):
        return f"list<{_describe(dtype.value_type, drops, path)}>"
    if pa.types.is_struct(dtype):
        names = [dtype.field(i).name for i in range(dtype.num_fields)]
        for drop in drops:
            if drop[0] not in names:
                raise ValueError(f"exclude: {path!r} has no field {drop[0]!r}")
        parts = []
        for i, name in enumerate(names):
            rest = [d[1:] for d in drops if d[0] == name]
            if () not in rest:
                parts.append(f"{name}:{_describe(dtype.field(i).type, rest, f'{path}.{name}')}")
        return "struct<" + ",".join(parts) + ">"
    if drops:
        raise ValueError(f"exclude: {path!r} is a {dtype}, which has no fields")
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return "binary"
    return str(dtype)


def _drop(value: Any, path: tuple[str, ...]) -> None:
    """Remove ``path`` from a row value in place, descending through lists."""
    if isinstance(value, list):
        for item in value:
            _drop(item, path)
    elif isinstance(value, dict):
        if len(path) == 1:
            value.pop(path[0], None)
        else:
            _drop(value.get(path[0]), path[1:])


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return {type(value).__name__: str(value)}
