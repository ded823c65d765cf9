"""SCAN's pure label rules (METHODS.md §2(e)), against exact values and a transcription of its code."""

from __future__ import annotations

import doctest
import math
import random

import pytest

from prmforge.annotators import scan_math
from prmforge.annotators.mc_math import first_error_from_values
from prmforge.annotators.scan_math import (
    ScanLabels,
    confidence_filter,
    error_step,
    needs_step_rollouts,
    next_rollout_step,
    scan_labels,
    self_confidence,
)


def test_doctests() -> None:
    assert doctest.testmod(scan_math).failed == 0


# --- self-confidence and the filter ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "sampled", "expected"),
    [
        ((True,), None, 1.0),
        ((False, False), None, 0.0),
        ((True, False, True, True), None, 0.75),
        ((True, None, None, True), None, 0.5),  # ungradable counts as incorrect
        ((True, True, True), 4, 0.75),  # one sample had no final answer and was not kept
        ((), 8, 0.0),
    ],
)
def test_self_confidence(outcomes: tuple[bool | None, ...], sampled: int | None, expected: float) -> None:
    assert self_confidence(outcomes, sampled) == expected


def test_self_confidence_refuses_no_samples_or_too_few_sampled() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        self_confidence(())
    with pytest.raises(ValueError, match="sampled must be >= the 3 outcomes given, got 2"):
        self_confidence((True, True, False), sampled=2)


@pytest.mark.parametrize(
    ("sc", "threshold", "kept"),
    [
        (0.75, 0.75, True),
        (96 / 128, 0.75, True),
        (95 / 128, 0.75, False),
        (1.0, 0.75, True),
        (0.0, 0.0, True),
        (0.5, 0.6, False),
    ],
)
def test_confidence_filter(sc: float, threshold: float, kept: bool) -> None:
    assert confidence_filter(sc, threshold) is kept


@pytest.mark.parametrize(
    ("sc", "threshold", "name"), [(1.5, 0.75, "sc"), (math.nan, 0.75, "sc"), (0.8, -0.1, "threshold")]
)
def test_confidence_filter_refuses_values_outside_0_1(sc: float, threshold: float, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be in"):
        confidence_filter(sc, threshold)


@pytest.mark.parametrize(
    ("outcome", "steps", "expected"),
    [
        (False, 2, True),
        (False, 7, True),
        (False, 1, False),
        (False, 0, False),
        (True, 5, False),
        (None, 5, False),
    ],
)
def test_only_incorrect_multi_step_responses_get_rollouts(
    outcome: bool | None, steps: int, expected: bool
) -> None:
    assert needs_step_rollouts(outcome, steps) is expected


def test_needs_step_rollouts_refuses_negative_steps() -> None:
    with pytest.raises(ValueError, match="steps must be >= 0"):
        needs_step_rollouts(False, -1)


# --- sequential early stop ------------------------------------------------------------------------------


def test_next_rollout_step_walks_until_the_first_zero_or_the_end() -> None:
    assert [next_rollout_step(v, 4) for v in ((), (0.5,), (0.5, 0.25), (0.5, 0.25, 0.0))] == [0, 1, 2, None]
    assert next_rollout_step((0.5, 0.25, 0.125, 1.0), 4) is None
    assert next_rollout_step((0.0,), 4) is None
    assert next_rollout_step((), 0) is None


def test_next_rollout_step_refuses_impossible_histories() -> None:
    with pytest.raises(ValueError, match="values holds 3 estimates for 2 steps"):
        next_rollout_step((0.5, 0.5, 0.5), 2)
    with pytest.raises(ValueError, match="step 0 has estimate 0, yet later steps were rolled out"):
        next_rollout_step((0.0, 0.5), 3)
    with pytest.raises(ValueError, match="value of step 1 must be in"):
        next_rollout_step((0.5, 1.5), 3)


@pytest.mark.parametrize(
    ("values", "sc", "ratio", "expected"),
    [
        ((1.0, 0.75, 0.25, 0.0), 0.75, 0.0, 3),  # SCAN's rule: the first zero
        ((1.0, 0.75, 0.25, 0.0), 0.75, 0.5, 2),  # 0.25 < 0.5 x 0.75
        ((1.0, 0.75, 0.375, 0.0), 0.75, 0.5, 3),  # exactly half is progress enough
        ((0.25, 0.25), 1.0, 0.5, 0),  # step 0 against SC
        ((0.5, 0.5, 0.5), 1.0, 0.5, -1),  # 0.5 = 0.5 x 1.0: not below
        ((0.9, 0.8, 0.7), 0.9, 0.8, -1),
        ((0.9, 0.8, 0.6), 0.9, 0.8, 2),  # GenPRM's epsilon: 0.6 / 0.8 = 0.75 < 0.8
        ((0.5, None, 0.0), 1.0, 0.5, None),  # unknown first
        ((0.5, 0.0, None), 1.0, 0.5, 1),  # the error comes before the unknown
        ((), 1.0, 0.5, -1),
        ((0.2, 0.0), 0.1, 1.0, 1),  # ratio 1: any fall; a rise is progress
    ],
)
def test_error_step(values: tuple[float | None, ...], sc: float, ratio: float, expected: int | None) -> None:
    assert error_step(values, sc, ratio) == expected


def test_error_step_with_ratio_0_is_the_first_zero() -> None:
    rng = random.Random(3)
    for _ in range(300):
        values = tuple(rng.choice((0.0, 0.125, 0.5, 1.0, None)) for _ in range(rng.randint(0, 6)))
        assert error_step(values, rng.choice((0.25, 1.0)), 0.0) == first_error_from_values(values)


@pytest.mark.parametrize("ratio", [-0.1, 1.1, math.nan])
def test_error_step_refuses_a_ratio_outside_0_1(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\]"):
        error_step((0.5,), 1.0, ratio)
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\]"):
        next_rollout_step((0.5,), 3, 1.0, ratio)


def test_next_rollout_step_with_the_ratio_rule() -> None:
    assert [next_rollout_step(v, 4, 0.75, 0.5) for v in ((), (1.0,), (1.0, 0.5), (1.0, 0.25))] == [
        0,
        1,
        2,
        None,
    ]
    assert next_rollout_step((0.25,), 4, 0.75, 0.5) is None  # step 0 below half of SC
    assert next_rollout_step((0.5,), 4, 0.75, 0.5) == 1
    with pytest.raises(ValueError, match=r"step 1 has estimate 0.25 below 0.5 x 1, yet later steps"):
        next_rollout_step((1.0, 0.25, 0.25), 4, 0.75, 0.5)


def test_scan_labels_with_the_ratio_rule() -> None:
    assert scan_labels(False, (1.0, 0.75, 0.25, 0.0), 0.75, ratio=0.5) == ScanLabels((1.0, 1.0, 1 / 3), 2)
    assert scan_labels(False, (1.0, 0.75, 0.25, 0.0), 0.75) == ScanLabels((1.0, 1.0, 1 / 3, 0.0), 3)
    assert scan_labels(False, (0.5, 0.5, 0.5), 1.0, ratio=0.5) == ScanLabels(
        None, None, "no step has estimate 0 or below 0.5 x the one before it (SCAN drops it)"
    )
    assert scan_labels(True, (None, None), 0.8, ratio=0.5) == ScanLabels((1.0, 1.0), -1)


# --- labels ---------------------------------------------------------------------------------------------


def test_the_worked_example_and_its_window() -> None:
    values = (1.0, 0.75, 0.5, 0.25, 0.0, None)
    assert scan_labels(False, values, 0.8) == ScanLabels((1.0, 1.0, 0.625, 0.3125, 0.0), 4)
    assert scan_labels(False, values, 0.8, distance=0).scores == (1.0, 1.0, 1.0, 1.0, 0.0)
    assert scan_labels(False, values, 0.8, distance=3).scores == (1.0, 0.9375, 0.625, 0.3125, 0.0)
    assert scan_labels(False, values, 0.8, distance=10).scores == (1.0, 0.9375, 0.625, 0.3125, 0.0)
    assert scan_labels(False, values, 0.5).scores == (1.0, 1.0, 1.0, 0.5, 0.0)  # min(1, .) clips


def test_scan_labels_of_positives_and_short_negatives() -> None:
    assert scan_labels(True, (None, None, None), 0.9) == ScanLabels((1.0, 1.0, 1.0), -1)
    assert scan_labels(False, (None,), 0.9) == ScanLabels((0.0,), 0)  # one step: the error, no rollouts
    assert scan_labels(False, (0.0, None, None), 0.9) == ScanLabels((0.0,), 0)
    assert scan_labels(False, (0.5, 0.0), 1.0) == ScanLabels((0.5, 0.0), 1)


@pytest.mark.parametrize(
    ("outcome", "values", "reason"),
    [
        (None, (0.5, 0.0), "ungraded response"),
        (False, (), "a response with no steps"),
        (True, (), "a response with no steps"),
        (False, (0.5, 0.25, 0.125), "no step has estimate 0 (SCAN drops it)"),
        (False, (0.5, None, 0.0), "an unknown estimate comes before any estimate 0"),
    ],
)
def test_dropped_responses(outcome: bool | None, values: tuple[float | None, ...], reason: str) -> None:
    assert scan_labels(outcome, values, 0.8) == ScanLabels(None, None, reason)


@pytest.mark.parametrize(
    ("sc", "distance", "match"), [(0.0, 2, "sc must be"), (1.2, 2, "sc must be"), (0.8, -1, "distance")]
)
def test_scan_labels_refuses_bad_parameters(sc: float, distance: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        scan_labels(False, (0.5, 0.0), sc, distance)


def _process_py(steps_score: list[float], accuracy: float) -> list[float] | None:
    """SCAN-Base ``process.py``'s labels of an incorrect response, transcribed (-1: not rolled out)."""
    if len(steps_score) == 1:
        steps_score = [0.0]
    if 0.0 not in steps_score:
        return None
    first_err_loc = steps_score.index(0.0)
    scores: list[float] = [1.0] * first_err_loc + [0.0]
    if first_err_loc - 1 >= 0:
        scores[first_err_loc - 1] = min(1, steps_score[first_err_loc - 1] / accuracy)
    if first_err_loc - 2 >= 0:
        scores[first_err_loc - 2] = min(1, steps_score[first_err_loc - 2] / accuracy)
    return scores


def test_the_sequential_loop_and_labels_match_scans_code() -> None:
    rng = random.Random(7)
    for _ in range(500):
        steps = rng.randint(1, 7)
        hidden = [rng.choice((0.0, 0.125, 0.25, 0.5, 0.875, 1.0)) for _ in range(steps)]
        sc = rng.choice((0.75, 0.8125, 0.9, 1.0))
        rolled: list[float] = []
        if needs_step_rollouts(False, steps):
            while (t := next_rollout_step(rolled, steps)) is not None:
                assert t == len(rolled)
                rolled.append(hidden[t])
        zeros = [t for t, v in enumerate(hidden) if v == 0]
        if steps >= 2:
            assert len(rolled) == (zeros[0] + 1 if zeros else steps)  # early stop saves the rest
        values = tuple(rolled) + (None,) * (steps - len(rolled))
        ours = scan_labels(False, values, sc)
        theirs = _process_py(rolled + [-1.0] * (steps - len(rolled)), sc)
        assert ours.scores == (None if theirs is None else tuple(theirs))
