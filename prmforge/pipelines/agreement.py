"""Agreement statistics between label sources, and of a source against truth (pure functions).

Rollouts are paired by ``rollout_id``; steps by index. A hard label of None
(the source abstained on that step) takes no part. Undefined statistics are
``None`` with a reason, never ``nan``.

- ``cohen_kappa(a, b)``: Cohen's kappa over the steps both sources labelled.
- ``kappa_table(by_source)``: kappa for every pair of sources.
- ``error_confusion(labels, truth)``: a source against prefix truth, with
  "invalid" (the step is bad) as the positive class: the error-detection view
  of :func:`prmforge.annotators.metrics.step_confusion` (whose positive class is
  "good"), computed by it: ``tp = tn_good``, ``fp = fn_good``, ``fn = fp_good``, ``tn = tp_good``.

Worked example (one rollout of four steps)::

    a  hard (True, True, False, False)
    b  hard (True, False, False, None)      -> 3 shared steps: 1 both good, 1 both bad, 1 split
    p_o = 2/3; p_e = (2/3)(1/3) + (1/3)(2/3) = 4/9; kappa = (2/3 - 4/9) / (1 - 4/9) = 0.4
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from prmforge.annotators.metrics import step_confusion
from prmforge.schemas.records import StepLabels

__all__ = [
    "ErrorConfusion",
    "Kappa",
    "by_source",
    "cohen_kappa",
    "error_confusion",
    "kappa_from_counts",
    "kappa_table",
]


@dataclass(frozen=True, slots=True)
class Kappa:
    """Cohen's kappa of sources a and b over the ``n`` steps both labelled.

    ``observed = p_o = (both_good + both_bad) / n``; ``expected = p_e =
    (a_good / n)(b_good / n) + (a_bad / n)(b_bad / n)`` from each source's own
    label shares; ``kappa = (p_o - p_e) / (1 - p_e)``. ``kappa`` is None when it
    is undefined, with ``reason``: no shared step (``n = 0``: ``observed`` and
    ``expected`` are None too), or ``p_e = 1``, which happens exactly when both
    sources gave every shared step the same single label. One constant source
    against a varying one is defined: kappa 0 (no agreement beyond chance).
    """

    n: int
    both_good: int
    both_bad: int
    a_good_b_bad: int
    a_bad_b_good: int
    observed: float | None
    expected: float | None
    kappa: float | None
    reason: str = ""


def _index(labels: Sequence[StepLabels], name: str) -> dict[str, StepLabels]:
    out: dict[str, StepLabels] = {}
    for s in labels:
        if s.rollout_id in out:
            raise ValueError(f"{name} holds rollout {s.rollout_id!r} twice")
        out[s.rollout_id] = s
    return out


def kappa_from_counts(both_good: int, both_bad: int, a_good_b_bad: int, a_bad_b_good: int) -> Kappa:
    """:class:`Kappa` from the 2x2 table, computed exactly in fractions.

    >>> kappa_from_counts(1, 1, 0, 1).kappa
    0.4
    >>> kappa_from_counts(5, 0, 0, 0).reason
    'both sources gave every shared step the same label (p_e = 1)'
    """
    cells = (both_good, both_bad, a_good_b_bad, a_bad_b_good)
    if any(c < 0 for c in cells):
        raise ValueError(f"counts must be >= 0, got {cells}")
    n = sum(cells)
    if n == 0:
        return Kappa(0, *cells, None, None, None, "no step labelled by both sources")
    observed = Fraction(both_good + both_bad, n)
    a_good, b_good = both_good + a_good_b_bad, both_good + a_bad_b_good
    expected = Fraction(a_good * b_good + (n - a_good) * (n - b_good), n * n)
    if expected == 1:
        reason = "both sources gave every shared step the same label (p_e = 1)"
        return Kappa(n, *cells, float(observed), 1.0, None, reason)
    kappa = (observed - expected) / (1 - expected)
    return Kappa(n, *cells, float(observed), float(expected), float(kappa))


def cohen_kappa(a: Sequence[StepLabels], b: Sequence[StepLabels]) -> Kappa:
    """Kappa of two sources' hard labels over the steps both labelled, in the rollouts both labelled.

    A rollout only one of them labelled adds nothing; the same rollout with a
    different number of steps in each is an error.

    >>> x = StepLabels("a", "r", (), (True, True, False, False), 2, Cost())
    >>> y = StepLabels("b", "r", (), (True, False, False, None), 1, Cost())
    >>> k = cohen_kappa([x], [y])
    >>> (k.n, k.observed, round(k.expected, 4), k.kappa)
    (3, 0.6666666666666666, 0.4444, 0.4)
    """
    left, right = _index(a, "a"), _index(b, "b")
    gg = bb = gb = bg = 0
    for rollout_id, x in left.items():
        y = right.get(rollout_id)
        if y is None:
            continue
        if len(x.hard) != len(y.hard):
            raise ValueError(
                f"rollout {rollout_id!r}: {x.source} labelled {len(x.hard)} steps, {y.source} {len(y.hard)}"
            )
        for u, v in zip(x.hard, y.hard, strict=True):
            if u is None or v is None:
                continue
            gg += u and v
            bb += not u and not v
            gb += u and not v
            bg += not u and v
    return kappa_from_counts(gg, bb, gb, bg)


def by_source(labels: Iterable[StepLabels]) -> dict[str, list[StepLabels]]:
    """Labels grouped by source, sources in order of first appearance."""
    out: dict[str, list[StepLabels]] = {}
    for s in labels:
        out.setdefault(s.source, []).append(s)
    return out


def kappa_table(labels_by_source: Mapping[str, Sequence[StepLabels]]) -> dict[tuple[str, str], Kappa]:
    """:func:`cohen_kappa` of every pair ``(a, b)`` of sources, ``a`` before ``b`` in the mapping's order.

    >>> x = StepLabels("a", "r", (), (True, False), 1, Cost())
    >>> list(kappa_table({"a": [x], "b": [x], "c": [x]}))
    [('a', 'b'), ('a', 'c'), ('b', 'c')]
    """
    names = list(labels_by_source)
    return {
        (p, q): cohen_kappa(labels_by_source[p], labels_by_source[q])
        for i, p in enumerate(names)
        for q in names[i + 1 :]
    }


@dataclass(frozen=True, slots=True)
class ErrorConfusion:
    """A source's hard labels against prefix truth; positive = "the step is invalid" (bad).

    ``tp``: predicted bad, truly bad; ``fp``: predicted bad, truly good (before
    the true first error); ``fn``: predicted good, truly bad, split into
    ``fn_at_first_error`` (the error step itself) and ``fn_after_first_error``;
    ``tn``: predicted good, truly good. ``unknown`` counts None predictions,
    left out of every ratio. ``precision = tp / (tp + fp)``, ``recall = tp / (tp
    + fn)``, ``accuracy = (tp + tn) / (tp + fp + tn + fn)``; each None when its
    denominator is 0. ``rollouts`` were compared; ``without_truth`` had none.
    """

    tp: int
    fp: int
    tn: int
    fn: int
    unknown: int
    fn_at_first_error: int
    fn_after_first_error: int
    rollouts: int
    without_truth: int
    precision: float | None
    recall: float | None
    accuracy: float | None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def error_confusion(labels: Sequence[StepLabels], truth: Mapping[str, Sequence[bool]]) -> ErrorConfusion:
    """Confusion of one source's hard labels against ``truth`` (rollout id -> prefix labels).

    ``truth[r]`` is :meth:`~prmforge.schemas.records.StepTruth.prefix_labels`
    (True before the first error). Rollouts without an entry are counted in
    ``without_truth``; a step-count mismatch is an error.

    >>> s = StepLabels("mc", "r", (), (True, False, True, None), 1, Cost())
    >>> c = error_confusion([s], {"r": (True, True, False, False)})
    >>> (c.tp, c.fp, c.tn, c.fn, c.unknown, c.fn_at_first_error, c.precision, c.recall)
    (0, 1, 1, 1, 1, 1, 0.0, 0.0)
    """
    predicted: list[tuple[bool | None, ...]] = []
    rows: list[tuple[bool, ...]] = []
    without = 0
    for rollout_id, s in _index(labels, "labels").items():
        row = truth.get(rollout_id)
        if row is None:
            without += 1
            continue
        if len(row) != len(s.hard):
            raise ValueError(
                f"rollout {rollout_id!r}: {len(s.hard)} labelled steps for {len(row)} truth steps"
            )
        predicted.append(s.hard)
        rows.append(tuple(row))
    good = step_confusion(predicted, rows)  # positive class "good" there
    tp, fp, tn, fn = good.tn, good.fn, good.tp, good.fp
    return ErrorConfusion(
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        unknown=good.unknown,
        fn_at_first_error=good.fp_at_first_error,
        fn_after_first_error=good.fp_after_first_error,
        rollouts=len(rows),
        without_truth=without,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        accuracy=_ratio(tp + tn, tp + fp + tn + fn),
    )
