"""Monte Carlo estimates of many (rollout, step) prefixes, in engine calls overlapped with grading.

Shared by every annotator that continues prefixes step by step (Monte Carlo, SCAN). The jobs go to
``policy.generate`` in calls of ``per_call`` requests (all of them in one call when there are fewer);
while the engine generates one call's completions, the previous call's are graded on a second thread
(the engine never waits on grading; a GPU engine releases the GIL while it computes). A request's
result depends only on its own seed, so the split changes no estimate.

Each graded job is handed to ``record`` with its :class:`Estimate`; the call's wall time is shared
among its jobs by their generated tokens (by completions when the call generated none).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from prmforge.annotators.grading import AnswerMemo
from prmforge.policies.base import STEP_SEPARATOR, GenerationRequest, GenerationResult, Policy

__all__ = ["Estimate", "PrefixEstimator"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Estimate:
    """One prefix's graded completions: how many reached the gold answer, and what they cost."""

    correct: int
    ungraded: int
    completions: int
    tokens: int
    prompt_tokens: int
    cached: bool
    seconds: float


class PrefixEstimator(Generic[T]):
    """Runs ``(item, step)`` jobs: ``request_of`` builds each request, ``gold_of`` names the item's gold
    answer, ``record`` receives each graded job (on the grading thread, one call after another)."""

    def __init__(
        self,
        policy: Policy,
        memo: AnswerMemo,
        *,
        n: int,
        per_call: int,
        request_of: Callable[[T, int], GenerationRequest],
        gold_of: Callable[[T], str],
        record: Callable[[T, int, Estimate], None],
        thread_name: str,
    ) -> None:
        if per_call < 1:
            raise ValueError(f"requests_per_call must be >= 1, got {per_call}")
        self._policy, self._memo, self._n, self._per_call = policy, memo, n, per_call
        self._request_of, self._gold_of, self._record = request_of, gold_of, record
        self._thread_name = thread_name

    def run(self, jobs: Sequence[tuple[T, int]]) -> None:
        if not jobs:
            return
        calls = [jobs[i : i + self._per_call] for i in range(0, len(jobs), self._per_call)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name) as grading:
            pending: Future[None] | None = None
            for call in calls:
                requests = [self._request_of(item, step) for item, step in call]
                started = time.perf_counter()
                results = self._policy.generate(requests)
                elapsed = time.perf_counter() - started
                if len(results) != len(requests):
                    raise ValueError(f"policy returned {len(results)} results for {len(requests)} requests")
                if pending is not None:
                    pending.result()  # the previous call's grading (and its errors) before the next
                pending = grading.submit(self._grade_call, call, requests, results, elapsed)
            if pending is not None:
                pending.result()

    def _grade_call(
        self,
        jobs: Sequence[tuple[T, int]],
        requests: Sequence[GenerationRequest],
        results: Sequence[GenerationResult],
        elapsed: float,
    ) -> None:
        graded: list[tuple[int, int, int, int]] = []  # correct, ungraded, tokens, completions
        for (item, step), request, result in zip(jobs, requests, results, strict=True):
            if len(result.completions) != self._n:
                raise ValueError(
                    f"rollout {getattr(item, 'rollout_id', item)!r} step {step}: policy returned "
                    f"{len(result.completions)} completions, {self._n} requested"
                )
            prefix_text = STEP_SEPARATOR.join(request.prefix) + STEP_SEPARATOR
            gold = self._gold_of(item)
            verdicts = [self._memo.grade(prefix_text, c.text, gold) for c in result.completions]
            tokens = sum(c.tokens for c in result.completions)
            graded.append(
                (sum(v is True for v in verdicts), sum(v is None for v in verdicts), tokens, self._n)
            )
        by_tokens = sum(g[2] for g in graded) > 0
        total = sum(g[2] if by_tokens else g[3] for g in graded)
        for (item, step), result, (correct, ungraded, tokens, completions) in zip(
            jobs, results, graded, strict=True
        ):
            share = (tokens if by_tokens else completions) / total
            self._record(
                item,
                step,
                Estimate(
                    correct,
                    ungraded,
                    completions,
                    tokens,
                    result.prompt_tokens,
                    result.cached,
                    elapsed * share,
                ),
            )
