"""A build's training rows in the Hugging Face Hub dataset layout, in a local folder.

::

    LOCAL_DIR/README.md                               YAML header (configs, dataset_info, license...) + card
    LOCAL_DIR/data/train-00000-of-00002.parquet        one Hub shard per data file of the build
    LOCAL_DIR/data/validation-00000-of-00001.parquet

The shards keep the build's partition (``split.rows_per_file``) and its row order; their columns are
:data:`HUB_COLUMNS`: TRL's stepwise triple first, then the prmforge columns worth keeping (the file
already says the split, so ``split`` is dropped). The folder is written into a temporary sibling and
renamed into place, so it is never half-written, and the same build gives the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from prmforge.pipelines.runners.builddir import BuildDir, atomic_write_bytes, file_sha256
from prmforge.pipelines.runners.manifest import Manifest
from prmforge.schemas.arrow import PRM_EXAMPLE_SCHEMA
from prmforge.schemas.errors import BuildStateError

__all__ = ["HUB_COLUMNS", "SPLITS", "HubShard", "hub_features", "hub_schema", "write_hub_folder"]

SPLITS: Final = ("train", "validation", "test")
HUB_COLUMNS: Final = (
    "prompt", "completions", "labels",  # TRL stepwise supervision
    "example_id", "problem_id", "scores", "first_error", "votes", "agreement", "weight",
    "gold", "final_answer", "outcome", "truth_first_error", "truth_step_correct",
)  # fmt: skip
_KEEP: Final = frozenset({"README.md", "data"})


@dataclass(frozen=True, slots=True)
class HubShard:
    split: str
    path: str  # relative to the folder: data/{split}-{i:05d}-of-{n:05d}.parquet
    rows: int
    num_bytes: int  # the Arrow table's in-memory size (dataset_info's num_bytes)
    file_bytes: int
    sha256: str


def hub_schema() -> pa.Schema:
    return pa.schema([PRM_EXAMPLE_SCHEMA.field(name) for name in HUB_COLUMNS])


def _feature(dtype: pa.DataType) -> dict[str, Any]:
    if pa.types.is_list(dtype):
        item = dtype.value_type
        if pa.types.is_struct(item):
            return {"list": [{"name": f.name, **_feature(f.type)} for f in item]}
        return {"list": _feature(item)["dtype"]}
    names = {pa.string(): "string", pa.bool_(): "bool", pa.int32(): "int32", pa.int64(): "int64"}
    return {"dtype": names.get(dtype, "float64" if dtype == pa.float64() else str(dtype))}


def hub_features() -> list[dict[str, Any]]:
    """``dataset_info.features`` as the ``datasets`` library writes it for :func:`hub_schema`."""
    return [{"name": f.name, **_feature(f.type)} for f in hub_schema()]


def _write_shard(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=10_000)


def _check_target(target: Path) -> None:
    """Refuse to replace anything but a previous Hub export (README.md and data/ only)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise BuildStateError(f"{target}: exists and is not a directory")
    extra = sorted(p.name for p in target.iterdir() if p.name not in _KEEP)
    if extra:
        raise BuildStateError(
            f"{target}: exists and holds {', '.join(extra[:3])}, which a Hub export does not write: "
            "refusing to replace it (give an empty or new --output)"
        )


def shards_of(root: Path, manifest: Manifest, staging: Path) -> list[HubShard]:
    """Write each split's shards into ``staging``, from the data files the manifest lists (verified)."""
    build = BuildDir(root)
    schema = hub_schema()
    out = []
    for split in SPLITS:
        files = [f for f in manifest.under(f"data/{split}-") if f.rows > 0]
        for i, f in enumerate(files):
            if file_sha256(root / f.path) != f.sha256:
                raise BuildStateError(f"{root / f.path}: differs from the manifest (changed after the build)")
            table = build.read_table(f.entry).select(list(HUB_COLUMNS)).cast(schema)
            rel = f"data/{split}-{i:05d}-of-{len(files):05d}.parquet"
            _write_shard(table, staging / rel)
            size = (staging / rel).stat().st_size
            out.append(HubShard(split, rel, table.num_rows, table.nbytes, size, file_sha256(staging / rel)))
    return out


def write_hub_folder(root: Path, target: Path, card: Callable[[list[HubShard]], str]) -> list[HubShard]:
    """Write the Hub layout of the build in ``root`` into ``target`` atomically; returns its shards.

    ``card(shards) -> str`` renders README.md once the shards' sizes are known.
    """
    manifest = Manifest.read(root)
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        shards = shards_of(root, manifest, staging)
        if not shards:
            raise BuildStateError(f"{root}: the build has no training rows to export")
        atomic_write_bytes(staging / "README.md", card(shards).encode("utf-8"))
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return shards


def _swap(staging: Path, target: Path) -> None:
    """Rename ``staging`` onto ``target``; a previous export is moved aside first and then deleted."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old)


def folder_digest(folder: Path) -> str:
    """sha256 over every file's relative path and bytes (what "the same export" means in tests and logs)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()
