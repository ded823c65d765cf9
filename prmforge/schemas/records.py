"""The records that cross stage boundaries.

Every record is a frozen, slotted dataclass. Step indices are 0-based and
``first_error = -1`` means "no erroneous step"; ``None`` means "unknown".

Truth (:class:`StepTruth`) travels with built-in rollouts for evaluation only:
annotators receive :meth:`Rollout.redacted` copies and never see it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Domain = Literal["math", "logic", "code"]
Split = Literal["train", "validation", "test"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How a policy samples: part of every cache key and rollout id."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1024

    def as_dict(self) -> dict[str, float | int]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}


@dataclass(frozen=True, slots=True)
class Problem:
    """A question with a checkable gold answer.

    ``meta`` holds source-specific data as JSON-serialisable values (for the
    built-in suites, ``meta["plan"]`` is the reference solution the simulated
    policy works from). Annotators use ``gold`` only.
    """

    problem_id: str
    domain: Domain
    question: str
    gold: str
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepTruth:
    """Exact per-step truth for a rollout of a built-in suite.

    ``step_correct[t]`` is True when step t's claims are all true;
    ``first_error`` is the first t where it is False, or -1.
    """

    first_error: int
    step_correct: tuple[bool, ...]

    def prefix_labels(self) -> tuple[bool, ...]:
        """PRM convention: True before the first error, False from it on."""
        if self.first_error < 0:
            return tuple(True for _ in self.step_correct)
        return tuple(t < self.first_error for t in range(len(self.step_correct)))


@dataclass(frozen=True, slots=True)
class Rollout:
    """One sampled solution, segmented into steps and graded."""

    rollout_id: str
    problem_id: str
    policy: str
    sampling: SamplingParams
    seed: int
    text: str
    steps: tuple[str, ...]
    final_answer: str | None
    outcome: bool | None
    prompt_tokens: int
    completion_tokens: int
    truth: StepTruth | None = None

    def redacted(self) -> Rollout:
        """The copy annotators receive: identical, minus the truth."""
        return dataclasses.replace(self, truth=None)


@dataclass(frozen=True, slots=True)
class Cost:
    """What a label cost. ``seconds`` is wall time and is not part of content hashes."""

    completions: int = 0
    generated_tokens: int = 0
    tool_calls: int = 0
    seconds: float = 0.0
    cached_completions: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            completions=self.completions + other.completions,
            generated_tokens=self.generated_tokens + other.generated_tokens,
            tool_calls=self.tool_calls + other.tool_calls,
            seconds=self.seconds + other.seconds,
            cached_completions=self.cached_completions + other.cached_completions,
        )


@dataclass(frozen=True, slots=True)
class StepLabels:
    """One annotator's verdict on every step of one rollout."""

    source: str
    rollout_id: str
    values: tuple[float | None, ...]
    hard: tuple[bool | None, ...]
    first_error: int | None
    cost: Cost
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Vote:
    """One source's first-error index for a fused example."""

    source: str
    first_error: int | None


@dataclass(frozen=True, slots=True)
class PRMExample:
    """A fused, trainable row. ``prompt``/``completions``/``labels`` is TRL's triple."""

    example_id: str
    problem_id: str
    prompt: str
    completions: tuple[str, ...]
    labels: tuple[bool, ...]
    scores: tuple[float | None, ...]
    first_error: int
    votes: tuple[Vote, ...]
    agreement: float
    weight: float
    split: Split
    gold: str
    final_answer: str | None
    outcome: bool | None
    truth_first_error: int | None = None
    truth_step_correct: tuple[bool, ...] | None = None
