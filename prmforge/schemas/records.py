"""The records that cross stage boundaries.

Every record is a frozen, slotted dataclass. Step indices are 0-based and
``first_error = -1`` means "no erroneous step"; ``None`` means "unknown".

Truth (:class:`StepTruth`) travels with built-in rollouts for evaluation only:
annotators receive :meth:`Rollout.redacted` copies and never see it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
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


def prefix_labels(first_error: int, steps: int) -> tuple[bool, ...]:
    """The one prefix-label rule: steps before the first error are good, the rest bad (-1: all good).

    >>> prefix_labels(2, 4), prefix_labels(-1, 2)
    ((True, True, False, False), (True, True))
    """
    return tuple(first_error < 0 or t < first_error for t in range(steps))


def first_error_of(step_correct: Sequence[bool]) -> int:
    """The first step marked wrong, -1 when none is: the first error that :func:`prefix_labels` reads.

    >>> first_error_of((True, False, True)), first_error_of(prefix_labels(2, 4)), first_error_of(())
    (1, 2, -1)
    """
    return next((t for t, ok in enumerate(step_correct) if not ok), -1)


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
        return prefix_labels(self.first_error, len(self.step_correct))


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
    prompt_tokens: int = 0  # the prompts' tokens (what an API bills beside the generated ones)

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            completions=self.completions + other.completions,
            generated_tokens=self.generated_tokens + other.generated_tokens,
            tool_calls=self.tool_calls + other.tool_calls,
            seconds=self.seconds + other.seconds,
            cached_completions=self.cached_completions + other.cached_completions,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
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
class FusedLabels:
    """The trained label of one rollout, fused from every source's :class:`StepLabels`.

    ``first_error`` is None when the rule could not decide (the row is left out
    of the training data, with ``reason``); ``scores`` are per-step soft scores
    (the mean of the deciding sources' values, None where none gave one).
    """

    rollout_id: str
    rule: str
    first_error: int | None
    scores: tuple[float | None, ...]
    votes: tuple[Vote, ...]
    agreement: float
    reason: str = ""


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
