"""Row sources with a schema: one Parquet file, or a directory `datasets` loads offline.

Both read only the columns the parser needs (the payload of a row holds just
those) and check at open time that the file has them, so a misspelt column is
one configuration error rather than a quarantined row per row.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prmforge.inputs.paths import field_name, file_sha256, tree_files
from prmforge.inputs.rows import RawRow, RowRange, contiguous_ranges, encode_row, window
from prmforge.schemas.errors import ConfigError

DATASETS_HINT = "reading a `datasets` directory needs the datasets package: pip install 'datasets>=3'"


def check_columns(
    present: Sequence[str],
    wanted: Sequence[tuple[str, str]],
    optional: frozenset[str],
    position: int,
    what: str,
) -> list[str]:
    """The wanted columns that exist; ConfigError naming the config field of a required one that does not.

    ``wanted`` pairs a config field (``columns.question``) with a column name;
    a field in ``optional`` may be absent (its value is then unknown).
    """
    have = set(present)
    for config_field, column in wanted:
        if column not in have and config_field not in optional:
            shown = ", ".join(present) or "none"
            where = field_name(position, config_field)
            raise ConfigError(f"{where}: {what} has no column {column!r} (its columns: {shown})")
    return list(dict.fromkeys(column for _, column in wanted if column in have))


class ParquetSource:
    """One Parquet file; ``cursor`` is the row group holding a range's first row."""

    def __init__(
        self,
        path: Path,
        source: str,
        offset: int,
        limit: int | None,
        position: int,
        wanted: Sequence[tuple[str, str]],
        optional: frozenset[str],
    ) -> None:
        self._path, self._source, self._offset, self._limit = path, source, offset, limit
        try:
            with pq.ParquetFile(path) as handle:
                meta = handle.metadata
        except (pa.ArrowException, OSError) as err:
            raise ConfigError(
                f"{field_name(position)}: {path} is not a readable Parquet file: {err}"
            ) from None
        self._group_starts: list[int] = []
        total = 0
        for group in range(meta.num_row_groups):
            self._group_starts.append(total)
            total += meta.row_group(group).num_rows
        self._total = total
        names = list(meta.schema.to_arrow_schema().names)
        self._columns = check_columns(names, wanted, optional, position, f"Parquet file {path}")

    def _group_of(self, index: int) -> int:
        return bisect.bisect_right(self._group_starts, index) - 1

    def plan(self, shard_size: int) -> list[RowRange]:
        return contiguous_ranges(window(self._total, self._offset, self._limit), shard_size, self._group_of)

    def read(self, rng: RowRange) -> Iterator[RawRow]:
        stop = min(rng.stop, self._total)
        if rng.start >= stop:
            return
        first = self._group_of(rng.start)
        if rng.cursor is not None and rng.cursor != first:
            raise ConfigError(
                f"{self._source}: the file changed since it was planned (row {rng.start} is no longer "
                f"in row group {rng.cursor}); plan the input again"
            )
        last = self._group_of(stop - 1)
        with pq.ParquetFile(self._path) as handle:
            table = handle.read_row_groups(list(range(first, last + 1)), columns=self._columns)
        rows = table.slice(rng.start - self._group_starts[first], stop - rng.start).to_pylist()
        for k, row in enumerate(rows):
            yield RawRow(self._source, rng.start + k, encode_row(row))

    def digests(self) -> dict[str, str]:
        return {str(self._path): file_sha256(self._path)}


def _import_datasets(position: int) -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{field_name(position)}: {DATASETS_HINT}") from None
    return datasets


class DatasetsSource:
    """A directory `datasets` loads offline: ``save_to_disk`` output or a Hub-layout folder.

    ``save_to_disk`` directories (``state.json`` or ``dataset_dict.json``) are
    memory-mapped with ``load_from_disk``; any other directory goes through
    ``load_dataset(path)``, which resolves a Hub layout (``data/train-*.parquet``,
    a README with ``configs``) and converts it once into the `datasets` cache.
    The dataset is loaded on first use and kept for this reader's lifetime.
    """

    def __init__(
        self,
        path: Path,
        source: str,
        offset: int,
        limit: int | None,
        position: int,
        split: str | None,
        wanted: Sequence[tuple[str, str]],
        optional: frozenset[str],
    ) -> None:
        self._path, self._source, self._offset, self._limit = path, source, offset, limit
        self._position, self._split = position, split
        self._wanted, self._optional = wanted, optional
        self._dataset: Any = None
        self._columns: list[str] = []
        _import_datasets(position)

    def _load(self) -> Any:
        if self._dataset is not None:
            return self._dataset
        datasets = _import_datasets(self._position)
        where = f"{field_name(self._position)}: {self._path}"
        try:
            if (self._path / "state.json").is_file() or (self._path / "dataset_dict.json").is_file():
                loaded = datasets.load_from_disk(str(self._path))
            else:
                loaded = datasets.load_dataset(str(self._path))
        except (ValueError, OSError, datasets.exceptions.DatasetsError) as err:
            raise ConfigError(f"{where} cannot be loaded by `datasets`: {err}") from None
        dataset = self._pick_split(loaded, datasets)
        self._columns = check_columns(
            list(dataset.column_names), self._wanted, self._optional, self._position, f"dataset {self._path}"
        )
        self._dataset = dataset.select_columns(self._columns)
        return self._dataset

    def _pick_split(self, loaded: Any, datasets: Any) -> Any:
        where = field_name(self._position, "split")
        if not isinstance(loaded, datasets.DatasetDict):
            if self._split is not None and str(loaded.split) != self._split:
                raise ConfigError(f"{where}: {self._path} holds one dataset without splits; remove `split`")
            return loaded
        names = list(loaded.keys())
        if self._split is not None:
            if self._split not in loaded:
                raise ConfigError(f"{where}: no split {self._split!r} in {self._path} (splits: {names})")
            return loaded[self._split]
        if len(names) == 1:
            return loaded[names[0]]
        if "train" in loaded:
            return loaded["train"]
        raise ConfigError(f"{where}: {self._path} has splits {names}; choose one with `split`")

    def plan(self, shard_size: int) -> list[RowRange]:
        return contiguous_ranges(window(len(self._load()), self._offset, self._limit), shard_size)

    def read(self, rng: RowRange) -> Iterator[RawRow]:
        dataset = self._load()
        stop = min(rng.stop, len(dataset))
        if rng.start >= stop:
            return
        block = dataset[rng.start : stop]
        for k in range(stop - rng.start):
            row = {column: block[column][k] for column in self._columns}
            yield RawRow(self._source, rng.start + k, encode_row(row))

    def digests(self) -> dict[str, str]:
        return {str(path): file_sha256(path) for path in tree_files(self._path)}
