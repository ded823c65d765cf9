"""One HTTP exchange with an OpenAI-compatible server, with its retries (runs on the engine's loop).

:class:`Exchanger` posts a body and returns the validated
:class:`~prmforge.policies.openai_wire.WireResponse`. Each attempt holds one of
the session's ``concurrency`` slots, takes a token from its bucket (when rate
limited) and must complete, from connecting to the last body byte, within
``timeout_s``. A failure that :mod:`~prmforge.policies.rate_limit` calls
retryable, or a 2xx body that does not parse (a truncated or garbled body,
an HTML error page), is retried up to ``max_retries`` times after
:func:`~prmforge.policies.rate_limit.backoff_delay` (``Retry-After`` honoured,
the slot released while waiting); anything else, or the last failure, raises
:class:`EngineRequestError`. When the call's ``stop`` event is set (another
request failed for good), no new attempt starts: :class:`Aborted`.

:class:`OpenAIStats` counts only what happened: every attempt by outcome, and
the usage of *successful* responses only, so a retried request is never
counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from prmforge.policies.openai_wire import MalformedResponse, WireResponse, parse_response
from prmforge.policies.rate_limit import (
    TokenBucket,
    backoff_delay,
    is_retryable_error,
    is_retryable_status,
    parse_retry_after,
)
from prmforge.schemas.engines import OpenAIEngineConfig

__all__ = ["Aborted", "EngineRequestError", "Exchanger", "OpenAIStats", "Session", "failure_kind"]

logger = logging.getLogger("prmforge.policies.openai_http")
_SNIPPET = 300


class EngineRequestError(RuntimeError):
    """An HTTP request that failed for good: a status that does not retry, or retries exhausted."""

    def __init__(self, cause: str, *, path: str, attempts: int, status: int | None = None) -> None:
        self.cause = cause
        self.path = path
        self.attempts = attempts
        self.status = status
        plural = "" if attempts == 1 else "s"
        super().__init__(f"POST {path} failed after {attempts} attempt{plural}: {cause}")


class Aborted(Exception):
    """Another request of the call failed for good: this one starts no new attempt."""


@dataclass(slots=True)
class OpenAIStats:
    """Counters for the card, plain numbers.

    ``requests``: generation requests answered; ``http_requests``: successful
    HTTP exchanges (top-ups and fanout included); ``attempts``: every HTTP
    attempt, ``retries`` those after a failure; ``by_status``: attempts by
    outcome (the HTTP status, or ``timeout``, ``connection``,
    ``incomplete_body``, ``malformed_body``); ``backoff_s`` / ``rate_limit_wait_s``:
    seconds waited before retries / for the token bucket; ``prompt_tokens`` /
    ``completion_tokens``: the ``usage`` of successful responses (what a server
    bills); ``responses_without_usage``: successful responses that had none.
    """

    requests: int = 0
    http_requests: int = 0
    attempts: int = 0
    retries: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    backoff_s: float = 0.0
    rate_limit_wait_s: float = 0.0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    responses_without_usage: int = 0

    def count(self, outcome: str) -> None:
        self.by_status[outcome] = self.by_status.get(outcome, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Session:
    """What lives on one event loop: the HTTP client and the limits every call shares."""

    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore
    bucket: TokenBucket | None

    @classmethod
    def open(
        cls, config: OpenAIEngineConfig, headers: dict[str, str], transport: httpx.AsyncBaseTransport | None
    ) -> Session:
        limits = httpx.Limits(
            max_connections=config.concurrency, max_keepalive_connections=config.concurrency
        )
        client = httpx.AsyncClient(
            transport=transport, headers=headers, timeout=config.timeout_s, limits=limits
        )
        bucket = None
        if config.requests_per_second is not None:
            bucket = TokenBucket(config.requests_per_second, config.burst)
        return cls(client, asyncio.Semaphore(config.concurrency), bucket)


@dataclass(frozen=True, slots=True)
class _Failure:
    cause: str
    retryable: bool
    status: int | None = None
    retry_after_s: float | None = None


def failure_kind(exc: BaseException) -> str:
    """How a failed exchange is counted in ``by_status``."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.DecodingError):
        return "incomplete_body"
    if isinstance(exc, httpx.TransportError | OSError):
        return "connection"
    return "error"


class Exchanger:
    """Posts bodies to ``url`` under ``config``'s retry policy, counting into ``stats``."""

    def __init__(
        self, config: OpenAIEngineConfig, url: str, stats: OpenAIStats, scrub: Callable[[str], str]
    ) -> None:
        self.config = config
        self.url = url
        self.path = httpx.URL(url).path
        self.stats = stats
        self._scrub = scrub
        self._rng = random.Random(0)  # backoff jitter only: it never changes outputs

    async def exchange(
        self, session: Session, body: dict[str, Any], n: int, stop: asyncio.Event
    ) -> WireResponse:
        """Post ``body`` (asking for ``n`` choices) until it succeeds or fails for good."""
        config, attempt = self.config, 0
        while True:
            attempt += 1
            async with session.semaphore:
                if stop.is_set():
                    raise Aborted
                if session.bucket is not None:
                    waited = await session.bucket.acquire()  # (not `+= await`: that loses updates)
                    self.stats.rate_limit_wait_s += waited
                outcome = await self._attempt(session.client, body, n)
            if isinstance(outcome, WireResponse):
                return outcome
            if not outcome.retryable or attempt > config.max_retries:
                raise EngineRequestError(
                    outcome.cause, path=self.path, attempts=attempt, status=outcome.status
                )
            delay = backoff_delay(
                attempt,
                base_s=config.backoff_s,
                max_s=config.max_backoff_s,
                rng=self._rng,
                retry_after_s=outcome.retry_after_s,
            )
            self.stats.retries += 1
            self.stats.backoff_s += delay
            logger.info(
                "retrying POST %s in %.2f s after %s (attempt %d)", self.path, delay, outcome.cause, attempt
            )
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                continue
            raise Aborted

    async def _attempt(
        self, client: httpx.AsyncClient, body: dict[str, Any], n: int
    ) -> WireResponse | _Failure:
        self.stats.attempts += 1
        try:
            async with asyncio.timeout(self.config.timeout_s):
                response = await client.post(self.url, json=body)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            kind = failure_kind(exc)
            self.stats.count(kind)
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if kind == "timeout":
                detail = f"no complete response within timeout_s={self.config.timeout_s}"
            return _Failure(self._scrub(f"{kind.replace('_', ' ')} ({detail})"), is_retryable_error(exc))
        status = response.status_code
        if not 200 <= status < 300:
            self.stats.count(str(status))
            snippet = response.text[:_SNIPPET].strip()
            return _Failure(
                self._scrub(f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"),
                is_retryable_status(status),
                status,
                parse_retry_after(response.headers.get("retry-after"), now=time.time()),
            )
        try:
            parsed = parse_response(response.content, self.config.endpoint)
            if len(parsed.choices) > n:
                raise MalformedResponse(f"asked for {n} choices, got {len(parsed.choices)}")
        except MalformedResponse as exc:
            self.stats.count("malformed_body")
            return _Failure(self._scrub(f"malformed response: {exc}"), retryable=True)
        self.stats.count(str(status))
        self.stats.http_requests += 1
        if parsed.usage is None:
            self.stats.responses_without_usage += 1
        else:
            self.stats.prompt_tokens += parsed.usage.prompt_tokens
            self.stats.completion_tokens += parsed.usage.completion_tokens
        if len(parsed.choices) < n and self.config.n_mode == "native":
            got = len(parsed.choices)
            cause = f"asked for n={n} choices, the server returned {got}: use n_mode auto or fanout"
            return _Failure(cause, retryable=False, status=status)
        return parsed
