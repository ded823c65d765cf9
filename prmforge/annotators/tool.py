"""Tool-grounded step labels: a :class:`~prmforge.verifiers.base.StepVerifier` checks every step.

Each step's :class:`~prmforge.verifiers.verdict.Check` maps through its
verdict's status (``prmforge.verifiers.verdict``):

=========== ====== ====== ==================================================
status      hard   value  verdicts
=========== ====== ====== ==================================================
valid       True   1.0    PASS
invalid     False  0.0    FAIL, TIMEOUT, MEMORY_LIMIT, CRASH, COMPILE_ERROR...
unchecked   None   None   ABSTAIN, SOLVER_UNKNOWN, UNAVAILABLE, INFRA_ERROR
=========== ====== ====== ==================================================

``first_error`` (:func:`first_error_from_hard`) is the first invalid step when
every step before it is valid, -1 when every step is valid (or there are no
steps), and ``None`` (unknown) otherwise: an unchecked step before the first
invalid one might itself be the first error, and a solution with unchecked
steps and no invalid one might hide an error in them.

Worked example::

    verdicts (PASS, ABSTAIN, FAIL)  ->  hard (True, None, False), values (1.0, None, 0.0), first_error None
    verdicts (PASS, FAIL, ABSTAIN)  ->  hard (True, False, None), first_error 1

``cost.tool_calls`` is the number of checks (one per step); ``cost.seconds``
the wall time of the verifier call. ``meta = {"tool": name, "checks": [{"verdict",
"reason", "digest", "tool", "tool_version"} per step]}`` is the provenance a
dataset card needs. The annotator reads ``problem`` and ``rollout.steps``, never
``rollout.truth``.

A verifier that raises on one rollout (a tool bug, a hostile input its parser did not expect) must not
abort the stage for every other rollout, nor fail again on every rerun: that rollout's steps become
INFRA_ERROR checks (unchecked, so they never become wrong labels) whose reason names the exception,
and ``meta["verifier_error"]`` says so. A configuration or build-state error
(:class:`~prmforge.schemas.errors.PrmforgeError`) still stops the build.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from prmforge.schemas.errors import PrmforgeError
from prmforge.schemas.records import Cost, Problem, Rollout, StepLabels
from prmforge.verifiers.base import StepVerifier
from prmforge.verifiers.verdict import Check, Verdict

__all__ = ["ToolAnnotator", "first_error_from_hard", "labels_from_checks"]

_VALUE = {"valid": 1.0, "invalid": 0.0, "unchecked": None}
_HARD = {"valid": True, "invalid": False, "unchecked": None}


def first_error_from_hard(hard: Sequence[bool | None]) -> int | None:
    """First False if only True precedes it; -1 if all True (or empty); None otherwise.

    >>> first_error_from_hard([True, False, None]), first_error_from_hard([True, None, False])
    (1, None)
    >>> first_error_from_hard([True, True]), first_error_from_hard([True, None])
    (-1, None)
    """
    for t, label in enumerate(hard):
        if label is None:
            return None
        if not label:
            return t
    return -1


def labels_from_checks(
    checks: Sequence[Check],
) -> tuple[tuple[float | None, ...], tuple[bool | None, ...], int | None]:
    """``(values, hard, first_error)`` of one rollout's checks (see the module docstring)."""
    values = tuple(_VALUE[c.status] for c in checks)
    hard = tuple(_HARD[c.status] for c in checks)
    return values, hard, first_error_from_hard(hard)


class ToolAnnotator:
    """An :class:`~prmforge.annotators.base.Annotator` that labels steps with a tool verifier.

    Args:
        verifier: any object with ``check_steps(problem, steps) -> list[Check]``
            (an :class:`~prmforge.verifiers.equations.EquationVerifier`, a
            :class:`~prmforge.verifiers.z3_entailment.Z3EntailmentVerifier`, ...).
        name: the ``source`` of the labels, e.g. ``"equations"`` or ``"z3"``.
    """

    def __init__(self, verifier: StepVerifier, name: str) -> None:
        self._verifier = verifier
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]:
        out = []
        for rollout in rollouts:
            problem = problems[rollout.problem_id]
            started = time.perf_counter()
            error: str | None = None
            try:
                checks = self._verifier.check_steps(problem, rollout.steps)
            except PrmforgeError:
                raise
            except Exception as err:  # one rollout's tool failure is that rollout's, never the stage's
                error = f"{type(err).__name__}: {err}"[:500]
                reason = f"the verifier raised {error}"
                checks = [Check(Verdict.INFRA_ERROR, reason, self._name, "") for _ in rollout.steps]
            seconds = time.perf_counter() - started
            if len(checks) != len(rollout.steps):
                raise ValueError(
                    f"{self._name}: {len(checks)} checks, {len(rollout.steps)} steps ({rollout.rollout_id})"
                )
            values, hard, first_error = labels_from_checks(checks)
            out.append(
                StepLabels(
                    source=self._name,
                    rollout_id=rollout.rollout_id,
                    values=values,
                    hard=hard,
                    first_error=first_error,
                    cost=Cost(tool_calls=len(checks), seconds=seconds),
                    meta={
                        "tool": self._name,
                        **({"verifier_error": error} if error is not None else {}),
                        "checks": [
                            {
                                "verdict": c.verdict.value,
                                "reason": c.reason,
                                "digest": c.output_digest,
                                "tool": c.tool,
                                "tool_version": c.tool_version,
                            }
                            for c in checks
                        ],
                    },
                )
            )
        return out
