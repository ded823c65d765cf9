"""vLLM's offline engine behind the policy protocol (a thin adapter; vLLM is an optional extra).

vLLM cannot share an environment with apache-beam (it pins a CUDA torch, an
older transformers and protobuf 7), so it is imported lazily here and installed
in its own environment: ``pip install 'prmforge[vllm]'`` (see the README).

Every request of a call goes to one ``LLM.generate`` so vLLM schedules them
together; each carries its own ``SamplingParams(seed=…, n=…)`` (vLLM honours a
per-request seed only when every request in the batch has one, so all do);
prefix caching is on by default, so the ``n`` completions of a request and the
Monte Carlo requests that share a rollout's prefix reuse its KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from prmforge.policies.base import Completion, GenerationRequest, GenerationResult
from prmforge.policies.hf_engine import model_identity
from prmforge.policies.prompting import chat_prompt, chat_text, cut_at_stop, prompt_fingerprint, raw_prompt
from prmforge.schemas.engines import VllmEngineConfig

__all__ = ["VllmPolicy", "import_vllm"]

INSTALL_HINT = (
    "the vllm engine needs vLLM, which cannot be installed beside apache-beam: make a separate "
    "environment and run `pip install 'prmforge[vllm]'` there (see the README, 'vLLM')"
)


def import_vllm() -> Any:
    """The ``vllm`` module, or an ImportError that says how to install it."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from None
    return vllm


class VllmPolicy:
    """``LLM.generate`` over all of a call's requests (see the module docstring)."""

    def __init__(self, config: VllmEngineConfig, llm: Any = None, vllm_module: Any = None) -> None:
        vllm = vllm_module or import_vllm()
        self.config = config
        self._vllm = vllm
        self.llm = llm or vllm.LLM(
            model=config.model,
            revision=config.revision,
            dtype=config.dtype,
            enable_prefix_caching=config.prefix_caching,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_model_len=config.max_model_len,
            tensor_parallel_size=config.tensor_parallel_size,
        )
        self.tokenizer = self.llm.get_tokenizer()
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if config.prompt.chat == "always" and not has_template:
            raise ValueError(f"policy.prompt.chat: always, but {config.model} has no chat template")
        self.chat = has_template and config.prompt.chat != "never"
        self._fingerprint = (
            f"vllm:{model_identity(config.model, config.revision)}:{config.dtype}:"
            f"{prompt_fingerprint(config.prompt, self.chat)}"
        )

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _text(self, request: GenerationRequest) -> str:
        if self.chat:
            return chat_text(
                self.tokenizer, chat_prompt(self.config.prompt, request.question, request.prefix)
            )
        return raw_prompt(self.config.prompt, request.question, request.prefix)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        params = [
            self._vllm.SamplingParams(
                n=r.n,
                seed=r.seed,
                temperature=r.sampling.temperature,
                top_p=r.sampling.top_p,
                max_tokens=r.sampling.max_tokens,
                stop=list(self.config.prompt.stop) or None,
            )
            for r in requests
        ]
        prompts = [{"prompt": self._text(r)} for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for output in outputs:
            completions = []
            for choice in output.outputs:
                text, _ = cut_at_stop(choice.text, self.config.prompt.stop)
                finish: Literal["stop", "length"] = "length" if choice.finish_reason == "length" else "stop"
                completions.append(Completion(text, len(choice.token_ids), finish))
            results.append(GenerationResult(tuple(completions), len(output.prompt_token_ids)))
        return results
