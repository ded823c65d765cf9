"""A content-addressed request cache, so a killed build never pays twice for a generation.

:class:`RequestCache` is a single SQLite file (WAL mode, a busy timeout) that any
number of worker processes may share. Each process opens its own connection,
lazily, on first use: a cache may be constructed in a parent and used in forked
or spawned children, and it pickles without its connection.

:class:`CachedPolicy` wraps any :class:`~prmforge.policies.base.Policy`. Its key
for a request is :func:`request_key`: a SHA-256 over the canonical JSON of the
policy fingerprint, the rendered prompt, ``n``, the sampling parameters and the
seed. The value is the :class:`~prmforge.policies.base.GenerationResult` as JSON.

Example::

    policy = CachedPolicy(SimulatedPolicy(...), RequestCache(build_dir / "requests.sqlite3"))
    results = policy.generate(requests)   # misses go to the inner policy in one batched call
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from prmforge.policies.base import Completion, GenerationRequest, GenerationResult, Policy

__all__ = [
    "CachedPolicy",
    "CorruptCacheEntry",
    "RequestCache",
    "decode_result",
    "encode_result",
    "request_key",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""
# Well below SQLite's smallest compiled-in limit on bound parameters (999).
_LOOKUP_CHUNK = 500
_FINISH_REASONS = ("stop", "length")

# Connections inherited across fork are parked here and never used or closed in
# the child: closing them could checkpoint or unlink the parent's WAL.
_INHERITED: list[sqlite3.Connection] = []


class CorruptCacheEntry(ValueError):
    """A stored value that does not decode to a :class:`GenerationResult`."""


def request_key(fingerprint: str, request: GenerationRequest) -> str:
    """The cache key of ``request`` sent to the policy named ``fingerprint`` (64 hex digits).

    Only the rendered prompt enters the key, so two requests that render to the
    same text share an entry. ``cached`` and other result fields never do.
    """
    payload = {
        "fingerprint": fingerprint,
        "prompt": request.prompt,
        "n": request.n,
        "sampling": request.sampling.as_dict(),
        "seed": request.seed,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def encode_result(result: GenerationResult) -> str:
    """The JSON stored for ``result`` (``cached`` is not stored: it describes a lookup)."""
    payload = {
        "completions": [
            {"text": c.text, "tokens": c.tokens, "finish_reason": c.finish_reason} for c in result.completions
        ],
        "prompt_tokens": result.prompt_tokens,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_result(value: str) -> GenerationResult:
    """Inverse of :func:`encode_result`; raises :class:`CorruptCacheEntry` on any malformed value."""
    try:
        payload = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CorruptCacheEntry(f"not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise CorruptCacheEntry("not a JSON object")
    raw_completions = payload.get("completions")
    prompt_tokens = payload.get("prompt_tokens")
    if not isinstance(raw_completions, list) or not _is_int(prompt_tokens):
        raise CorruptCacheEntry("missing or mistyped 'completions' / 'prompt_tokens'")
    return GenerationResult(
        completions=tuple(_decode_completion(c) for c in raw_completions), prompt_tokens=prompt_tokens
    )


def _decode_completion(raw: Any) -> Completion:
    if not isinstance(raw, dict):
        raise CorruptCacheEntry("a completion is not a JSON object")
    text, tokens, finish = raw.get("text"), raw.get("tokens"), raw.get("finish_reason")
    if not isinstance(text, str) or not _is_int(tokens):
        raise CorruptCacheEntry("a completion has a missing or mistyped 'text' / 'tokens'")
    if finish == "stop":
        return Completion(text=text, tokens=tokens, finish_reason="stop")
    if finish == "length":
        return Completion(text=text, tokens=tokens, finish_reason="length")
    raise CorruptCacheEntry(f"finish_reason {finish!r} is not one of {_FINISH_REASONS}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class RequestCache:
    """Generation results by key, in one SQLite file shared by every worker process.

    The connection is opened on first use and re-opened in a process that did
    not open it (after ``fork``), so one object may be built before workers
    start. One connection per process: do not share an instance across threads.
    Writes take the write lock up front (``BEGIN IMMEDIATE``) and wait up to
    ``timeout_s`` for it.
    """

    def __init__(self, path: Path, *, timeout_s: float = 60.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._path = Path(path)
        self._timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    @property
    def path(self) -> Path:
        return self._path

    def get_many(self, keys: Sequence[str]) -> tuple[dict[str, GenerationResult], set[str]]:
        """Look ``keys`` up: ``(found, corrupt)``.

        ``found`` maps each key with a readable entry to its result; keys with an
        entry that does not decode are in ``corrupt`` (and not in ``found``), so
        the caller can regenerate and overwrite them.
        """
        conn = self._connection()
        unique = list(dict.fromkeys(keys))
        found: dict[str, GenerationResult] = {}
        corrupt: set[str] = set()
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, value FROM generations WHERE key IN ({marks})", chunk)
            for key, value in rows:
                try:
                    found[key] = decode_result(value)
                except CorruptCacheEntry:
                    corrupt.add(key)
        return found, corrupt

    def put_many(self, fingerprint: str, entries: Sequence[tuple[str, GenerationResult]]) -> None:
        """Store ``(key, result)`` pairs in one transaction, replacing what the keys held."""
        if not entries:
            return
        now = time.time()
        rows = [(key, fingerprint, encode_result(result), now) for key, result in entries]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO generations (key, fingerprint, value, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET fingerprint = excluded.fingerprint, "
                "value = excluded.value, created = excluded.created",
                rows,
            )

    def put_raw(self, key: str, fingerprint: str, value: str) -> None:
        """Store ``value`` verbatim under ``key``: for repair tools and tests of corrupt entries."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO generations (key, fingerprint, value, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, fingerprint, value, time.time()),
            )

    def __len__(self) -> int:
        row = self._connection().execute("SELECT COUNT(*) FROM generations").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        elif self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = None
        self._pid = None

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self._path, "timeout_s": self._timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = Path(state["path"])
        self._timeout_s = float(state["timeout_s"])
        self._conn = None
        self._pid = None

    def __repr__(self) -> str:
        return f"RequestCache({str(self._path)!r})"

    def _write(self) -> _Transaction:
        return _Transaction(self._connection())

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        if self._conn is not None and self._pid == pid:
            return self._conn
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _Transaction).
        conn = sqlite3.connect(self._path, timeout=self._timeout_s, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
            # NORMAL loses nothing when a process is killed; only a power cut can drop the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
            _initialise(conn, deadline=time.monotonic() + self._timeout_s)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, pid
        return conn


def _initialise(conn: sqlite3.Connection, *, deadline: float) -> None:
    """Put the file in WAL mode and create the table, retrying while another process does the same.

    Switching a new file to WAL can fail with SQLITE_BUSY without consulting the
    busy handler when several processes open it at once, hence the retry loop.
    """
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class _Transaction:
    """``with``: ``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the body raises."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


class CachedPolicy:
    """A :class:`~prmforge.policies.base.Policy` that answers repeated requests from a :class:`RequestCache`.

    ``generate`` looks every request up, sends the misses to the inner policy in
    one batched call (each distinct key once, in first-seen order), stores the new
    results in one transaction and returns one result per request, in order.
    Results not generated by this call carry ``cached=True``: those read from the
    cache and repeats, within the batch, of a key generated in it.

    Counters: ``misses`` counts requests sent to the inner policy, ``hits`` the
    rest, so ``hits + misses`` is the number of requests seen. A stored value
    that does not decode counts as a miss (and in ``corrupt``) and is overwritten.
    """

    def __init__(self, inner: Policy, cache: RequestCache) -> None:
        self._inner = inner
        self._cache = cache
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    @property
    def fingerprint(self) -> str:
        return self._inner.fingerprint

    @property
    def inner(self) -> Policy:
        return self._inner

    @property
    def cache(self) -> RequestCache:
        return self._cache

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        fingerprint = self._inner.fingerprint
        keys = [request_key(fingerprint, r) for r in requests]
        found, corrupt = self._cache.get_many(keys)
        self.corrupt += len(corrupt)
        to_generate: dict[str, GenerationRequest] = {}
        for key, request in zip(keys, requests, strict=True):
            if key not in found and key not in to_generate:
                to_generate[key] = request
        fresh: dict[str, GenerationResult] = {}
        if to_generate:
            generated = self._inner.generate(list(to_generate.values()))
            if len(generated) != len(to_generate):
                count = f"{len(generated)} results for {len(to_generate)} requests"
                raise ValueError(f"policy {fingerprint!r} returned {count}")
            fresh = dict(zip(to_generate, generated, strict=True))
            self._cache.put_many(fingerprint, list(fresh.items()))

        results: list[GenerationResult] = []
        handed_out: set[str] = set()
        for key in keys:
            if key in fresh and key not in handed_out:
                results.append(fresh[key])
                handed_out.add(key)
                self.misses += 1
            elif key in fresh:  # a repeat, within this batch, of a key generated above
                results.append(dataclasses.replace(fresh[key], cached=True))
                self.hits += 1
            else:
                results.append(dataclasses.replace(found[key], cached=True))
                self.hits += 1
        return results
