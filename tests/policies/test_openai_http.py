"""The OpenAI-compatible HTTP engine against a real ``transformers serve`` and a fault-injecting proxy.

Facts about ``transformers serve`` (transformers 5.x) these tests rely on and pin:

- it ignores ``n`` (one choice per response), so ``n_mode: auto`` tops up with
  fanout requests and gives exactly what ``fanout`` gives;
- it honours ``seed`` (``torch.manual_seed`` before generating), but the seed is
  process-global: concurrent requests race for it, so every test that compares
  texts sends one request at a time (``concurrency: 1``);
- it applies ``stop`` but keeps the stop string in the text (the engine cuts it);
- ``usage.completion_tokens`` is the number of tokens it generated;
- it refuses fields it does not know with 422 (``continue_final_message``).

Everything listens on 127.0.0.1. Tests marked ``slow`` share one server per module.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_servers import (
    FaultProxy,
    Hang,
    Reply,
    ServeProcess,
    Truncate,
    completion_body,
    proxy_to,
    scripted,
    start_transformers_serve,
    wait_until,
)

from prmforge.policies.base import GenerationRequest, GenerationResult
from prmforge.policies.openai_client import Exchanger, OpenAIStats, Session
from prmforge.policies.openai_http import EngineRequestError, OpenAIPolicy
from prmforge.policies.rate_limit import TokenBucket
from prmforge.schemas.engines import OpenAIEngineConfig
from prmforge.schemas.records import Problem, SamplingParams

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-7f3a9c-secret"


def problem(i: int) -> Problem:
    return Problem(f"p{i}", "math", f"What is {i} + 4?", str(i + 4), "test")


def request(
    i: int = 0, *, n: int = 1, seed: int = 11, max_tokens: int = 8, prefix: tuple[str, ...] = ()
) -> GenerationRequest:
    return GenerationRequest(problem(i), prefix, n, SamplingParams(0.8, 1.0, max_tokens), seed)


def config(base_url: str, model: str = "tiny", **overrides: Any) -> OpenAIEngineConfig:
    values: dict[str, Any] = {
        "base_url": base_url,
        "model": model,
        "concurrency": 1,
        "timeout_s": 20.0,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
    }
    return OpenAIEngineConfig.model_validate({**values, **overrides})


def run(cfg: OpenAIEngineConfig, requests: list[GenerationRequest], **kw: Any) -> list[GenerationResult]:
    with OpenAIPolicy(cfg, **kw) as policy:
        return policy.generate(requests)


def canned(text: str = "ok", **kw: Any) -> Reply:
    return Reply(200, completion_body([text], **kw))


def http_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "prmforge-openai-http"]


# ----- the real server -----


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    for module in ("transformers", "fastapi", "uvicorn", "openai"):  # transformers serve's own needs
        pytest.importorskip(module)
    from prmforge.policies.tiny_model import write_tiny_model

    root = tmp_path_factory.mktemp("tiny-serve")
    write_tiny_model(root / "model")
    server = start_transformers_serve(root / "model", root / "serve.log", python=sys.executable)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def baseline(served: ServeProcess) -> GenerationResult:
    """The fault-free result of ``request()``, straight from the server."""
    (result,) = run(config(served.base_url, served.model), [request()])
    return result


@pytest.fixture
def proxy(served: ServeProcess) -> Iterator[FaultProxy]:
    with proxy_to(served.origin) as p:
        yield p


@pytest.mark.slow
def test_completions_n2_tops_up_with_fanout_seeds_and_counts_the_servers_usage(
    served: ServeProcess, proxy: FaultProxy
) -> None:
    with OpenAIPolicy(config(proxy.base_url, served.model)) as policy:
        (result,) = policy.generate([request(n=2, seed=41)])
    first, second = proxy.exchanges
    assert (first.body["n"], first.body["seed"], second.body["n"], second.body["seed"]) == (2, 41, 1, 42)
    assert [len(e.upstream_json["choices"]) for e in proxy.exchanges] == [1, 1]  # it ignores n
    usages = [e.upstream_json["usage"] for e in proxy.exchanges]
    assert [c.tokens for c in result.completions] == [u["completion_tokens"] for u in usages]
    assert [c.text for c in result.completions] == [
        e.upstream_json["choices"][0]["text"] for e in (first, second)
    ]
    assert result.prompt_tokens == usages[0]["prompt_tokens"] > 0
    stats = policy.stats
    assert (stats.requests, stats.http_requests, stats.attempts, stats.retries, stats.completions) == (
        1,
        2,
        2,
        0,
        2,
    )
    assert stats.completion_tokens == sum(u["completion_tokens"] for u in usages)
    assert stats.prompt_tokens == sum(u["prompt_tokens"] for u in usages)
    assert stats.by_status == {"200": 2}


@pytest.mark.slow
def test_auto_gives_what_fanout_gives_against_a_server_that_ignores_n(served: ServeProcess) -> None:
    auto = run(config(served.base_url, served.model, n_mode="auto"), [request(n=3, seed=5)])
    fanout = run(config(served.base_url, served.model, n_mode="fanout"), [request(n=3, seed=5)])
    assert auto == fanout
    assert len({c.text for c in auto[0].completions}) == 3  # three seeds, three texts


@pytest.mark.slow
def test_the_server_honours_seed(served: ServeProcess) -> None:
    cfg = config(served.base_url, served.model)
    once, again, other = run(cfg, [request(seed=3), request(seed=3), request(seed=4)])
    assert once == again
    assert once.completions[0].text != other.completions[0].text


@pytest.mark.slow
def test_native_mode_refuses_a_server_that_ignores_n(served: ServeProcess) -> None:
    with pytest.raises(EngineRequestError, match="asked for n=2 choices, the server returned 1") as err:
        run(config(served.base_url, served.model, n_mode="native"), [request(n=2)])
    assert err.value.attempts == 1


@pytest.mark.slow
def test_chat_endpoint_with_a_system_message(served: ServeProcess, proxy: FaultProxy) -> None:
    cfg = config(proxy.base_url, served.model, endpoint="chat", prompt={"system": "Answer briefly."})
    (result,) = run(cfg, [request(seed=8)])
    (exchange,) = proxy.exchanges
    assert exchange.body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 0 + 4?"},
    ]
    assert "continue_final_message" not in exchange.body
    upstream = exchange.upstream_json
    assert result.completions[0].text == upstream["choices"][0]["message"]["content"]
    assert result.completions[0].tokens == upstream["usage"]["completion_tokens"]
    assert result.prompt_tokens == upstream["usage"]["prompt_tokens"]


@pytest.mark.slow
def test_max_tokens_ends_with_finish_length(served: ServeProcess) -> None:
    (result,) = run(config(served.base_url, served.model), [request(seed=21, max_tokens=3)])
    (completion,) = result.completions
    assert (completion.tokens, completion.finish_reason) == (3, "length")


@pytest.mark.slow
def test_stop_strings_are_cut_even_though_the_server_keeps_them(
    served: ServeProcess, proxy: FaultProxy
) -> None:
    (free,) = run(config(served.base_url, served.model), [request(seed=31, max_tokens=16)])
    text = free.completions[0].text
    stop = next(text[i : i + 2] for i in range(2, len(text) - 1) if text[i : i + 2].isalnum())
    (cut,) = run(
        config(proxy.base_url, served.model, prompt={"stop": [stop]}), [request(seed=31, max_tokens=16)]
    )
    (exchange,) = proxy.exchanges
    assert exchange.body["stop"] == [stop]
    assert cut.completions[0].text == text[: text.index(stop)]
    assert cut.completions[0].finish_reason == "stop"
    assert stop in exchange.upstream_json["choices"][0]["text"]  # the server left it in


@pytest.mark.slow
def test_chat_prefix_with_continue_final_message_is_sent_and_transformers_serve_refuses_it(
    served: ServeProcess, proxy: FaultProxy
) -> None:
    cfg = config(proxy.base_url, served.model, endpoint="chat", continue_final_message=True)
    with pytest.raises(EngineRequestError, match="HTTP 422") as err:
        run(cfg, [request(prefix=("Step 1: 0 + 4 = 4.",))])
    assert (err.value.status, err.value.attempts) == (422, 1)
    (exchange,) = proxy.exchanges
    assert exchange.body["messages"][-1] == {"role": "assistant", "content": "Step 1: 0 + 4 = 4.\n\n"}
    assert (exchange.body["continue_final_message"], exchange.body["add_generation_prompt"]) == (True, False)


def test_chat_prefix_without_continue_final_message_is_refused_before_sending() -> None:
    with proxy_to(None, lambda number, body: canned()) as proxy:
        policy = OpenAIPolicy(config(proxy.base_url, endpoint="chat"))
        with pytest.raises(ValueError, match="continue_final_message"):
            policy.generate([request(0), request(1, prefix=("Step 1.",))])
        assert proxy.exchanges == []


# ----- faults, through the proxy to the real server -----


@pytest.mark.slow
def test_429_with_retry_after_is_honoured(served: ServeProcess, baseline: GenerationResult) -> None:
    with proxy_to(served.origin, scripted(Reply(429, b'{"error": "slow down"}', retry_after="1"))) as proxy:
        with OpenAIPolicy(config(proxy.base_url, served.model)) as policy:
            (result,) = policy.generate([request()])
        assert result == baseline
        waited = proxy.exchanges[1].arrived_s - proxy.exchanges[0].arrived_s
        assert waited >= 1.0
        assert (len(proxy.exchanges), len(proxy.forwarded())) == (2, 1)
    stats = policy.stats
    assert (stats.attempts, stats.retries, stats.by_status) == (2, 1, {"429": 1, "200": 1})
    assert stats.backoff_s == 1.0  # Retry-After, above max_backoff_s (0.05)


@pytest.mark.slow
def test_three_500s_then_success(served: ServeProcess, baseline: GenerationResult) -> None:
    plan = scripted(*[Reply(500, b"boom")] * 3)
    with proxy_to(served.origin, plan) as proxy:
        with OpenAIPolicy(config(proxy.base_url, served.model)) as policy:
            (result,) = policy.generate([request()])
        assert len(proxy.forwarded()) == 1
    assert result == baseline
    assert (policy.stats.attempts, policy.stats.retries) == (4, 3)
    assert policy.stats.by_status == {"500": 3, "200": 1}
    assert 0 < policy.stats.backoff_s <= 0.01 + 0.02 + 0.04


@pytest.mark.slow
def test_a_hang_past_the_timeout_is_retried(served: ServeProcess, baseline: GenerationResult) -> None:
    # timeout_s bounds every attempt, the retry's real generation too: 5 s is far above it even on a loaded
    # machine, and the hang far above that (the proxy cancels it on exit), so finishing well before the hang
    # ends shows the client gave up on it after timeout_s
    with proxy_to(served.origin, scripted(Hang(120.0))) as proxy:
        started = time.monotonic()
        with OpenAIPolicy(config(proxy.base_url, served.model, timeout_s=5.0)) as policy:
            (result,) = policy.generate([request()])
        elapsed = time.monotonic() - started
        assert len(proxy.exchanges) == 2
    assert result == baseline
    assert 5.0 <= elapsed < 60.0
    assert (policy.stats.attempts, policy.stats.by_status) == (2, {"timeout": 1, "200": 1})


@pytest.mark.slow
def test_a_body_cut_mid_response_is_retried_and_paid_once_in_the_stats(
    served: ServeProcess, baseline: GenerationResult
) -> None:
    with proxy_to(served.origin, scripted(Truncate())) as proxy:
        with OpenAIPolicy(config(proxy.base_url, served.model)) as policy:
            (result,) = policy.generate([request()])
        assert len(proxy.forwarded()) == 2  # the server generated twice ...
        # an answer is marked delivered once its write drains, which may be just after the client read it
        assert wait_until(lambda: len(proxy.delivered()) == 1, timeout_s=10)
        (delivered,) = proxy.delivered()
    assert result == baseline
    usage = delivered.upstream_json["usage"]
    assert result.completions[0].tokens == usage["completion_tokens"]
    stats = policy.stats
    assert (stats.prompt_tokens, stats.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert (stats.attempts, stats.by_status) == (2, {"incomplete_body": 1, "200": 1})  # ... counted once


@pytest.mark.slow
def test_malformed_bodies_are_retried(served: ServeProcess, baseline: GenerationResult) -> None:
    plan = scripted(
        Reply(200, b'{"choices": 5}'), Reply(200, b'{"choi'), Reply(200, b'{"choices": [{"x": 1}]}')
    )
    with proxy_to(served.origin, plan) as proxy:
        with OpenAIPolicy(config(proxy.base_url, served.model)) as policy:
            (result,) = policy.generate([request()])
        assert len(proxy.exchanges) == 4
    assert result == baseline
    assert policy.stats.by_status == {"malformed_body": 3, "200": 1}
    assert policy.stats.completion_tokens == baseline.completions[0].tokens


# ----- faults with canned answers (no model needed) -----


def test_retries_exhausted_raise_with_status_path_and_attempts() -> None:
    with proxy_to(None, lambda number, body: Reply(503, b"overloaded")) as proxy:
        with pytest.raises(EngineRequestError) as err:
            run(config(proxy.base_url, max_retries=2), [request()])
        assert len(proxy.exchanges) == 3
    assert (err.value.status, err.value.attempts, err.value.path) == (503, 3, "/v1/completions")
    assert str(err.value) == "POST /v1/completions failed after 3 attempts: HTTP 503: overloaded"


def test_malformed_bodies_exhaust_retries_naming_the_field() -> None:
    with proxy_to(None, lambda number, body: Reply(200, b'{"object": "x"}')) as proxy:
        with pytest.raises(EngineRequestError, match="malformed response: choices is None") as err:
            run(config(proxy.base_url, max_retries=1), [request()])
        assert len(proxy.exchanges) == 2
    assert (err.value.attempts, err.value.status) == (2, None)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    with proxy_to(None, lambda number, body: Reply(status, b"no")) as proxy:
        with pytest.raises(EngineRequestError, match=f"after 1 attempt: HTTP {status}: no") as err:
            run(config(proxy.base_url), [request()])
        assert len(proxy.exchanges) == 1
    assert err.value.status == status


def test_a_failure_stops_new_attempts_of_the_other_requests() -> None:
    with proxy_to(None, lambda number, body: Reply(400, b"bad")) as proxy:
        with pytest.raises(EngineRequestError, match="HTTP 400"):
            run(config(proxy.base_url, concurrency=1), [request(i) for i in range(4)])
        assert len(proxy.exchanges) == 1


def test_a_failure_still_hands_over_what_was_in_flight_then_raises() -> None:
    def plan(number: int, body: dict[str, Any]) -> Reply:
        if "0 + 4" in body["prompt"]:
            return Reply(400, b"bad", delay_s=0.1)
        return Reply(200, completion_body(["late"]), delay_s=0.5)

    got: list[tuple[int, str]] = []

    def consume(policy: OpenAIPolicy) -> None:
        for index, result in policy.generate_each([request(0), request(1), request(2)]):
            got.append((index, result.completions[0].text))

    with proxy_to(None, plan) as proxy, OpenAIPolicy(config(proxy.base_url, concurrency=2)) as policy:
        with pytest.raises(EngineRequestError, match="HTTP 400"):
            consume(policy)
        assert len(proxy.exchanges) == 2  # request 2 never started
    assert got == [(1, "late")]


def test_connection_refused_is_retried_then_reported() -> None:
    with proxy_to(None) as proxy:
        url = proxy.base_url
    with pytest.raises(EngineRequestError, match=r"after 2 attempts: connection \(ConnectError") as err:
        run(config(url, max_retries=1), [request()])
    assert err.value.status is None


def test_concurrency_bound_is_respected() -> None:
    with proxy_to(None, lambda number, body: Reply(200, completion_body(["x"]), delay_s=0.15)) as proxy:
        results = run(config(proxy.base_url, concurrency=3), [request(i) for i in range(9)])
        assert proxy.max_in_flight == 3
    assert [r.completions[0].text for r in results] == ["x"] * 9


def test_rate_limit_is_respected() -> None:
    with proxy_to(None, lambda number, body: canned()) as proxy:
        cfg = config(proxy.base_url, concurrency=6, requests_per_second=8.0, burst=2)
        with OpenAIPolicy(cfg) as policy:
            started = time.monotonic()
            policy.generate([request(i) for i in range(6)])
            elapsed = time.monotonic() - started
        assert len(proxy.exchanges) == 6
    # Two at once (the burst), then one every 1/8 s: the sixth cannot start before 4/8 s.
    assert elapsed >= 0.5
    assert 0 < policy.stats.rate_limit_wait_s <= 0.125 + 0.25 + 0.375 + 0.5 + 1e-9


def test_every_attempt_takes_a_token_on_a_fake_clock() -> None:
    """The bucket paces attempts, retries included: exact send times on a fake clock."""
    now = [0.0]
    sent: list[float] = []

    async def advance(seconds: float) -> None:
        now[0] += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(now[0])
        status = 503 if len(sent) == 1 else 200
        return httpx.Response(status, content=completion_body(["x"]))

    cfg = config("http://fake/v1", concurrency=6, requests_per_second=8.0, burst=2)
    stats = OpenAIStats()
    exchanger = Exchanger(cfg, "http://fake/v1/completions", stats, str)

    async def main() -> None:
        bucket = TokenBucket(8.0, 2, clock=lambda: now[0], sleep=advance)
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            session = Session(client, asyncio.Semaphore(6), bucket)
            stop = asyncio.Event()
            await asyncio.gather(*(exchanger.exchange(session, {"model": "m"}, 1, stop) for _ in range(6)))

    asyncio.run(main())
    assert sent == pytest.approx([0.0, 0.0, 0.125, 0.25, 0.375, 0.5, 0.625], abs=1e-9)
    assert (stats.attempts, stats.retries, stats.by_status) == (7, 1, {"503": 1, "200": 6})
    assert stats.rate_limit_wait_s == pytest.approx(0.125 * 5, abs=1e-9)


def test_api_key_is_sent_and_kept_out_of_fingerprint_repr_and_errors() -> None:
    with proxy_to(None, scripted(canned(), Reply(401, f"invalid key {KEY}".encode()))) as proxy:
        cfg = config(proxy.base_url, api_key_env="PRMF_TEST_KEY")
        policy = OpenAIPolicy(cfg, environ={"PRMF_TEST_KEY": KEY})
        policy.generate([request()])
        with pytest.raises(EngineRequestError) as err:
            policy.generate([request(1)])
        policy.close()
        assert [e.headers["authorization"] for e in proxy.exchanges] == [f"Bearer {KEY}"] * 2
    for text in (
        policy.fingerprint,
        repr(policy),
        str(err.value),
        err.value.cause,
        json.dumps(policy.describe()),
    ):
        assert KEY not in text
    assert str(err.value).endswith("HTTP 401: invalid key ***")


def test_missing_api_key_variable_is_named() -> None:
    with pytest.raises(ValueError, match="PRMF_NOT_SET is not set"):
        OpenAIPolicy(config("http://127.0.0.1:9/v1", api_key_env="PRMF_NOT_SET"), environ={})


def test_no_api_key_sends_no_authorization_header() -> None:
    with proxy_to(None, lambda number, body: canned()) as proxy:
        run(config(proxy.base_url), [request()], environ={})
        assert "authorization" not in proxy.exchanges[0].headers


def test_fingerprint_names_model_server_prompt_endpoint_and_n_mode() -> None:
    cfg = config("http://user:pw@10.1.2.3:8000/v1?key=q", model="qwen", prompt={"stop": ["\n\n\n"]})
    policy = OpenAIPolicy(cfg)
    assert (
        policy.fingerprint
        == "openai:qwen@10.1.2.3:8000:chat=off,stop=['\\n\\n\\n']:endpoint=completions:n_mode=auto"
    )
    fanout = OpenAIPolicy(cfg.model_copy(update={"n_mode": "fanout"}))
    assert fanout.fingerprint.endswith(":n_mode=fanout")
    chat = OpenAIPolicy(config("https://api.example.com/v1", model="m", endpoint="chat"))
    assert chat.fingerprint == "openai:m@api.example.com:chat=on:endpoint=chat:n_mode=auto"


def test_contradictory_chat_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"prompt\.chat: always needs endpoint: chat"):
        OpenAIPolicy(config("http://127.0.0.1:9/v1", prompt={"chat": "always"}))
    with pytest.raises(ValueError, match=r"prompt\.chat: never contradicts endpoint: chat"):
        OpenAIPolicy(config("http://127.0.0.1:9/v1", endpoint="chat", prompt={"chat": "never"}))
    with pytest.raises(ValueError, match="base_url must be an http"):
        OpenAIPolicy(config("ftp://127.0.0.1/v1"))
    with pytest.raises(ValueError, match="base_url is not a URL"):
        OpenAIPolicy(config("http://[::1/v1"))


def test_the_policy_is_not_pickled() -> None:
    import pickle

    with pytest.raises(TypeError, match="build it from its config"):
        pickle.dumps(OpenAIPolicy(config("http://127.0.0.1:9/v1")))


def test_several_choices_share_usage_and_missing_usage_counts_zero() -> None:
    three = Reply(200, completion_body(["a", "b", "c"], prompt_tokens=7, completion_tokens=10))
    no_usage = Reply(
        200, json.dumps({"choices": [{"index": 0, "text": "z", "finish_reason": "length"}]}).encode()
    )
    with (
        proxy_to(None, scripted(three, no_usage)) as proxy,
        OpenAIPolicy(config(proxy.base_url, n_mode="native")) as policy,
    ):
        shared, bare = policy.generate([request(n=3), request(1)])
    assert [(c.text, c.tokens) for c in shared.completions] == [("a", 4), ("b", 3), ("c", 3)]
    assert shared.prompt_tokens == 7
    assert (bare.completions[0].tokens, bare.completions[0].finish_reason, bare.prompt_tokens) == (
        0,
        "length",
        0,
    )
    assert (policy.stats.completion_tokens, policy.stats.responses_without_usage) == (10, 1)


def test_generate_each_yields_in_completion_order_and_generate_in_request_order() -> None:
    def plan(number: int, body: dict[str, Any]) -> Reply:
        slow = "0 + 4" in body["prompt"]
        return Reply(200, completion_body([body["prompt"][:9]]), delay_s=0.4 if slow else 0.0)

    with proxy_to(None, plan) as proxy, OpenAIPolicy(config(proxy.base_url, concurrency=2)) as policy:
        order = [index for index, _ in policy.generate_each([request(0), request(1)])]
        results = policy.generate([request(0), request(1)])
    assert order == [1, 0]
    assert [r.completions[0].text for r in results] == ["What is 0", "What is 1"]


def test_generate_from_a_thread_without_a_loop_and_close_leaves_no_thread() -> None:
    before = http_threads()
    with proxy_to(None, lambda number, body: canned("t")) as proxy:
        policy = OpenAIPolicy(config(proxy.base_url))
        out: list[list[GenerationResult]] = []
        worker = threading.Thread(target=lambda: out.append(policy.generate([request()])))
        worker.start()
        worker.join(timeout=20)
        assert out[0][0].completions[0].text == "t"
        assert len(http_threads()) == len(before) + 1
        policy.close()
        assert http_threads() == before
        assert policy.generate([request()])[0].completions[0].text == "t"  # starts afresh
        policy.close()
    assert http_threads() == before


def test_closing_generate_each_early_cancels_the_rest() -> None:
    def plan(number: int, body: dict[str, Any]) -> Reply:
        return Reply(200, completion_body(["x"]), delay_s=0.0 if number == 0 else 30.0)

    with proxy_to(None, plan) as proxy:
        with OpenAIPolicy(config(proxy.base_url, concurrency=4)) as policy:
            started = time.monotonic()
            stream = policy.generate_each([request(i) for i in range(4)])
            first = next(stream)
            stream.close()
            assert time.monotonic() - started < 10
        assert first[1].completions[0].text == "x"
        assert policy.stats.requests == 1


# ----- a killed build pays nothing twice -----

CHILD = """
import json, sys
from pathlib import Path
from prmforge.policies.base import GenerationRequest
from prmforge.policies.cache import CachedPolicy, RequestCache
from prmforge.policies.openai_http import OpenAIPolicy
from prmforge.schemas.engines import OpenAIEngineConfig
from prmforge.schemas.records import Problem, SamplingParams

config = OpenAIEngineConfig.model_validate_json(sys.argv[1])
requests = [
    GenerationRequest(Problem(f"k{i}", "math", f"Kill test {i}: what is {i} + 1?", "0", "t"), (), 1,
                      SamplingParams(0.8, 1.0, 4), 100 + i)
    for i in range(12)
]
policy = CachedPolicy(OpenAIPolicy(config), RequestCache(Path(sys.argv[2])))
results = policy.generate(requests)
print(json.dumps({"results": len(results), "hits": policy.hits, "misses": policy.misses}))
"""


def _cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_killed_build_pays_nothing_twice(served: ServeProcess, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    with proxy_to(served.origin) as proxy:
        cfg = config(proxy.base_url, served.model, concurrency=2).model_dump_json()
        command = [sys.executable, "-c", CHILD, cfg, str(cache)]
        proxy.hold_after(5)
        errors = (tmp_path / "child.err").open("wb")
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            delivered_five = wait_until(lambda: len(proxy.delivered()) >= 5, timeout_s=60)
            assert delivered_five, (tmp_path / "child.err").read_text()
            committed = wait_until(lambda: _cached_rows(cache) >= 5, timeout_s=60)  # the child commits them
            assert committed, (tmp_path / "child.err").read_text()
            assert child.poll() is None
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
            errors.close()
        before_kill = {e.body["prompt"] for e in proxy.delivered()}
        assert len(before_kill) == 5
        proxy.release()
        rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout) == {"results": 12, "hits": 5, "misses": 7}
        # an answer is marked delivered once its write drains, which may be just after the child read it
        assert wait_until(lambda: len({e.body["prompt"] for e in proxy.delivered()}) == 12, timeout_s=60)
        delivered = [e.body["prompt"] for e in proxy.delivered()]
    assert {p: delivered.count(p) for p in before_kill} == dict.fromkeys(before_kill, 1)
    assert len(set(delivered)) == 12
