"""Tests of the label-quality metrics: ProcessBench F1, step confusion, flag precision."""

from __future__ import annotations

import doctest
import math
import random

import numpy as np
import pytest

from prmforge.annotators import metrics
from prmforge.annotators.mc_math import hard_labels
from prmforge.annotators.metrics import (
    FlagPrecision,
    flag_precision,
    harmonic_mean,
    processbench_f1,
    step_accuracy,
    step_confusion,
)
from prmforge.schemas.records import StepTruth


def test_doctests() -> None:
    """The worked examples in the docstrings hold."""
    assert doctest.testmod(metrics).failed == 0


# --- processbench_f1 ------------------------------------------------------------------------------------


def _run_eval_reference(predicted: list[int | None], labels: list[int]) -> tuple[float, float, float]:
    """The computation of QwenLM/ProcessBench code/run_eval.py, transcribed (percentages)."""
    res_data = [{"match": p == lab, "label": lab} for p, lab in zip(predicted, labels, strict=True)]
    error_data = [e for e in res_data if e["label"] != -1]
    correct_data = [e for e in res_data if e["label"] == -1]
    acc1 = np.mean([e["match"] for e in error_data]) * 100
    acc2 = np.mean([e["match"] for e in correct_data]) * 100
    with np.errstate(invalid="ignore"):  # run_eval.py divides 0 by 0 when both accuracies are 0
        f1 = 2 * acc1 * acc2 / (acc1 + acc2)
    return float(acc1), float(acc2), float(f1)


def test_processbench_matches_run_eval_on_random_data() -> None:
    """On random predictions and labels the metric equals run_eval.py's (divided by 100)."""
    rng = random.Random(0)
    for _ in range(200):
        size = rng.randint(2, 40)
        labels = [rng.choice([-1, -1, 0, 1, 2, 3, 4]) for _ in range(size)]
        labels[0], labels[1] = -1, 2  # both classes present
        predicted: list[int | None] = [
            lab if rng.random() < 0.5 else rng.choice([None, -1, 0, 1, 2, 5]) for lab in labels
        ]
        score = processbench_f1(predicted, labels)
        acc1, acc2, f1 = _run_eval_reference(predicted, labels)
        assert score.error_acc == pytest.approx(acc1 / 100)
        assert score.correct_acc == pytest.approx(acc2 / 100)
        if acc1 + acc2 > 0:
            assert score.f1 == pytest.approx(f1 / 100)
        else:
            assert score.f1 == 0.0


def test_processbench_counts_and_values() -> None:
    """A hand-worked subset: 2 of 4 errors located exactly, 2 of 3 correct solutions left unflagged."""
    labels = [3, 0, 2, 5, -1, -1, -1]
    predicted: list[int | None] = [3, 0, 1, -1, -1, -1, 2]
    score = processbench_f1(predicted, labels)
    assert (score.n_error, score.error_hits, score.n_correct, score.correct_hits) == (4, 2, 3, 2)
    assert score.error_acc == 0.5
    assert score.correct_acc == pytest.approx(2 / 3)
    assert score.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_processbench_none_prediction_never_matches() -> None:
    """An abstention counts as wrong on both classes, as an unparsed critic answer does in run_eval.py."""
    score = processbench_f1([None, None], [-1, 1])
    assert (score.error_hits, score.correct_hits) == (0, 0)


def test_processbench_perfect() -> None:
    """Perfect predictions give 1.0 everywhere."""
    score = processbench_f1([-1, 2, 0], [-1, 2, 0])
    assert (score.error_acc, score.correct_acc, score.f1) == (1.0, 1.0, 1.0)


def test_processbench_both_zero_gives_f1_zero() -> None:
    """0 and 0 give F1 0.0, not a division by zero."""
    score = processbench_f1([0, 1], [-1, 2])
    assert (score.error_acc, score.correct_acc, score.f1) == (0.0, 0.0, 0.0)


def test_processbench_empty_class_gives_nan() -> None:
    """With no erroneous (or no correct) samples that accuracy and the F1 are nan."""
    only_correct = processbench_f1([-1, 0], [-1, -1])
    assert math.isnan(only_correct.error_acc)
    assert only_correct.correct_acc == 0.5
    assert math.isnan(only_correct.f1)
    only_errors = processbench_f1([1], [1])
    assert only_errors.error_acc == 1.0
    assert math.isnan(only_errors.correct_acc)
    assert math.isnan(only_errors.f1)
    empty = processbench_f1([], [])
    assert (empty.n_error, empty.n_correct) == (0, 0)
    assert math.isnan(empty.f1)


def test_processbench_rejects_mismatched_lengths_and_bad_labels() -> None:
    """Lengths must match; labels are -1 or a step index."""
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        processbench_f1([0, 1], [0])
    with pytest.raises(ValueError, match="label 1 is -2"):
        processbench_f1([0, 1], [0, -2])


@pytest.mark.parametrize(
    ("a", "b", "expected"), [(1.0, 1.0, 1.0), (0.5, 1.0, 2 / 3), (0.0, 1.0, 0.0), (0.0, 0.0, 0.0)]
)
def test_harmonic_mean(a: float, b: float, expected: float) -> None:
    """2ab / (a + b), with 0 for two zeros."""
    assert harmonic_mean(a, b) == pytest.approx(expected)


def test_harmonic_mean_nan() -> None:
    """nan in, nan out."""
    assert math.isnan(harmonic_mean(math.nan, 1.0))
    assert math.isnan(harmonic_mean(1.0, math.nan))


# --- step_confusion / step_accuracy ---------------------------------------------------------------------


def test_step_confusion_counts_every_cell() -> None:
    """tp/tn/fp/fn/unknown over two rollouts, with the fp split at/after the first error."""
    truth = [
        StepTruth(first_error=2, step_correct=(True, True, False, True, True)).prefix_labels(),
        StepTruth(first_error=-1, step_correct=(True, True, True)).prefix_labels(),
    ]
    predicted = [
        (True, False, True, True, False),  # tp, fn, fp@t*, fp after, tn
        (True, None, False),  # tp, unknown, fn
    ]
    c = step_confusion(predicted, truth)
    assert (c.tp, c.tn, c.fp, c.fn, c.unknown) == (2, 1, 2, 2, 1)
    assert (c.fp_at_first_error, c.fp_after_first_error, c.fn_before_first_error) == (1, 1, 2)
    assert c.accuracy == pytest.approx(3 / 7)
    assert step_accuracy(predicted, truth) == c.accuracy


def test_hard_mc_labels_show_self_correction_and_unsolvable_errors() -> None:
    """Hard MC labels err in two ways: fp at/after the error (self-correction), fn before it (unsolvable)."""
    # Rollout A: first error at step 1, but the completer recovers from it (MC > 0 at steps 1 and 2).
    # Rollout B: no error at all, but the completer cannot solve the problem (MC = 0 everywhere).
    truth = [(True, False, False, False), (True, True, True)]
    values = [(0.75, 0.25, 0.125, 0.0), (0.0, 0.0, 0.0)]
    c = step_confusion([hard_labels(v) for v in values], truth)
    assert (c.fp_at_first_error, c.fp_after_first_error) == (1, 1)
    assert c.fn_before_first_error == 3
    assert (c.tp, c.tn) == (1, 1)


def test_step_confusion_all_unknown_gives_nan_accuracy() -> None:
    """No known prediction means accuracy is undefined."""
    c = step_confusion([(None, None)], [(True, False)])
    assert c.unknown == 2
    assert math.isnan(c.accuracy)


def test_step_confusion_rejects_shape_mismatch() -> None:
    """Rollout counts and per-rollout step counts must match."""
    with pytest.raises(ValueError, match="2 predicted rollouts for 1"):
        step_confusion([(True,), (True,)], [(True,)])
    with pytest.raises(ValueError, match="rollout 0: 1 predicted steps for 2"):
        step_confusion([(True,)], [(True, True)])


# --- flag_precision -------------------------------------------------------------------------------------


def test_flag_precision_counts() -> None:
    """Only predictions naming a step count; they hit when they name the labelled first error."""
    got = flag_precision([1, 2, -1, None, 3, 0], [1, 1, 2, 2, -1, 0])
    assert got == FlagPrecision(flagged=4, exact=2, precision=0.5)


def test_flag_precision_no_flags_is_nan() -> None:
    """With nothing flagged, precision is undefined."""
    got = flag_precision([-1, None], [1, -1])
    assert (got.flagged, got.exact) == (0, 0)
    assert math.isnan(got.precision)


def test_flag_precision_rejects_mismatched_lengths() -> None:
    """Lengths must match."""
    with pytest.raises(ValueError, match="1 predictions for 2 labels"):
        flag_precision([1], [1, 2])
