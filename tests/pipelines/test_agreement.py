"""Agreement statistics: Cohen's kappa, the pairwise table, and the error-detection confusion matrix."""

from __future__ import annotations

import doctest
import random

import pytest

from prmforge.annotators.metrics import step_confusion
from prmforge.pipelines import agreement
from prmforge.pipelines.agreement import (
    ErrorConfusion,
    Kappa,
    by_source,
    cohen_kappa,
    error_confusion,
    kappa_from_counts,
    kappa_table,
)
from prmforge.schemas.records import Cost, StepLabels, prefix_labels


def labels(source: str, rollout: str, hard: tuple[bool | None, ...]) -> StepLabels:
    return StepLabels(
        source, rollout, tuple(None if h is None else float(h) for h in hard), hard, None, Cost()
    )


def test_doctests() -> None:
    assert doctest.testmod(agreement, extraglobs={"Cost": Cost}).failed == 0


# --- kappa ----------------------------------------------------------------------------------------------


def test_the_worked_example() -> None:
    k = cohen_kappa(
        [labels("a", "r", (True, True, False, False))], [labels("b", "r", (True, False, False, None))]
    )
    assert k == Kappa(3, 1, 1, 1, 0, 2 / 3, 4 / 9, 0.4)


def test_perfect_and_opposite_agreement() -> None:
    a = [labels("a", "r", (True, False, True, False))]
    assert cohen_kappa(a, a).kappa == 1.0
    flipped = [labels("b", "r", (False, True, False, True))]
    k = cohen_kappa(a, flipped)
    assert (k.observed, k.expected, k.kappa) == (0.0, 0.5, -1.0)


def test_kappa_undefined_when_both_are_the_same_constant() -> None:
    a = [labels("a", "r", (True, True, True))]
    k = cohen_kappa(a, a)
    assert k == Kappa(
        3, 3, 0, 0, 0, 1.0, 1.0, None, "both sources gave every shared step the same label (p_e = 1)"
    )


def test_a_constant_source_against_others_is_defined() -> None:
    good = [labels("a", "r", (True, True, True, True))]
    assert cohen_kappa(good, [labels("b", "r", (True, False, True, False))]).kappa == 0.0
    bad = [labels("b", "r", (False, False, False, False))]
    k = cohen_kappa(good, bad)  # opposite constants: p_o = 0, p_e = 0
    assert (k.observed, k.expected, k.kappa) == (0.0, 0.0, 0.0)


def test_no_shared_step() -> None:
    none = Kappa(0, 0, 0, 0, 0, None, None, None, "no step labelled by both sources")
    assert cohen_kappa([], []) == none
    assert cohen_kappa([labels("a", "r", (True, None))], [labels("b", "r", (None, False))]) == none
    assert cohen_kappa([labels("a", "r1", (True,))], [labels("b", "r2", (True,))]) == none


def test_rollouts_pair_by_id_not_position() -> None:
    a = [labels("a", "r1", (True, False)), labels("a", "r2", (True, True)), labels("a", "only-a", (False,))]
    b = [labels("b", "r2", (True, False)), labels("b", "r1", (True, False)), labels("b", "only-b", (True,))]
    k = cohen_kappa(a, b)
    assert (k.n, k.both_good, k.both_bad, k.a_good_b_bad, k.a_bad_b_good) == (4, 2, 1, 1, 0)
    assert k.kappa == pytest.approx(0.5)  # p_o 3/4, p_e (3/4)(2/4) + (1/4)(2/4) = 1/2


def test_kappa_refuses_mismatched_or_repeated_rollouts() -> None:
    with pytest.raises(ValueError, match="rollout 'r': a labelled 2 steps, b 3"):
        cohen_kappa([labels("a", "r", (True, True))], [labels("b", "r", (True, True, True))])
    with pytest.raises(ValueError, match="a holds rollout 'r' twice"):
        cohen_kappa([labels("a", "r", (True,))] * 2, [])
    with pytest.raises(ValueError, match="counts must be >= 0"):
        kappa_from_counts(1, -1, 0, 0)


def _float_kappa(xs: list[bool], ys: list[bool]) -> float | None:
    n = len(xs)
    p_o = sum(x == y for x, y in zip(xs, ys, strict=True)) / n
    pa, pb = sum(xs) / n, sum(ys) / n
    p_e = pa * pb + (1 - pa) * (1 - pb)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


def test_kappa_matches_the_textbook_formula_and_is_symmetric() -> None:
    rng = random.Random(3)
    for _ in range(300):
        rows = [
            tuple(rng.choice((True, False, None)) for _ in range(rng.randint(1, 6)))
            for _ in range(rng.randint(1, 4))
        ]
        other = [tuple(rng.choice((True, False, None)) for _ in row) for row in rows]
        a = [labels("a", f"r{i}", row) for i, row in enumerate(rows)]
        b = [labels("b", f"r{i}", row) for i, row in enumerate(other)]
        pairs = [(x, y) for r, o in zip(rows, other, strict=True) for x, y in zip(r, o, strict=True)]
        shared = [(x, y) for x, y in pairs if x is not None and y is not None]
        k, back = cohen_kappa(a, b), cohen_kappa(b, a)
        assert k.kappa == back.kappa
        assert k.n == len(shared)
        if not shared:
            assert k.kappa is None
            continue
        expected = _float_kappa([bool(x) for x, _ in shared], [bool(y) for _, y in shared])
        if expected is None:
            assert k.kappa is None
        else:
            assert k.kappa is not None
            assert k.kappa == pytest.approx(expected, abs=1e-12)
            assert -1.0 <= k.kappa <= 1.0


def test_kappa_table_and_by_source() -> None:
    flat = [
        labels("mc", "r1", (True, False)),
        labels("judge", "r1", (True, False)),
        labels("eq", "r1", (False, True)),
        labels("mc", "r2", (True, True)),
        labels("judge", "r2", (False, True)),
    ]
    grouped = by_source(flat)
    assert list(grouped) == ["mc", "judge", "eq"]
    assert [s.rollout_id for s in grouped["mc"]] == ["r1", "r2"]
    table = kappa_table(grouped)
    assert list(table) == [("mc", "judge"), ("mc", "eq"), ("judge", "eq")]
    assert table["mc", "judge"] == cohen_kappa(grouped["mc"], grouped["judge"])
    assert table["mc", "eq"].kappa == -1.0
    assert kappa_table({"mc": grouped["mc"]}) == {}


# --- confusion against truth ----------------------------------------------------------------------------


def test_error_confusion_counts_invalid_as_positive() -> None:
    truth = {"r1": prefix_labels(1, 4), "r2": prefix_labels(-1, 2), "r3": prefix_labels(0, 1)}
    got = error_confusion(
        [
            labels("mc", "r1", (True, False, True, None)),  # tn, tp, fn after the error, unknown
            labels("mc", "r2", (False, True)),  # fp, tn
            labels("mc", "r3", (True,)),  # fn at the error
            labels("mc", "r4", (False,)),  # no truth
        ],
        truth,
    )
    assert got == ErrorConfusion(
        tp=1,
        fp=1,
        tn=2,
        fn=2,
        unknown=1,
        fn_at_first_error=1,
        fn_after_first_error=1,
        rollouts=3,
        without_truth=1,
        precision=0.5,
        recall=1 / 3,
        accuracy=0.5,
    )


def test_error_confusion_undefined_ratios_are_none() -> None:
    empty = error_confusion([], {})
    assert (empty.rollouts, empty.precision, empty.recall, empty.accuracy) == (0, None, None, None)
    never_flags = error_confusion([labels("mc", "r", (True, True))], {"r": (True, True)})
    assert (never_flags.precision, never_flags.recall, never_flags.accuracy) == (None, None, 1.0)
    unknown = error_confusion([labels("mc", "r", (None,))], {"r": (False,)})
    assert (unknown.unknown, unknown.accuracy) == (1, None)


def test_error_confusion_refuses_a_step_count_mismatch() -> None:
    with pytest.raises(ValueError, match="rollout 'r': 2 labelled steps for 3 truth steps"):
        error_confusion([labels("mc", "r", (True, True))], {"r": (True, True, True)})


def test_error_confusion_is_metrics_step_confusion_with_the_classes_swapped() -> None:
    rng = random.Random(8)
    for _ in range(200):
        rows, truths = [], {}
        for i in range(rng.randint(0, 4)):
            steps = rng.randint(0, 5)
            truths[f"r{i}"] = prefix_labels(rng.randint(-1, steps - 1), steps)
            rows.append(labels("mc", f"r{i}", tuple(rng.choice((True, False, None)) for _ in range(steps))))
        ours = error_confusion(rows, truths)
        theirs = step_confusion([r.hard for r in rows], [truths[r.rollout_id] for r in rows])
        assert (ours.tp, ours.fp, ours.tn, ours.fn) == (theirs.tn, theirs.fn, theirs.tp, theirs.fp)
        assert ours.unknown == theirs.unknown
