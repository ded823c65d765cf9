"""PROF's process-consistency filter for a group of rollouts of one question (METHODS.md §2(h)).

A rollout's process score ``s`` is the mean (PROF) or the min of its known
step values; its outcome ``o`` is 1 (correct) or 0. Its consistency is

    c = (2o - 1) * 2 * (s - threshold)        (threshold 0.5: PROF's mean_h (2 p_h - 1)(2o - 1))

and it *agrees* when ``c > 0``: a correct rollout with ``s > threshold`` or an
incorrect one with ``s < threshold`` (``s == threshold`` agrees with neither).

- ``prof_filter``: the data filter: keep the agreeing rollouts, then (``balance``)
  as many correct as incorrect ones, the most consistent of each; ties go to
  the smaller ``rollout_id``.
- ``prof_remove``: PROF-GRPO's exact rule: remove ``n_remove`` rollouts of the
  group, the least consistent, in numbers that even out correct and incorrect.

Worked example (threshold 0.5, mean)::

    a correct   values (0.9, 0.7)  s 0.8   c  0.6   agrees
    b correct   values (0.6, 0.6)  s 0.6   c  0.2   agrees
    c incorrect values (0.5, 0.1)  s 0.3   c  0.4   agrees
    d incorrect values (0.9, 0.5)  s 0.7   c -0.4   disagrees (a "flawed" negative)
    prof_filter -> kept (a, c): one agreeing incorrect, so one correct, the most consistent
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prmforge.schemas.records import StepLabels

__all__ = [
    "ProfCandidate",
    "ProfSelection",
    "candidates",
    "consistency",
    "process_score",
    "prof_filter",
    "prof_remove",
]

Aggregate = Literal["mean", "min"]


@dataclass(frozen=True, slots=True)
class ProfCandidate:
    """One rollout of the group: its id, outcome (None: ungraded) and per-step process values."""

    rollout_id: str
    outcome: bool | None
    values: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class ProfSelection:
    """The kept rollout ids (in input order) and, for each dropped one, why."""

    kept: tuple[str, ...]
    dropped: Mapping[str, str]


def candidates(labels: Sequence[StepLabels], outcomes: Mapping[str, bool | None]) -> list[ProfCandidate]:
    """Candidates from one source's labels of the group and the rollouts' outcomes (missing: None)."""
    return [ProfCandidate(s.rollout_id, outcomes.get(s.rollout_id), s.values) for s in labels]


def process_score(values: Sequence[float | None], aggregate: Aggregate = "mean") -> float | None:
    """The mean or the min of the known values; None when none is known.

    >>> process_score((0.9, None, 0.3)), process_score((0.9, None, 0.3), "min"), process_score((None,))
    (0.6, 0.3, None)
    """
    if aggregate not in ("mean", "min"):
        raise ValueError(f"aggregate must be 'mean' or 'min', got {aggregate!r}")
    known = [v for v in values if v is not None]
    for v in known:
        if math.isnan(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"values must be in [0, 1], got {v}")
    if not known:
        return None
    return math.fsum(known) / len(known) if aggregate == "mean" else min(known)


def consistency(score: float, outcome: bool, threshold: float = 0.5) -> float:
    """``(2o - 1) * 2 * (score - threshold)``; > 0 means the score agrees with the outcome.

    >>> consistency(0.8, True), consistency(0.8, False), consistency(0.5, True)
    (0.6000000000000001, -0.6000000000000001, 0.0)
    """
    return (1.0 if outcome else -1.0) * 2.0 * (score - threshold)


def _scored(
    group: Sequence[ProfCandidate], aggregate: Aggregate, threshold: float
) -> tuple[dict[str, tuple[bool, float, float]], dict[str, str]]:
    """Per rollout id (outcome, score, consistency) for the scorable ones, and why the others are not."""
    if math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    ids = [c.rollout_id for c in group]
    if len(set(ids)) < len(ids):
        raise ValueError(f"group holds a rollout_id twice: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    scored: dict[str, tuple[bool, float, float]] = {}
    unscorable: dict[str, str] = {}
    for c in group:
        score = process_score(c.values, aggregate)
        if c.outcome is None:
            unscorable[c.rollout_id] = "no outcome"
        elif score is None:
            unscorable[c.rollout_id] = "no known step value"
        else:
            scored[c.rollout_id] = (c.outcome, score, consistency(score, c.outcome, threshold))
    return scored, unscorable


def _most_consistent_first(ids: Sequence[str], scored: Mapping[str, tuple[bool, float, float]]) -> list[str]:
    return sorted(ids, key=lambda i: (-scored[i][2], i))


def _in_order(group: Sequence[ProfCandidate], kept: set[str], dropped: Mapping[str, str]) -> ProfSelection:
    ids = [c.rollout_id for c in group]
    return ProfSelection(
        kept=tuple(i for i in ids if i in kept),
        dropped={i: dropped[i] for i in ids if i in dropped},
    )


def prof_filter(
    group: Sequence[ProfCandidate],
    *,
    aggregate: Aggregate = "mean",
    threshold: float = 0.5,
    balance: bool = True,
) -> ProfSelection:
    """Keep the rollouts whose process score agrees with their outcome; with ``balance``, equal numbers.

    With ``balance``, ``k = min(#agreeing correct, #agreeing incorrect)`` of
    each are kept, ranked by consistency (highest first, then ``rollout_id``):
    a group with no agreeing rollout on one side keeps nothing. A rollout with
    no outcome or no known value is dropped.

    >>> g = [ProfCandidate("a", True, (0.9, 0.7)), ProfCandidate("b", True, (0.6, 0.6)),
    ...      ProfCandidate("c", False, (0.5, 0.1)), ProfCandidate("d", False, (0.9, 0.5))]
    >>> sel = prof_filter(g)
    >>> sel.kept, sel.dropped["d"]
    (('a', 'c'), 'disagrees: incorrect with mean score 0.7 >= 0.5')
    """
    scored, dropped = _scored(group, aggregate, threshold)
    agreeing: dict[bool, list[str]] = {True: [], False: []}
    for rollout_id, (outcome, score, c) in scored.items():
        if c > 0:
            agreeing[outcome].append(rollout_id)
        else:
            side = "correct" if outcome else "incorrect"
            sign = "<=" if outcome else ">="
            dropped[rollout_id] = f"disagrees: {side} with {aggregate} score {score:.4g} {sign} {threshold:g}"
    kept = set(agreeing[True]) | set(agreeing[False])
    if balance:
        k = min(len(agreeing[True]), len(agreeing[False]))
        for outcome, ids in agreeing.items():
            side, other = ("correct", "incorrect") if outcome else ("incorrect", "correct")
            for rollout_id in _most_consistent_first(ids, scored)[k:]:
                kept.discard(rollout_id)
                dropped[rollout_id] = (
                    f"balance: {len(ids)} agreeing {side}, {k} agreeing {other}; kept the {k} most consistent"
                )
    return _in_order(group, kept, dropped)


def prof_remove(
    group: Sequence[ProfCandidate],
    n_remove: int = 4,
    *,
    aggregate: Aggregate = "mean",
    threshold: float = 0.5,
    min_steps: int = 2,
    max_steps: int = 30,
    length_penalty: float = 10.0,
) -> ProfSelection:
    """PROF-GRPO's ``filter_trajectories``: drop ``n_remove`` rollouts (PROF keeps 4 of 8).

    Rank by ``k_i = c_i - length_penalty * 1[H_i < min_steps or H_i > max_steps]``
    (``H_i`` = number of steps). With ``D = #correct - #incorrect`` and
    ``n_pos = min(n_remove, round((D + n_remove) / 2))`` (Python's round, half
    to even): if ``n_pos > 0``, drop the ``n_pos`` lowest-``k`` correct rollouts
    and then the ``n_remove - n_pos`` lowest-``k`` incorrect ones; else drop the
    ``n_remove`` lowest-``k`` incorrect ones. Ties: the larger ``rollout_id`` goes
    first. Every rollout needs an outcome and a known value.

    >>> g = [ProfCandidate(f"r{i}", i < 6, (0.1 * i + 0.1, 0.5)) for i in range(8)]
    >>> prof_remove(g).kept  # 6 correct, 2 incorrect: drop the 4 least consistent correct
    ('r4', 'r5', 'r6', 'r7')
    """
    if not 0 <= n_remove <= len(group):
        raise ValueError(f"n_remove must be in [0, {len(group)}] (the group's size), got {n_remove}")
    if min_steps > max_steps:
        raise ValueError(f"min_steps ({min_steps}) must be <= max_steps ({max_steps})")
    scored, unscorable = _scored(group, aggregate, threshold)
    if unscorable:
        rollout_id, why = next(iter(unscorable.items()))
        raise ValueError(f"prof_remove: rollout {rollout_id!r} has {why}")
    steps = {c.rollout_id: len(c.values) for c in group}
    rank = {
        i: c - length_penalty * (steps[i] < min_steps or steps[i] > max_steps)
        for i, (_, _, c) in scored.items()
    }
    # least consistent first; on a tie the larger rollout_id goes first (the reverse of the keep order)
    by_side = {
        side: sorted((i for i in scored if scored[i][0] is side), key=lambda i: (-rank[i], i))[::-1]
        for side in (True, False)
    }
    delta = len(by_side[True]) - len(by_side[False])
    n_pos = min(n_remove, round((delta + n_remove) / 2))
    if n_pos > 0:
        removed = by_side[True][:n_pos] + by_side[False][: n_remove - n_pos]
    else:
        removed = by_side[False][:n_remove]
    dropped = {i: f"PROF: among the {n_remove} least consistent (k = {rank[i]:.4g})" for i in removed}
    return _in_order(group, set(scored) - set(removed), dropped)
