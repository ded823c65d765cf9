"""Tests of the pure Monte Carlo label functions."""

from __future__ import annotations

import doctest
import math

import pytest

from prmforge.annotators import mc_math
from prmforge.annotators.mc_math import first_error_from_values, hard_labels, mc_value, scan_soft_labels


def test_doctests() -> None:
    """The worked examples in the docstrings hold."""
    assert doctest.testmod(mc_math).failed == 0


# --- mc_value -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "n", "expected"), [(0, 1, 0.0), (1, 1, 1.0), (0, 8, 0.0), (3, 8, 0.375), (8, 8, 1.0)]
)
def test_mc_value(correct: int, n: int, expected: float) -> None:
    """The estimate is correct / n, exactly."""
    assert mc_value(correct, n) == expected


@pytest.mark.parametrize("n", [0, -1])
def test_mc_value_rejects_non_positive_n(n: int) -> None:
    """No completions means no estimate."""
    with pytest.raises(ValueError, match="n must be"):
        mc_value(0, n)


@pytest.mark.parametrize(("correct", "n"), [(-1, 8), (9, 8), (2, 1)])
def test_mc_value_rejects_correct_outside_range(correct: int, n: int) -> None:
    """More correct completions than sampled (or fewer than none) is a bug upstream."""
    with pytest.raises(ValueError, match="correct must be"):
        mc_value(correct, n)


# --- hard_labels ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), ()),
        ((1.0, 0.5, 0.125), (True, True, True)),
        ((0.0,), (False,)),
        ((0.25, 0.0, 0.5), (True, False, True)),
        ((None, 0.0, None, 1.0), (None, False, None, True)),
        ((1e-9,), (True,)),
    ],
)
def test_hard_labels(values: tuple[float | None, ...], expected: tuple[bool | None, ...]) -> None:
    """A step is good iff its value is > 0; unknown stays unknown."""
    assert hard_labels(values) == expected


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_hard_labels_rejects_values_outside_unit_interval(bad: float) -> None:
    """Values are probabilities."""
    with pytest.raises(ValueError, match="step 1"):
        hard_labels([0.5, bad])


# --- first_error_from_values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), -1),
        ((1.0,), -1),
        ((0.5, 0.25, 1.0), -1),
        ((0.0,), 0),
        ((0.0, 1.0), 0),
        ((0.5, 0.0, 0.0), 1),
        ((0.5, 0.0, 0.5), 1),  # a later recovery does not move the first error
        ((0.5, 0.0, None, None), 1),  # early-stop shape
        ((0.5, None, 0.0), None),  # the unknown step might have been the first error
        ((None, 0.0), None),
        ((0.5, None), None),  # an unknown step after only positive ones: unknown, not -1
    ],
)
def test_first_error_from_values(values: tuple[float | None, ...], expected: int | None) -> None:
    """First exact zero wins; an unknown before any zero makes the answer unknown."""
    assert first_error_from_values(values) == expected


def test_first_error_rejects_bad_values() -> None:
    """A value outside [0, 1] is rejected, not read as an error."""
    with pytest.raises(ValueError, match="step 0"):
        first_error_from_values([-0.5])


# --- scan_soft_labels -----------------------------------------------------------------------------------


def test_scan_soft_labels_window_before_the_error() -> None:
    """Within ``tolerance`` steps before t*, labels are min(c/SC, 1); earlier ones are hard."""
    values = (0.25, 0.75, 0.5, 0.25, 0.125, 0.0)
    got = scan_soft_labels(values, first_error=5, self_confidence=0.8, tolerance=2)
    assert got == (1.0, 1.0, 1.0, 0.3125, 0.15625, 0.0)


def test_scan_soft_labels_caps_at_one() -> None:
    """c/SC above 1 is capped at 1."""
    assert scan_soft_labels((0.9, 0.0), first_error=1, self_confidence=0.75) == (1.0, 0.0)


def test_scan_soft_labels_no_error_gives_hard_labels() -> None:
    """With first_error = -1 there is no window: every step gets 1[c > 0]."""
    values = (0.25, 0.5, 0.125)
    assert scan_soft_labels(values, first_error=-1, self_confidence=0.8) == (1.0, 1.0, 1.0)


def test_scan_soft_labels_hard_zero_outside_window() -> None:
    """A zero value far before t* stays a hard 0."""
    values = (0.0, 0.5, 0.5, 0.5, 0.0)
    assert scan_soft_labels(values, first_error=4, self_confidence=1.0, tolerance=1) == (
        0.0,
        1.0,
        1.0,
        0.5,
        0.0,
    )


def test_scan_soft_labels_after_error_and_unknowns() -> None:
    """Steps after t* follow the formula literally (soft); None values stay None."""
    values = (0.5, 0.0, 0.4, None)
    assert scan_soft_labels(values, first_error=1, self_confidence=0.8, tolerance=0) == (1.0, 0.0, 0.5, None)


def test_scan_soft_labels_tolerance_zero_only_error_step_soft() -> None:
    """tolerance 0 makes only t* and later soft."""
    values = (0.4, 0.4, 0.0)
    assert scan_soft_labels(values, first_error=2, self_confidence=0.8, tolerance=0) == (1.0, 1.0, 0.0)


@pytest.mark.parametrize("sc", [0.0, -0.1, 1.01, math.nan])
def test_scan_soft_labels_rejects_bad_self_confidence(sc: float) -> None:
    """Self-confidence is a positive probability (it divides)."""
    with pytest.raises(ValueError, match="self_confidence"):
        scan_soft_labels((0.5, 0.0), first_error=1, self_confidence=sc)


@pytest.mark.parametrize("first_error", [-2, 2, 5])
def test_scan_soft_labels_rejects_out_of_range_first_error(first_error: int) -> None:
    """The first error must be -1 or an index into the values."""
    with pytest.raises(ValueError, match="first_error"):
        scan_soft_labels((0.5, 0.0), first_error=first_error, self_confidence=0.8)


def test_scan_soft_labels_rejects_negative_tolerance() -> None:
    """A negative window is meaningless."""
    with pytest.raises(ValueError, match="tolerance"):
        scan_soft_labels((0.5, 0.0), first_error=1, self_confidence=0.8, tolerance=-1)
