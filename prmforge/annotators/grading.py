"""What rollout-based annotators need from an answer grader, as a protocol.

Annotators take any object with this method by injection (the final-answer
verifier in ``prmforge.verifiers`` is one); they never import a grader.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["OutcomeGrader"]


@runtime_checkable
class OutcomeGrader(Protocol):
    """Judges the final answer contained in a full solution text.

    ``grade(text, gold)`` is True when the answer ``text`` ends with is
    equivalent to ``gold``, False when it is not, and ``None`` when no answer
    can be extracted or compared.
    """

    def grade(self, text: str, gold: str) -> bool | None: ...
