"""Tests of the SQLite request cache and the caching policy wrapper."""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import pickle
import sqlite3
import warnings
import zlib
from collections.abc import Callable, Sequence
from contextlib import closing
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from prmforge.policies.base import Completion, GenerationRequest, GenerationResult, Policy
from prmforge.policies.cache import (
    SCHEMA_VERSION,
    CachedPolicy,
    CacheSetAsideWarning,
    CorruptCacheEntry,
    RequestCache,
    decode_result,
    encode_result,
    request_key,
)
from prmforge.schemas.records import Problem, SamplingParams


class CountingPolicy:
    """Deterministic completions derived from the request; counts calls and requests."""

    def __init__(self, fingerprint: str = "counting-v1") -> None:
        self._fingerprint = fingerprint
        self.calls = 0
        self.requests: list[GenerationRequest] = []

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.calls += 1
        self.requests.extend(requests)
        return [self._one(r) for r in requests]

    def _one(self, request: GenerationRequest) -> GenerationResult:
        digest = hashlib.sha256(f"{request.prompt}|{request.seed}|{request.sampling}".encode()).hexdigest()
        completions = tuple(
            Completion(
                text=f"continuation {digest[:8]} #{i}\n\nThe answer is: {i}",
                tokens=5 + i,
                finish_reason="length" if i == 2 else "stop",
            )
            for i in range(request.n)
        )
        return GenerationResult(completions=completions, prompt_tokens=len(request.prompt.split()))


def _problem(question: str, pid: str = "p") -> Problem:
    return Problem(problem_id=pid, domain="math", question=question, gold="0", source="test")


def _request(i: int, *, n: int = 3, seed: int = 7) -> GenerationRequest:
    return GenerationRequest(
        problem=_problem(f"Question {i}: what is {i} + {i}?", f"p-{i}"), prefix=(f"Step one of {i}.",), n=n,
        sampling=SamplingParams(), seed=seed,
    )  # fmt: skip


def _strip_cached(results: Sequence[GenerationResult]) -> list[GenerationResult]:
    return [dataclasses.replace(r, cached=False) for r in results]


@pytest.fixture
def cache(tmp_path: Path) -> RequestCache:
    return RequestCache(tmp_path / "requests.sqlite3")


def test_cached_policy_satisfies_the_policy_protocol(cache: RequestCache) -> None:
    """CachedPolicy is a Policy and keeps the inner fingerprint."""
    policy = CachedPolicy(CountingPolicy("model-x"), cache)
    assert isinstance(policy, Policy)
    assert policy.fingerprint == "model-x"


def test_second_run_makes_no_inner_calls_and_returns_identical_results(tmp_path: Path) -> None:
    """A rerun on a fresh cache object over the same file is served entirely from SQLite."""
    requests = [_request(i) for i in range(20)]
    first_inner = CountingPolicy()
    first = CachedPolicy(first_inner, RequestCache(tmp_path / "c.sqlite3")).generate(requests)
    assert first_inner.calls == 1
    assert not any(r.cached for r in first)

    second_inner = CountingPolicy()
    second_policy = CachedPolicy(second_inner, RequestCache(tmp_path / "c.sqlite3"))
    second = second_policy.generate(requests)
    assert second_inner.calls == 0
    assert all(r.cached for r in second)
    assert _strip_cached(second) == first
    assert (second_policy.hits, second_policy.misses) == (20, 0)


def test_order_is_preserved_with_mixed_hits_and_misses(cache: RequestCache) -> None:
    """Only misses reach the inner policy, in one call, and results come back in request order."""
    inner = CountingPolicy()
    policy = CachedPolicy(inner, cache)
    policy.generate([_request(i) for i in (1, 3, 5)])
    inner.calls, inner.requests = 0, []

    mixed = [_request(i) for i in (0, 1, 2, 3, 4, 5, 6)]
    results = policy.generate(mixed)
    assert inner.calls == 1
    assert [r.question for r in inner.requests] == [mixed[i].question for i in (0, 2, 4, 6)]
    assert [r.cached for r in results] == [False, True, False, True, False, True, False]
    assert _strip_cached(results) == CountingPolicy().generate(mixed)
    assert (policy.hits, policy.misses) == (3, 3 + 4)


def test_duplicates_within_a_batch_are_generated_once(cache: RequestCache) -> None:
    """Repeated requests in one batch go to the inner policy once; the repeats are marked cached."""
    inner = CountingPolicy()
    policy = CachedPolicy(inner, cache)
    a, b = _request(1), _request(2)
    results = policy.generate([a, b, a, a, b])
    assert inner.requests == [a, b]
    assert [r.cached for r in results] == [False, False, True, True, True]
    assert _strip_cached(results) == CountingPolicy().generate([a, b, a, a, b])
    assert (policy.hits, policy.misses) == (3, 2)
    assert len(cache) == 2


def test_empty_batch_calls_nothing(cache: RequestCache) -> None:
    """An empty batch gives an empty list and no inner call."""
    inner = CountingPolicy()
    assert CachedPolicy(inner, cache).generate([]) == []
    assert inner.calls == 0


def test_all_hits_make_no_inner_call(cache: RequestCache) -> None:
    """A batch made only of cached requests never calls the inner policy."""
    inner = CountingPolicy()
    policy = CachedPolicy(inner, cache)
    policy.generate([_request(1)])
    policy.generate([_request(1), _request(1)])
    assert inner.calls == 1


def test_corrupt_value_is_a_miss_and_is_overwritten(cache: RequestCache) -> None:
    """A stored value that is not zlib'd JSON (or not a result) is regenerated and replaced."""
    inner = CountingPolicy()
    policy = CachedPolicy(inner, cache)
    good, bad_json, bad_shape = _request(1), _request(2), _request(3)
    policy.generate([good])
    cache.put_raw(request_key(inner.fingerprint, bad_json), inner.fingerprint, zlib.compress(b"[not json"))
    cache.put_raw(request_key(inner.fingerprint, bad_shape), inner.fingerprint, zlib.compress(b'[3, "x"]'))

    results = policy.generate([good, bad_json, bad_shape])
    assert [r.cached for r in results] == [True, False, False]
    assert inner.requests[-2:] == [bad_json, bad_shape]
    assert policy.corrupt == 2
    found, corrupt = cache.get_many([request_key(inner.fingerprint, r) for r in (bad_json, bad_shape)])
    assert corrupt == set()
    assert len(found) == 2
    assert len(cache) == 3


def test_wrong_result_count_from_inner_policy_raises(cache: RequestCache) -> None:
    """An inner policy that drops results is a bug, reported rather than cached."""

    class Dropping(CountingPolicy):
        def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            return super().generate(requests)[:-1]

    with pytest.raises(ValueError, match="1 results for 2 requests"):
        CachedPolicy(Dropping(), cache).generate([_request(1), _request(2)])
    assert len(cache) == 0


def test_key_changes_with_each_of_the_five_fields() -> None:
    """Fingerprint, prompt, n, sampling and seed each change the key."""
    base = _request(1)
    key = request_key("fp", base)
    variants = {
        "fingerprint": request_key("fp2", base),
        "prompt (question)": request_key("fp", dataclasses.replace(base, problem=_problem("Other?", "p-1"))),
        "prompt (prefix)": request_key("fp", dataclasses.replace(base, prefix=(*base.prefix, "More."))),
        "n": request_key("fp", dataclasses.replace(base, n=base.n + 1)),
        "temperature": request_key("fp", dataclasses.replace(base, sampling=SamplingParams(temperature=0.3))),
        "top_p": request_key("fp", dataclasses.replace(base, sampling=SamplingParams(top_p=0.9))),
        "max_tokens": request_key("fp", dataclasses.replace(base, sampling=SamplingParams(max_tokens=9))),
        "seed": request_key("fp", dataclasses.replace(base, seed=base.seed + 1)),
    }
    assert key not in variants.values()
    assert len(set(variants.values())) == len(variants)
    assert len(key) == 64
    assert request_key("fp", _request(1)) == key


def test_key_depends_on_rendered_prompt_only() -> None:
    """Two requests that render to the same prompt text share a key."""
    a = GenerationRequest(problem=_problem("Q"), prefix=("s1", "s2"), n=2, sampling=SamplingParams(), seed=1)
    b = GenerationRequest(problem=_problem("Q\n\ns1"), prefix=("s2",), n=2, sampling=SamplingParams(), seed=1)
    assert a.prompt == b.prompt
    assert request_key("fp", a) == request_key("fp", b)
    other_problem = dataclasses.replace(a, problem=_problem("Q", pid="another-id"))
    assert request_key("fp", other_problem) == request_key("fp", a)


def test_key_is_pinned() -> None:
    """The key derivation is unchanged by the storage format: pinned before 32-byte keys and engines."""
    assert request_key("counting-v1", _request(1)) == (
        "d6b5d1be578cfe3bcbf717a2b963637145aaea6c1a24dbd958a74892dfe6c6ac"
    )
    unicode = GenerationRequest(
        _problem("Ünïcode ки?"), ("a", "b"), 8, SamplingParams(temperature=0.3, top_p=0.9, max_tokens=99), 123
    )
    assert request_key("simulated-v1:abc", unicode) == (
        "d95d19a362f3589a6b6fdfe89ce1ae88738ac806a1b86315f53e7dab1d03b782"
    )


def test_encode_decode_round_trip() -> None:
    """A result survives encode/decode exactly, except ``cached`` which is not stored."""
    result = GenerationResult(
        completions=(Completion("a\n\nÜber ки", 3, "stop"), Completion("", 0, "length")),
        prompt_tokens=11,
        cached=True,
    )
    assert decode_result(encode_result(result)) == dataclasses.replace(result, cached=False)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not zlib at all",
        "a text value",
        zlib.compress(b"\xff\xfe"),
        zlib.compress(b"{not json"),
        zlib.compress(b'{"completions": [], "prompt_tokens": 3}'),
        zlib.compress(b"[]"),
        zlib.compress(b'[3, [], "extra"]'),
        zlib.compress(b'["3", []]'),
        zlib.compress(b"[true, []]"),
        zlib.compress(b"[1, [[1, 1, 0]]]"),
        zlib.compress(b'[1, [["a", 1, 2]]]'),
        zlib.compress(b'[1, [["a", 1, true]]]'),
        zlib.compress(b'[1, [["a", 1.0, 0]]]'),
        zlib.compress(b'[1, [["a", 1]]]'),
        zlib.compress(b'[1, ["a"]]'),
    ],
)
def test_decode_rejects_malformed_values(value: bytes | str) -> None:
    """Every malformed shape raises CorruptCacheEntry (a ValueError), nothing else."""
    with pytest.raises(CorruptCacheEntry):
        decode_result(value)


def test_stored_values_are_compact() -> None:
    """No repeated keys, and compressed: eight similar completions take far less than their text."""
    text = "Ava has 12*3 = <<12*3=36>>36 marbles.\n\nBen has 36+5 = <<36+5=41>>41 marbles.\nThe answer is: 41"
    result = GenerationResult(tuple(Completion(text, 16) for _ in range(8)), prompt_tokens=30)
    stored = encode_result(result)
    assert len(stored) < len(text) * 2
    assert b"finish_reason" not in zlib.decompress(stored)


def test_file_is_in_wal_mode_and_lookups_chunk(cache: RequestCache) -> None:
    """The cache file uses WAL, and lookups of more keys than one SQL statement binds still work."""
    policy = CachedPolicy(CountingPolicy(), cache)
    requests = [_request(i, n=1) for i in range(1200)]
    policy.generate(requests)
    assert len(cache) == 1200
    found, _ = cache.get_many([request_key("counting-v1", r) for r in requests])
    assert len(found) == 1200
    with sqlite3.connect(cache.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_connection_is_lazy_and_cache_pickles(tmp_path: Path) -> None:
    """Constructing a cache touches no file; a pickled cache reopens the same file on use."""
    path = tmp_path / "sub" / "c.sqlite3"
    cache = RequestCache(path)
    assert not path.exists()
    CachedPolicy(CountingPolicy(), cache).generate([_request(1)])
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.path == path
    assert len(clone) == 1
    cache.close()
    assert len(cache) == 1  # reopens


def _concurrent_worker(policy: CachedPolicy, start: int, stop: int, go: Event) -> None:
    go.wait()
    requests = [_request(i) for i in range(start, stop)]
    for lo in range(0, len(requests), 7):
        policy.generate(requests[lo : lo + 7])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_two_processes_share_one_cache_file(tmp_path: Path, method: str) -> None:
    """Two workers writing overlapping requests at once both succeed; each key is stored once."""
    cache = RequestCache(tmp_path / "shared.sqlite3", timeout_s=30)
    policy = CachedPolicy(CountingPolicy(), cache)
    policy.generate([_request(0)])  # the parent holds an open connection before the workers start
    ctx = multiprocessing.get_context("fork") if method == "fork" else multiprocessing.get_context("spawn")
    go = ctx.Event()
    workers = [
        ctx.Process(target=_concurrent_worker, args=(policy, 0, 150, go)),
        ctx.Process(target=_concurrent_worker, args=(policy, 50, 200, go)),
    ]
    for w in workers:
        w.start()
    go.set()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]

    assert len(cache) == 200  # the parent's connection still works after the fork
    inner = CountingPolicy()
    again = CachedPolicy(inner, RequestCache(tmp_path / "shared.sqlite3"))
    results = again.generate([_request(i) for i in range(200)])
    assert inner.calls == 0
    assert _strip_cached(results) == CountingPolicy().generate([_request(i) for i in range(200)])


def test_invalid_timeout_rejected(tmp_path: Path) -> None:
    """A non-positive busy timeout is a configuration error."""
    with pytest.raises(ValueError, match="timeout_s"):
        RequestCache(tmp_path / "c.sqlite3", timeout_s=0)


def _fresh_file_worker(path: str, start: int, go: Event) -> None:
    policy = CachedPolicy(CountingPolicy(), RequestCache(Path(path), timeout_s=30))
    go.wait()
    requests = [_request(i, n=1) for i in range(start, start + 60)]
    for lo in range(0, len(requests), 3):
        policy.generate(requests[lo : lo + 3])


def test_processes_racing_to_create_the_file_all_succeed(tmp_path: Path) -> None:
    """Workers that each open a not-yet-existing cache file at the same moment all succeed."""
    path = tmp_path / "fresh.sqlite3"
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    workers = [ctx.Process(target=_fresh_file_worker, args=(str(path), 30 * k, go)) for k in range(4)]
    for w in workers:
        w.start()
    go.set()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert len(RequestCache(path)) == 150


# ------------------------------------------------------------------ the file: format and setting aside

_OLD_SCHEMA = (
    "CREATE TABLE generations (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, value TEXT NOT NULL, "
    "created REAL NOT NULL)"
)


def _filled(path: Path, count: int = 30) -> list[GenerationResult]:
    """A cache at ``path`` holding ``count`` entries of the counting policy (closed again)."""
    with RequestCache(path) as cache:
        return CachedPolicy(CountingPolicy(), cache).generate([_request(i) for i in range(count)])


def _set_aside_files(path: Path, *, logs: bool = False) -> list[Path]:
    """The files set aside from ``path`` (with their ``-wal`` and ``-shm`` when ``logs``)."""
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.name.startswith(f"{path.name}.corrupt-") and (logs or not p.name.endswith(("-wal", "-shm")))
    )


def _assert_fresh_and_working(path: Path) -> None:
    """The cache at ``path`` is empty, in the current format, and stores and serves entries."""
    cache = RequestCache(path)
    assert len(cache) == 0
    policy = CachedPolicy(CountingPolicy(), cache)
    policy.generate([_request(1), _request(2)])
    assert [r.cached for r in CachedPolicy(CountingPolicy(), RequestCache(path)).generate([_request(1)])] == [
        True
    ]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_round_trip_through_the_file_keeps_every_field(tmp_path: Path) -> None:
    """What a fresh process reads back equals what was stored: texts, token counts, finish reasons."""
    path = tmp_path / "cache.sqlite"
    stored = _filled(path)
    again = CachedPolicy(CountingPolicy(), RequestCache(path)).generate([_request(i) for i in range(30)])
    assert _strip_cached(again) == stored
    assert {c.finish_reason for r in again for c in r.completions} == {"stop", "length"}
    with closing(sqlite3.connect(path)) as conn:
        keys = {len(k) for (k,) in conn.execute("SELECT key FROM generations")}
        policies = conn.execute("SELECT fingerprint FROM policies").fetchall()
    assert keys == {32}
    assert policies == [("counting-v1",)]


def _random_bytes(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _truncated(path: Path) -> None:
    _filled(path, count=400)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


def _wrong_schema(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE something_else (x INTEGER)")
        conn.execute("INSERT INTO something_else VALUES (1)")
        conn.commit()


def _current_version_wrong_tables(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE generations (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _future_version(path: Path) -> None:
    _filled(path)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


@pytest.mark.parametrize(
    "spoil", [_random_bytes, _truncated, _wrong_schema, _current_version_wrong_tables, _future_version]
)
def test_an_unusable_file_is_set_aside_with_a_warning_and_a_fresh_cache_started(
    tmp_path: Path, spoil: Callable[[Path], None]
) -> None:
    path = tmp_path / "cache.sqlite"
    spoil(path)
    spoiled = path.read_bytes()
    with pytest.warns(CacheSetAsideWarning, match=f"request cache {path} could not be used"):
        _assert_fresh_and_working(path)
    (aside,) = _set_aside_files(path)
    assert aside.name.startswith("cache.sqlite.corrupt-")
    assert aside.read_bytes() == spoiled  # kept as it was, for a post-mortem


def test_an_old_format_cache_is_set_aside_with_its_log(tmp_path: Path) -> None:
    """A cache of the JSON-text format (user_version 0), a write still in its WAL, is moved aside whole."""
    path = tmp_path / "cache.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute(_OLD_SCHEMA)
    holder.execute("INSERT INTO generations VALUES (?, 'fp', '{}', 0)", ("ab" * 32,))
    wal = path.with_name(path.name + "-wal")
    assert wal.exists()
    with pytest.warns(CacheSetAsideWarning, match="format version 0, this prmforge reads version 2"):
        _assert_fresh_and_working(path)
    holder.close()
    (aside,) = _set_aside_files(path)
    assert aside.with_name(aside.name + "-wal") in _set_aside_files(path, logs=True)
    with closing(sqlite3.connect(aside)) as conn:
        assert conn.execute("SELECT key FROM generations").fetchall() == [("ab" * 32,)]


def test_a_usable_cache_is_kept_and_an_empty_file_is_a_new_cache(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    _filled(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(RequestCache(path)) == 30
        empty = tmp_path / "empty.sqlite"
        empty.touch()
        _assert_fresh_and_working(empty)
    assert _set_aside_files(path) == []
    assert _set_aside_files(empty) == []


def test_two_set_asides_in_one_second_keep_both_files(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    for _ in range(2):
        _random_bytes(path)
        with pytest.warns(CacheSetAsideWarning), RequestCache(path) as cache:
            assert len(cache) == 0
        path.unlink()
    assert len(_set_aside_files(path)) == 2


def _open_worker(path: str, index: int, go: Event) -> None:
    go.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheSetAsideWarning)
        CachedPolicy(CountingPolicy(), RequestCache(Path(path), timeout_s=30)).generate([_request(index)])


def test_processes_opening_a_corrupt_file_at_once_set_it_aside_once(tmp_path: Path) -> None:
    """One process sets the file aside; the others find the fresh cache, and every write lands in it."""
    path = tmp_path / "cache.sqlite"
    _random_bytes(path)
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    workers = [ctx.Process(target=_open_worker, args=(str(path), k, go)) for k in range(4)]
    for w in workers:
        w.start()
    go.set()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert len(_set_aside_files(path)) == 1
    assert len(RequestCache(path)) == 4
