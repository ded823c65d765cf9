"""How a generation request becomes a model's input, shared by every model engine (pure functions).

Two shapes:

- raw text (:func:`raw_prompt`): the instruction with the question, then each
  step of the prefix, each followed by a blank line — the model continues it;
- chat (:func:`chat_prompt`): an optional system message, the user turn (the
  instruction with the question) and, when there is a prefix, the steps so far
  as the *start of the assistant turn* (``assistant_prefix``) that the model
  continues. With a tokenizer, :func:`chat_text` renders this with the chat
  template and appends the assistant prefix after the generation prompt.

Stop strings are applied by :func:`cut_at_stop` (the earliest occurrence of
any; the stop string itself is not kept), so every engine truncates the same
way whether or not its backend supports stop strings natively.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prmforge.schemas.engines import PromptConfig
from prmforge.schemas.steps import STEP_SEPARATOR

__all__ = ["ChatPrompt", "chat_prompt", "chat_text", "cut_at_stop", "prompt_fingerprint", "raw_prompt"]


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    messages: tuple[tuple[str, str], ...]  # (role, content)
    assistant_prefix: str

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


def _user_turn(config: PromptConfig, question: str) -> str:
    return config.instruction.replace("{question}", question)


def _steps_text(prefix: Sequence[str]) -> str:
    return "".join(step + STEP_SEPARATOR for step in prefix)


def raw_prompt(config: PromptConfig, question: str, prefix: Sequence[str]) -> str:
    """The instruction with the question, then each step, each followed by a blank line."""
    return _user_turn(config, question) + STEP_SEPARATOR + _steps_text(prefix)


def chat_prompt(config: PromptConfig, question: str, prefix: Sequence[str]) -> ChatPrompt:
    """System (optional) and user messages; the prefix steps open the assistant turn."""
    messages: list[tuple[str, str]] = []
    if config.system is not None:
        messages.append(("system", config.system))
    messages.append(("user", _user_turn(config, question)))
    return ChatPrompt(tuple(messages), _steps_text(prefix))


def chat_text(tokenizer: Any, prompt: ChatPrompt) -> str:
    """The chat template's rendering with the generation prompt, then the assistant prefix."""
    rendered = tokenizer.apply_chat_template(prompt.as_messages(), tokenize=False, add_generation_prompt=True)
    return str(rendered) + prompt.assistant_prefix


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def prompt_fingerprint(config: PromptConfig, chat: bool) -> str:
    """What of the prompt configuration changes the model's input: part of an engine's fingerprint."""
    parts = [f"chat={'on' if chat else 'off'}"]
    if config.system is not None:
        parts.append(f"system={config.system!r}")
    if config.instruction != "{question}":
        parts.append(f"instruction={config.instruction!r}")
    if config.stop:
        parts.append(f"stop={list(config.stop)!r}")
    return ",".join(parts)
