"""The mathematics of Monte Carlo step labels, as pure functions.

Notation (METHODS.md §1, §2(a), §2(e)): the value of step t is
``MC(s_t) = #correct / N`` over N completions sampled after the prefix that
ends with step t. ``None`` stands for a step whose value is unknown (never
rolled out, e.g. after SCAN's sequential early stop); it propagates as ``None``
and is never read as 0.

Worked example::

    values = (mc_value(5, 8), mc_value(2, 8), mc_value(0, 8), None)   # (0.625, 0.25, 0.0, None)
    hard_labels(values)               # (True, True, False, None)
    first_error_from_values(values)   # 2
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "first_error_from_values",
    "hard_labels",
    "mc_value",
    "scan_soft_labels",
]


def mc_value(correct: int, n: int) -> float:
    """The Monte Carlo estimate ``correct / n`` (Math-Shepherd's soft estimation, Eq. 4).

    >>> mc_value(3, 8)
    0.375
    """
    if n <= 0:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be in [0, {n}], got {correct}")
    return correct / n


def hard_labels(values: Sequence[float | None]) -> tuple[bool | None, ...]:
    """Math-Shepherd's hard estimation: a step is good iff some completion after it reached the gold answer.

    ``value > 0`` gives True, ``value == 0`` False, ``None`` stays ``None``.

    >>> hard_labels([1.0, 0.125, 0.0, None])
    (True, True, False, None)
    """
    for t, v in enumerate(values):
        if v is not None:
            _check_value(t, v)
    return tuple(None if v is None else v > 0 for v in values)


def first_error_from_values(values: Sequence[float | None]) -> int | None:
    """The first step whose value is exactly 0; -1 if every value is known and > 0.

    Scans from step 0: the first 0 found wins, even when unknown values follow
    it (the early-stop shape ``(0.5, 0.0, None, None)`` gives 1). An unknown
    value met *before* any 0 makes the answer ``None`` (unknown): that step
    might have been the first error. No steps at all gives -1.

    >>> first_error_from_values([0.5, 0.0, None])
    1
    >>> first_error_from_values([0.5, None, 0.0]) is None
    True
    """
    for t, v in enumerate(values):
        if v is None:
            return None
        _check_value(t, v)
        if v == 0:
            return t
    return -1


def scan_soft_labels(
    values: Sequence[float | None],
    first_error: int,
    self_confidence: float,
    tolerance: int = 2,
) -> tuple[float | None, ...]:
    """SCAN's noise-tolerant labels (METHODS.md §2(e), the project-page formula).

    With ``c_t = values[t]``, ``t* = first_error`` and ``SC = self_confidence``::

        y_t = min(c_t / SC, 1)   if t* - t <= tolerance
        y_t = 1[c_t > 0]         otherwise

    ``first_error = -1`` (no predicted error) places no soft window, so every
    step gets its hard label. The formula is applied literally to steps after
    ``t*`` as well; with sequential early stop their values are ``None`` and
    SCAN's ``process.py`` truncates them. ``None`` values give ``None``.

    >>> scan_soft_labels([1.0, 0.75, 0.5, 0.25, 0.0], first_error=4, self_confidence=0.8)
    (1.0, 1.0, 0.625, 0.3125, 0.0)
    """
    if not 0 < self_confidence <= 1:
        raise ValueError(f"self_confidence must be in (0, 1], got {self_confidence}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if not -1 <= first_error < len(values):
        raise ValueError(f"first_error must be -1 or a step index below {len(values)}, got {first_error}")
    labels: list[float | None] = []
    for t, v in enumerate(values):
        if v is None:
            labels.append(None)
            continue
        _check_value(t, v)
        if first_error >= 0 and first_error - t <= tolerance:
            labels.append(min(v / self_confidence, 1.0))
        else:
            labels.append(1.0 if v > 0 else 0.0)
    return tuple(labels)


def _check_value(t: int, v: float) -> None:
    if math.isnan(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"value of step {t} must be in [0, 1], got {v}")
