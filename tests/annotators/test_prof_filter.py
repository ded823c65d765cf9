"""PROF's process-consistency filter (METHODS.md §2(h)): the balanced data filter and PROF-GRPO's rule."""

from __future__ import annotations

import doctest
import math
import random

import pytest

from prmforge.annotators import prof_filter as prof_module
from prmforge.annotators.prof_filter import (
    ProfCandidate,
    ProfSelection,
    candidates,
    consistency,
    process_score,
    prof_filter,
    prof_remove,
)
from prmforge.schemas.records import Cost, StepLabels


def test_doctests() -> None:
    assert doctest.testmod(prof_module).failed == 0


def cand(rollout_id: str, outcome: bool | None, *values: float | None) -> ProfCandidate:
    return ProfCandidate(rollout_id, outcome, tuple(values))


EXAMPLE = [
    cand("a", True, 0.9, 0.7),
    cand("b", True, 0.6, 0.6),
    cand("c", False, 0.5, 0.1),
    cand("d", False, 0.9, 0.5),
]


# --- scores ---------------------------------------------------------------------------------------------


def test_process_score() -> None:
    assert process_score((0.25, 0.75)) == 0.5
    assert process_score((0.25, None, 0.75), "min") == 0.25
    assert process_score(()) is None
    assert process_score((None, None), "min") is None
    with pytest.raises(ValueError, match="aggregate must be 'mean' or 'min', got 'max'"):
        process_score((0.5,), "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="values must be in"):
        process_score((0.5, math.nan))


def test_consistency_is_prof_s_for_threshold_one_half() -> None:
    for p in (0.0, 0.25, 0.5, 0.8, 1.0):
        for o in (True, False):
            assert consistency(p, o) == pytest.approx((2 * p - 1) * (2 * o - 1), abs=1e-15)
    assert consistency(0.3, True, threshold=0.25) == pytest.approx(0.1)
    assert consistency(0.5, False) == 0.0  # on the threshold: agrees with neither outcome


# --- the balanced filter --------------------------------------------------------------------------------


def test_the_worked_example() -> None:
    assert prof_filter(EXAMPLE) == ProfSelection(
        kept=("a", "c"),
        dropped={
            "b": "balance: 2 agreeing correct, 1 agreeing incorrect; kept the 1 most consistent",
            "d": "disagrees: incorrect with mean score 0.7 >= 0.5",
        },
    )
    assert prof_filter(EXAMPLE, balance=False).kept == ("a", "b", "c")


def test_min_aggregate_and_the_threshold_boundary() -> None:
    # min: a 0.7, b 0.6, c 0.1, d 0.5: d sits on the threshold, which is not low
    sel = prof_filter(EXAMPLE, aggregate="min")
    assert sel.kept == ("a", "c")
    assert sel.dropped["d"] == "disagrees: incorrect with min score 0.5 >= 0.5"
    assert prof_filter([cand("x", True, 0.5), cand("y", False, 0.2)]).dropped == {
        "x": "disagrees: correct with mean score 0.5 <= 0.5",
        "y": "balance: 1 agreeing incorrect, 0 agreeing correct; kept the 0 most consistent",
    }
    assert prof_filter(EXAMPLE, threshold=0.75).kept == ("a", "c")  # b 0.6 and d 0.7 are now low
    assert prof_filter(EXAMPLE, threshold=0.75, balance=False).kept == ("a", "c", "d")


def test_ties_go_to_the_smaller_rollout_id() -> None:
    group = [cand("r3", True, 0.8), cand("r1", True, 0.8), cand("r2", True, 0.8), cand("n", False, 0.1)]
    assert prof_filter(group).kept == ("r1", "n")
    assert prof_filter(list(reversed(group))).kept == ("n", "r1")


def test_unscorable_rollouts_are_dropped() -> None:
    group = [
        cand("a", None, 0.9),
        cand("b", True, None),
        cand("c", True),
        cand("d", True, 0.9),
        cand("e", False, 0.1),
    ]
    sel = prof_filter(group)
    assert sel.kept == ("d", "e")
    assert sel.dropped == {"a": "no outcome", "b": "no known step value", "c": "no known step value"}


def test_one_sided_and_empty_groups_keep_nothing() -> None:
    assert prof_filter([]) == ProfSelection((), {})
    sel = prof_filter([cand("a", True, 0.9), cand("b", True, 0.8)])
    assert sel.kept == ()
    assert sel.dropped["a"] == "balance: 2 agreeing correct, 0 agreeing incorrect; kept the 0 most consistent"
    assert prof_filter([cand("a", True, 0.9), cand("b", True, 0.8)], balance=False).kept == ("a", "b")


def test_prof_filter_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"group holds a rollout_id twice: \['a'\]"):
        prof_filter([cand("a", True, 0.9), cand("a", False, 0.1)])
    with pytest.raises(ValueError, match="threshold must be in"):
        prof_filter(EXAMPLE, threshold=1.5)


def test_candidates_from_step_labels() -> None:
    s = StepLabels("prm", "r1", (0.9, None), (True, None), -1, Cost())
    t = StepLabels("prm", "r2", (0.2,), (True,), -1, Cost())
    assert candidates([s, t], {"r1": True}) == [cand("r1", True, 0.9, None), cand("r2", None, 0.2)]


def _random_group(rng: random.Random) -> list[ProfCandidate]:
    return [
        cand(
            f"r{i}",
            rng.choice((True, False, None)),
            *(rng.choice((None, rng.random())) for _ in range(rng.randint(0, 4))),
        )
        for i in rng.sample(range(20), rng.randint(0, 10))
    ]


def test_prof_filter_properties() -> None:
    rng = random.Random(13)
    for _ in range(300):
        group = _random_group(rng)
        sel = prof_filter(group, aggregate=rng.choice(("mean", "min")))
        by_id = {c.rollout_id: c for c in group}
        assert set(sel.kept) | set(sel.dropped) == set(by_id)
        assert not set(sel.kept) & set(sel.dropped)
        outcomes = [by_id[i].outcome for i in sel.kept]
        assert outcomes.count(True) == outcomes.count(False)
        shuffled = rng.sample(group, len(group))
        assert set(prof_filter(shuffled).kept) == set(prof_filter(group).kept)  # order does not matter


# --- PROF-GRPO's removal rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pos", "neg", "kept"),
    [
        (6, 2, (2, 2)),
        (2, 6, (2, 2)),
        (5, 3, (2, 2)),
        (4, 4, (2, 2)),
        (3, 5, (2, 2)),
        (7, 1, (3, 1)),
        (1, 7, (1, 3)),
        (8, 0, (4, 0)),
        (0, 8, (0, 4)),
    ],
)
def test_prof_remove_evens_out_a_group_of_eight(pos: int, neg: int, kept: tuple[int, int]) -> None:
    group = [cand(f"p{i}", True, 0.5 + 0.05 * i) for i in range(pos)] + [
        cand(f"n{i}", False, 0.5 - 0.05 * i) for i in range(neg)
    ]
    sel = prof_remove(group)
    kept_outcomes = [i[0] for i in sel.kept]
    assert (kept_outcomes.count("p"), kept_outcomes.count("n")) == kept
    assert len(sel.dropped) == 4
    # the kept ones are the most consistent of their side: the highest-indexed
    assert sel.kept == tuple(f"p{i}" for i in range(pos - kept[0], pos)) + tuple(
        f"n{i}" for i in range(neg - kept[1], neg)
    )


def test_prof_remove_rounds_half_to_even() -> None:
    # 2 correct, 1 incorrect, remove 2: D = 1, round(1.5) = 2: both correct go
    two_one = [cand("p0", True, 0.9), cand("p1", True, 0.8), cand("n0", False, 0.1)]
    assert prof_remove(two_one, 2).kept == ("n0",)
    # 1 correct, 2 incorrect: D = -1, round(0.5) = 0: both incorrect go
    one_two = [cand("p0", True, 0.9), cand("n0", False, 0.1), cand("n1", False, 0.2)]
    assert prof_remove(one_two, 2).kept == ("p0",)


def test_prof_remove_penalises_lengths_and_breaks_ties_by_id() -> None:
    group = [
        cand("short", True, 0.99),  # one step: k = 0.98 - 10
        cand("long", True, *([0.9] * 31)),  # 31 steps: penalised too
        cand("p1", True, 0.6, 0.6),
        cand("p2", True, 0.6, 0.6),
        cand("n1", False, 0.1, 0.1),
        cand("n2", False, 0.1, 0.1),
    ]
    sel = prof_remove(group, 2)
    assert sel.kept == ("p1", "p2", "n1", "n2")
    assert set(sel.dropped) == {"short", "long"}
    assert prof_remove(group, 2, length_penalty=0.0).kept == ("short", "long", "n1", "n2")
    # remove 3: D = 2, round(2.5) = 2 correct (p1, p2), then 1 incorrect: n1 and n2 tie, the larger id goes
    assert prof_remove(group, 3, length_penalty=0.0).kept == ("short", "long", "n1")
    # remove 1: min(1, round(1.5)) = 1 correct: p1 and p2 tie, p2 goes
    assert prof_remove(group, 1, length_penalty=0.0).kept == ("short", "long", "p1", "n1", "n2")


def test_prof_remove_edge_cases() -> None:
    assert prof_remove(EXAMPLE, 0) == ProfSelection(("a", "b", "c", "d"), {})
    assert prof_remove([], 0) == ProfSelection((), {})
    with pytest.raises(ValueError, match=r"n_remove must be in \[0, 4\]"):
        prof_remove(EXAMPLE, 5)
    with pytest.raises(ValueError, match="rollout 'x' has no outcome"):
        prof_remove([cand("x", None, 0.5), cand("y", True, 0.5)], 1)
    with pytest.raises(ValueError, match="min_steps"):
        prof_remove(EXAMPLE, 1, min_steps=5, max_steps=2)


def test_prof_remove_always_removes_n() -> None:
    rng = random.Random(17)
    for _ in range(300):
        group = [
            c for c in _random_group(rng) if c.outcome is not None and process_score(c.values) is not None
        ]
        n_remove = rng.randint(0, len(group))
        sel = prof_remove(group, n_remove)
        assert len(sel.kept) == len(group) - n_remove
        assert set(sel.kept) | set(sel.dropped) == {c.rollout_id for c in group}
