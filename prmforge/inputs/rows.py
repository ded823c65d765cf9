"""Row sources: plan an input file into row ranges, then read one range at a time.

A row's ``index`` is its 0-based position in the file: the line number for
JSON lines (blank lines are skipped, not rows, but keep their number), the
element for a JSON array, the row for Parquet and `datasets`. ``offset`` is
such an index; ``limit`` counts rows.

Planning keeps one :class:`RowRange` per shard and never the rows. Reading a
range touches only that slice where the format allows it: a JSONL range seeks
to the byte offset of its first row, a Parquet range reads only the row groups
that hold it. A JSON array cannot be sliced without parsing it, so it is read
whole (once per reader) — use JSON lines or Parquet for large files.
"""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from prmforge.inputs.paths import file_sha256
from prmforge.schemas.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RowRange:
    """A shard's slice of one input: rows with ``start <= index < stop``; cheap to pickle, no rows inside.

    ``cursor`` is a seek hint: the byte offset of row ``start`` for JSONL, the
    index of the row group holding it for Parquet, None otherwise.
    """

    start: int
    stop: int
    cursor: int | None


@dataclass(frozen=True, slots=True)
class RawRow:
    """One row as read: JSONL line bytes, or the JSON encoding of a JSON-array, Parquet or `datasets` row."""

    source: str
    index: int
    payload: bytes


class RowSource(Protocol):
    """What every input format provides to the problem and rollout readers."""

    def plan(self, shard_size: int) -> list[RowRange]: ...

    def read(self, rng: RowRange) -> Iterator[RawRow]: ...

    def digests(self) -> dict[str, str]: ...


def group_ranges(rows: Iterable[tuple[int, int | None]], shard_size: int) -> list[RowRange]:
    """One range per ``shard_size`` consecutive rows of ``(index, cursor)``; the cursor of each first row."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ranges: list[RowRange] = []
    first: tuple[int, int | None] | None = None
    last = -1
    count = 0
    for index, cursor in rows:
        if first is None:
            first = (index, cursor)
        last = index
        count += 1
        if count == shard_size:
            ranges.append(RowRange(first[0], last + 1, first[1]))
            first, count = None, 0
    if first is not None:
        ranges.append(RowRange(first[0], last + 1, first[1]))
    return ranges


def contiguous_ranges(
    rows: range, shard_size: int, cursor_of: Callable[[int], int | None] = lambda _: None
) -> list[RowRange]:
    """:func:`group_ranges` for rows without gaps (JSON arrays, Parquet, `datasets`): no loop per row."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [
        RowRange(start, min(start + shard_size, rows.stop), cursor_of(start))
        for start in range(rows.start, rows.stop, shard_size)
    ]


def window(total: int, offset: int, limit: int | None) -> range:
    """The row indices an input reads out of ``total`` rows."""
    stop = total if limit is None else min(total, offset + limit)
    return range(offset, max(offset, stop))


def _jsonable(value: object) -> object:
    """Values JSON has no type for: dates in ISO 8601, bytes as UTF-8 (else hex), the rest as text."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, decimal.Decimal | datetime.timedelta):
        return str(value)
    return repr(value)


def encode_row(row: object) -> bytes:
    """The JSON encoding of a decoded row, the payload a parser decodes again."""
    return json.dumps(row, ensure_ascii=False, default=_jsonable).encode("utf-8")


class JsonlSource:
    """JSON lines, one object per line."""

    def __init__(self, path: Path, source: str, offset: int, limit: int | None) -> None:
        self._path, self._source, self._offset, self._limit = path, source, offset, limit

    def _rows(self, handle: BinaryIO, index: int, position: int) -> Iterator[tuple[int, int, bytes]]:
        """``(line number, byte offset, bytes)`` of each non-blank line from the handle's position on."""
        for line in handle:
            raw = line.rstrip(b"\r\n")
            if raw.strip():
                yield index, position, raw
            index += 1
            position += len(line)

    def _window(self, rows: Iterator[tuple[int, int, bytes]]) -> Iterator[tuple[int, int, bytes]]:
        taken = 0
        for row in rows:
            if row[0] < self._offset:
                continue
            if self._limit is not None and taken >= self._limit:
                return
            taken += 1
            yield row

    def plan(self, shard_size: int) -> list[RowRange]:
        with self._path.open("rb") as handle:
            rows = self._window(self._rows(handle, 0, 0))
            return group_ranges(((index, position) for index, position, _ in rows), shard_size)

    def read(self, rng: RowRange) -> Iterator[RawRow]:
        with self._path.open("rb") as handle:
            index, position = 0, 0
            if rng.cursor is not None and rng.cursor > 0:
                handle.seek(rng.cursor - 1)
                if handle.read(1) != b"\n":
                    raise ConfigError(
                        f"{self._source}: the file changed since it was planned (row {rng.start} no longer "
                        f"starts at byte {rng.cursor}); plan the input again"
                    )
                index, position = rng.start, rng.cursor
            for row_index, _, raw in self._rows(handle, index, position):
                if row_index >= rng.stop:
                    return
                if row_index >= rng.start:
                    yield RawRow(self._source, row_index, raw)

    def digests(self) -> dict[str, str]:
        return {str(self._path): file_sha256(self._path)}


class JsonArraySource:
    """A JSON array of objects, parsed whole once (JSON arrays are not streamed)."""

    def __init__(self, path: Path, source: str, offset: int, limit: int | None, position: int) -> None:
        self._path, self._source, self._offset, self._limit = path, source, offset, limit
        self._position = position
        self._items: Sequence[object] | None = None

    def _load(self) -> Sequence[object]:
        if self._items is None:
            where = f"inputs.{self._position}.path: {self._path}"
            try:
                value = json.loads(self._path.read_bytes().decode("utf-8").removeprefix("\ufeff"))
            except UnicodeDecodeError as err:
                raise ConfigError(f"{where} is not UTF-8 (byte offset {err.start})") from None
            except (json.JSONDecodeError, RecursionError) as err:
                raise ConfigError(f"{where} is not valid JSON: {err}") from None
            if not isinstance(value, list):
                raise ConfigError(f"{where} holds a JSON {type(value).__name__}, not an array of rows")
            self._items = value
        return self._items

    def plan(self, shard_size: int) -> list[RowRange]:
        return contiguous_ranges(window(len(self._load()), self._offset, self._limit), shard_size)

    def read(self, rng: RowRange) -> Iterator[RawRow]:
        items = self._load()
        for index in range(rng.start, min(rng.stop, len(items))):
            yield RawRow(self._source, index, encode_row(items[index]))

    def digests(self) -> dict[str, str]:
        return {str(self._path): file_sha256(self._path)}


def starts_with_bracket(path: Path) -> bool:
    """Whether a file's first non-whitespace character (after a byte-order mark) is '['."""
    with path.open("rb") as handle:
        head = handle.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"[")


class RowReader:
    """What the problem and rollout readers share: planning, reading and digests are the row source's."""

    def __init__(self, rows: RowSource, source: str) -> None:
        self._rows = rows
        self.source = source

    def plan(self, shard_size: int) -> list[RowRange]:
        """One range per ``shard_size`` rows (within offset/limit); streams the file once, keeps no rows."""
        return self._rows.plan(shard_size)

    def read(self, rng: RowRange) -> Iterator[RawRow]:
        """The rows of one range, reading only that slice of the file (a JSON array is read whole once)."""
        return self._rows.read(rng)

    def digests(self) -> dict[str, str]:
        """``{absolute path: sha256}`` of every file this input reads."""
        return self._rows.digests()
