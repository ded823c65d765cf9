"""GroundedPRM's hybrid fusion (METHODS.md §2(f)), as pure functions returning a ``Decision``.

Tool verdicts decide their steps; an unverified step takes the Monte Carlo source's hard label, else
the sign of GroundedPRM's hybrid value of the verdicts after it and the outcome (``grounded_value``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from prmforge.pipelines.fusion import Decision
from prmforge.schemas.records import StepLabels

__all__ = ["grounded_hybrid", "grounded_hybrid_labels", "grounded_value"]


def grounded_value(later: Sequence[bool | None], outcome: bool) -> float:
    """GroundedPRM's hybrid reward of a step from the verdicts after it and the outcome (METHODS.md §2(f)).

    With ``v_i`` = +1 / -1 / 0 (verified good / bad / unverified) for the N
    steps after it and ``F = +1`` (correct) or -1::

        R = sum_{i=0}^{N-1} (1/N) * v_i * (N - i)/N  +  F/N        (R = F when N = 0)

    >>> grounded_value([True, False], False), grounded_value([], True)
    (-0.25, 1.0)
    """
    f = 1.0 if outcome else -1.0
    n = len(later)
    if n == 0:
        return f
    v = [0.0 if x is None else (1.0 if x else -1.0) for x in later]
    return math.fsum(v[i] * (n - i) / n / n for i in range(n)) + f / n


def grounded_hybrid_labels(
    tool_hard: Sequence[bool | None], outcome: bool | None, mc_hard: Sequence[bool | None] | None = None
) -> tuple[bool | None, ...]:
    """Per step: the tool verdict; else MC's hard label; else the sign of :func:`grounded_value`.

    MC's ``MC(s_t) > 0`` stands for GroundedPRM's outcome term averaged over
    many simulations from the prefix. Without MC, the rollout itself is the one
    simulation: step t takes ``grounded_value(tool_hard[t+1:], outcome) > 0``,
    None when that value is 0 (``construct.py`` drops score 0) or the outcome is None.

    >>> grounded_hybrid_labels((True, None, True, True, None), False)
    (True, True, True, True, False)
    """
    if mc_hard is not None and len(mc_hard) != len(tool_hard):
        raise ValueError(f"mc_hard has {len(mc_hard)} steps, tool_hard {len(tool_hard)}")
    labels: list[bool | None] = []
    for t, verdict in enumerate(tool_hard):
        if verdict is not None:
            labels.append(verdict)
        elif mc_hard is not None and mc_hard[t] is not None:
            labels.append(mc_hard[t])
        elif outcome is None:
            labels.append(None)
        else:
            value = grounded_value(tool_hard[t + 1 :], outcome)
            labels.append(None if value == 0 else value > 0)
    return tuple(labels)


def grounded_hybrid(
    tool: StepLabels, outcome: bool | None, mc: StepLabels | None = None, *, consistency: bool = False
) -> Decision:
    """The first error of :func:`grounded_hybrid_labels`: the first bad step with every earlier step good.

    -1 when every step is good; None when a step without a label comes first.
    ``consistency`` applies ``construct.py``'s filter: a verified step whose
    ``grounded_value`` (from the later steps and the outcome) has the other
    sign, or is 0, drops the rollout (so does an unknown outcome). On one
    rollout this is strict: ``(True, True, False)`` with a wrong outcome gives
    step 0 the value ``grounded_value((True, False), False) = -0.25`` and is dropped.

    >>> tool = StepLabels("tool", "r", (1.0, None, 0.0), (True, None, False), None, Cost())
    >>> grounded_hybrid(tool, False)  # step 1: grounded_value((False,), False) = -2
    Decision(first_error=1, reason='')
    >>> grounded_hybrid(tool, True).reason  # step 1: -1 + 1 = 0
    'step 1 has no tool verdict, MC label or outcome-based label'
    """
    labels = grounded_hybrid_labels(tool.hard, outcome, None if mc is None else mc.hard)
    if consistency:
        for t, verdict in enumerate(tool.hard):
            if verdict is None:
                continue
            if outcome is None:
                return Decision(None, "the consistency filter needs the outcome")
            value = grounded_value(tool.hard[t + 1 :], outcome)
            if value == 0 or (value > 0) != verdict:
                return Decision(
                    None, f"inconsistent: step {t} verified {verdict} but its hybrid value is {value}"
                )
    for t, label in enumerate(labels):
        if label is None:
            return Decision(None, f"step {t} has no tool verdict, MC label or outcome-based label")
        if label is False:
            return Decision(t)
    return Decision(-1)
