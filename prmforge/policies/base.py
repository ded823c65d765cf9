"""The one protocol every generation backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from prmforge.schemas.records import SamplingParams

STEP_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Sample ``n`` continuations of ``question`` after the steps in ``prefix``.

    Backends that take text use :func:`render_prompt`; the simulated policy
    reads ``question`` and ``prefix`` directly. ``seed`` makes the request
    reproducible: the same request gives the same completions.
    """

    question: str
    prefix: tuple[str, ...]
    n: int
    sampling: SamplingParams
    seed: int

    @property
    def prompt(self) -> str:
        return render_prompt(self.question, self.prefix)


@dataclass(frozen=True, slots=True)
class Completion:
    """A continuation: the remaining steps joined by ``STEP_SEPARATOR``."""

    text: str
    tokens: int
    finish_reason: Literal["stop", "length"] = "stop"


@dataclass(frozen=True, slots=True)
class GenerationResult:
    completions: tuple[Completion, ...]
    prompt_tokens: int
    cached: bool = False


@runtime_checkable
class Policy(Protocol):
    """A batched sampler. ``fingerprint`` names the model and its configuration."""

    @property
    def fingerprint(self) -> str: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...


def render_prompt(question: str, prefix: Sequence[str]) -> str:
    """SCAN's rollout prompt: the question, then each prefix step, each followed by a blank line."""
    parts = [question, *prefix]
    return STEP_SEPARATOR.join(parts) + STEP_SEPARATOR


def split_steps(text: str) -> tuple[str, ...]:
    """Segment a solution on blank lines, dropping empty segments and outer whitespace."""
    return tuple(s.strip() for s in text.split(STEP_SEPARATOR) if s.strip())
