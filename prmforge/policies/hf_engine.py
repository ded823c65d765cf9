"""The Hugging Face transformers engine: batched sampling with a seed per sequence, on CPU or GPU.

``TransformersPolicy(config)`` loads the model and tokenizer once (a worker's
``setup()`` builds it). ``generate`` expands every request into its ``n``
sequences, sorts them by prompt length, and decodes them in batches of
``batch_size`` with its own loop over the model's KV cache (left padding, one
``torch.Generator`` per sequence seeded from the request's seed and the
completion's index), so each completion depends on its own seed, not on the
batch around it.

Inputs are built by :mod:`prmforge.policies.prompting`: with the tokenizer's
chat template (``prompt.chat``: auto uses it where the tokenizer has one) the
question is the user turn and the steps so far open the assistant turn;
otherwise the raw text. A completion ends at the end-of-sequence token, at a
stop string (cut before it), or after ``max_tokens`` new tokens (or the
model's context length): ``finish_reason`` is "length" only in the last case.

Token accounting is exact: ``prompt_tokens`` is the request's prompt length
(once per request, not per completion); a completion's ``tokens`` counts the
tokens generated for it, the end-of-sequence token included and nothing after
a stop string was completed.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prmforge.policies.base import Completion, GenerationRequest, GenerationResult
from prmforge.policies.prompting import chat_prompt, chat_text, cut_at_stop, prompt_fingerprint, raw_prompt
from prmforge.policies.token_sampling import sample_next
from prmforge.schemas.engines import TransformersEngineConfig
from prmforge.schemas.seeds import derive_seed

__all__ = ["TransformersPolicy", "completion_seed", "model_identity"]

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def completion_seed(seed: int, index: int) -> int:
    """The seed of completion ``index`` of a request seeded ``seed`` (63 bits, for ``torch.Generator``)."""
    return derive_seed("completion", seed, index, bits=63)


def model_identity(model: str, revision: str | None) -> str:
    """What names the weights: ``name@revision`` for the Hub; for a local folder, a hash of its config and
    of its weight files' names and sizes (hashing the weights themselves would cost minutes for 7B)."""
    path = Path(model)
    if not path.is_dir():
        return f"{model}@{revision or 'main'}"
    digest = hashlib.sha256()
    for item in sorted(path.iterdir()):
        if item.name in {"config.json", "generation_config.json"}:
            digest.update(item.name.encode() + b"\0" + item.read_bytes())
        elif item.suffix in {".safetensors", ".bin", ".gguf"}:
            digest.update(f"{item.name}\0{item.stat().st_size}".encode())
    return f"{path.name}#{digest.hexdigest()[:12]}"


@dataclass(slots=True)
class _Sequence:
    request: int
    index: int
    prompt: list[int]
    temperature: float
    top_p: float
    max_new: int
    generator: Any
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: str = ""


class TransformersPolicy:
    """A causal LM from transformers behind the policy protocol (see the module docstring)."""

    def __init__(self, config: TransformersEngineConfig, *, workers: int = 1) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.threads = torch.get_num_threads()
        if self.device.type == "cpu":  # torch's threads are per process: share the cores among workers
            share = max(1, len(os.sched_getaffinity(0)) // max(workers, 1))
            self.threads = config.cpu_threads or min(torch.get_num_threads(), share)
            torch.set_num_threads(self.threads)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(config.model, revision=config.revision)
        dtype: Any = "auto" if config.dtype == "auto" else getattr(torch, _DTYPES[config.dtype])
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            config.model, revision=config.revision, dtype=dtype
        )
        self.model: Any = loaded.to(self.device).eval()
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if config.prompt.chat == "always" and not has_template:
            raise ValueError(f"policy.prompt.chat: always, but {config.model} has no chat template")
        self.chat = has_template and config.prompt.chat != "never"
        self.eos_ids = self._eos_ids()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = next(iter(sorted(self.eos_ids)), 0)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        dtype_name = str(self.model.dtype).removeprefix("torch.")
        self._fingerprint = (
            f"transformers:{model_identity(config.model, config.revision)}:{dtype_name}:"
            f"{prompt_fingerprint(config.prompt, self.chat)}"
        )
        self.generated_tokens = 0
        self.forward_calls = 0
        # transformers renamed the KV cache argument (`past_key_values` -> `cache`) in 5.x.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list):
                ids.update(int(i) for i in source)
        return frozenset(ids)

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The token ids the model continues for ``request``."""
        prompt = self.config.prompt
        if self.chat:
            text = chat_text(self.tokenizer, chat_prompt(prompt, request.question, request.prefix))
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        text = raw_prompt(prompt, request.question, request.prefix)
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        import torch

        prompts = [self.prompt_ids(r) for r in requests]
        sequences: list[_Sequence] = []
        for number, (request, ids) in enumerate(zip(requests, prompts, strict=True)):
            room = max(self.context - len(ids), 0)
            for index in range(request.n):
                generator = torch.Generator(device=self.device)
                generator.manual_seed(completion_seed(request.seed, index))
                sequences.append(
                    _Sequence(
                        number,
                        index,
                        ids,
                        request.sampling.temperature,
                        request.sampling.top_p,
                        min(request.sampling.max_tokens, room),
                        generator,
                    )
                )
        order = sorted(sequences, key=lambda s: (len(s.prompt), s.request, s.index))
        size = self.config.batch_size
        for start in range(0, len(order), size):
            self._decode(order[start : start + size])
        by_request: list[list[_Sequence]] = [[] for _ in requests]
        for seq in sequences:
            by_request[seq.request].append(seq)
        return [
            GenerationResult(
                completions=tuple(Completion(s.text, len(s.tokens), s.finish) for s in group),  # type: ignore[arg-type]
                prompt_tokens=len(ids),
            )
            for group, ids in zip(by_request, prompts, strict=True)
        ]

    def _decode(self, batch: list[_Sequence]) -> None:
        import torch

        width = max(len(s.prompt) for s in batch)
        rows = [[self.pad_id] * (width - len(s.prompt)) + s.prompt for s in batch]
        mask = torch.tensor([[0] * (width - len(s.prompt)) + [1] * len(s.prompt) for s in batch])
        input_ids = torch.tensor(rows, device=self.device)
        mask = mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past = None
        live = [s.max_new > 0 for s in batch]
        for s, alive in zip(batch, live, strict=True):
            if not alive:
                s.finish = "length"
        with torch.inference_mode():
            while any(live):
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    **{self._cache_arg: past},
                    **self._extra,
                )
                self.forward_calls += 1
                past = getattr(out, self._cache_arg)
                logits = out.logits[:, -1, :]
                chosen = sample_next(
                    logits,
                    [s.temperature for s in batch],
                    [s.top_p for s in batch],
                    [s.generator for s in batch],
                )
                step = []
                for i, (s, token) in enumerate(zip(batch, chosen, strict=True)):
                    if not live[i]:
                        step.append(self.pad_id)
                        continue
                    s.tokens.append(token)
                    self.generated_tokens += 1
                    step.append(token)
                    live[i] = not self._finished(s, token)
                input_ids = torch.tensor([[t] for t in step], device=self.device)
                mask = torch.cat([mask, torch.ones((len(batch), 1), dtype=mask.dtype, device=self.device)], 1)
                positions = positions[:, -1:] + 1

    def _finished(self, s: _Sequence, token: int) -> bool:
        """Record why ``s`` ended, if it did, with its final text."""
        stops = self.config.prompt.stop
        if token in self.eos_ids:
            s.text = self._decode_text(s.tokens[:-1], skip_special_tokens=True)
            s.finish = "stop"
            return True
        if stops:
            text, cut = cut_at_stop(self._decode_text(s.tokens, skip_special_tokens=True), stops)
            if cut:
                s.text, s.finish = text, "stop"
                return True
        if len(s.tokens) >= s.max_new:
            s.text = self._decode_text(s.tokens, skip_special_tokens=True)
            s.finish = "length"
            return True
        return False

    def _decode_text(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens))
