"""First-error prediction from step scores, ProcessBench F1 at a threshold, and threshold tuning (pure).

A PRM predicts the first error as the first step whose score is below the threshold, -1 when there is
none (ProcessBench's rule for PRMs; a step without a score -- cut off at the model's length -- is
skipped, so a solution read only in part is judged on what was read). F1 is
:func:`prmforge.annotators.metrics.processbench_f1`, exactly ``run_eval.py``'s: the share of erroneous
samples whose prediction is their label, the share of correct samples predicted -1, and their harmonic
mean, as fractions in [0, 1] (the command line prints them x100, as ``run_eval.py`` does).

Tuning (:func:`tune_threshold`) tries every threshold that changes a prediction: 0 (nothing is an
error), the midpoint between each pair of neighbouring distinct scores, and the midpoint between the
largest score and 1 (every first step is an error). It keeps the best F1; ties go to the threshold
nearest 0.5, then the smaller. Tune on a file other than the one reported (the command refuses the same file).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from prmforge.annotators.metrics import ProcessBenchScore, processbench_f1

__all__ = [
    "ThresholdChoice",
    "f1_at",
    "predicted_first_error",
    "threshold_candidates",
    "tune_threshold",
]

Scores = Sequence[float | None]


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    threshold: float
    score: ProcessBenchScore
    candidates: int


def predicted_first_error(scores: Scores, threshold: float) -> int:
    """The first scored step below ``threshold``, -1 if none.

    >>> predicted_first_error([0.9, None, 0.3, 0.1], 0.5), predicted_first_error([0.9, 0.6], 0.5)
    (2, -1)
    """
    return next((t for t, s in enumerate(scores) if s is not None and s < threshold), -1)


def f1_at(scores: Sequence[Scores], labels: Sequence[int], threshold: float) -> ProcessBenchScore:
    """ProcessBench's score of the predictions at ``threshold``."""
    return processbench_f1([predicted_first_error(s, threshold) for s in scores], labels)


def threshold_candidates(scores: Sequence[Scores]) -> list[float]:
    """0, the midpoints of neighbouring distinct scores, and of the largest and 1 (sorted).

    >>> threshold_candidates([[0.2, 0.8], [0.8, None]])
    [0.0, 0.5, 0.9]
    """
    distinct = sorted({s for row in scores for s in row if s is not None})
    if not distinct:
        return [0.0]
    top = distinct[-1]
    above = (top + 1.0) / 2 if top < 1.0 else math.nextafter(top, math.inf)
    middles = [(a + b) / 2 for a, b in itertools.pairwise(distinct)]
    return sorted({0.0, *middles, above})


def tune_threshold(scores: Sequence[Scores], labels: Sequence[int]) -> ThresholdChoice:
    """The candidate threshold with the best F1 (ties: nearest 0.5, then smaller); nan F1 ranks last."""
    candidates = threshold_candidates(scores)
    best: tuple[float, float, float] | None = None
    chosen = candidates[0]
    for t in candidates:
        f1 = f1_at(scores, labels, t).f1
        key = (-math.inf if math.isnan(f1) else f1, -abs(t - 0.5), -t)
        if best is None or key > best:
            best, chosen = key, t
    return ThresholdChoice(chosen, f1_at(scores, labels, chosen), len(candidates))
