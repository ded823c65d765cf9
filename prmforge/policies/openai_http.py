"""Any OpenAI-compatible HTTP server as a policy: vllm serve, SGLang, TGI, llama.cpp, transformers serve.

``OpenAIPolicy(config)`` posts each :class:`~prmforge.policies.base.GenerationRequest`
to ``{base_url}/completions`` (``endpoint: completions``) or
``{base_url}/chat/completions`` (``endpoint: chat``); bodies and responses are
built and validated by :mod:`prmforge.policies.openai_wire`.

``n`` and seeds (``n_mode``):

- ``native``: one HTTP request with ``n`` and ``seed``; a server that returns
  fewer choices is an :class:`EngineRequestError` (it ignores ``n``);
- ``fanout``: ``n`` requests with ``n=1``, completion ``i`` seeded ``seed + i``;
- ``auto``: native; when the server returns ``k < n`` choices, completions
  ``k..n-1`` are fetched as fanout requests seeded ``seed + k`` … ``seed + n-1``.
  Against a server that ignores ``n`` (``transformers serve``) this gives
  exactly what fanout gives.

Requests run on an event loop in one background thread
(:class:`~prmforge.policies.loop_thread.LoopThread`, started on first use,
stopped by :meth:`OpenAIPolicy.close`), at most ``concurrency`` HTTP requests
in flight, each retried as :mod:`prmforge.policies.openai_client` describes
(429, 5xx, timeouts, lost connections, bodies cut short or garbled). On the
first request that fails for good no new attempt starts, the attempts in flight
finish (their results are still yielded by :meth:`~OpenAIPolicy.generate_each`)
and its :class:`EngineRequestError` is raised.

Accounting (``stats``): only successful responses count. A result's
``prompt_tokens`` is the first response's ``usage.prompt_tokens`` (the prompt,
once); a completion's ``tokens`` is its response's ``usage.completion_tokens``,
shared equally among the choices of a response with several (the remainder one
each to the first choices: the API has no per-choice count). ``stats``
``prompt_tokens`` / ``completion_tokens`` sum every successful response (what a
server bills, top-ups included). A response without ``usage`` counts 0 tokens
and is counted in ``responses_without_usage``.

``fingerprint``: ``openai:`` the model ``@`` the server's host and port (not
the path, query or credentials of ``base_url``), the prompt options, the
endpoint and ``n_mode`` (fanout and native draw different seeds).

The API key (``api_key_env``) is read once, at construction, and sent as
``Authorization: Bearer …``; it is not in the fingerprint, the repr, errors or
logs.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from prmforge.policies.base import Completion, GenerationRequest, GenerationResult
from prmforge.policies.loop_thread import LoopThread, gather_or_cancel
from prmforge.policies.openai_client import Aborted, EngineRequestError, Exchanger, OpenAIStats, Session
from prmforge.policies.openai_wire import (
    WireResponse,
    check_request,
    endpoint_path,
    request_body,
    split_tokens,
    to_completion,
)
from prmforge.policies.prompting import prompt_fingerprint
from prmforge.schemas.engines import OpenAIEngineConfig

__all__ = ["EngineRequestError", "OpenAIPolicy", "OpenAIStats"]


@dataclass(frozen=True, slots=True)
class _Running:
    loop: LoopThread
    session: Session

    def close(self) -> None:
        self.loop.close(self.session.client.aclose)


def _read_api_key(name: str | None, environ: Mapping[str, str]) -> str | None:
    if name is None:
        return None
    key = environ.get(name)
    if not key:
        raise ValueError(f"api_key_env: the environment variable {name} is not set (or is empty)")
    return key


def _uses_chat(config: OpenAIEngineConfig) -> bool:
    chat = config.endpoint == "chat"
    if config.prompt.chat == "always" and not chat:
        raise ValueError("prompt.chat: always needs endpoint: chat (endpoint: completions sends raw text)")
    if config.prompt.chat == "never" and chat:
        raise ValueError("prompt.chat: never contradicts endpoint: chat (use endpoint: completions)")
    return chat


class OpenAIPolicy:
    """An OpenAI-compatible server behind the policy protocol (see the module docstring)."""

    def __init__(
        self,
        config: OpenAIEngineConfig,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.chat = _uses_chat(config)
        self._api_key = _read_api_key(config.api_key_env, os.environ if environ is None else environ)
        try:
            base = httpx.URL(config.base_url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"base_url is not a URL: {exc}") from None
        if base.scheme not in {"http", "https"} or not base.host:
            raise ValueError(
                f"base_url must be an http(s) URL with a host, got {base.copy_with(userinfo=b'')}"
            )
        root = str(base.copy_with(query=None, fragment=None)).rstrip("/")
        self.server = base.host if base.port is None else f"{base.host}:{base.port}"
        self._fingerprint = (
            f"openai:{config.model}@{self.server}:{prompt_fingerprint(config.prompt, self.chat)}:"
            f"endpoint={config.endpoint}:n_mode={config.n_mode}"
        )
        self.stats = OpenAIStats()
        self._exchanger = Exchanger(
            config, f"{root}/{endpoint_path(config.endpoint)}", self.stats, self._scrub
        )
        self.path = self._exchanger.path
        self._transport = transport
        self._running: _Running | None = None
        self._finalizer: weakref.finalize[[], OpenAIPolicy] | None = None
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def __repr__(self) -> str:
        config = self.config
        return f"OpenAIPolicy(model={config.model!r}, server={self.server!r}, endpoint={config.endpoint!r})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("an OpenAIPolicy is not pickled (it holds an API key): build it from its config")

    def describe(self) -> dict[str, Any]:
        """Engine facts for the card: fingerprint, endpoint, n mode and the counters."""
        return {
            "fingerprint": self._fingerprint,
            "endpoint": self.config.endpoint,
            "n_mode": self.config.n_mode,
            "stats": self.stats.as_dict(),
        }

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in request order (built on :meth:`generate_each`)."""
        results: list[GenerationResult | None] = [None] * len(requests)
        for index, result in self.generate_each(requests):
            results[index] = result
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # generate_each yields every index or raises; this guards the invariant
            raise RuntimeError(f"no result for requests {missing}")
        return [r for r in results if r is not None]

    def generate_each(
        self, requests: Sequence[GenerationRequest]
    ) -> Generator[tuple[int, GenerationResult], None, None]:
        """``(index into requests, result)`` as each request completes, in completion order.

        Every request is checked before anything is sent. Closing the iterator
        early cancels what is still running.
        """
        for request in requests:
            check_request(self.config, request)
        if not requests:
            return
        running = self._start()
        items = list(requests)

        def work(emit: Callable[[tuple[int, GenerationResult]], None]) -> Coroutine[Any, Any, None]:
            return self._run_all(items, running.session, emit)

        yield from running.loop.stream(work)

    def close(self) -> None:
        """Stop the loop thread and close the connections (a later call starts afresh)."""
        with self._lock:
            finalizer, self._finalizer, self._running = self._finalizer, None, None
        if finalizer is not None:
            finalizer()  # _Running.close, once

    def __enter__(self) -> OpenAIPolicy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> _Running:
        with self._lock:
            if self._running is not None and self._running.loop.alive:
                return self._running
            headers = {"User-Agent": "prmforge"}
            if self._api_key is not None:
                headers["Authorization"] = f"Bearer {self._api_key}"
            running = _Running(
                LoopThread("prmforge-openai-http"), Session.open(self.config, headers, self._transport)
            )
            self._running, self._finalizer = running, weakref.finalize(self, running.close)
            return running

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    # ----- on the loop -----

    async def _run_all(
        self,
        requests: list[GenerationRequest],
        session: Session,
        emit: Callable[[tuple[int, GenerationResult]], None],
    ) -> None:
        stop = asyncio.Event()
        errors: list[BaseException] = []

        async def one(index: int, request: GenerationRequest) -> None:
            try:
                result = await self._generate_one(request, session, stop)
            except Aborted:
                return
            except Exception as exc:
                errors.append(exc)
                stop.set()
                return
            self.stats.requests += 1
            emit((index, result))

        tasks = [asyncio.create_task(one(i, r)) for i, r in enumerate(requests)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if errors:
            raise errors[0]

    async def _generate_one(
        self, request: GenerationRequest, session: Session, stop: asyncio.Event
    ) -> GenerationResult:
        n, seed = request.n, request.seed

        def ask(count: int, seed: int) -> Coroutine[Any, Any, WireResponse]:
            body = request_body(self.config, request, n=count, seed=seed)
            return self._exchanger.exchange(session, body, count, stop)

        if self.config.n_mode == "fanout":
            responses = await gather_or_cancel([ask(1, seed + i) for i in range(n)])
        else:
            first = await ask(n, seed)
            extra = [ask(1, seed + i) for i in range(len(first.choices), n)]
            responses = [first, *await gather_or_cancel(extra)]
        completions: list[Completion] = []
        for response in responses:
            total = response.usage.completion_tokens if response.usage else 0
            shares = split_tokens(total, len(response.choices))
            for choice, tokens in zip(response.choices, shares, strict=True):
                completions.append(to_completion(choice, tokens, self.config.prompt.stop))
        usage = responses[0].usage
        self.stats.completions += len(completions)
        return GenerationResult(tuple(completions), prompt_tokens=usage.prompt_tokens if usage else 0)
