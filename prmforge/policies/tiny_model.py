"""A randomly initialised causal LM and a locally trained tokenizer, in Hugging Face format.

``write_tiny_model(out_dir)`` needs no download: the byte-level BPE tokenizer is
trained on the built-in suites' own text (arithmetic stories, logic derivations,
code tasks), the model is a two-layer Llama of a few hundred thousand
parameters with weights drawn from ``seed``. The directory loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``,
serves with ``transformers serve`` and ``vllm serve``, and has a ChatML chat
template. Its text is gibberish: it exists to smoke-test engines, not to solve.

The same ``seed`` gives the same weights and the same tokenizer files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "TinyModelSpec", "suite_corpus", "write_tiny_model"]

# ChatML, as Qwen's models use it; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True, slots=True)
class TinyModelSpec:
    """The shape of the tiny model (defaults: about 300k parameters)."""

    vocab_size: int = 1024
    hidden_size: int = 96
    intermediate_size: int = 256
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 4096
    seed: int = 0


def suite_corpus(problems: int = 60) -> list[str]:
    """Text of the built-in suites (questions, gold answers, one sampled solution each), for the tokenizer."""
    from prmforge.policies.base import GenerationRequest
    from prmforge.policies.scripted import ScriptedParams, ScriptedPolicy
    from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
    from prmforge.schemas.records import SamplingParams
    from prmforge.suites.arith import generate_arith_problems
    from prmforge.suites.code import generate_code_problems
    from prmforge.suites.logic import generate_logic_problems

    sampling = SamplingParams(temperature=0.7, top_p=1.0, max_tokens=1024)
    math_problems = generate_arith_problems(problems, seed=0)
    other = [*generate_logic_problems(problems // 2, seed=0), *generate_code_problems(problems // 4, seed=0)]
    texts: list[str] = []
    for policy, batch in (
        (SimulatedPolicy(SimulatedPolicyParams(), seed=0), math_problems),
        (ScriptedPolicy(ScriptedParams(0.2, 0.5), 0), other),
    ):
        requests = [GenerationRequest(p, (), 1, sampling, i) for i, p in enumerate(batch)]
        for problem, result in zip(batch, policy.generate(requests), strict=True):
            texts.extend([problem.question, problem.gold, *(c.text for c in result.completions)])
    texts.append("The answer is \\boxed{42}. Step 1: 3 + 4 = 7. Step 2: 7 * 6 = 42.")
    return texts


def _tokenizer(spec: TinyModelSpec, corpus: list[str]) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=spec.max_positions,
    )


def write_tiny_model(out_dir: Path, spec: TinyModelSpec | None = None) -> dict[str, object]:
    """Write the model and tokenizer into ``out_dir``; returns a summary (parameters, vocabulary)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = spec or TinyModelSpec()
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(spec, suite_corpus())
    tokenizer.save_pretrained(out_dir)  # type: ignore[attr-defined]
    vocab = len(tokenizer)  # type: ignore[arg-type]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")  # type: ignore[attr-defined]
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")  # type: ignore[attr-defined]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_positions,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=eos, pad_token_id=pad, do_sample=True
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    summary = {
        "path": str(out_dir),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": vocab,
        "architecture": "LlamaForCausalLM",
        "seed": spec.seed,
    }
    (out_dir / "prmforge-tiny-model.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
