"""A test double for the judge's engine: replays given response texts and records every request."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from prmforge.policies.base import Completion, GenerationRequest, GenerationResult

Reply = str | Completion
_STEP_HEADER = re.compile(r"^\[Step (\d+)\]$", re.MULTILINE)


class ReplayPolicy:
    """Answers each request with the completions ``reply(request)`` gives (a text, or a whole
    :class:`Completion`); a text's ``tokens`` is its number of words, a result's ``prompt_tokens`` the
    number of words of the prompt. ``calls`` records the requests of every ``generate`` call."""

    fingerprint = "replay"

    def __init__(
        self, reply: Callable[[GenerationRequest], Sequence[Reply]], *, cached: bool = False
    ) -> None:
        self.reply = reply
        self.cached = cached
        self.calls: list[list[GenerationRequest]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append(list(requests))
        results = []
        for request in requests:
            completions = tuple(
                r if isinstance(r, Completion) else Completion(r, len(r.split())) for r in self.reply(request)
            )
            results.append(GenerationResult(completions, len(request.prompt.split()), cached=self.cached))
        return results

    @property
    def requests(self) -> list[GenerationRequest]:
        return [r for call in self.calls for r in call]


def by_problem(replies: Mapping[str, Sequence[Reply]]) -> Callable[[GenerationRequest], Sequence[Reply]]:
    """Critique replies by problem id."""
    return lambda request: replies[request.problem_id]


def step_of(request: GenerationRequest) -> int:
    """The 0-based step a default per-step prompt judges (read from its ``[Step k]`` header)."""
    match = _STEP_HEADER.search(request.question)
    assert match is not None, "not a per-step prompt of the default template"
    return int(match.group(1))


def by_step(
    replies: Mapping[str, Sequence[Sequence[Reply]]],
) -> Callable[[GenerationRequest], Sequence[Reply]]:
    """Per-step replies by problem id, then step."""
    return lambda request: replies[request.problem_id][step_of(request)]
