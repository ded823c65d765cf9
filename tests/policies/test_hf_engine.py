"""The transformers engine on the tiny local model: seeds, n, prefixes, chat template, stops, tokens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from prmforge.policies.base import GenerationRequest
from prmforge.policies.hf_engine import TransformersPolicy, model_identity
from prmforge.policies.prompting import chat_prompt, chat_text
from prmforge.policies.tiny_model import write_tiny_model
from prmforge.schemas.engines import PromptConfig, TransformersEngineConfig
from prmforge.schemas.records import Problem, SamplingParams

PROBLEM = Problem("p-1", "math", "Ava has 3 marbles and finds 4 more. How many does she have?", "7", "test")
OTHER = Problem("p-2", "math", "Ben has 10 stickers.", "10", "test")
HOT = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=16)


def _engine(model: Path, **prompt: Any) -> TransformersPolicy:
    return TransformersPolicy(
        TransformersEngineConfig(model=str(model), device="cpu", prompt=PromptConfig(**prompt))
    )


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TransformersPolicy:
    return _engine(tiny_model_dir)


def _texts(result: Any) -> list[str]:
    return [c.text for c in result.completions]


def test_the_tiny_model_is_a_few_hundred_thousand_parameters_and_reproducible(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    summary = json.loads((tiny_model_dir / "prmforge-tiny-model.json").read_text())
    assert 200_000 <= summary["parameters"] <= 500_000
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert sum(p.numel() for p in model.parameters()) == summary["parameters"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tokenizer.chat_template is not None
    assert tokenizer.decode(tokenizer("Ava has 3 marbles.")["input_ids"]) == "Ava has 3 marbles."
    write_tiny_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tiny_model_dir / name).read_bytes()


def test_n_completions_each_with_its_own_seed_and_independent_of_the_batch(
    engine: TransformersPolicy,
) -> None:
    request = GenerationRequest(PROBLEM, (), 3, HOT, 5)
    (alone,) = engine.generate([request])
    assert len(alone.completions) == 3
    assert len(set(_texts(alone))) == 3  # three seeds, three samples
    longer = GenerationRequest(OTHER, ("Step one has many more words than the other prompt has.",), 2, HOT, 9)
    batched = engine.generate([longer, request, GenerationRequest(PROBLEM, (), 1, HOT, 6)])
    assert batched[1].completions == alone.completions  # padding and neighbours change nothing
    assert engine.generate([request])[0].completions == alone.completions
    assert _texts(engine.generate([GenerationRequest(PROBLEM, (), 3, HOT, 99)])[0]) != _texts(alone)


def test_token_accounting_is_exact(engine: TransformersPolicy) -> None:
    request = GenerationRequest(PROBLEM, ("Step 1: 3 + 4 = 7",), 2, HOT, 1)
    (result,) = engine.generate([request])
    ids = engine.tokenizer(
        chat_text(engine.tokenizer, chat_prompt(PromptConfig(), PROBLEM.question, request.prefix)),
        add_special_tokens=False,
    )["input_ids"]
    assert result.prompt_tokens == len(ids)  # once per request, not per completion
    for completion in result.completions:
        assert (completion.tokens, completion.finish_reason) == (16, "length")
    before = engine.generated_tokens
    engine.generate([request])
    assert engine.generated_tokens - before == 32


def test_the_step_prefix_opens_the_assistant_turn_under_the_chat_template(engine: TransformersPolicy) -> None:
    request = GenerationRequest(PROBLEM, ("Step 1: 3 + 4 = 7", "Step 2: so 7"), 1, HOT, 1)
    text = engine.tokenizer.decode(engine.prompt_ids(request))
    assert text == (
        f"<|im_start|>user\n{PROBLEM.question}<|im_end|>\n<|im_start|>assistant\n"
        "Step 1: 3 + 4 = 7\n\nStep 2: so 7\n\n"
    )


def test_raw_prompts_without_a_chat_template(tiny_model_dir: Path) -> None:
    raw = _engine(tiny_model_dir, chat="never", instruction="Solve: {question}")
    request = GenerationRequest(PROBLEM, ("Step 1: 3 + 4 = 7",), 1, HOT, 1)
    assert (
        raw.tokenizer.decode(raw.prompt_ids(request)) == f"Solve: {PROBLEM.question}\n\nStep 1: 3 + 4 = 7\n\n"
    )
    assert "chat=off" in raw.fingerprint
    assert "instruction=" in raw.fingerprint


def test_chat_always_needs_a_template(tiny_model_dir: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink()
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"policy\.prompt\.chat: always, but .* has no chat template"):
        _engine(plain, chat="always")
    assert "chat=off" in _engine(plain).fingerprint  # auto falls back to raw text


def test_greedy_ignores_the_seed_and_a_tiny_top_p_is_greedy(engine: TransformersPolicy) -> None:
    greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=12)
    a, b = engine.generate(
        [GenerationRequest(PROBLEM, (), 1, greedy, 1), GenerationRequest(PROBLEM, (), 1, greedy, 2)]
    )
    assert a.completions == b.completions
    narrow = SamplingParams(temperature=1.0, top_p=1e-6, max_tokens=12)
    (c,) = engine.generate([GenerationRequest(PROBLEM, (), 1, narrow, 3)])
    assert c.completions == a.completions


def test_a_stop_string_cuts_the_text_and_ends_generation(
    tiny_model_dir: Path, engine: TransformersPolicy
) -> None:
    request = GenerationRequest(PROBLEM, (), 1, SamplingParams(1.0, 1.0, 24), 1)
    full = engine.generate([request])[0].completions[0]
    at = next(i for i in range(4, len(full.text) - 2) if full.text.find(full.text[i : i + 2]) == i)
    stop = full.text[at : at + 2]
    stopped = _engine(tiny_model_dir, stop=["never there", stop]).generate([request])[0].completions[0]
    assert (stopped.text, stopped.finish_reason) == (full.text[:at], "stop")
    assert stopped.tokens < full.tokens
    ids = engine.tokenizer(full.text)["input_ids"]
    assert stopped.tokens <= len(ids)


def test_the_end_of_sequence_token_ends_a_completion_and_is_counted(tiny_model_dir: Path) -> None:
    greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=8)
    eng = _engine(tiny_model_dir)
    request = GenerationRequest(PROBLEM, (), 1, greedy, 1)
    first = eng.prompt_ids(request)
    tokens = eng.tokenizer(eng.generate([request])[0].completions[0].text, add_special_tokens=False)[
        "input_ids"
    ]
    eng.eos_ids = frozenset({tokens[0]}) if tokens else eng.eos_ids
    (result,) = eng.generate([request])
    assert first  # the prompt is not empty
    assert result.completions[0].text == ""
    assert (result.completions[0].tokens, result.completions[0].finish_reason) == (1, "stop")


def test_the_context_length_caps_new_tokens(tiny_model_dir: Path) -> None:
    eng = _engine(tiny_model_dir)
    request = GenerationRequest(PROBLEM, (), 1, SamplingParams(1.0, 1.0, 50), 1)
    eng.context = len(eng.prompt_ids(request)) + 5
    (result,) = eng.generate([request])
    assert (result.completions[0].tokens, result.completions[0].finish_reason) == (5, "length")


def test_the_fingerprint_names_the_weights_dtype_and_prompt(tiny_model_dir: Path, tmp_path: Path) -> None:
    eng = _engine(tiny_model_dir, system="Be brief.", stop=["\n\n\n"])
    assert eng.fingerprint.startswith(f"transformers:{model_identity(str(tiny_model_dir), None)}:float32:")
    assert "system='Be brief.'" in eng.fingerprint
    assert "stop=['\\n\\n\\n']" in eng.fingerprint
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    assert model_identity(str(other), None) == model_identity(str(tiny_model_dir), None).replace(
        tiny_model_dir.name, "other"
    )
    (other / "config.json").write_text(
        (other / "config.json").read_text().replace('"rms_norm_eps"', '"x": 1, "rms_norm_eps"')
    )
    assert (
        model_identity(str(other), None).split("#")[1]
        != model_identity(str(tiny_model_dir), None).split("#")[1]
    )
    assert model_identity("Qwen/Qwen2.5-Math-7B", "abc123") == "Qwen/Qwen2.5-Math-7B@abc123"
