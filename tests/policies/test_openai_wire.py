"""The OpenAI wire format as data (prmforge.policies.openai_wire): request bodies and response parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from prmforge.policies.base import Completion, GenerationRequest
from prmforge.policies.openai_wire import (
    MalformedResponse,
    WireChoice,
    WireResponse,
    WireUsage,
    endpoint_path,
    parse_response,
    request_body,
    split_tokens,
    to_completion,
)
from prmforge.schemas.engines import OpenAIEngineConfig
from prmforge.schemas.records import Problem, SamplingParams

PROBLEM = Problem("q1", "math", "What is 2 + 3?", "5", "test")
SAMPLING = SamplingParams(temperature=0.5, top_p=0.9, max_tokens=64)


def config(**overrides: Any) -> OpenAIEngineConfig:
    return OpenAIEngineConfig.model_validate({"base_url": "http://127.0.0.1:1/v1", "model": "m", **overrides})


def request(prefix: tuple[str, ...] = (), n: int = 2) -> GenerationRequest:
    return GenerationRequest(PROBLEM, prefix, n, SAMPLING, seed=9)


def test_completions_body_is_the_raw_prompt_with_sampling_seed_n_and_stop() -> None:
    cfg = config(prompt={"instruction": "Solve: {question}", "stop": ["\n\n\n"]})
    body = request_body(cfg, request(("Step 1: 2 + 3 = 5.",)), n=2, seed=9)
    assert body == {
        "model": "m",
        "prompt": "Solve: What is 2 + 3?\n\nStep 1: 2 + 3 = 5.\n\n",
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 9,
        "n": 2,
        "stop": ["\n\n\n"],
    }
    assert endpoint_path(cfg.endpoint) == "completions"


def test_chat_body_without_prefix_has_system_and_user_and_no_stop_when_none() -> None:
    cfg = config(endpoint="chat", prompt={"system": "Be brief."})
    body = request_body(cfg, request(), n=1, seed=10)
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2 + 3?"},
        ],
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 10,
        "n": 1,
    }
    assert endpoint_path(cfg.endpoint) == "chat/completions"


def test_chat_body_with_prefix_continues_the_assistant_message() -> None:
    cfg = config(endpoint="chat", continue_final_message=True)
    body = request_body(cfg, request(("Step 1: add.", "Step 2: 5.")), n=1, seed=3)
    assert body["messages"] == [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "Step 1: add.\n\nStep 2: 5.\n\n"},
    ]
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False


def test_chat_prefix_without_continue_final_message_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="continue_final_message"):
        request_body(config(endpoint="chat"), request(("Step 1.",)), n=1, seed=0)


def test_zero_completions_is_refused() -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        request_body(config(), request(n=0), n=0, seed=0)


def _body(**payload: Any) -> bytes:
    return json.dumps(payload).encode()


def test_parse_completions_orders_choices_by_index_and_reads_usage() -> None:
    raw = _body(
        choices=[
            {"index": 1, "text": "b", "finish_reason": "length"},
            {"index": 0, "text": "a", "finish_reason": "stop"},
        ],
        usage={"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13},
    )
    assert parse_response(raw, "completions") == WireResponse(
        (WireChoice(0, "a", "stop"), WireChoice(1, "b", "length")), WireUsage(4, 9)
    )


def test_parse_chat_reads_message_content_and_null_content_is_empty() -> None:
    raw = _body(
        choices=[
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": None}, "finish_reason": "length"},
        ]
    )
    assert parse_response(raw, "chat") == WireResponse(
        (WireChoice(0, "hi", "stop"), WireChoice(1, "", "length")), None
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"choi', "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "a JSON list, not an object"),
        (_body(error={"message": "overloaded"}), "an error: {'message': 'overloaded'}"),
        (_body(object="text_completion"), "choices is None"),
        (_body(choices=[]), "choices is \\[\\]"),
        (_body(choices="abc"), "choices is abc"),
        (_body(choices=[3]), "choices\\[0\\] is a int"),
        (_body(choices=[{"index": 0}]), "choices\\[0\\].text is NoneType"),
        (_body(choices=[{"index": 0, "text": 5}]), "choices\\[0\\].text is int"),
        (_body(choices=[{"index": "0", "text": "a"}]), "choices\\[0\\].index is '0'"),
        (_body(choices=[{"index": True, "text": "a"}]), "choices\\[0\\].index is True"),
        (_body(choices=[{"text": "a", "finish_reason": 1}]), "finish_reason is 1"),
        (_body(choices=[{"index": 0, "text": "a"}, {"index": 0, "text": "b"}]), "repeat an index"),
        (_body(choices=[{"text": "a"}], usage=[]), "usage is a list"),
        (_body(choices=[{"text": "a"}], usage={"prompt_tokens": 1}), "usage.completion_tokens is None"),
        (_body(choices=[{"text": "a"}], usage={"prompt_tokens": -1, "completion_tokens": 1}), "-1"),
        (_body(choices=[{"text": "a"}], usage={"prompt_tokens": 1.0, "completion_tokens": 1}), "1.0"),
    ],
)
def test_malformed_completions_bodies_raise_malformed_response(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_response(raw, "completions")


def test_malformed_chat_message_is_named() -> None:
    with pytest.raises(MalformedResponse, match=r"choices\[0\].message is missing"):
        parse_response(_body(choices=[{"index": 0, "text": "a"}]), "chat")
    with pytest.raises(MalformedResponse, match=r"choices\[0\].message.content is list"):
        parse_response(_body(choices=[{"message": {"content": ["a"]}}]), "chat")


@pytest.mark.parametrize(
    ("total", "parts", "shares"),
    [(10, 3, [4, 3, 3]), (9, 3, [3, 3, 3]), (2, 3, [1, 1, 0]), (0, 2, [0, 0]), (7, 1, [7])],
)
def test_split_tokens_is_equal_shares_with_the_remainder_first(
    total: int, parts: int, shares: list[int]
) -> None:
    assert split_tokens(total, parts) == shares
    assert sum(split_tokens(total, parts)) == total


def test_to_completion_cuts_at_the_first_stop_and_maps_finish() -> None:
    stops = ["\n\n\n", "STOP"]
    assert to_completion(WireChoice(0, "a STOP b\n\n\n", "stop"), 6, stops) == Completion("a ", 6, "stop")
    # A server that ignored `stop` ran to its token limit: the cut text ended at a stop string.
    assert to_completion(WireChoice(0, "a\n\n\nb", "length"), 8, stops) == Completion("a", 8, "stop")
    assert to_completion(WireChoice(0, "abc", "length"), 8, stops) == Completion("abc", 8, "length")
    assert to_completion(WireChoice(0, "abc", None), 3, stops) == Completion("abc", 3, "stop")
    assert to_completion(WireChoice(0, "abc", "content_filter"), 3, []) == Completion("abc", 3, "stop")
