"""Best-of-N selection by a PRM's step scores (pure).

Each rollout's step scores are aggregated into one value -- ``min`` (the weakest step), ``last`` (the
final step) or ``product`` (all steps right) -- over its scored steps (a rollout with none ranks below
every other); each problem's pick is the rollout with the highest value (ties: the first). The
selection accuracy is the share of problems whose pick reached the correct answer. Beside it: the
oracle (the share of problems with at least one correct rollout: the best any selector can do) and the
random baseline (the expected accuracy of a uniform pick: the mean over problems of the share of
correct rollouts, computed exactly rather than sampled).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["AGGREGATES", "Aggregate", "BestOfN", "aggregate", "best_of_n", "pick"]

Aggregate = Literal["min", "last", "product"]
AGGREGATES: tuple[Aggregate, ...] = ("min", "last", "product")


@dataclass(frozen=True, slots=True)
class BestOfN:
    """Selection accuracy by aggregate, and the two baselines, over ``problems`` problems."""

    problems: int
    rollouts: int
    accuracy: dict[str, float]
    oracle: float
    random: float


def aggregate(scores: Sequence[float | None], how: Aggregate) -> float:
    """One rollout's value; ``-inf`` when no step is scored.

    >>> [aggregate([0.9, 0.5, None], how) for how in ("min", "last")], aggregate([0.5, 0.5], "product")
    ([0.5, 0.5], 0.25)
    """
    known = [s for s in scores if s is not None]
    if not known:
        return -math.inf
    if how == "min":
        return min(known)
    if how == "last":
        return known[-1]
    return math.prod(known)


def pick(values: Sequence[float]) -> int:
    """The index of the largest value (ties: the first).

    >>> pick([0.2, 0.7, 0.7])
    1
    """
    if not values:
        raise ValueError("no rollouts to pick from")
    return max(range(len(values)), key=lambda i: (values[i], -i))


def best_of_n(groups: Mapping[str, Sequence[tuple[Sequence[float | None], bool]]]) -> BestOfN:
    """``groups`` maps each problem to its rollouts' ``(step scores, reached the correct answer)``.

    >>> r = best_of_n({"p": [([0.9, 0.2], False), ([0.6, 0.6], True)], "q": [([0.1], False)]})
    >>> r.accuracy, r.oracle, r.random
    ({'min': 0.5, 'last': 0.5, 'product': 0.5}, 0.5, 0.25)
    """
    problems = [rollouts for rollouts in groups.values() if rollouts]
    n = len(problems)
    accuracy: dict[str, float] = {}
    for how in AGGREGATES:
        hits = sum(rs[pick([aggregate(s, how) for s, _ in rs])][1] for rs in problems)
        accuracy[how] = hits / n if n else math.nan
    oracle = sum(any(ok for _, ok in rs) for rs in problems) / n if n else math.nan
    random = sum(sum(ok for _, ok in rs) / len(rs) for rs in problems) / n if n else math.nan
    return BestOfN(n, sum(len(rs) for rs in problems), accuracy, oracle, random)
