"""The vLLM adapter: lazy import with an install hint, and what it sends to ``LLM.generate``.

vLLM cannot be installed here (it pins a CUDA torch beside apache-beam's pins), so the request
shape is checked against a stand-in of the ``vllm`` module named as such (``FakeVllm``), at the one
seam that cannot run on these machines; the real-engine test runs wherever ``vllm`` imports.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from prmforge.policies.base import GenerationRequest
from prmforge.policies.vllm_engine import INSTALL_HINT, VllmPolicy, import_vllm
from prmforge.schemas.engines import PromptConfig, VllmEngineConfig
from prmforge.schemas.records import Problem, SamplingParams

PROBLEM = Problem("p", "math", "What is 2 + 3?", "5", "test")


@dataclass
class _Choice:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class _Output:
    prompt_token_ids: list[int]
    outputs: list[_Choice]


@dataclass
class _Params:
    n: int
    seed: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: list[str] | None


@dataclass
class _Tokenizer:
    chat_template: str | None = None


@dataclass
class FakeVllmLLM:
    """Stands in for ``vllm.LLM`` (a GPU engine): records every generate call, answers by rule."""

    calls: list[tuple[list[dict[str, str]], list[_Params]]] = field(default_factory=list)
    tokenizer: _Tokenizer = field(default_factory=_Tokenizer)

    def get_tokenizer(self) -> _Tokenizer:
        return self.tokenizer

    def generate(self, prompts: list[dict[str, str]], params: list[_Params], use_tqdm: bool) -> list[_Output]:
        self.calls.append((prompts, params))
        return [
            _Output(
                list(range(len(p["prompt"].split()))),
                [
                    _Choice(f"seed {q.seed + i} STOP tail", [1, 2, 3], "length" if i else "stop")
                    for i in range(q.n)
                ],
            )
            for p, q in zip(prompts, params, strict=True)
        ]


class FakeVllm:
    """Stands in for the ``vllm`` module: its ``SamplingParams`` record what the adapter asks for."""

    SamplingParams = _Params


def test_every_request_goes_in_one_call_with_its_own_seed_and_n() -> None:
    llm = FakeVllmLLM()
    config = VllmEngineConfig(model="some/model", prompt=PromptConfig(stop=["STOP"]))
    policy = VllmPolicy(config, llm=llm, vllm_module=FakeVllm)
    sampling = SamplingParams(0.7, 0.9, 32)
    requests = [
        GenerationRequest(PROBLEM, (), 2, sampling, 11),
        GenerationRequest(PROBLEM, ("2 + 3 = 5",), 3, sampling, 12),
    ]
    results = policy.generate(requests)
    assert len(llm.calls) == 1
    prompts, params = llm.calls[0]
    assert [p["prompt"] for p in prompts] == ["What is 2 + 3?\n\n", "What is 2 + 3?\n\n2 + 3 = 5\n\n"]
    assert [(q.n, q.seed, q.temperature, q.top_p, q.max_tokens, q.stop) for q in params] == [
        (2, 11, 0.7, 0.9, 32, ["STOP"]),
        (3, 12, 0.7, 0.9, 32, ["STOP"]),
    ]
    assert [c.text for c in results[1].completions] == ["seed 12 ", "seed 13 ", "seed 14 "]
    assert [c.finish_reason for c in results[1].completions] == ["stop", "length", "length"]
    assert [c.tokens for c in results[0].completions] == [3, 3]
    assert results[1].prompt_tokens == 10  # the prompt token ids vLLM reports
    assert policy.fingerprint == "vllm:some/model@main:auto:chat=off,stop=['STOP']"


def test_chat_always_needs_the_models_template() -> None:
    with pytest.raises(
        ValueError, match=r"policy\.prompt\.chat: always, but some/model has no chat template"
    ):
        VllmPolicy(
            VllmEngineConfig(model="some/model", prompt=PromptConfig(chat="always")),
            llm=FakeVllmLLM(),
            vllm_module=FakeVllm,
        )


def test_a_missing_vllm_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'prmforge\[vllm\]'") as info:
        import_vllm()
    assert INSTALL_HINT in str(info.value)


def test_the_real_engine_where_vllm_imports(tiny_model_dir: Path) -> None:
    """Runs only in an environment with vLLM (see the README's vLLM section)."""
    pytest.importorskip("vllm", reason="vLLM is an optional extra, installed in its own environment")
    policy = VllmPolicy(VllmEngineConfig(model=str(tiny_model_dir), max_model_len=512))
    request = GenerationRequest(PROBLEM, ("2 + 3 = 5",), 2, SamplingParams(1.0, 1.0, 8), 5)
    first = policy.generate([request])
    assert len(first[0].completions) == 2
    assert policy.generate([request]) == first  # a seed on every request: reproducible
