"""A content-addressed request cache, so a killed build never pays twice for a generation.

:class:`RequestCache` is a single SQLite file (WAL mode, a busy timeout) that any
number of worker processes may share. Each process opens its own connection,
lazily, on first use: a cache may be constructed in a parent and used in forked
or spawned children, and it pickles without its connection.

:class:`CachedPolicy` wraps any :class:`~prmforge.policies.base.Policy`. Its key
for a request is :func:`request_key`: a SHA-256 over the canonical JSON of the
policy fingerprint, the rendered prompt, ``n``, the sampling parameters and the
seed, stored as its 32 bytes. The value is the
:class:`~prmforge.policies.base.GenerationResult` as a compact JSON array
(``[prompt_tokens, [[text, tokens, finish], ...]]``, finish 0 for ``stop`` and
1 for ``length``), zlib-compressed (:func:`encode_result`). Each row also names
its policy, by the id of its fingerprint in a small ``policies`` table.

The file records its format in ``PRAGMA user_version``
(:data:`~prmforge.policies.cache_file.SCHEMA_VERSION`). A cache is only a cache:
a file of another format, or one that is not a SQLite database or fails its
integrity check, is set aside when opened (renamed to
``<name>.corrupt-<timestamp>`` beside it, with a :class:`CacheSetAsideWarning`)
and a fresh cache is started; see :mod:`prmforge.policies.cache_file`.

Example::

    policy = CachedPolicy(SimulatedPolicy(...), RequestCache(build_dir / "cache.sqlite"))
    results = policy.generate(requests)   # misses go to the inner policy in one batched call
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from prmforge.policies.base import Completion, GenerationRequest, GenerationResult, Policy, StreamingPolicy
from prmforge.policies.cache_file import SCHEMA_VERSION, CacheSetAsideWarning, Transaction, open_cache_file

__all__ = [
    "SCHEMA_VERSION",
    "CacheSetAsideWarning",
    "CachedPolicy",
    "CorruptCacheEntry",
    "RequestCache",
    "decode_result",
    "encode_result",
    "request_key",
]

# Well below SQLite's smallest compiled-in limit on bound parameters (999).
_LOOKUP_CHUNK = 500
_FINISH_CODES = {"stop": 0, "length": 1}

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


def encode_result(result: GenerationResult) -> bytes:
    """The stored form of ``result``: a zlib'd compact JSON array (``cached`` is not stored)."""
    completions = [[c.text, c.tokens, _FINISH_CODES[c.finish_reason]] for c in result.completions]
    text = json.dumps([result.prompt_tokens, completions], separators=(",", ":"), ensure_ascii=False)
    return zlib.compress(text.encode("utf-8"))


def decode_result(value: object) -> GenerationResult:
    """Inverse of :func:`encode_result`; raises :class:`CorruptCacheEntry` on any malformed value."""
    if not isinstance(value, bytes):
        raise CorruptCacheEntry(f"a stored value of type {type(value).__name__}, not bytes")
    try:
        payload = json.loads(zlib.decompress(value).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCacheEntry(f"not zlib'd JSON: {exc}") from exc
    if not isinstance(payload, list) or len(payload) != 2:
        raise CorruptCacheEntry("not a [prompt_tokens, completions] array")
    prompt_tokens, raw_completions = payload
    if not isinstance(raw_completions, list) or not _is_int(prompt_tokens):
        raise CorruptCacheEntry("mistyped prompt_tokens or completions")
    return GenerationResult(
        completions=tuple(_decode_completion(c) for c in raw_completions), prompt_tokens=prompt_tokens
    )


def _decode_completion(raw: Any) -> Completion:
    if not isinstance(raw, list) or len(raw) != 3:
        raise CorruptCacheEntry("a completion is not a [text, tokens, finish] array")
    text, tokens, finish = raw
    if not isinstance(text, str) or not _is_int(tokens):
        raise CorruptCacheEntry("a completion has a mistyped text or tokens")
    if type(finish) is int and finish == 0:
        return Completion(text=text, tokens=tokens, finish_reason="stop")
    if type(finish) is int and finish == 1:
        return Completion(text=text, tokens=tokens, finish_reason="length")
    raise CorruptCacheEntry(f"finish code {finish!r} is not 0 (stop) or 1 (length)")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class RequestCache:
    """Generation results by key, in one SQLite file shared by every worker process.

    The connection is opened on first use and re-opened in a process that did
    not open it (after ``fork``), so one object may be built before workers
    start. One connection per process, which the process's threads share: each call holds the
    instance's lock.
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
        self._lock = threading.RLock()

    @property
    def path(self) -> Path:
        return self._path

    def get_many(self, keys: Sequence[str]) -> tuple[dict[str, GenerationResult], set[str]]:
        """Look ``keys`` (from :func:`request_key`) up: ``(found, corrupt)``.

        ``found`` maps each key with a readable entry to its result; keys with an
        entry that does not decode are in ``corrupt`` (and not in ``found``), so
        the caller can regenerate and overwrite them.
        """
        with self._lock:
            return self._get_many(keys)

    def _get_many(self, keys: Sequence[str]) -> tuple[dict[str, GenerationResult], set[str]]:
        conn = self._connection()
        unique = list(dict.fromkeys(keys))
        found: dict[str, GenerationResult] = {}
        corrupt: set[str] = set()
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = [bytes.fromhex(key) for key in unique[start : start + _LOOKUP_CHUNK]]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, value FROM generations WHERE key IN ({marks})", chunk)
            for raw_key, value in rows:
                key = bytes(raw_key).hex()
                try:
                    found[key] = decode_result(value)
                except CorruptCacheEntry:
                    corrupt.add(key)
        return found, corrupt

    def put_many(self, fingerprint: str, entries: Sequence[tuple[str, GenerationResult]]) -> None:
        """Store ``(key, result)`` pairs in one transaction, replacing what the keys held."""
        if entries:
            self._put(fingerprint, [(key, encode_result(result)) for key, result in entries])

    def put_raw(self, key: str, fingerprint: str, value: bytes) -> None:
        """Store ``value`` verbatim under ``key``: for repair tools and tests of corrupt entries."""
        self._put(fingerprint, [(key, value)])

    def _put(self, fingerprint: str, entries: Sequence[tuple[str, bytes]]) -> None:
        with self._lock, self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO policies (fingerprint) VALUES (?)", (fingerprint,))
            (policy,) = conn.execute(
                "SELECT id FROM policies WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            conn.executemany(
                "INSERT INTO generations (key, policy, value) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET policy = excluded.policy, value = excluded.value",
                [(bytes.fromhex(key), policy, value) for key, value in entries],
            )

    def __len__(self) -> int:
        with self._lock:
            row = self._connection().execute("SELECT COUNT(*) FROM generations").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        with self._lock:
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
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"RequestCache({str(self._path)!r})"

    def _write(self) -> Transaction:
        return Transaction(self._connection())

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        if self._conn is not None and self._pid == pid:
            return self._conn
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = open_cache_file(self._path, timeout_s=self._timeout_s)
        self._conn, self._pid = conn, pid
        return conn


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
        if to_generate and isinstance(self._inner, StreamingPolicy):
            fresh = self._stream(fingerprint, list(to_generate.items()))
        elif to_generate:
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

    def _stream(
        self, fingerprint: str, todo: list[tuple[str, GenerationRequest]]
    ) -> dict[str, GenerationResult]:
        """Each result is committed as it arrives: a build killed mid-call pays again only for what was in
        flight, never for a result it had received."""
        inner = self._inner
        assert isinstance(inner, StreamingPolicy)
        fresh: dict[str, GenerationResult] = {}
        for index, result in inner.generate_each([request for _, request in todo]):
            if not 0 <= index < len(todo) or todo[index][0] in fresh:
                raise ValueError(
                    f"policy {fingerprint!r} streamed a result for request {index} twice or out of range"
                )
            fresh[todo[index][0]] = result
            self._cache.put_many(fingerprint, [(todo[index][0], result)])
        if len(fresh) != len(todo):
            raise ValueError(f"policy {fingerprint!r} returned {len(fresh)} results for {len(todo)} requests")
        return fresh
