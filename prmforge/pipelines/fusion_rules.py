"""More fusion rules (issue #11), as pure functions returning :class:`~prmforge.pipelines.fusion.Decision`.

A source "decided" a rollout when its ``first_error`` is not None (-1: no
error); it "abstained" on a step when its ``hard`` label there is None. Step
labels follow the prefix convention of :func:`~prmforge.schemas.records.prefix_labels`.

- ``consensus`` (METHODS.md §2(d), Qwen "Lessons"): keep the rollout only when
  the chosen sources that decided name the same first error (``t*_MC == t*_J``).
- ``weighted_vote``: ``fuse_majority`` with log-odds reliability weights.
- ``estimate_reliability``: each source's per-step agreement with the steps a
  reference verifier is certain of, under a Beta prior.
- ``grounded_hybrid`` (§2(f), GroundedPRM): in :mod:`prmforge.pipelines.fusion_grounded`.
- ``min_form``: min-form credit, a step's value is the minimum over it and the later steps
  (its step 0 is §2(i)'s ``min_t`` response score).
- ``kept_steps``: first-error truncation (§2(d), §2(e) ``process.py``, §2(f) ``construct.py``).

Worked example (two sources over three steps)::

    mc      hard (True, True, False)   first_error 2
    judge   hard (True, False, None)   first_error 1
    consensus -> None ("sources disagree on the first error: mc 2, judge 1")
    weighted_vote({mc: 0.9, judge: 0.6}) -> step 1: judge's log(0.6/0.4) < mc's log(0.9/0.1) -> 2
    min_form((1.0, 0.25, 0.5)) -> (0.25, 0.25, 0.5)        kept_steps(3, 1) -> 2
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prmforge.pipelines.fusion import Decision
from prmforge.schemas.records import StepLabels

__all__ = [
    "Reliability",
    "consensus",
    "estimate_reliability",
    "kept_steps",
    "log_odds_weight",
    "min_form",
    "min_form_hard",
    "reference_truth",
    "weighted_vote",
]


def _unique_sources(sources: Sequence[StepLabels], rule: str) -> None:
    if not sources:
        raise ValueError(f"{rule}: sources must hold at least one source's labels")
    names = [s.source for s in sources]
    if len(set(names)) < len(names):
        raise ValueError(f"{rule}: sources names a source twice: {names}")


def _state(s: StepLabels) -> str:
    if s.first_error is not None:
        return f"{s.source} {s.first_error}"
    abstained = s.meta.get("abstained")
    return f"{s.source} abstained ({abstained})" if abstained else f"{s.source} undecided"


def consensus(
    sources: Sequence[StepLabels], *, among: Collection[str] | None = None, required: int | None = None
) -> Decision:
    """The first error the chosen sources agree on; None when fewer than ``required`` decided, or they differ.

    ``among`` names the sources that take part (default: all of ``sources``;
    each named one must be there). A source with ``first_error`` None does not
    vote, whether it abstained or an unchecked step came before its first
    error. ``required`` is how many of them must have decided (default: all of
    them, which is Qwen's rule for MC and judge). Agreement on -1 keeps the
    rollout as error-free.

    >>> mc = StepLabels("mc", "r", (1.0, 0.0), (True, False), 1, Cost())
    >>> judge = StepLabels("judge", "r", (None, None), (None, None), None, Cost(), {"abstained": "no reply"})
    >>> consensus([mc, judge], required=1)
    Decision(first_error=1, reason='')
    >>> consensus([mc, judge]).reason
    'consensus needs 2 of 2 to decide; 1 did: mc 1, judge abstained (no reply)'
    """
    _unique_sources(sources, "consensus")
    if isinstance(among, str):
        raise ValueError(f"consensus: among must be a collection of source names, not the string {among!r}")
    if among is None:
        chosen = list(sources)
    else:
        missing = sorted(set(among) - {s.source for s in sources})
        if missing:
            raise ValueError(
                f"consensus: among names {missing}, which gave no labels for {sources[0].rollout_id}"
            )
        chosen = [s for s in sources if s.source in among]
    need = len(chosen) if required is None else required
    if not 1 <= need <= len(chosen):
        raise ValueError(
            f"consensus: required must be in [1, {len(chosen)}] (the chosen sources), got {need}"
        )
    described = ", ".join(_state(s) for s in chosen)
    deciding = [s for s in chosen if s.first_error is not None]
    if len(deciding) < need:
        return Decision(
            None, f"consensus needs {need} of {len(chosen)} to decide; {len(deciding)} did: {described}"
        )
    if len({s.first_error for s in deciding}) > 1:
        return Decision(None, f"sources disagree on the first error: {described}")
    return Decision(deciding[0].first_error)


def log_odds_weight(p: float, floor: float = 0.5, ceiling: float = 0.99) -> float:
    """``w = log(q / (1 - q))`` with ``q = p`` clipped into ``[floor, ceiling]``.

    The log-odds weight is the optimal weighted-majority weight of a voter
    right with probability ``p`` independently of the others. ``ceiling`` (0.99:
    ``w <= log 99 = 4.595``) keeps a near-perfect estimate from outvoting every
    other source forever; ``floor`` 0.5 gives a source no better than chance
    weight 0 (no say) instead of a negative weight that would invert its votes
    (set ``floor`` below 0.5 to allow that).

    >>> log_odds_weight(0.5), round(log_odds_weight(0.9), 4), round(log_odds_weight(1.0), 4)
    (0.0, 2.1972, 4.5951)
    """
    if not 0.0 < floor < ceiling < 1.0:
        raise ValueError(f"need 0 < floor < ceiling < 1, got floor {floor}, ceiling {ceiling}")
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"reliability must be in [0, 1], got {p}")
    q = min(max(p, floor), ceiling)
    return math.log(q / (1.0 - q))


def weighted_vote(
    sources: Sequence[StepLabels],
    steps: int,
    reliability: Mapping[str, float],
    *,
    floor: float = 0.5,
    ceiling: float = 0.99,
    default_reliability: float | None = None,
) -> Decision:
    """Per step, a reliability-weighted vote of the sources that labelled it; the first bad step is the error.

    Each source s weighs ``w_s = log_odds_weight(reliability[s], floor, ceiling)``
    (``default_reliability`` for a source not in ``reliability``; None: that is an
    error). At step t the score ``S_t = sum(w_s if s says bad else -w_s)`` over
    the sources with a label there and ``w_s != 0``; the step is bad when
    ``S_t >= 0``, where ``|S_t| <= 1e-9 * sum(|w_s|)`` counts as 0 (a tie is an
    error, as in ``fuse_majority``). A step with no weighted voter before the
    first bad step leaves the rollout undecided. Equal weights give ``fuse_majority``.

    >>> a = StepLabels("a", "r", (1.0, 1.0), (True, True), -1, Cost())
    >>> b = StepLabels("b", "r", (1.0, 0.0), (True, False), 1, Cost())
    >>> weighted_vote([a, b], 2, {"a": 0.9, "b": 0.7}), weighted_vote([a, b], 2, {"a": 0.7, "b": 0.7})
    (Decision(first_error=-1, reason=''), Decision(first_error=1, reason=''))
    """
    _unique_sources(sources, "weighted_vote")
    if steps < 0:
        raise ValueError(f"weighted_vote: steps must be >= 0, got {steps}")
    weights: dict[str, float] = {}
    for s in sources:
        p = reliability.get(s.source, default_reliability)
        if p is None:
            raise ValueError(f"weighted_vote: reliability has no entry for source {s.source!r}")
        if math.isnan(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"weighted_vote: reliability of {s.source!r} must be in [0, 1], got {p}")
        weights[s.source] = log_odds_weight(p, floor, ceiling)
    for t in range(steps):
        signed = [
            weights[s.source] if s.hard[t] is False else -weights[s.source]
            for s in sources
            if t < len(s.hard) and s.hard[t] is not None and weights[s.source] != 0.0
        ]
        if not signed:
            return Decision(None, f"no source with a non-zero weight labelled step {t}")
        score = math.fsum(signed)
        if score >= 0 or abs(score) <= 1e-9 * math.fsum(abs(w) for w in signed):
            return Decision(t)
    return Decision(-1)


@dataclass(frozen=True, slots=True)
class Reliability:
    """Agreement with the reference: ``p = (agreed + a) / (compared + a + b)`` under prior Beta(a, b)."""

    source: str
    agreed: int
    compared: int
    p: float


def reference_truth(group: Sequence[StepLabels], references: Collection[str]) -> tuple[bool | None, ...]:
    """The prefix truth of the steps the reference sources are certain of; None elsewhere.

    A step's reference verdict is True when some reference labels it True and
    none False, False when some labels it False and none True, else None (no
    reference label, or references conflict). Under prefix truth step t is
    certainly good when the verdicts of steps 0..t are all True, and the first
    step with a False verdict is certainly bad (the step itself is wrong). Later
    steps are left None: they are bad under prefix truth, but a source's labels
    there do not move a first error (and MC's would be scored on recoveries).

    >>> eq = StepLabels("eq", "r", (1.0, 1.0, None, 0.0, 0.0), (True, True, None, False, False), None, Cost())
    >>> reference_truth([eq], {"eq"})
    (True, True, None, False, None)
    """
    refs = [s for s in group if s.source in references]
    length = max((len(s.hard) for s in refs), default=0)
    truth: list[bool | None] = [None] * length
    all_good = True
    for t in range(length):
        said = {s.hard[t] for s in refs if t < len(s.hard) and s.hard[t] is not None}
        verdict = next(iter(said)) if len(said) == 1 else None
        if verdict is False:
            truth[t] = False
            break
        all_good = all_good and verdict is True
        truth[t] = True if all_good else None
    return tuple(truth)


def estimate_reliability(
    groups: Iterable[Sequence[StepLabels]],
    references: Collection[str],
    *,
    prior: tuple[float, float] = (1.0, 1.0),
) -> dict[str, Reliability]:
    """Each non-reference source's per-step reliability on the steps ``references`` are certain of.

    ``groups`` holds one rollout's labels from every source each. "Certain"
    is :func:`reference_truth` of the sources named in ``references`` (e.g.
    ``{"equations"}``: a checker's PASS prefix and its first FAIL). A source is
    compared at every certain step where its hard label is not None; ``p`` is
    the posterior mean under ``prior = (a, b)`` (default Beta(1, 1): Laplace,
    so a source never compared gets 0.5, which :func:`log_odds_weight` turns
    into weight 0). Reference sources get no estimate.

    >>> eq = StepLabels("eq", "r", (1.0, 0.0), (True, False), 1, Cost())
    >>> mc = StepLabels("mc", "r", (1.0, 0.5), (True, True), -1, Cost())
    >>> estimate_reliability([[eq, mc]], {"eq"})["mc"]
    Reliability(source='mc', agreed=1, compared=2, p=0.5)
    """
    a, b = prior
    if not (a > 0 and b > 0):
        raise ValueError(f"prior must be two positive numbers (a, b), got {prior}")
    if not references:
        raise ValueError("references must name at least one reference source")
    counts: dict[str, list[int]] = {}
    for group in groups:
        _unique_sources(group, "estimate_reliability")
        if len({s.rollout_id for s in group}) > 1:
            raise ValueError(
                f"estimate_reliability: a group mixes rollouts {sorted({s.rollout_id for s in group})}"
            )
        truth = reference_truth(group, references)
        for s in group:
            if s.source in references:
                continue
            tally = counts.setdefault(s.source, [0, 0])
            for t, good in enumerate(truth):
                if good is not None and t < len(s.hard) and s.hard[t] is not None:
                    tally[0] += s.hard[t] == good
                    tally[1] += 1
    return {
        name: Reliability(name, agreed, compared, (agreed + a) / (compared + a + b))
        for name, (agreed, compared) in counts.items()
    }


def _check_values(values: Sequence[float | None]) -> None:
    for t, v in enumerate(values):
        if v is not None and (math.isnan(v) or not 0.0 <= v <= 1.0):
            raise ValueError(f"value of step {t} must be in [0, 1], got {v}")


def min_form(values: Sequence[float | None]) -> tuple[float | None, ...]:
    """``y_t = min(v_t, v_{t+1}, ..., v_{T-1})`` over the known values: later evidence lowers earlier values.

    This is min-form credit assignment; ``y_0`` is the ``min_t`` response score
    of METHODS.md §2(i) (Implicit PRM). An unknown ``v_t`` gives ``y_t = None``
    (later values only bound it); unknown later values are skipped.

    >>> min_form((1.0, 0.25, 0.5)), min_form((0.5, None, 0.75, 0.0)), min_form(())
    ((0.25, 0.25, 0.5), (0.0, None, 0.0, 0.0), ())
    """
    _check_values(values)
    out: list[float | None] = [None] * len(values)
    low = math.inf
    for t in range(len(values) - 1, -1, -1):
        v = values[t]
        if v is not None:
            low = min(low, v)
            out[t] = low
    return tuple(out)


def min_form_hard(values: Sequence[float | None], threshold: float = 0.0) -> tuple[bool | None, ...]:
    """Hard labels of :func:`min_form`: ``y_t > threshold`` (default 0: Math-Shepherd's ``MC > 0``).

    So step t is good iff every known value from t on is above the threshold.

    >>> min_form_hard((1.0, 0.0, 0.5)), min_form_hard((0.75, 0.25), threshold=0.5)
    ((False, False, True), (False, False))
    """
    if math.isnan(threshold) or not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    return tuple(None if y is None else y > threshold for y in min_form(values))


def kept_steps(
    steps: int, first_error: int | None, mode: Literal["first_error", "none"] = "first_error"
) -> int:
    """How many steps of a fused rollout to train on.

    ``"first_error"`` keeps steps 0..t* (the error step is the last label, as
    Qwen, SCAN's ``process.py`` and GroundedPRM's ``construct.py`` do) and all
    of an error-free rollout (-1); ``"none"`` keeps every step. An undecided
    rollout (None) is never trained on, so it is an error here.

    >>> kept_steps(5, 2), kept_steps(5, -1), kept_steps(5, 2, "none")
    (3, 5, 5)
    """
    if mode not in ("first_error", "none"):
        raise ValueError(f"mode must be 'first_error' or 'none', got {mode!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if first_error is None:
        raise ValueError("first_error is None: an undecided rollout has no training steps")
    if not -1 <= first_error < steps:
        raise ValueError(f"first_error must be -1 or a step index below {steps}, got {first_error}")
    return steps if mode == "none" or first_error == -1 else first_error + 1
