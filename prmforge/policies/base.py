"""The one protocol every generation backend implements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from prmforge.schemas.records import Problem, SamplingParams
from prmforge.schemas.steps import STEP_SEPARATOR, split_steps

__all__ = [
    "STEP_SEPARATOR",
    "Completion",
    "GenerationRequest",
    "GenerationResult",
    "Policy",
    "StreamingPolicy",
    "render_prompt",
    "split_steps",
]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Sample ``n`` continuations of ``problem``'s question after the steps in ``prefix``.

    A request carries the whole :class:`~prmforge.schemas.records.Problem`, so a
    policy is an engine built from the configuration alone: backends that take
    text use :attr:`prompt` (:func:`render_prompt`); the built-in policies also
    read ``problem.domain`` and ``problem.meta``. ``seed`` makes the request
    reproducible: the same request gives the same completions.

    Requests compare by value, ``problem`` included; like a problem (its
    ``meta`` is a dict) they cannot be hashed.
    """

    problem: Problem
    prefix: tuple[str, ...]
    n: int
    sampling: SamplingParams
    seed: int

    @property
    def problem_id(self) -> str:
        return self.problem.problem_id

    @property
    def question(self) -> str:
        return self.problem.question

    @property
    def prompt(self) -> str:
        return render_prompt(self.problem.question, self.prefix)


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


@runtime_checkable
class StreamingPolicy(Policy, Protocol):
    """A policy that can also hand results over as each request completes (an HTTP engine).

    ``generate_each`` yields ``(index into requests, result)`` once per request, in completion order;
    :class:`~prmforge.policies.cache.CachedPolicy` commits each to the cache as it arrives.
    """

    def generate_each(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, GenerationResult]]: ...


def render_prompt(question: str, prefix: Sequence[str]) -> str:
    """SCAN's rollout prompt: the question, then each prefix step, each followed by a blank line."""
    parts = [question, *prefix]
    return STEP_SEPARATOR.join(parts) + STEP_SEPARATOR
