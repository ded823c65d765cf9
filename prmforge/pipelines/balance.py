"""Positive/negative balance of a split (``split.balance``): pure functions over per-row counts.

A row counts ``(positive, negative)`` units: at ``rollout`` level ``(1, 0)`` when it has no error
(``first_error == -1``) and ``(0, 1)`` otherwise; at ``step`` level its positive and negative step
labels. The split's positive share is ``sum(positive) / sum(positive + negative)``.

:func:`select` reaches the target by dropping rows of the majority class: the rows whose own share
lies on the majority's side of the target (at rollout level, the positive or the negative rows). It
takes them in the order of a seeded hash of their ``example_id`` (:func:`order_key`), and drops one
when that brings the share strictly closer to the target, skipping it otherwise (at step level a
row may overshoot); the last row of a split is never dropped. The choice depends only on the set of
rows and the seed, never on how they were packed into shards, and a row only ever leaves its
split: nothing moves between splits. Comparisons are exact (integers and the target as a fraction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from prmforge.schemas.seeds import derive_seed

Unit = Literal["rollout", "step"]
SPLITS = ("train", "validation", "test")
PPM = 1_000_000  # the manifest's summary holds integers: shares are recorded in parts per million


def units(labels: Sequence[bool], first_error: int, unit: Unit) -> tuple[int, int]:
    """``(positive, negative)`` units of one row."""
    if unit == "rollout":
        return (1, 0) if first_error == -1 else (0, 1)
    positive = sum(1 for label in labels if label)
    return positive, len(labels) - positive


def order_key(seed: int, example_id: str) -> tuple[int, str]:
    """The order in which rows of the majority class are considered for dropping."""
    return derive_seed("balance", seed, example_id), example_id


@dataclass(frozen=True, slots=True)
class Candidate:
    """One row of a split: its order key and its units."""

    key: tuple[int, str]
    positive: int
    negative: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`select` did to one split: the indices of the dropped rows and the counts."""

    dropped: tuple[int, ...]
    positive_before: int
    negative_before: int
    positive: int
    negative: int
    majority: Literal["positive", "negative"] | None  # None: the split was at the target (or empty)

    @property
    def share_before(self) -> float | None:
        return share(self.positive_before, self.negative_before)

    @property
    def share(self) -> float | None:
        return share(self.positive, self.negative)


def share(positive: int, negative: int) -> float | None:
    total = positive + negative
    return positive / total if total else None


def _side(positive: int, total: int, a: int, b: int) -> int:
    """The sign of ``positive / total - a / b``."""
    d = positive * b - a * total
    return (d > 0) - (d < 0)


def _closer(p1: int, t1: int, p0: int, t0: int, a: int, b: int) -> bool:
    """``|p1/t1 - a/b| < |p0/t0 - a/b|``, in integers."""
    return abs(p1 * b - a * t1) * t0 < abs(p0 * b - a * t0) * t1


def select(rows: Sequence[Candidate], target: float) -> Outcome:
    """The rows to drop from one split so that its positive share comes as close to ``target`` as
    dropping majority-class rows (in order-key order) allows."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"the target share must be in (0, 1), got {target}")
    goal = Fraction(target)  # exact: a float is a dyadic fraction
    a, b = goal.numerator, goal.denominator
    positive = sum(r.positive for r in rows)
    negative = sum(r.negative for r in rows)
    before = (positive, negative)
    dropped: list[int] = []
    majority = _side(positive, positive + negative, a, b) if rows else 0
    if majority:
        candidates = sorted(
            (
                i
                for i, r in enumerate(rows)
                if r.positive + r.negative and _side(r.positive, r.positive + r.negative, a, b) == majority
            ),
            key=lambda i: rows[i].key,
        )
        kept = len(rows)
        for i in candidates:
            total = positive + negative
            if kept == 1 or _side(positive, total, a, b) == 0:
                break
            r = rows[i]
            p, n = positive - r.positive, negative - r.negative
            if p + n and _closer(p, p + n, positive, total, a, b):
                dropped.append(i)
                positive, negative, kept = p, n, kept - 1
    side: Literal["positive", "negative"] | None = (
        "positive" if majority > 0 else "negative" if majority < 0 else None
    )
    return Outcome(tuple(sorted(dropped)), before[0], before[1], positive, negative, side)


def _ppm(value: float | None) -> int:
    return -1 if value is None else round(value * PPM)


def _share_of(ppm: int) -> float | None:
    return None if ppm < 0 else ppm / PPM


@dataclass(frozen=True, slots=True)
class SplitBalance:
    """One balanced split: its units before and after, and the rows dropped."""

    split: str
    positive_before: int
    negative_before: int
    positive: int
    negative: int
    dropped: int

    @classmethod
    def of(cls, split: str, outcome: Outcome) -> SplitBalance:
        return cls(
            split,
            outcome.positive_before,
            outcome.negative_before,
            outcome.positive,
            outcome.negative,
            len(outcome.dropped),
        )

    @property
    def share_before(self) -> float | None:
        return share(self.positive_before, self.negative_before)

    @property
    def share(self) -> float | None:
        return share(self.positive, self.negative)


_FIELDS = ("positive_before", "negative_before", "positive", "negative", "dropped")


@dataclass(frozen=True, slots=True)
class BalanceReport:
    """What balancing did, as the dedup stage's summary records it (integers, shares in ppm)."""

    unit: Unit
    target: float
    splits: tuple[SplitBalance, ...]

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.splits)

    def as_summary(self) -> dict[str, int]:
        """``balance_dropped``, ``balance_target_ppm``, ``balance_by_step`` (1: step level, 0: rollout
        level) and per split ``balance_<split>_<field>`` with the achieved ``share_ppm`` (-1: no units)."""
        out = {
            "balance_dropped": self.dropped,
            "balance_target_ppm": _ppm(self.target),
            "balance_by_step": int(self.unit == "step"),
        }
        for s in self.splits:
            for name in _FIELDS:
                out[f"balance_{s.split}_{name}"] = getattr(s, name)
            out[f"balance_{s.split}_share_ppm"] = _ppm(s.share)
        return out

    @classmethod
    def from_summary(cls, data: Mapping[str, int]) -> BalanceReport | None:
        """The report a summary records, or None when balancing was off."""
        if "balance_target_ppm" not in data:
            return None
        target = _share_of(data["balance_target_ppm"]) or 0.0
        splits = tuple(
            SplitBalance(split, *(int(data[f"balance_{split}_{name}"]) for name in _FIELDS))
            for split in SPLITS
            if f"balance_{split}_dropped" in data
        )
        return cls("step" if data.get("balance_by_step") else "rollout", target, splits)

    def as_json(self) -> dict[str, Any]:
        """For ``prmforge stats --json``: the target, and per split the shares before and after."""

        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "unit": self.unit,
            "target": self.target,
            "dropped": self.dropped,
            "splits": {
                s.split: {
                    **{name: getattr(s, name) for name in _FIELDS},
                    "share_before": rounded(s.share_before),
                    "share": rounded(s.share),
                }
                for s in self.splits
            },
        }
