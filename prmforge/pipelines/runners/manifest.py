"""The typed manifest: what readers (stats, export, the registry, the Hub export) trust.

One reader, :meth:`Manifest.read`; nobody lists a build directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prmforge.pipelines.runners.builddir import BuildDir, FileEntry, StageCounts
from prmforge.schemas.errors import BuildStateError

MANIFEST_FORMAT = 2


@dataclass(frozen=True, slots=True)
class ManifestFile:
    stage: str
    shard: int
    path: str
    rows: int
    sha256: str
    content_hash: str

    @property
    def entry(self) -> FileEntry:
        return FileEntry(self.path, self.rows, self.sha256, self.content_hash)


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    config_hash: str
    num_shards: int
    content_hash: str
    splits: dict[str, int]
    stages: dict[str, StageCounts]
    sources: tuple[str, ...]
    verification: dict[str, dict[str, str]]
    files: tuple[ManifestFile, ...]
    dedup: dict[str, int] = field(default_factory=dict)

    def under(self, prefix: str) -> list[ManifestFile]:
        """The files whose path starts with ``prefix`` (``"data/train-"``, ``"quarantine/"``), in order."""
        return [f for f in self.files if f.path.startswith(prefix)]

    def records(self, build: BuildDir, prefix: str, kind: str) -> list[Any]:
        """The records of every listed file under ``prefix``, in order (``kind``: a table's record kind)."""
        from prmforge.pipelines import tables

        return [r for f in self.under(prefix) for r in tables.decode(kind, build.read_table(f.entry))]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = MANIFEST_FORMAT
        data["sources"] = list(self.sources)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            name=data["name"],
            config_hash=data["config_hash"],
            num_shards=int(data["num_shards"]),
            content_hash=data["content_hash"],
            splits={k: int(v) for k, v in data["splits"].items()},
            stages={k: StageCounts(**v) for k, v in data["stages"].items()},
            sources=tuple(data["sources"]),
            verification=dict(data["verification"]),
            files=tuple(ManifestFile(**f) for f in data["files"]),
            dedup={k: int(v) for k, v in data.get("dedup", {}).items()},
        )

    @classmethod
    def read(cls, root: Path) -> Manifest:
        """The manifest of the build in ``root``, or a clear error saying what is wrong."""
        if not root.exists():
            raise BuildStateError(f"{root}: does not exist")
        if not root.is_dir():
            raise BuildStateError(f"{root}: is not a directory (give a build directory)")
        path = BuildDir(root).manifest_file
        if not path.exists():
            raise BuildStateError(
                f"{root}: no manifest.json; it is not a finished build (rerun the build to resume it)"
            )
        try:
            data = json.loads(path.read_text())
            if data.get("format") != MANIFEST_FORMAT:
                raise BuildStateError(
                    f"{path}: written by another version of prmforge (format {data.get('format')}); "
                    "rebuild it with --restart"
                )
            return cls.from_json(data)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise BuildStateError(f"{path}: unreadable manifest ({err})") from None
