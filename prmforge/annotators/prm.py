"""A trained PRM as a label source: it scores every step, and a step is correct when its score clears a bar.

``values`` are the PRM's step scores (the positive-class probability; None for a step it could not read,
past the model's length), ``hard`` is ``score >= threshold`` (None where there is no score), and
``first_error`` is :func:`~prmforge.annotators.tool.first_error_from_hard` of ``hard`` (the first False
when only True precedes it, -1 when all are True, None when an unscored step comes first). A rollout the
PRM cannot read at all (its text holds the Qwen step tag) gets no labels and ``meta["abstained"]``.

Worked example (threshold 0.5)::

    scores (0.92, 0.61, 0.18, 0.70)  ->  hard (T, T, F, T), first_error 2, values = the scores

``cost.prompt_tokens`` is the tokens the PRM read for the rollout, ``cost.seconds`` the scoring time
apportioned by them (no completions are generated). ``meta`` holds the model, its format and reading
(separator, tokenization), the threshold, the tokens and the unscored steps. The annotator reads only
``problem.question`` and ``rollout.steps``, never ``rollout.truth``. The scoring lives in
:mod:`prmforge.training.scoring` (which imports nothing of the pipelines).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from prmforge.annotators.tool import first_error_from_hard
from prmforge.schemas.records import Cost, Problem, Rollout, StepLabels
from prmforge.training.scoring import StepScores

__all__ = ["PRMAnnotator", "StepScorer", "labels_from_scores"]


class StepScorer(Protocol):
    """What the annotator needs of :class:`~prmforge.training.scoring.PRMScorer`."""

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[StepScores]: ...

    def describe(self) -> dict[str, Any]: ...


def labels_from_scores(scores: Sequence[float | None], threshold: float) -> tuple[bool | None, ...]:
    """``score >= threshold`` per step, None where there is no score.

    >>> labels_from_scores([0.92, 0.61, 0.18, None], 0.5)
    (True, True, False, None)
    """
    return tuple(None if s is None else s >= threshold for s in scores)


class PRMAnnotator:
    """An :class:`~prmforge.annotators.base.Annotator` whose labels are a PRM's thresholded step scores."""

    def __init__(self, scorer: StepScorer, threshold: float, name: str = "prm") -> None:
        self._scorer = scorer
        self._threshold = threshold
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]:
        started = time.perf_counter()
        results = self._scorer.score([(problems[r.problem_id].question, r.steps) for r in rollouts])
        seconds = time.perf_counter() - started
        if len(results) != len(rollouts):
            raise ValueError(f"{self._name}: {len(results)} scored rollouts for {len(rollouts)}")
        tokens = sum(r.tokens for r in results) or 1
        reading = self._scorer.describe()
        out = []
        for rollout, result in zip(rollouts, results, strict=True):
            if len(result.scores) != len(rollout.steps):
                raise ValueError(
                    f"{self._name}: {len(result.scores)} scores for {len(rollout.steps)} steps "
                    f"({rollout.rollout_id})"
                )
            hard = labels_from_scores(result.scores, self._threshold)
            meta: dict[str, Any] = {
                **reading,
                "threshold": self._threshold,
                "tokens": result.tokens,
                "unscored_steps": sum(s is None for s in result.scores),
            }
            if result.note is not None:
                meta["abstained"] = result.note
            out.append(
                StepLabels(
                    source=self._name,
                    rollout_id=rollout.rollout_id,
                    values=result.scores,
                    hard=hard,
                    first_error=None if result.note is not None else first_error_from_hard(hard),
                    cost=Cost(prompt_tokens=result.tokens, seconds=seconds * result.tokens / tokens),
                    meta=meta,
                )
            )
        return out
