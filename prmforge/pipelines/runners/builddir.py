"""A build's directory: atomic shard commits, completion markers and the manifest.

Layout::

    OUT/build.json                       config, config hash, shard count
    OUT/cache.sqlite                     the request cache
    OUT/stages/<stage>/shard-00003.parquet
    OUT/quarantine/<stage>/shard-00003.parquet
    OUT/excluded/<stage>/shard-00003.parquet   rows left out by decision (an undecided fused label)
    OUT/markers/<stage>/shard-00003.json   written last: the stage's shard is committed
    OUT/markers/<stage>/global.json        a global stage (dedup, write) is committed
    OUT/data/<split>-00000-of-00002.parquet   written by the global `write` stage
    OUT/manifest.json                    what readers trust: files, rows, hashes
    OUT/README.md                        the dataset card

Every file is written to a temporary name in its final directory, flushed and
renamed into place, so a killed build leaves no truncated file under a final
name. A marker is written only after its files are in place, and lists their
byte hashes, the stage's config hash and the run that wrote it: a marker whose
files do not verify, or that another configuration of the stage wrote, is
treated as absent.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from prmforge.schemas.errors import BuildStateError

BUILD_FORMAT = 2
GLOBAL = -1  # the shard index of a global stage's marker
# Everything a build writes into its directory; `--restart` deletes these and nothing else.
BUILD_ENTRIES = (
    "build.json", "manifest.json", "README.md", "cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm",
    "cache.sqlite.lock", "stages", "quarantine", "excluded", "markers", "data", "trees", "poisoned",
    "report.html", ".beam",
)  # fmt: skip
SET_ASIDE = "cache.sqlite.corrupt-"  # a corrupt cache renamed aside by the request cache (kept, not reused)
_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class StageCounts:
    """Rows a stage saw for one shard: ``rows_in == accepted + quarantined``."""

    rows_in: int
    accepted: int
    quarantined: int
    rows_out: int
    excluded: int = 0

    def __add__(self, other: StageCounts) -> StageCounts:
        """Totals over shards (conservation holds for sums too)."""
        return StageCounts(
            self.rows_in + other.rows_in,
            self.accepted + other.accepted,
            self.quarantined + other.quarantined,
            self.rows_out + other.rows_out,
            self.excluded + other.excluded,
        )

    def __post_init__(self) -> None:
        if self.rows_in != self.accepted + self.quarantined:
            raise ValueError(
                f"stage conservation violated: in={self.rows_in} accepted={self.accepted} "
                f"quarantined={self.quarantined}"
            )


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # relative to the build directory
    rows: int
    sha256: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class Marker:
    stage: str
    shard: int
    counts: StageCounts
    files: tuple[FileEntry, ...]
    config_hash: str
    run_id: str
    summary: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # upstream stage -> content hash it was made from

    @property
    def records_hash(self) -> str:
        """The content hash of the stage's own records file (what downstream stages were made from)."""
        return next((f.content_hash for f in self.files if f.path.startswith("stages/")), "")

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "shard": self.shard,
            "counts": asdict(self.counts),
            "files": [asdict(f) for f in self.files],
            "config_hash": self.config_hash,
            "run_id": self.run_id,
            "summary": self.summary,
            "inputs": self.inputs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Marker:
        return cls(
            stage=data["stage"],
            shard=int(data["shard"]),
            counts=StageCounts(**data["counts"]),
            files=tuple(FileEntry(**f) for f in data["files"]),
            config_hash=str(data["config_hash"]),
            run_id=str(data["run_id"]),
            summary={str(k): int(v) for k, v in data.get("summary", {}).items()},
            inputs={str(k): str(v) for k, v in data.get("inputs", {}).items()},
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")


def disk_full(err: OSError, where: Path) -> BuildStateError:
    """The error a full disk (or quota) becomes: it names the directory, and resuming is safe."""
    return BuildStateError(
        f"{where}: no space left on the device ({os.strerror(err.errno or errno.ENOSPC)}); nothing "
        "half-written was committed: free some space and rerun to resume"
    )


@contextmanager
def cleaned_up_on_failure(tmp: Path, where: Path) -> Iterator[None]:
    """Around writing a temporary file: on an OS error the file is removed, and a full disk (or quota)
    becomes :func:`disk_full` naming ``where``."""
    try:
        yield
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in _FULL:
            raise disk_full(err, where) from None
        raise


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    with cleaned_up_on_failure(tmp, path.parent):
        tmp.write_bytes(data)
        _fsync(tmp)
        os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    with cleaned_up_on_failure(tmp, path.parent):
        pq.write_table(table, tmp, compression="zstd")
        _fsync(tmp)
        os.replace(tmp, path)


def commit_file(tmp: Path, path: Path) -> None:
    """Flush a finished temporary file and rename it into place."""
    with cleaned_up_on_failure(tmp, path.parent):
        _fsync(tmp)
        os.replace(tmp, path)


class BuildDir:
    """Paths, commits and verification for one build directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_handle: TextIO | None = None
        self._verified: dict[Path, tuple[tuple[int, int], ...]] = {}
        self.grown: list[str] = []

    # -- paths ---------------------------------------------------------------
    @property
    def build_file(self) -> Path:
        return self.root / "build.json"

    @property
    def manifest_file(self) -> Path:
        return self.root / "manifest.json"

    @property
    def cache_file(self) -> Path:
        return self.root / "cache.sqlite"

    def stage_file(self, stage: str, shard: int) -> Path:
        return self.root / "stages" / stage / f"shard-{shard:05d}.parquet"

    def quarantine_file(self, stage: str, shard: int) -> Path:
        return self.root / "quarantine" / stage / f"shard-{shard:05d}.parquet"

    def excluded_file(self, stage: str, shard: int) -> Path:
        return self.root / "excluded" / stage / f"shard-{shard:05d}.parquet"

    def artifact_file(self, kind: str, stage: str, shard: int) -> Path:
        """A stage's side table: ``trees/annotate-omegaprm/shard-00003.parquet``."""
        return self.root / f"{kind}s" / stage / f"shard-{shard:05d}.parquet"

    def marker_file(self, stage: str, shard: int) -> Path:
        name = "global.json" if shard == GLOBAL else f"shard-{shard:05d}.json"
        return self.root / "markers" / stage / name

    def poison_file(self, shard: int) -> Path:
        return self.root / "poisoned" / f"shard-{shard:05d}.json"

    def global_file(self, stage: str, name: str) -> Path:
        return self.root / "stages" / stage / name

    def data_file(self, split: str, index: int, count: int) -> Path:
        return self.root / "data" / f"{split}-{index:05d}-of-{count:05d}.parquet"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # -- build identity ------------------------------------------------------
    def open(
        self,
        config_json: dict[str, Any],
        config_hash: str,
        num_shards: int,
        restart: bool,
        inputs: dict[str, str] | None = None,
        grow: Callable[[dict[str, Any]], list[str] | None] | None = None,
    ) -> bool:
        """Create the directory or check that it belongs to this build. Returns True when resuming.

        ``inputs`` maps each input file to its sha256: a resumed build whose input files changed is
        refused, as is one whose configuration changed, unless ``grow`` (given the stored config)
        accepts the change (it names the sources the change adds: ``self.grown``). ``restart``
        discards a previous build (only a directory holding a ``build.json``; anything else is never
        deleted). Holds an exclusive lock
        on ``OUT/.lock`` until :meth:`close`, so two builds never write the same directory at once.
        """
        if self.root.exists() and not self.root.is_dir():
            raise BuildStateError(f"{self.root}: exists and is not a directory")
        for parent in self.root.parents:
            if parent.exists() and not parent.is_dir():
                raise BuildStateError(f"{self.root}: cannot be created, {parent} is a file")
        self.root.mkdir(parents=True, exist_ok=True)
        is_build = self.build_file.exists()
        leftovers = not is_build and self._only_build_entries()
        if not is_build and not leftovers:
            raise BuildStateError(
                f"{self.root} exists, is not empty and holds no build.json: refusing to write"
                + (" or to delete it" if restart else "")
            )
        self._lock()
        if (restart and is_build) or leftovers:
            # A first run killed before build.json was committed left only its own entries, none of
            # them verifiable without it: start afresh (its half-written .build.json.tmp-* included).
            self._discard()
            self.sweep_temporaries()
        elif is_build:
            self._check_same_build(config_hash, num_shards, inputs or {}, grow)
            self.sweep_temporaries()
            return True
        atomic_write_json(
            self.build_file,
            {
                "format": BUILD_FORMAT,
                "config": config_json,
                "config_hash": config_hash,
                "num_shards": num_shards,
                "inputs": inputs or {},
            },
        )
        return False

    def _only_build_entries(self) -> bool:
        names = {p.name for p in self.root.iterdir()} - {".lock"}
        return all(n in BUILD_ENTRIES or n.startswith((".build.json.tmp-", SET_ASIDE)) for n in names)

    def _check_same_build(
        self,
        config_hash: str,
        num_shards: int,
        inputs: dict[str, str],
        grow: Callable[[dict[str, Any]], list[str] | None] | None,
    ) -> None:
        existing = self.read_build()
        if existing.get("config_hash") != config_hash:
            added = grow(existing.get("config", {})) if grow is not None else None
            if added is None:
                raise BuildStateError(
                    f"{self.root} holds a build of a different configuration "
                    f"(config hash {existing.get('config_hash', '?')[:12]} != {config_hash[:12]}); only "
                    "adding annotators and changing `fuse:` or `split:` change a build in place: use "
                    "another --output or pass --restart to discard it"
                )
            self.grown = added
        changed = sorted(
            k
            for k in set(inputs) | set(existing.get("inputs", {}))
            if inputs.get(k) != existing.get("inputs", {}).get(k)
        )
        if changed:
            raise BuildStateError(
                f"{self.root}: input file(s) changed since this build started: {changed}; use --restart"
            )
        if existing.get("num_shards") != num_shards:
            raise BuildStateError(
                f"{self.root}: shard count changed ({existing.get('num_shards')} -> {num_shards}); "
                "the input changed since this build started: use --restart"
            )

    def _discard(self) -> None:
        """Delete what a build wrote here (and only that), keeping the lock file."""
        set_aside = [p.name for p in self.root.iterdir() if p.name.startswith(SET_ASIDE)]
        for name in (*BUILD_ENTRIES, *set_aside):
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _lock(self) -> None:
        handle = (self.root / ".lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise BuildStateError(f"{self.root}: another build is writing this directory") from None
        self._lock_handle = handle

    def close(self) -> None:
        """Release the build lock."""
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def sweep_temporaries(self) -> int:
        """Delete temporary files a killed run left behind; they were never committed.

        A file may vanish between the listing and the unlink (a worker of a killed run renaming it):
        that is not an error.
        """
        count = 0
        for path in self.root.rglob(".*.tmp-*"):
            try:
                if path.is_file():
                    path.unlink()
                    count += 1
            except FileNotFoundError:
                continue
        return count

    def record_config(self, config_json: dict[str, Any], config_hash: str) -> None:
        """After a build grew: build.json names the grown configuration."""
        data = self.read_build()
        data.update({"config": config_json, "config_hash": config_hash})
        atomic_write_json(self.build_file, data)

    def read_build(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.build_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise BuildStateError(f"{self.build_file}: unreadable ({err})") from None
        return data

    # -- commits -------------------------------------------------------------
    def commit(
        self,
        stage: str,
        shard: int,
        counts: StageCounts,
        tables: list[tuple[Path, pa.Table, str]],
        config_hash: str,
        run_id: str,
        inputs: dict[str, str] | None = None,
    ) -> Marker:
        """Write each (path, table, content_hash) atomically, then the marker naming the config, the run
        and the content hashes of the inputs the stage was computed from."""
        entries = [self.write_table(path, table, content_hash) for path, table, content_hash in tables]
        return self.commit_marker(stage, shard, counts, entries, config_hash, run_id, inputs=inputs)

    def write_table(self, path: Path, table: pa.Table, content_hash: str) -> FileEntry:
        """One file, atomically; it counts only once a marker names it."""
        atomic_write_parquet(path, table)
        return FileEntry(self.rel(path), table.num_rows, file_sha256(path), content_hash)

    def commit_marker(
        self,
        stage: str,
        shard: int,
        counts: StageCounts,
        entries: list[FileEntry],
        config_hash: str,
        run_id: str,
        summary: dict[str, int] | None = None,
        inputs: dict[str, str] | None = None,
    ) -> Marker:
        """The marker that commits files already written (it is written last)."""
        marker = Marker(
            stage, shard, counts, tuple(entries), config_hash, run_id, summary or {}, inputs or {}
        )
        atomic_write_json(self.marker_file(stage, shard), marker.to_json())
        return marker

    def committed(self, stage: str, shard: int, config_hash: str) -> Marker | None:
        """The stage's marker for this shard if the stage's current config wrote it and its files verify.

        A verified marker is remembered with the size and mtime of the marker and of each file, so
        asking again (the runner, then the manifest) hashes nothing unless a file changed.
        """
        path = self.marker_file(stage, shard)
        if not path.exists():
            return None
        try:
            marker = Marker.from_json(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if marker.config_hash != config_hash:
            return None
        targets = [self.root / entry.path for entry in marker.files]
        if not all(t.exists() for t in targets):
            return None
        signature = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (path, *targets))
        if self._verified.get(path) == signature:
            return marker
        for entry, target in zip(marker.files, targets, strict=True):
            if file_sha256(target) != entry.sha256:
                return None
        self._verified[path] = signature
        return marker

    # -- poisoned shards -----------------------------------------------------
    def record_poison(self, shard: int, reason: str) -> None:
        """A shard that killed or failed its worker on every allowed attempt: from now on its rows are
        quarantined at load with ``reason`` (a runner decides this; the rest of the build goes on)."""
        atomic_write_json(self.poison_file(shard), {"shard": shard, "reason": reason})

    def poisoned(self, shard: int) -> str | None:
        """Why ``shard`` is quarantined whole, or None."""
        path = self.poison_file(shard)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise BuildStateError(f"{path}: unreadable poison record ({err})") from None
        reason = data.get("reason") if isinstance(data, dict) else None
        if not isinstance(reason, str):
            raise BuildStateError(f"{path}: poison record without a reason")
        return reason

    def read_table(self, entry: FileEntry, columns: list[str] | None = None) -> pa.Table:
        """One committed file (``columns``: only these). ``ParquetFile`` reads a single file without
        ``read_table``'s dataset machinery (its import and per-call planning cost a build's tail)."""
        with pq.ParquetFile(self.root / entry.path) as f:
            return f.read(columns=columns)
