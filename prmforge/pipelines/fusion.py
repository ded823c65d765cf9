"""Fusion rules: several sources' step labels become one trained label per rollout (pure functions).

Each source gives per-step ``hard`` labels (True good, False bad, None abstained)
and a ``first_error`` (None when it could not decide the whole rollout). A rule
returns the fused first error (None: undecided, with a reason).

- ``single``: the named source's first error.
- ``earliest``: the earliest step any source labels bad; -1 when no source
  labels a step bad and at least one source decided the whole rollout (-1)
  (with ``clears``: one of the sources named there). With ``vouch``, a first
  error after step 0 stands only when one of the sources named there decided
  the rollout: something must vouch for the steps before it (an equation
  checker's first failure says nothing of a wrong operand earlier).
- ``majority``: per step, the labels of the sources that did not abstain; a
  step is bad when at least half of them say so (a tie counts as an error, so a
  disputed step is never trained as good); the first bad step is the first
  error. A step no source labelled before it leaves the rollout undecided.

Worked example (two sources over three steps)::

    mc   hard (True, True, False)   first_error 2
    eq   hard (True, False, None)   first_error 1
    earliest -> 1    majority -> step 1 tie -> 1    single(mc) -> 2
    eq -1 and mc undecided: earliest -> -1; earliest with clears {mc} -> None
    eq first_error 1 and mc undecided: earliest -> 1; earliest with vouch {mc} -> None
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from prmforge.schemas.records import FusedLabels, StepLabels, Vote

__all__ = [
    "Decision",
    "FusionParams",
    "agreement",
    "fuse",
    "fuse_earliest",
    "fuse_majority",
    "fuse_single",
    "mean_scores",
]


@dataclass(frozen=True, slots=True)
class Decision:
    first_error: int | None
    reason: str = ""


def _first_bad(hard: Sequence[bool | None]) -> int | None:
    for t, label in enumerate(hard):
        if label is False:
            return t
    return None


def fuse_single(labels: StepLabels) -> Decision:
    if labels.first_error is None:
        abstained = labels.meta.get("abstained")
        if abstained:  # the source cannot label this rollout at all (its domain, an imported rollout)
            return Decision(None, f"{labels.source} abstained: {abstained}")
        return Decision(None, f"{labels.source} could not decide (an unchecked step comes first)")
    return Decision(labels.first_error)


def fuse_earliest(
    sources: Sequence[StepLabels],
    clears: Collection[str] | None = None,
    vouch: Collection[str] | None = None,
) -> Decision:
    """The earliest step any source labels wrong; else -1 when a source in ``clears`` (default: any)
    decided the rollout has no error. With ``vouch``, an earliest error after step 0 stands only
    when a source named there decided the rollout (its labels cover the steps before it)."""
    claims = [t for t in (_first_bad(s.hard) for s in sources) if t is not None]
    if claims:
        first = min(claims)
        vouched = vouch is None or any(s.first_error is not None and s.source in vouch for s in sources)
        if first == 0 or vouched:
            return Decision(first)
        named = ", ".join(sorted(vouch or ()))
        return Decision(None, f"an error at step {first}, but none of {named} vouched for the steps before")
    if any(s.first_error == -1 and (clears is None or s.source in clears) for s in sources):
        return Decision(-1)
    if clears is None:
        return Decision(None, "no source labelled an error and none decided the whole rollout")
    named = ", ".join(sorted(clears))
    return Decision(None, f"no source labelled an error and none of {named} decided the rollout has none")


def fuse_majority(sources: Sequence[StepLabels], steps: int) -> Decision:
    for t in range(steps):
        votes = [s.hard[t] for s in sources if t < len(s.hard) and s.hard[t] is not None]
        if not votes:
            return Decision(None, f"no source labelled step {t}")
        bad = sum(1 for v in votes if v is False)
        if 2 * bad >= len(votes):
            return Decision(t)
    return Decision(-1)


def mean_scores(sources: Sequence[StepLabels], steps: int) -> tuple[float | None, ...]:
    """Per step, the mean of the sources' values (None where no source gave one)."""
    out: list[float | None] = []
    for t in range(steps):
        values = [v for s in sources if t < len(s.values) and (v := s.values[t]) is not None]
        out.append(sum(values) / len(values) if values else None)
    return tuple(out)


def agreement(sources: Sequence[StepLabels], first_error: int | None) -> float:
    """Share of the sources that decided the rollout whose first error is the fused one (0 if none did)."""
    deciding = [s.first_error for s in sources if s.first_error is not None]
    if not deciding or first_error is None:
        return 0.0
    return sum(1 for fe in deciding if fe == first_error) / len(deciding)


@dataclass(frozen=True, slots=True)
class FusionParams:
    """The parameters of the rules in :mod:`prmforge.pipelines.fusion_rules` (``fuse:`` in a config)."""

    among: tuple[str, ...] | None = None  # consensus: the sources that must agree (default: all)
    clears: tuple[str, ...] | None = None  # earliest: the sources whose -1 decides (default: any)
    vouch: tuple[str, ...] | None = None  # earliest: an error after step 0 needs one of them (default: off)
    required: int | None = None  # consensus: how many of them must have decided (default: all)
    reliability: tuple[tuple[str, float], ...] = ()  # weighted: per-source reliability
    reliability_from: tuple[str, ...] = ()  # weighted: references to estimate the others' on (per shard)
    default_reliability: float | None = None  # weighted: a source not listed
    tool: str | None = None  # grounded: the tool source whose verdicts decide their steps
    mc: str | None = None  # grounded: the Monte Carlo source for the steps the tool leaves open
    scores: str = "mean"  # the soft scores: "mean" of the sources' values, or their "min_form"


def _by_name(sources: Sequence[StepLabels], name: str, rule: str) -> StepLabels:
    for s in sources:
        if s.source == name:
            return s
    raise ValueError(f"fusion ({rule}): source {name!r} gave no labels for rollout {sources[0].rollout_id}")


def _decide(
    rule: str, sources: Sequence[StepLabels], steps: int, params: FusionParams, outcome: bool | None
) -> Decision:
    from prmforge.pipelines import fusion_grounded, fusion_rules

    if rule == "earliest":
        return fuse_earliest(sources, params.clears, params.vouch)
    if rule == "majority":
        return fuse_majority(sources, steps)
    if rule == "consensus":
        return fusion_rules.consensus(sources, among=params.among, required=params.required)
    if rule == "weighted":
        return fusion_rules.weighted_vote(
            sources, steps, dict(params.reliability), default_reliability=params.default_reliability
        )
    if rule == "grounded":
        if params.tool is None:
            raise ValueError("fusion (grounded): fuse.tool names no source")
        mc = _by_name(sources, params.mc, rule) if params.mc is not None else None
        return fusion_grounded.grounded_hybrid(_by_name(sources, params.tool, rule), outcome, mc)
    raise ValueError(f"unknown fusion rule {rule!r}")


def fuse(
    rule: str,
    sources: Sequence[StepLabels],
    steps: int,
    single_source: str,
    *,
    params: FusionParams | None = None,
    outcome: bool | None = None,
) -> FusedLabels:
    """The fused label of one rollout from its sources' labels (every source labels every rollout).

    ``outcome`` (the rollout's graded outcome) is read by ``grounded`` only. ``params.scores`` shapes
    the soft scores (``min_form``: :func:`~prmforge.pipelines.fusion_rules.min_form` of the mean).
    """
    if not sources:
        raise ValueError("fusion needs at least one source")
    rollout_id = sources[0].rollout_id
    scores = mean_scores(sources, steps)
    if rule == "single":
        chosen = [s for s in sources if s.source == single_source]
        if not chosen:
            raise ValueError(f"fusion: source {single_source!r} gave no labels for rollout {rollout_id}")
        decision = fuse_single(chosen[0])
        scores = tuple(chosen[0].values)
    else:
        decision = _decide(rule, sources, steps, params or FusionParams(), outcome)
    form = (params or FusionParams()).scores
    if form == "min_form":
        from prmforge.pipelines.fusion_rules import min_form

        scores = min_form(scores)
    elif form != "mean":
        raise ValueError(f"fusion: scores must be 'mean' or 'min_form', got {form!r}")
    return FusedLabels(
        rollout_id=rollout_id,
        rule=rule,
        first_error=decision.first_error,
        scores=scores,
        votes=tuple(Vote(s.source, s.first_error) for s in sources),
        agreement=agreement(sources, decision.first_error),
        reason=decision.reason,
    )
