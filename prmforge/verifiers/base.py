"""The contract every step verifier implements: one :class:`Check` per step of a solution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from prmforge.schemas.records import Problem
from prmforge.verifiers.verdict import Check

__all__ = ["StepVerifier"]


@runtime_checkable
class StepVerifier(Protocol):
    """Checks every step of one solution to ``problem`` with a tool.

    The result has exactly one :class:`~prmforge.verifiers.verdict.Check` per
    step, in order. A verifier reads the problem's ``question`` (and
    ``gold``), never a rollout's truth. Steps may depend on earlier steps (a
    Z3 step cites earlier conclusions), so a whole solution is checked at once.
    """

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]: ...
