"""The OpenAI-compatible wire format as data: request bodies out, validated responses in (pure).

:func:`request_body` builds the JSON body of one HTTP request for a
:class:`~prmforge.policies.base.GenerationRequest` (its ``n`` and ``seed`` are
parameters: fanout sends ``n=1`` with ``seed + i``):

- ``completions``: ``prompt`` is :func:`~prmforge.policies.prompting.raw_prompt`;
- ``chat``: ``messages`` from :func:`~prmforge.policies.prompting.chat_prompt`;
  with a step prefix (only with ``continue_final_message``) the steps are a last
  assistant message and the body asks vLLM to continue it
  (``continue_final_message: true, add_generation_prompt: false``).

Both carry ``model``, ``max_tokens``, ``temperature``, ``top_p``, ``seed``,
``n`` and, when there are stop strings, ``stop``.

:func:`parse_response` reads a response body into a :class:`WireResponse` or
raises :class:`MalformedResponse` (not JSON, no ``choices``, a mistyped field,
an ``error`` object), never a ``KeyError`` or ``TypeError``. Choices are put
in ``index`` order. ``usage`` is optional (None when the server sends none).

:func:`split_tokens` shares a response's ``usage.completion_tokens`` among its
choices (the API gives no per-choice count); :func:`to_completion` makes a
:class:`~prmforge.policies.base.Completion` of a choice, cutting at the stop
strings (servers that ignore ``stop``, or keep the stop string, as
``transformers serve`` does, are cut the same way).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from prmforge.policies.base import Completion, GenerationRequest
from prmforge.policies.prompting import chat_prompt, cut_at_stop, raw_prompt
from prmforge.schemas.engines import OpenAIEngineConfig

__all__ = [
    "MalformedResponse",
    "WireChoice",
    "WireResponse",
    "WireUsage",
    "check_request",
    "endpoint_path",
    "parse_response",
    "request_body",
    "split_tokens",
    "to_completion",
]

Endpoint = Literal["completions", "chat"]


class MalformedResponse(ValueError):
    """A 2xx response whose body is not a completion response (the engine retries it)."""


@dataclass(frozen=True, slots=True)
class WireChoice:
    index: int
    text: str
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class WireUsage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class WireResponse:
    choices: tuple[WireChoice, ...]
    usage: WireUsage | None


def endpoint_path(endpoint: Endpoint) -> str:
    """The path below ``base_url`` that ``endpoint`` posts to."""
    return "chat/completions" if endpoint == "chat" else "completions"


def check_request(config: OpenAIEngineConfig, request: GenerationRequest) -> None:
    """Refuse, before anything is sent, a request this configuration cannot serve."""
    if request.n < 1:
        raise ValueError(f"a request asks for n={request.n} completions; n must be >= 1")
    if config.endpoint == "chat" and request.prefix and not config.continue_final_message:
        raise ValueError(
            "endpoint: chat cannot continue a step prefix without continue_final_message: true "
            f"(request for problem {request.problem_id!r} has {len(request.prefix)} prefix steps); "
            "set continue_final_message (vLLM) or use endpoint: completions"
        )


def request_body(
    config: OpenAIEngineConfig, request: GenerationRequest, *, n: int, seed: int
) -> dict[str, Any]:
    """The JSON body asking for ``n`` completions of ``request`` seeded ``seed``."""
    check_request(config, request)
    sampling = request.sampling
    body: dict[str, Any] = {"model": config.model}
    if config.endpoint == "chat":
        prompt = chat_prompt(config.prompt, request.question, request.prefix)
        messages = prompt.as_messages()
        if request.prefix:
            messages.append({"role": "assistant", "content": prompt.assistant_prefix})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        body["messages"] = messages
    else:
        body["prompt"] = raw_prompt(config.prompt, request.question, request.prefix)
    body.update(
        max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p, seed=seed, n=n
    )
    if config.prompt.stop:
        body["stop"] = list(config.prompt.stop)
    return body


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name)
    if not _is_int(value) or value < 0:
        raise MalformedResponse(f"usage.{name} is {value!r}, not a non-negative integer")
    return value


def _usage(raw: object) -> WireUsage | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise MalformedResponse(f"usage is a {type(raw).__name__}, not an object")
    return WireUsage(_count(raw, "prompt_tokens"), _count(raw, "completion_tokens"))


def _choice(raw: object, position: int, endpoint: Endpoint) -> WireChoice:
    where = f"choices[{position}]"
    if not isinstance(raw, dict):
        raise MalformedResponse(f"{where} is a {type(raw).__name__}, not an object")
    index = raw.get("index", position)
    if not _is_int(index) or index < 0:
        raise MalformedResponse(f"{where}.index is {index!r}, not a non-negative integer")
    if endpoint == "chat":
        message = raw.get("message")
        if not isinstance(message, dict):
            raise MalformedResponse(f"{where}.message is missing or not an object")
        text = message.get("content")
        text = "" if text is None else text  # null content: nothing was generated (e.g. all reasoning)
        field = f"{where}.message.content"
    else:
        text = raw.get("text")
        field = f"{where}.text"
    if not isinstance(text, str):
        raise MalformedResponse(f"{field} is {type(text).__name__}, not a string")
    finish = raw.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise MalformedResponse(f"{where}.finish_reason is {finish!r}, not a string")
    return WireChoice(index, text, finish)


def parse_response(raw: bytes, endpoint: Endpoint) -> WireResponse:
    """The choices (in ``index`` order) and usage of a response body; :class:`MalformedResponse` if none."""
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedResponse(f"the body is not JSON ({exc}; {len(raw)} bytes)") from None
    if not isinstance(payload, dict):
        raise MalformedResponse(f"the body is a JSON {type(payload).__name__}, not an object")
    if "error" in payload and "choices" not in payload:
        raise MalformedResponse(f"the body is an error: {str(payload['error'])[:200]}")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse(f"choices is {str(choices)[:80]}, not a non-empty list")
    parsed = sorted((_choice(c, i, endpoint) for i, c in enumerate(choices)), key=lambda c: c.index)
    if len({c.index for c in parsed}) != len(parsed):
        raise MalformedResponse(f"choices repeat an index: {[c.index for c in parsed]}")
    return WireResponse(tuple(parsed), _usage(payload.get("usage")))


def split_tokens(total: int, parts: int) -> list[int]:
    """``total`` shared among ``parts`` choices: equal shares, the remainder one each to the first."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    share, extra = divmod(total, parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


def to_completion(choice: WireChoice, tokens: int, stops: Sequence[str]) -> Completion:
    """The choice's text cut at the first stop string; ``length`` only when the server ran out of tokens
    and no stop string was found."""
    text, cut = cut_at_stop(choice.text, stops)
    finish: Literal["stop", "length"] = "length" if choice.finish_reason == "length" and not cut else "stop"
    return Completion(text=text, tokens=tokens, finish_reason=finish)
