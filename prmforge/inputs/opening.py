"""Pick an input's format from its path and configuration, and build its row source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from prmforge.inputs.paths import check_input_path, field_name
from prmforge.inputs.rows import JsonArraySource, JsonlSource, RowSource, starts_with_bracket
from prmforge.inputs.tabular import DatasetsSource, ParquetSource
from prmforge.schemas.errors import ConfigError

Format = Literal["jsonl", "json", "parquet", "datasets"]
_JSON_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".jsonlines", ".json"})
_PARQUET_SUFFIXES: Final = frozenset({".parquet", ".pq"})


@dataclass(frozen=True, slots=True)
class Opened:
    """A checked input: its resolved path, its format, and the name rows carry as their source."""

    path: Path
    format: Format
    source: str
    stem: str


def resolve(path: Path, requested: str, position: int, kind: str, allowed: Sequence[Format]) -> Opened:
    """Check ``path`` for the ``requested`` format (``auto``: by directory / suffix / first character).

    ``json`` is a JSON array read whole; ``auto`` picks it for a ``.json`` file
    whose first character is ``[`` and JSON lines for other ``.json`` files.
    """
    if requested == "datasets":
        resolved = check_input_path(path, position, "directory")
        fmt: Format = "datasets"
    elif requested != "auto":
        resolved = check_input_path(path, position, "file")
        fmt = "json" if requested == "json" else "parquet" if requested == "parquet" else "jsonl"
    else:
        resolved = check_input_path(path, position, "any")
        fmt = _guess(resolved, path, position, allowed)
    if fmt not in allowed:
        shown = ", ".join(allowed)
        raise ConfigError(f"{field_name(position, 'format')}: {kind} inputs read {shown}, not {fmt}")
    return Opened(resolved, fmt, f"{kind}:{path.name}", path.stem if fmt != "datasets" else path.name)


def _guess(resolved: Path, path: Path, position: int, allowed: Sequence[Format]) -> Format:
    if resolved.is_dir():
        if "datasets" in allowed:
            return "datasets"
        raise ConfigError(f"{field_name(position)}: {path} is a directory, not a file")
    suffix = resolved.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    if suffix == ".json" and starts_with_bracket(resolved):
        return "json"
    if suffix in _JSON_SUFFIXES:
        return "jsonl"
    formats = ", ".join(f for f in allowed)
    raise ConfigError(
        f"{field_name(position, 'format')}: cannot tell the format of {path} from its suffix "
        f"{suffix or '(none)'!r}; set format to one of {formats}"
    )


def row_source(
    opened: Opened,
    position: int,
    offset: int,
    limit: int | None,
    wanted: Sequence[tuple[str, str]],
    optional: frozenset[str],
    split: str | None = None,
) -> RowSource:
    """The row source of a checked input; ``wanted`` columns are checked for Parquet and `datasets`."""
    if split is not None and opened.format != "datasets":
        raise ConfigError(f"{field_name(position, 'split')}: only used for a `datasets` directory")
    if opened.format == "jsonl":
        return JsonlSource(opened.path, opened.source, offset, limit)
    if opened.format == "json":
        return JsonArraySource(opened.path, opened.source, offset, limit, position)
    if opened.format == "parquet":
        return ParquetSource(opened.path, opened.source, offset, limit, position, wanted, optional)
    return DatasetsSource(opened.path, opened.source, offset, limit, position, split, wanted, optional)
