"""Label-quality metrics, as pure functions: ProcessBench F1, per-step accuracy, flag precision.

First-error indices follow the records' convention: 0-based, -1 for "no
error", ``None`` for "unknown". A ``None`` prediction is an abstention and is
never a match, as an unparseable critic answer is in ProcessBench's
``run_eval.py``. Accuracies are fractions in [0, 1] (``run_eval.py`` prints
percentages). Undefined ratios (an empty denominator) are ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prmforge.schemas.records import first_error_of

__all__ = [
    "FlagPrecision",
    "ProcessBenchScore",
    "StepConfusion",
    "flag_precision",
    "processbench_f1",
    "step_accuracy",
    "step_confusion",
]


@dataclass(frozen=True, slots=True)
class ProcessBenchScore:
    """ProcessBench's first-error metric over one subset.

    ``error_acc`` is the share of erroneous samples (label != -1) whose
    prediction is exactly the label; ``correct_acc`` the share of correct
    samples (label == -1) predicted -1; ``f1`` their harmonic mean.
    """

    error_acc: float
    correct_acc: float
    f1: float
    n_error: int
    n_correct: int
    error_hits: int
    correct_hits: int


@dataclass(frozen=True, slots=True)
class StepConfusion:
    """Per-step hard labels against prefix truth; positive means "step is good".

    ``fp`` counts steps predicted good that are at or after the true first
    error, split into ``fp_at_first_error`` (the erroneous step itself) and
    ``fp_after_first_error`` (later steps): MC labels make both when the
    completer recovers from a wrong prefix (self-correction). ``fn`` counts
    steps predicted bad before the true first error (or in an error-free
    rollout): MC labels make them when the completer cannot solve the problem
    at all. Under prefix truth every false negative is before the first error,
    so ``fn_before_first_error == fn``; it is kept as a field so reports can
    name it. ``unknown`` counts ``None`` predictions, which are left out of
    ``accuracy = (tp + tn) / (tp + tn + fp + fn)`` (``nan`` when no step is known).
    """

    tp: int
    tn: int
    fp: int
    fn: int
    unknown: int
    accuracy: float
    fp_at_first_error: int
    fp_after_first_error: int
    fn_before_first_error: int


@dataclass(frozen=True, slots=True)
class FlagPrecision:
    """Of the predictions that flag a step (not -1, not ``None``), the share that hit the true first error."""

    flagged: int
    exact: int
    precision: float


def processbench_f1(predicted: Sequence[int | None], labels: Sequence[int]) -> ProcessBenchScore:
    """ProcessBench F1, as ``QwenLM/ProcessBench`` ``code/run_eval.py`` computes it (METHODS.md §2(d)).

    ``error_acc = mean(pred == label | label != -1)``,
    ``correct_acc = mean(pred == -1 | label == -1)``,
    ``f1 = 2 * error_acc * correct_acc / (error_acc + correct_acc)``.

    Edge cases: when a class has no samples its accuracy is ``nan`` and so is
    ``f1``; when both accuracies are 0, ``f1`` is 0.0 (``run_eval.py`` would
    divide 0 by 0).

    >>> s = processbench_f1([2, -1, 1, -1], [2, -1, 3, 0])
    >>> (s.error_acc, s.correct_acc, round(s.f1, 4))
    (0.3333333333333333, 1.0, 0.5)
    """
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
    n_error = n_correct = error_hits = correct_hits = 0
    for i, (pred, label) in enumerate(zip(predicted, labels, strict=True)):
        if label < -1:
            raise ValueError(f"label {i} is {label}; labels are -1 or a step index")
        if label == -1:
            n_correct += 1
            correct_hits += pred == -1
        else:
            n_error += 1
            error_hits += pred == label
    error_acc = _ratio(error_hits, n_error)
    correct_acc = _ratio(correct_hits, n_correct)
    return ProcessBenchScore(
        error_acc=error_acc,
        correct_acc=correct_acc,
        f1=harmonic_mean(error_acc, correct_acc),
        n_error=n_error,
        n_correct=n_correct,
        error_hits=error_hits,
        correct_hits=correct_hits,
    )


def harmonic_mean(a: float, b: float) -> float:
    """``2ab / (a + b)``; ``nan`` if either is ``nan``, 0.0 when both are 0."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a + b == 0:
        return 0.0
    return 2 * a * b / (a + b)


def step_confusion(
    predicted_hard: Sequence[Sequence[bool | None]], truth: Sequence[Sequence[bool]]
) -> StepConfusion:
    """Count per-step agreement of hard labels with prefix truth, over many rollouts.

    ``truth[i]`` is rollout i's prefix labels (:meth:`StepTruth.prefix_labels`):
    True before the first error, False from it on; its first False is taken as
    the first error. Each ``predicted_hard[i]`` must have the same length.
    """
    if len(predicted_hard) != len(truth):
        raise ValueError(f"{len(predicted_hard)} predicted rollouts for {len(truth)} truth rollouts")
    tp = tn = fp = fn = unknown = fp_at = fp_after = 0
    for i, (pred_row, truth_row) in enumerate(zip(predicted_hard, truth, strict=True)):
        if len(pred_row) != len(truth_row):
            raise ValueError(f"rollout {i}: {len(pred_row)} predicted steps for {len(truth_row)} truth steps")
        first_error = first_error_of(truth_row)  # -1 when every step is good: then no step is an fp
        for t, (pred, good) in enumerate(zip(pred_row, truth_row, strict=True)):
            if pred is None:
                unknown += 1
            elif pred and good:
                tp += 1
            elif not pred and not good:
                tn += 1
            elif pred:
                fp += 1
                fp_at += t == first_error
                fp_after += t > first_error
            else:
                fn += 1
    return StepConfusion(
        tp=tp,
        tn=tn,
        fp=fp,
        fn=fn,
        unknown=unknown,
        accuracy=_ratio(tp + tn, tp + tn + fp + fn),
        fp_at_first_error=fp_at,
        fp_after_first_error=fp_after,
        fn_before_first_error=fn,
    )


def step_accuracy(predicted_hard: Sequence[Sequence[bool | None]], truth: Sequence[Sequence[bool]]) -> float:
    """Share of known (non-``None``) step predictions equal to prefix truth; ``nan`` if none is known."""
    return step_confusion(predicted_hard, truth).accuracy


def flag_precision(
    predicted_first_errors: Sequence[int | None], label_first_errors: Sequence[int]
) -> FlagPrecision:
    """Precision of error flags: among predictions that name a step, how many name the labelled first error.

    A prediction flags a step when it is neither -1 nor ``None``. A flag on an
    error-free sample (label -1) is a miss. ``precision`` is ``nan`` with no flags.

    >>> flag_precision([2, -1, 1, None, 0], [2, 3, 3, 1, -1])
    FlagPrecision(flagged=3, exact=1, precision=0.3333333333333333)
    """
    if len(predicted_first_errors) != len(label_first_errors):
        raise ValueError(f"{len(predicted_first_errors)} predictions for {len(label_first_errors)} labels")
    flagged = exact = 0
    for pred, label in zip(predicted_first_errors, label_first_errors, strict=True):
        if pred is None or pred == -1:
            continue
        flagged += 1
        exact += pred == label
    return FlagPrecision(flagged=flagged, exact=exact, precision=_ratio(exact, flagged))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan
