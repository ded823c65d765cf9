"""Configuration of the generation engines: the policy (``policy:``) and a judge's ``engine:``.

Every engine config has a ``kind``; the three model engines share the prompt
options (:class:`PromptConfig`) and the sampling defaults::

    policy: {kind: transformers, model: ./tiny-model}
    policy: {kind: openai, base_url: http://127.0.0.1:8000/v1, model: NAME, api_key_env: OPENAI_API_KEY}
    policy: {kind: vllm, model: Qwen/Qwen2.5-Math-7B-Instruct}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from prmforge.schemas.config import SamplingConfig, ScriptedConfig, Strict

__all__ = [
    "EngineConfig",
    "OpenAIEngineConfig",
    "PolicyConfig",
    "PromptConfig",
    "SimulatedPolicyConfig",
    "TransformersEngineConfig",
    "VllmEngineConfig",
]


class PromptConfig(Strict):
    """How a request (a question and the steps so far) becomes the model's input."""

    chat: Literal["auto", "always", "never"] = Field(
        "auto",
        description="auto: use the chat template where the model (or endpoint) has one; always: require "
        "it; never: raw text (question, then each step, blank-line separated)",
    )
    system: str | None = Field(None, description="a system message put before the question (chat only)")
    instruction: str = Field(
        "{question}",
        description="the user turn (chat) or the text before the steps (raw); `{question}` is replaced",
    )
    stop: list[str] = Field(default_factory=list, description="stop strings (the stop string is not kept)")

    @field_validator("instruction")
    @classmethod
    def _has_question(cls, value: str) -> str:
        if "{question}" not in value:
            raise ValueError("must contain the placeholder {question}")
        return value


class SimulatedPolicyConfig(Strict):
    """The built-in stochastic solver (math) and scripted policy (logic, code): exact truth, no model."""

    kind: Literal["simulated"] = Field("simulated", description="the generation backend")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="how rollouts are sampled")
    params: dict[str, float] = Field(
        default_factory=dict, description="overrides of the simulated policy's parameters"
    )
    scripted: ScriptedConfig = Field(
        default_factory=ScriptedConfig, description="the scripted policy of the logic and code suites"
    )


class TransformersEngineConfig(Strict):
    """A Hugging Face transformers causal LM, in this process (CPU or GPU)."""

    kind: Literal["transformers"] = "transformers"
    model: str = Field(..., min_length=1, description="a local directory or a Hub model name")
    revision: str | None = Field(None, description="the Hub revision (a commit is reproducible)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="weights' dtype")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda, cuda:1, …")
    batch_size: int = Field(64, ge=1, description="most sequences in one generate call")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads on CPU; default: the cores this process may use divided by the "
        "runner's workers, at most torch's own setting (OMP_NUM_THREADS); more threads than cores "
        "makes every worker many times slower",
    )
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="how requests become inputs")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="how rollouts are sampled")


class OpenAIEngineConfig(Strict):
    """Any OpenAI-compatible HTTP server: vllm serve, SGLang, TGI, llama.cpp, transformers serve, APIs."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(..., min_length=1, description="the API root, e.g. http://127.0.0.1:8000/v1")
    model: str = Field(..., min_length=1, description="the served model's name")
    api_key_env: str | None = Field(
        None, description="the environment variable holding the API key (the key is never stored)"
    )
    endpoint: Literal["completions", "chat"] = Field(
        "completions",
        description="completions: raw prefix continuation; chat: the chat endpoint (with the steps as "
        "the start of the assistant turn when `continue_final_message` is on)",
    )
    continue_final_message: bool = Field(
        False, description="send the steps as an assistant prefix to continue (vLLM's extension)"
    )
    n_mode: Literal["auto", "native", "fanout"] = Field(
        "auto",
        description="native: one request with `n`; fanout: n requests of n=1 (seed+i); auto: native, "
        "topped up by fanout when the server returns fewer choices",
    )
    concurrency: int = Field(8, ge=1, description="most requests in flight")
    requests_per_second: float | None = Field(None, gt=0, description="token-bucket rate limit")
    burst: int = Field(4, ge=1, description="the token bucket's size")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout, seconds")
    max_retries: int = Field(5, ge=0, description="retries on 429, 5xx, timeouts and connection errors")
    backoff_s: float = Field(0.5, gt=0, description="first retry delay (doubles, with full jitter)")
    max_backoff_s: float = Field(30.0, gt=0, description="longest retry delay")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="how requests become inputs")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="how rollouts are sampled")


class VllmEngineConfig(Strict):
    """vLLM's offline engine (`pip install prmforge[vllm]` in its own environment)."""

    kind: Literal["vllm"] = "vllm"
    model: str = Field(..., min_length=1, description="a local directory or a Hub model name")
    revision: str | None = Field(None, description="the Hub revision")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="weights' dtype")
    prefix_caching: bool = Field(True, description="vLLM's automatic prefix caching")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of GPU memory vLLM takes")
    max_model_len: int | None = Field(None, ge=1, description="context length (lower it to avoid OOM)")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="how requests become inputs")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="how rollouts are sampled")


EngineConfig = Annotated[
    TransformersEngineConfig | OpenAIEngineConfig | VllmEngineConfig, Field(discriminator="kind")
]
"""A model engine (what a judge runs on)."""

PolicyConfig = Annotated[
    SimulatedPolicyConfig | TransformersEngineConfig | OpenAIEngineConfig | VllmEngineConfig,
    Field(discriminator="kind"),
]
"""The policy: the built-in simulated one, or a model engine."""
