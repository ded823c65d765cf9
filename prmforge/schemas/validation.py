"""Turn user-supplied rows into records, or say exactly what is wrong with them.

Every failure is a :class:`~prmforge.schemas.errors.RowError` whose ``field``
names the offending field (``"<row>"`` for the row as a whole) and whose
``reason`` a user can act on; the runner quarantines the row with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, get_args

from prmforge.schemas.errors import RowError
from prmforge.schemas.records import Domain, Problem, Split

ROW: Final = "<row>"
DEFAULT_MAX_QUESTION_BYTES: Final = 65536
DOMAINS: Final[tuple[Domain, ...]] = get_args(Domain)
SPLITS: Final[tuple[Split, ...]] = get_args(Split)

_REQUIRED: Final = ("problem_id", "domain", "question", "gold", "source")
_OPTIONAL: Final = ("meta",)


def type_name(value: object) -> str:
    """The JSON name of a value's type, as a user who wrote the JSON would call it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def parse_domain(value: object, field: str = "domain") -> Domain:
    """``value`` as a :data:`Domain`, or a RowError listing the allowed values."""
    for domain in DOMAINS:
        if value == domain:
            return domain
    allowed = ", ".join(repr(d) for d in DOMAINS)
    raise RowError(field, f"must be one of {allowed}; found {value!r}")


def parse_split(value: object, field: str = "split") -> Split:
    """``value`` as a :data:`Split`, or a RowError listing the allowed values."""
    for split in SPLITS:
        if value == split:
            return split
    allowed = ", ".join(repr(s) for s in SPLITS)
    raise RowError(field, f"must be one of {allowed}; found {value!r}")


def problem_from_row(
    row: Mapping[str, object], *, max_question_bytes: int = DEFAULT_MAX_QUESTION_BYTES
) -> Problem:
    """Validate one user row (a decoded JSON object) and build a :class:`Problem`.

    ``problem_id``, ``domain``, ``question``, ``gold`` and ``source`` are
    required strings; ``meta`` is an optional JSON object (default ``{}``).
    Unknown fields are rejected rather than silently dropped: put extra data
    under ``meta``. ``problem_id``, ``question`` and ``gold`` must not be blank.
    """
    unknown = sorted(set(row) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        allowed = ", ".join(_REQUIRED + _OPTIONAL)
        raise RowError(unknown[0], f"unknown field (allowed: {allowed}); put extra data under 'meta'")
    problem_id, domain_text, question, gold, source = (string_field(row, name) for name in _REQUIRED)
    for name, value in (("problem_id", problem_id), ("question", question), ("gold", gold)):
        if not value.strip():
            raise RowError(name, "is empty")
    size = len(question.encode("utf-8"))
    if size > max_question_bytes:
        raise RowError("question", f"is {size} bytes, above the limit of {max_question_bytes} bytes")
    return Problem(
        problem_id=problem_id,
        domain=parse_domain(domain_text),
        question=question,
        gold=gold,
        source=source,
        meta=_meta(row),
    )


def decode_json_line(raw: bytes) -> dict[str, Any]:
    """Decode one JSONL line (a leading UTF-8 byte-order mark is allowed) into a JSON object.

    Raises RowError("<row>", ...) for invalid UTF-8 (with the byte offset),
    invalid JSON (with the position json reports), nesting too deep to parse,
    a key given twice, or a value that is not an object.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.end].hex(" ")
        raise RowError(ROW, f"invalid UTF-8 at byte offset {err.start} (bytes {bad}): {err.reason}") from None
    text = text.removeprefix("\ufeff")
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno} (char {err.pos})"
        raise RowError(ROW, f"invalid JSON at {where}: {err.msg}") from None
    except RecursionError:
        raise RowError(ROW, "invalid JSON: nested too deeply to parse") from None
    except ValueError as err:  # integers longer than sys.get_int_max_str_digits(), duplicate keys
        raise RowError(ROW, f"invalid JSON: {err}") from None
    if not isinstance(value, dict):
        raise RowError(ROW, f"expected a JSON object, found {type_name(value)}")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def string_field(row: Mapping[str, object], name: str) -> str:
    """A required string field; RowError naming it when missing, not a string or not encodable."""
    if name not in row:
        raise RowError(name, "missing required field")
    value = row[name]
    if not isinstance(value, str):
        raise RowError(name, f"expected a string, found {type_name(value)}")
    _check_encodable(name, value)
    return value


def _meta(row: Mapping[str, object]) -> dict[str, Any]:
    value = row.get("meta", {})
    if not isinstance(value, Mapping):
        raise RowError("meta", f"expected an object, found {type_name(value)}")
    try:
        text = json.dumps(dict(value), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise RowError("meta", f"is not JSON-serialisable: {err}") from None
    _check_encodable("meta", text)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _check_encodable(name: str, value: str) -> None:
    """Reject lone surrogates (JSON allows "\\ud800"; Arrow and Parquet need valid UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RowError(
            name, f"contains an unpaired surrogate {value[err.start]!r} at character {err.start}"
        ) from None
