"""OmegaPRM's selection and binary-search mathematics, as pure functions and small state machines.

Notation (METHODS.md §2(b), the paper's): a state s is a prefix, MC(s) the share of its k rollouts
that reach the gold answer, N(s) its visit count, r an incorrect rollout sampled from s::

    Q(s, r) = alpha ** (1 - MC(s)) * beta ** (len(r) / L)       # alpha=0.5, beta=0.9, L=500
    U(s)    = c_puct * sqrt(sum over all states of N) / (1 + N(s))   # c_puct=0.125

Selection takes the pair of the candidate pool with the largest Q(s, r) + U(s) and removes it for
good: a selected pair is *spent* and can never enter the pool again (OpenR's ``maintenance_phase``
pushed every incorrect rollout of the selected state back, the selected one included, so the same
pair was chosen again and again).

Binary search (:class:`BinarySearch`) over a rollout's steps r_1..r_M from a state s whose MC is
taken as > 0: with ``good`` the longest prefix known to be fine and ``bad`` the shortest known to be
wrong, probe ``mid = (good + bad) // 2``; MC(s + r[:mid]) > 0 moves ``good`` up, 0 moves ``bad``
down. A rollout whose final answer is wrong starts with ``bad = M`` (its whole text is known wrong);
one with no gradeable answer starts with ``bad = M + 1`` (nothing known about its last prefix). The
first error is step ``bad - 1`` (0-based) when ``bad <= M``, else -1. That is ``ceil(log2 M)``
estimates for a wrong rollout of M steps, against M - 1 for per-step Monte Carlo.

>>> q_value(0.5, 250, alpha=0.5, beta=0.9, length_norm=500) == 0.5 ** 0.5 * 0.9 ** 0.5
True
>>> search = BinarySearch(steps=8, ends_wrong=True)
>>> search.probe, search.record(0.25), search.probe, search.record(0.0), search.probe
(4, None, 6, None, 5)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BinarySearch", "Candidate", "CandidatePool", "q_value", "u_value"]


def q_value(mc: float, length: int, *, alpha: float, beta: float, length_norm: float) -> float:
    """``Q(s, r) = alpha ** (1 - MC(s)) * beta ** (len(r) / L)``: prefers a state that should be right
    (high MC) and a short rollout. ``length`` is the rollout's generated tokens."""
    if math.isnan(mc) or not 0.0 <= mc <= 1.0:
        raise ValueError(f"mc must be in [0, 1], got {mc}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    _check_weights(alpha, beta, length_norm)
    return float(alpha ** (1.0 - mc) * beta ** (length / length_norm))


def u_value(total_visits: int, visits: int, *, c_puct: float) -> float:
    """``U(s) = c_puct * sqrt(total_visits) / (1 + N(s))`` (0 before any visit: no guard, sqrt(0) = 0)."""
    if visits < 0 or total_visits < visits:
        raise ValueError(
            f"need 0 <= visits <= total_visits, got visits={visits}, total_visits={total_visits}"
        )
    if c_puct < 0:
        raise ValueError(f"c_puct must be >= 0, got {c_puct}")
    return c_puct * math.sqrt(total_visits) / (1 + visits)


def _check_weights(alpha: float, beta: float, length_norm: float) -> None:
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if not 0 < beta <= 1:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    if not length_norm > 0:
        raise ValueError(f"length_norm must be > 0, got {length_norm}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A selected pair: the state, the rollout's index among its rollouts, and the scores it won with."""

    state: int
    rollout: int
    q: float
    u: float

    @property
    def score(self) -> float:
        return self.q + self.u


class CandidatePool:
    """OmegaPRM's candidate pool: (state, incorrect rollout) pairs, each selectable once.

    Q(s, r) is fixed once MC(s) is known, and U(s) is shared by every pair of a state, so the pool
    keeps one max-heap of Q per state; :meth:`select` takes, over the states, the top of each heap
    plus that state's U (exact: U changes with every visit, so one global heap of stale scores would
    not be). Ties go to the smaller state id, then the smaller rollout index.
    """

    def __init__(self, c_puct: float) -> None:
        if c_puct < 0:
            raise ValueError(f"c_puct must be >= 0, got {c_puct}")
        self._c_puct = c_puct
        self._heaps: dict[int, list[tuple[float, int]]] = {}
        self._members: set[tuple[int, int]] = set()
        self._spent: set[tuple[int, int]] = set()
        self.selected: list[Candidate] = []
        """Every selection, in order."""

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, pair: object) -> bool:
        return pair in self._members

    @property
    def spent(self) -> frozenset[tuple[int, int]]:
        return frozenset(self._spent)

    def add(self, state: int, rollout: int, q: float) -> None:
        """Put a pair in the pool; ValueError for a pair already in it or already selected."""
        pair = (state, rollout)
        if pair in self._spent:
            raise ValueError(f"pair {pair} was selected already: a spent pair never re-enters the pool")
        if pair in self._members:
            raise ValueError(f"pair {pair} is in the pool already")
        self._members.add(pair)
        heapq.heappush(self._heaps.setdefault(state, []), (-q, rollout))

    def select(self, visits: Mapping[int, int], total_visits: int) -> Candidate | None:
        """Remove and return the pair with the largest Q + U (None when the pool is empty).

        ``visits`` gives N(s) of the pool's states (missing: 0), ``total_visits`` the sum over all states.
        """
        best: tuple[float, int] | None = None
        for state in sorted(self._heaps):
            q = -self._heaps[state][0][0]
            score = q + u_value(total_visits, visits.get(state, 0), c_puct=self._c_puct)
            if best is None or score > best[0]:
                best = (score, state)
        if best is None:
            return None
        state = best[1]
        neg_q, rollout = heapq.heappop(self._heaps[state])
        if not self._heaps[state]:
            del self._heaps[state]
        pair = (state, rollout)
        self._members.remove(pair)
        self._spent.add(pair)
        candidate = Candidate(state, rollout, -neg_q, best[0] + neg_q)
        self.selected.append(candidate)
        return candidate


class BinarySearch:
    """The first error of a rollout of ``steps`` steps, located with O(log steps) Monte Carlo probes.

    ``probe`` is the number of the rollout's steps whose prefix to estimate next (None: done);
    :meth:`record` takes that prefix's MC. ``path`` lists ``(probe, mc)`` in order.
    """

    def __init__(self, steps: int, *, ends_wrong: bool) -> None:
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.steps = steps
        self.good = 0
        self.bad = steps if ends_wrong else steps + 1
        self.path: list[tuple[int, float]] = []

    @property
    def done(self) -> bool:
        return self.bad - self.good <= 1

    @property
    def probe(self) -> int | None:
        return None if self.done else (self.good + self.bad) // 2

    def record(self, mc: float) -> None:
        probe = self.probe
        if probe is None:
            raise ValueError("the search is done: nothing to record")
        if math.isnan(mc) or not 0.0 <= mc <= 1.0:
            raise ValueError(f"mc must be in [0, 1], got {mc}")
        self.path.append((probe, mc))
        if mc > 0:
            self.good = probe
        else:
            self.bad = probe

    @property
    def first_error(self) -> int:
        """The 0-based step the search blames (-1: none); ValueError before it is done."""
        if not self.done:
            raise ValueError("the search is not done")
        return self.bad - 1 if 1 <= self.bad <= self.steps else -1
