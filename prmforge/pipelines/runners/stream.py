"""A Parquet file written in pieces, renamed into place when whole (memory: one piece at a time)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prmforge.pipelines import tables
from prmforge.pipelines.runners.builddir import (
    BuildDir,
    FileEntry,
    cleaned_up_on_failure,
    commit_file,
    file_sha256,
    tmp_name,
)
from prmforge.schemas.arrow import ContentHasher


class ParquetStream:
    """Append tables of one record kind; :meth:`close` commits the file and returns its entry."""

    def __init__(self, build: BuildDir, path: Path, kind: str, schema: pa.Schema) -> None:
        self._build, self._path, self._kind = build, path, kind
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = tmp_name(path)
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
        self._hasher = ContentHasher(schema, tables.VOLATILE.get(kind, ()))
        self._rows = 0

    def write(self, table: pa.Table) -> None:
        try:
            with cleaned_up_on_failure(self._tmp, self._path.parent):
                self._writer.write_table(table)
        except OSError:
            self.abort()
            raise
        self._hasher.update(table)
        self._rows += table.num_rows

    def close(self) -> FileEntry:
        with cleaned_up_on_failure(self._tmp, self._path.parent):
            self._writer.close()
        commit_file(self._tmp, self._path)
        digest = self._hasher.hexdigest()
        return FileEntry(self._build.rel(self._path), self._rows, file_sha256(self._path), digest)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._writer.close()
        self._tmp.unlink(missing_ok=True)
