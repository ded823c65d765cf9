"""The HTTP engine's pacing, retry decision and backoff (prmforge.policies.rate_limit): exact values."""

from __future__ import annotations

import asyncio
import email.utils
import random

import httpx
import pytest

from prmforge.policies.rate_limit import (
    RETRYABLE_STATUSES,
    TokenBucket,
    backoff_delay,
    is_retryable_error,
    is_retryable_status,
    parse_retry_after,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# ----- token bucket -----


def test_bucket_serves_the_burst_at_once_then_one_token_per_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Reservations beyond the burst wait for their own token: 1/rate apart.
    assert [bucket.reserve() for _ in range(3)] == [0.5, 1.0, 1.5]
    assert bucket.tokens == -3.0


def test_bucket_refills_with_time_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4.0, burst=2, clock=clock)
    bucket.reserve()
    bucket.reserve()
    clock.now += 0.25  # one token back
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == 0.25
    clock.now += 100.0  # refills to the burst, not beyond
    assert bucket.tokens == 2.0
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.25]


def test_bucket_ignores_a_clock_that_goes_backwards() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    bucket.reserve()
    clock.now -= 50.0
    assert bucket.tokens == 0.0


def test_concurrent_acquires_queue_first_come_first_served() -> None:
    clock = FakeClock()
    sleeps: list[float] = []

    async def record(seconds: float) -> None:  # the waits overlap: the clock does not move meanwhile
        sleeps.append(seconds)

    bucket = TokenBucket(rate=10.0, burst=2, clock=clock, sleep=record)

    async def main() -> list[float]:
        return list(await asyncio.gather(*(bucket.acquire() for _ in range(5))))

    assert asyncio.run(main()) == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3], abs=1e-12)
    assert sleeps == pytest.approx([0.1, 0.2, 0.3], abs=1e-12)


def test_sequential_acquires_settle_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, burst=2, clock=clock, sleep=clock.sleep)

    async def main() -> list[float]:
        return [await bucket.acquire() for _ in range(5)]

    assert asyncio.run(main()) == pytest.approx([0.0, 0.0, 0.1, 0.1, 0.1], abs=1e-12)
    assert clock.now == pytest.approx(1000.3, abs=1e-9)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)])
def test_bucket_rejects_bad_parameters(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        TokenBucket(rate, burst)


# ----- retry decision -----


def test_retryable_statuses_are_exactly_the_transient_ones() -> None:
    assert frozenset({408, 409, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES
    retried = {s for s in range(100, 600) if is_retryable_status(s)}
    assert retried == {408, 409, 429, 500, 502, 503, 504}
    for status in (400, 401, 403, 404, 413, 422, 501, 505):
        assert not is_retryable_status(status)


_REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/completions")


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow", request=_REQUEST),
        httpx.ConnectTimeout("slow", request=_REQUEST),
        httpx.PoolTimeout("slow", request=_REQUEST),
        httpx.ConnectError("refused", request=_REQUEST),
        httpx.ReadError("reset", request=_REQUEST),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.DecodingError("truncated gzip"),
        TimeoutError(),
        ConnectionResetError(),
    ],
    ids=type,
)
def test_transient_errors_retry(exc: BaseException) -> None:
    assert is_retryable_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.UnsupportedProtocol("ftp://"),
        httpx.LocalProtocolError("bad header"),
        httpx.InvalidURL("nope"),
        ValueError("bug"),
        KeyError("choices"),
    ],
    ids=type,
)
def test_other_errors_do_not_retry(exc: BaseException) -> None:
    assert not is_retryable_error(exc)


# ----- Retry-After -----


@pytest.mark.parametrize(("value", "seconds"), [("3", 3.0), (" 120 ", 120.0), ("1.5", 1.5), ("0", 0.0)])
def test_retry_after_delay_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=0.0) == seconds


def test_retry_after_http_date_is_read_against_now() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412478.0) == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0  # past
    assert parse_retry_after("Wed Oct 21 07:28:00 2015", now=1445412478.0) == 2.0  # asctime: GMT


@pytest.mark.parametrize("value", [None, "", "soon", "-1", "inf", "nan", "1e3", "Wed, 99 Foo 2015"])
def test_unreadable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=0.0) is None


# ----- backoff -----


def test_backoff_is_full_jitter_over_a_doubling_capped_ceiling() -> None:
    rng, reference = random.Random(7), random.Random(7)
    delays = [backoff_delay(k, base_s=0.5, max_s=3.0, rng=rng) for k in range(1, 7)]
    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert delays == [c * reference.random() for c in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))


def test_backoff_pinned_values_for_seed_0() -> None:
    rng = random.Random(0)
    delays = [backoff_delay(k, base_s=1.0, max_s=30.0, rng=rng) for k in (1, 2, 3)]
    assert delays == pytest.approx([0.8444218515250481, 1.515908805880605, 1.68228632332338], abs=1e-15)


def test_retry_after_is_a_floor_that_may_exceed_the_cap() -> None:
    rng, reference = random.Random(3), random.Random(3)
    assert backoff_delay(1, base_s=0.5, max_s=1.0, rng=rng, retry_after_s=10.0) == 10.0
    reference.random()  # the call above drew once too
    draw = 4.0 * reference.random()
    assert draw > 0.01
    assert backoff_delay(4, base_s=0.5, max_s=8.0, rng=rng, retry_after_s=0.01) == draw


def test_backoff_never_overflows_on_huge_retry_numbers() -> None:
    assert 0 <= backoff_delay(10_000, base_s=0.5, max_s=2.0, rng=random.Random(1)) <= 2.0


@pytest.mark.parametrize(("retry", "base", "cap"), [(0, 0.5, 1.0), (1, 0.0, 1.0), (1, 0.5, 0.0)])
def test_backoff_rejects_bad_arguments(retry: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"retry|base_s"):
        backoff_delay(retry, base_s=base, max_s=cap, rng=random.Random(0))
