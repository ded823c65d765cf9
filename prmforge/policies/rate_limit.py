"""When an HTTP engine may send, whether it retries, and how long it waits (small, pure, testable).

- :class:`TokenBucket`: at most ``burst`` requests at once, refilled at ``rate``
  per second. A request *reserves* a token (the bucket may go negative) and
  waits until its token has been refilled, so waiters are served first come,
  first served and no more than ``burst + rate * t`` requests start in any
  window of ``t`` seconds. The clock and the sleep are parameters: tests run it
  with a fake clock and no real sleeping.
- :func:`is_retryable_status` / :func:`is_retryable_error`: 408, 409, 429, 500,
  502, 503 and 504 retry; other statuses do not. Timeouts, connection errors and
  a response closed before its body was complete retry; anything else (a bug,
  a malformed URL) does not.
- :func:`backoff_delay`: exponential backoff with full jitter: retry ``k``
  (1-based) waits a uniform draw from ``[0, min(max_s, base_s * 2**(k-1))]``
  taken from a seeded :class:`random.Random`. A server's ``Retry-After``
  (:func:`parse_retry_after`: delay-seconds or an HTTP date) is a floor: the
  delay is the larger of the two. Without ``Retry-After`` the delay never
  exceeds ``max_s``; with it, the delay is at least what the server asked for,
  even above ``max_s`` (retrying earlier would only earn another 429).
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import random
import re
import time
from collections.abc import Awaitable, Callable

import httpx

__all__ = [
    "RETRYABLE_STATUSES",
    "Clock",
    "Sleep",
    "TokenBucket",
    "backoff_delay",
    "is_retryable_error",
    "is_retryable_status",
    "parse_retry_after",
]

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic``)."""
Sleep = Callable[[float], Awaitable[None]]
"""An awaitable sleep (``asyncio.sleep``)."""

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Request timeout, conflict, too many requests, and the transient server errors."""

_DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")
_MAX_EXPONENT = 62  # 2**62 * any positive base is far past any max_s: no overflow, same cap


class TokenBucket:
    """``burst`` tokens, refilled continuously at ``rate`` tokens per second (see the module docstring)."""

    def __init__(
        self, rate: float, burst: int, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while reservations wait for their refill)."""
        self._refill()
        return self._tokens

    def reserve(self) -> float:
        """Take a token now; the seconds until it is actually available (0.0 when it already is)."""
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> float:
        """Wait for a token; the seconds waited (as asked of ``sleep``)."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
        return delay

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(now - self._updated, 0.0)
        self._updated = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP response status is worth retrying (:data:`RETRYABLE_STATUSES`)."""
    return status in RETRYABLE_STATUSES


def is_retryable_error(exc: BaseException) -> bool:
    """Whether a failed exchange is worth retrying: a timeout, a connection error, a truncated body.

    ``httpx.RemoteProtocolError`` is what a response closed mid-body raises
    ("peer closed connection without sending complete message body");
    ``httpx.DecodingError`` a body cut inside its compression. A builtin
    :class:`TimeoutError` is an overall deadline (``asyncio.timeout``).
    """
    return isinstance(
        exc,
        httpx.TimeoutException
        | httpx.NetworkError
        | httpx.RemoteProtocolError
        | httpx.DecodingError
        | TimeoutError
        | ConnectionError,
    )


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent or unreadable.

    Both forms of RFC 9110: delay-seconds (``"120"``; a decimal such as
    ``"1.5"`` is accepted too) and an HTTP date (``"Wed, 21 Oct 2015 07:28:00
    GMT"``), read against ``now`` (seconds since the epoch, ``time.time()``); a
    date in the past means 0.0. Negative, non-finite or garbled values are None.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone: HTTP dates are GMT by definition
        when = when.replace(tzinfo=datetime.UTC)
    return max(when.timestamp() - now, 0.0)


def backoff_delay(
    retry: int, *, base_s: float, max_s: float, rng: random.Random, retry_after_s: float | None = None
) -> float:
    """The wait before retry number ``retry`` (1 for the first retry).

    ``uniform(0, min(max_s, base_s * 2**(retry-1)))`` from ``rng`` (one draw per
    call, whether or not there is a ``Retry-After``), raised to ``retry_after_s``
    when the server sent one.
    """
    if retry < 1:
        raise ValueError(f"retry counts from 1, got {retry}")
    if base_s <= 0 or max_s <= 0:
        raise ValueError(f"base_s and max_s must be > 0, got {base_s} and {max_s}")
    ceiling = min(max_s, base_s * 2.0 ** min(retry - 1, _MAX_EXPONENT))
    jittered = rng.uniform(0.0, ceiling)
    if retry_after_s is not None:
        return max(retry_after_s, jittered)
    return jittered
