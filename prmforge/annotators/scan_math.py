"""SCAN's self-denoising label rules, as pure functions (METHODS.md §2(e); ``yyDing1/SCAN-PRM``).

The pipeline they serve, per question q with the annotator's own N samples:

1. ``self_confidence``: ``SC(q) = #correct / N`` (``main_datasyn.py`` divides by
   ``num_sequence`` = every sample drawn, so a sample with no final answer counts
   as incorrect).
2. ``confidence_filter``: keep q iff ``SC(q) >= 0.75``.
3. ``needs_step_rollouts``: only incorrect responses with two or more steps are
   rolled out; a correct one is all 1s, a one-step incorrect one is ``(0.0,)``.
4. ``next_rollout_step``: sequential early stop, rolling out steps 0, 1, ... and
   stopping after the first step whose estimate ``c_t`` is 0 (or the last step).
5. ``scan_labels``: ``t*`` = the first step with ``c_t = 0`` (none: the response
   is dropped); steps after ``t*`` are dropped; ``y_t = min(1, c_t / SC)`` when
   ``t* - t <= d`` (``d = 2``), else ``1[c_t > 0]`` (which is 1 before ``t*``).

``ratio`` (default 0: SCAN's rule above) replaces "the first ``c_t = 0``" with
GenPRM's relative progress (METHODS.md §2(i)): ``t*`` is the first step whose
``P_t = c_t / c_{t-1} < ratio``, with ``c_{-1} = SC`` (GenPRM's ``MC(s_1)``, the
Pass@1 of the sampled solutions), a step valued 0 always being one
(:func:`error_step`). A wrong step that the completer can still recover from
keeps ``c_t > 0`` but lowers it; the zero rule then places the error late,
the ratio rule where the estimate falls. The early stop follows the same rule.

Balancing positives against negatives (``process.py`` samples ``min(#pos,
#neg)`` of each) is a dataset-wide step and is not here.

Worked example (SC = 0.8, d = 2; an incorrect response of six steps)::

    c = (1.0, 0.75, 0.5, 0.25, 0.0, None)       # early stop after step 4: step 5 never rolled out
    t* = 4; window t in {2, 3, 4}: 0.5/0.8 = 0.625, 0.25/0.8 = 0.3125, 0/0.8 = 0
    scores = (1.0, 1.0, 0.625, 0.3125, 0.0)     # step 1 is outside the window (4 - 1 = 3 > 2): 1[0.75 > 0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prmforge.annotators.mc_math import first_error_from_values, scan_soft_labels

__all__ = [
    "CONFIDENCE_THRESHOLD",
    "DISTANCE",
    "ScanLabels",
    "confidence_filter",
    "error_step",
    "needs_step_rollouts",
    "next_rollout_step",
    "scan_labels",
    "self_confidence",
]

CONFIDENCE_THRESHOLD = 0.75
"""SCAN's confidence filter (``main_datasyn.py``: ``accuracy >= 0.75``)."""
DISTANCE = 2
"""SCAN's tolerance d: the soft window is the ``d`` steps before the predicted error (``process.py``)."""


def self_confidence(outcomes: Sequence[bool | None], sampled: int | None = None) -> float:
    """``SC(q)``: the share of the annotator's own samples for q that reached the gold answer.

    ``outcomes`` are the graded samples (None: ungradable, counted as
    incorrect). ``sampled`` is how many were drawn when ``outcomes`` lists
    only those kept (SCAN keeps samples with a final answer but divides by N);
    default ``len(outcomes)``.

    >>> self_confidence([True, True, False, None]), self_confidence([True, True, True], sampled=4)
    (0.5, 0.75)
    """
    n = len(outcomes) if sampled is None else sampled
    if n < len(outcomes):
        raise ValueError(f"sampled must be >= the {len(outcomes)} outcomes given, got {n}")
    if n <= 0:
        raise ValueError("self_confidence needs at least one sample (outcomes is empty and sampled unset)")
    return sum(1 for o in outcomes if o is True) / n


def confidence_filter(sc: float, threshold: float = CONFIDENCE_THRESHOLD) -> bool:
    """Whether a question is kept: ``sc >= threshold``.

    >>> confidence_filter(0.75), confidence_filter(0.7421875)
    (True, False)
    """
    for name, value in (("sc", sc), ("threshold", threshold)):
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    return sc >= threshold


def needs_step_rollouts(outcome: bool | None, steps: int) -> bool:
    """Whether a response gets step rollouts: only an incorrect one (``outcome is False``) of >= 2 steps.

    A correct response is labelled all 1 for free; a one-step incorrect one is
    labelled ``(0.0,)`` without rollouts (``init_request_list``); an ungraded one
    (None) is not labelled at all.

    >>> needs_step_rollouts(False, 3), needs_step_rollouts(True, 3), needs_step_rollouts(False, 1)
    (True, False, False)
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    return outcome is False and steps >= 2


def _check_ratio(ratio: float) -> None:
    if math.isnan(ratio) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")


def _is_error(value: float, before: float, ratio: float) -> bool:
    """Step value ``value`` after ``before``: 0, or a relative progress ``value / before`` below ``ratio``."""
    return value == 0 or value < ratio * before


def error_step(values: Sequence[float | None], sc: float, ratio: float = 0.0) -> int | None:
    """The predicted first error: the first step valued 0 or below ``ratio`` x the value before it.

    The value before step 0 is ``sc``. ``ratio`` 0 is SCAN's rule (the first
    ``c_t = 0``, :func:`~prmforge.annotators.mc_math.first_error_from_values`);
    ``ratio`` in (0, 1] is GenPRM's relative progress ``c_t / c_{t-1} < ratio``.
    -1 when every value is known and none is an error; None when an unknown
    value comes first.

    >>> error_step([1.0, 0.75, 0.25, 0.0], 0.75), error_step([1.0, 0.75, 0.25, 0.0], 0.75, ratio=0.5)
    (3, 2)
    >>> error_step([0.25, 0.25], 1.0, ratio=0.5), error_step([0.5, None, 0.0], 1.0) is None
    (0, True)
    """
    _check_ratio(ratio)
    if ratio == 0:
        return first_error_from_values(values)
    before = sc
    for t, v in enumerate(values):
        if v is None:
            return None
        if math.isnan(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"value of step {t} must be in [0, 1], got {v}")
        if _is_error(v, before, ratio):
            return t
        before = v
    return -1


def next_rollout_step(values: Sequence[float], steps: int, sc: float = 1.0, ratio: float = 0.0) -> int | None:
    """The step to roll out next given the estimates so far (steps 0..k-1), or None when done.

    Done when the last estimate is the predicted error (:func:`error_step`: 0,
    or with ``ratio`` > 0 below ``ratio`` x the one before it, ``sc`` before
    step 0) or all ``steps`` have estimates (``update_request_list``: stop at
    ``c_t == 0`` or ``t == T - 1``).

    >>> next_rollout_step((), 3), next_rollout_step((0.5,), 3), next_rollout_step((0.5, 0.0), 3)
    (0, 1, None)
    >>> next_rollout_step((0.5, 0.25, 0.125), 3) is None, next_rollout_step((1.0, 0.25), 3, ratio=0.5) is None
    (True, True)
    """
    if len(values) > steps:
        raise ValueError(f"values holds {len(values)} estimates for {steps} steps")
    _check_ratio(ratio)
    before = sc
    for t, v in enumerate(values):
        if math.isnan(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"value of step {t} must be in [0, 1], got {v}")
        if _is_error(v, before, ratio) and t < len(values) - 1:
            what = "estimate 0" if v == 0 else f"estimate {v:g} below {ratio:g} x {before:g}"
            raise ValueError(f"step {t} has {what}, yet later steps were rolled out")
        before = v
    if values and _is_error(values[-1], values[-2] if len(values) > 1 else sc, ratio):
        return None
    return len(values) if len(values) < steps else None


@dataclass(frozen=True, slots=True)
class ScanLabels:
    """One response's SCAN labels: ``scores`` for the kept steps (``first_error + 1`` of a negative).

    ``scores`` is None when the response is dropped, with ``reason``;
    ``first_error`` is -1 for a positive and ``t*`` for a negative.
    """

    scores: tuple[float, ...] | None
    first_error: int | None
    reason: str = ""


def scan_labels(
    outcome: bool | None,
    values: Sequence[float | None],
    sc: float,
    distance: int = DISTANCE,
    ratio: float = 0.0,
) -> ScanLabels:
    """SCAN's labels of one response from its outcome, step estimates and its question's ``SC``.

    ``values`` has one entry per step (None: not rolled out). A correct
    response is all 1.0 (its values are not read). An incorrect one: with
    one step, ``(0.0,)`` (it is the error); else ``t*`` is the first step with
    value 0 (with ``ratio`` > 0: :func:`error_step`'s relative progress), steps
    after it are dropped, and the kept steps get
    :func:`~prmforge.annotators.mc_math.scan_soft_labels` with tolerance
    ``distance``. Dropped: an ungraded response, one with no steps, one with no
    estimate 0 (``process.py``), or one where an unknown estimate comes first.

    >>> scan_labels(False, (1.0, 0.75, 0.5, 0.25, 0.0, None), 0.8)
    ScanLabels(scores=(1.0, 1.0, 0.625, 0.3125, 0.0), first_error=4, reason='')
    >>> scan_labels(True, (None, None), 0.8), scan_labels(False, (0.5, 0.25), 0.8).reason
    (ScanLabels(scores=(1.0, 1.0), first_error=-1, reason=''), 'no step has estimate 0 (SCAN drops it)')
    """
    if not 0.0 < sc <= 1.0:
        raise ValueError(f"sc must be in (0, 1], got {sc}")
    if distance < 0:
        raise ValueError(f"distance must be >= 0, got {distance}")
    if outcome is None:
        return ScanLabels(None, None, "ungraded response")
    if not values:
        return ScanLabels(None, None, "a response with no steps")
    if outcome:
        return ScanLabels((1.0,) * len(values), -1)
    if len(values) == 1:
        return ScanLabels((0.0,), 0)
    t_star = error_step(values, sc, ratio)
    rule = "estimate 0" if ratio == 0 else f"estimate 0 or below {ratio:g} x the one before it"
    if t_star is None:
        return ScanLabels(None, None, f"an unknown estimate comes before any {rule}")
    if t_star == -1:
        return ScanLabels(None, None, f"no step has {rule} (SCAN drops it)")
    soft = scan_soft_labels(values[: t_star + 1], t_star, sc, distance)
    return ScanLabels(tuple(0.0 if v is None else v for v in soft), t_star)
