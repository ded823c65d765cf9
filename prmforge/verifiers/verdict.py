"""The closed set of tool verdicts and the tri-state a step label is built from.

Every tool check (sandboxed execution, Z3, a compiler, a language server,
an equation checker) ends in one :class:`Verdict`. Each verdict maps to one
of three step statuses: the step is *valid*, *invalid*, or the tool *could
not check* it. An infrastructure failure is never "invalid".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Status = Literal["valid", "invalid", "unchecked"]


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    TIMEOUT = "TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"
    FILE_LIMIT = "FILE_LIMIT"
    CRASH = "CRASH"
    COMPILE_ERROR = "COMPILE_ERROR"
    COMPILE_LIMIT = "COMPILE_LIMIT"
    SOLVER_UNKNOWN = "SOLVER_UNKNOWN"
    ABSTAIN = "ABSTAIN"  # nothing checkable in the step
    UNAVAILABLE = "UNAVAILABLE"  # the tool could not give an answer (e.g. a language server that hung)
    INFRA_ERROR = "INFRA_ERROR"

    @property
    def status(self) -> Status:
        if self is Verdict.PASS:
            return "valid"
        if self in _UNCHECKED:
            return "unchecked"
        return "invalid"


_UNCHECKED = frozenset({Verdict.SOLVER_UNKNOWN, Verdict.ABSTAIN, Verdict.UNAVAILABLE, Verdict.INFRA_ERROR})


@dataclass(frozen=True, slots=True)
class Check:
    """One tool's verdict on one step, with the provenance a dataset card needs."""

    verdict: Verdict
    reason: str
    tool: str
    tool_version: str
    output_digest: str = ""
    seconds: float = 0.0

    @property
    def status(self) -> Status:
        return self.verdict.status
