"""The equalities a math step claims, checked exactly (GroundedPRM-style tool grounding, METHODS.md §2(f)).

A step's claims are read from GSM8K calculator annotations ``<<48/2=24>>``
and from ``=`` chains in plain text or LaTeX (``3 + 4 = 7``, ``$5 * 3 = $15``,
``2 x 3 = 6``, ``50% of 80 = 40``, ``\\frac{3}{4} \\times 8 = 6``,
``\\sqrt{50} = 5\\sqrt{2}``, ``\\binom{5}{2} = 10``, ``a = b = c``: every link).
Numbers are evaluated exactly with :class:`fractions.Fraction`
(:mod:`prmforge.verifiers.equation_exact`): ``+ - * / ^``, brackets, implicit
products ``2(3+4)``, ``%`` and ``of`` after a percentage or a fraction, rational
roots, factorials, binomials, floors. A claim with ``pi``, an irrational root or
variables (letters only count as variables inside math) goes to sympy under a time
limit (:mod:`prmforge.verifiers.equation_symbolic`, whose docstring gives the
rules: an equation in unknowns is a condition, never a false identity, unless the
step asserts it for all values). Nothing is ever ``eval``-ed.

Precision over recall: a claim is only called false when no honest reading
makes it true. The checker ABSTAINS on (or never extracts):

- operands next to prose letters, functions or unknown LaTeX (``3x = 12`` outside
  math, ``f(2)``, ``\\log_2 8``), a chain end cut by a word (``x + 4 = 10``), mixed
  numbers (``3\\frac{4}{5}``), ratios and times (``1:2``, ``7:30``), numbers in
  another base (``1011_2``), ``|x|``, and readings written both ways (``1/2x``, ``-2^2``);
- a bare number right after a word on the left of ``=`` (a label such as
  ``Week 2 = ...`` or ``in 5 years = ...``) or after an unknown operator (``a @ b``);
- rounding: a claim true once its decimal literals are rounded to their
  shown places (``20/3600 = 0.0056``, ``100/3 = 33``, ``0.33 * 900 = 300``);
- percent ambiguity: ``%`` is read both as ``/100`` and as a mere sign, and a
  factor of exactly 100 is forgiven in a step that talks about percent;
- units: a false claim whose two sides carry different unit words
  (``2 hours = 120 minutes``, ``1 dozen = 12``);
- a false claim within 5% in a step that says "about", "approximately", "≈"...;
- integers in a step or problem about remainders, digits or bases (``2^5 = 32 = 4``
  modulo 7); ``*`` when the problem or step defines its own ``a * b``;
- a false claim in a step that rejects it ("does not work", "contradiction"), corrects
  itself ("wait", "actually"), or writes the claim's true value as unequal
  (``5^2 + 5^2 = 6^2`` ... ``50 \\neq 36``).

A chain ``a = b op c = d`` is also read as a running computation (``b`` is
``a``'s value, then ``b op c = d``), so ``3 + 4 = 7 * 2 = 14`` holds.

Verdicts (:class:`~prmforge.verifiers.verdict.Check`): FAIL when some claim is
false (the reason names it), else PASS when some claim holds, else ABSTAIN.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prmforge.schemas.records import Problem
from prmforge.verifiers.equation_checks import ClaimContext, ClaimResult, check_claim, step_contexts
from prmforge.verifiers.equation_cues import Mentions, problem_mentions, step_mentions
from prmforge.verifiers.equation_text import extract_claims
from prmforge.verifiers.verdict import Check, Verdict

__all__ = [
    "TOOL",
    "TOOL_VERSION",
    "ClaimContext",
    "ClaimResult",
    "EquationVerifier",
    "check_claim",
    "check_text",
]

TOOL = "equations"
TOOL_VERSION = "prmforge-equations/2"


def check_text(text: str, problem: Mentions | None = None) -> tuple[Check, list[ClaimResult]]:
    """Check every claim of one step (``problem``: what its problem says, :func:`problem_mentions`)."""
    started = time.perf_counter()
    mentions = step_mentions(text)
    if problem is not None:
        mentions = mentions.merged(problem)
    claims = extract_claims(text)
    results: list[ClaimResult] = []
    identities: set[tuple[int, int]] = set()
    for claim, context in zip(claims, step_contexts(claims), strict=True):
        previous = (claim.chain, claim.link - 1) in identities
        result = check_claim(claim, mentions, context.with_previous_identity(previous))
        if result.identity:
            identities.add((claim.chain, claim.link))
        results.append(result)
    digest = hashlib.sha256(
        json.dumps([[r.claim.shown, r.outcome] for r in results], ensure_ascii=True).encode()
    ).hexdigest()[:16]
    false = [r for r in results if r.outcome == "false"]
    holds = [r for r in results if r.outcome == "holds"]
    if false and (mentions.rejects or any(_denied(r, text) for r in false)):
        # "Check: 60 = 5^2 + 6^2 = 61 - This does not work.": the step itself rejects its false claim.
        verdict = Verdict.ABSTAIN
        reason = "the step rejects its own false claim: " + "; ".join(r.claim.shown for r in false)
    elif false:
        verdict = Verdict.FAIL
        reason = "; ".join(f"false: {r.claim.shown} ({r.detail})" for r in false)
    elif holds:
        verdict = Verdict.PASS
        reason = f"{len(holds)} of {len(results)} equalities hold: " + "; ".join(r.claim.shown for r in holds)
    else:
        verdict = Verdict.ABSTAIN
        reason = (
            "no checkable equality"
            if not results
            else "nothing decidable: " + "; ".join(f"{r.claim.shown} ({r.outcome})" for r in results)
        )
    seconds = time.perf_counter() - started
    return Check(verdict, reason[:500], TOOL, TOOL_VERSION, digest, seconds), results


_UNEQUAL = re.compile(
    r"(-?\d+(?:\.\d+)?)\s*\$?\s*(?:≠|\\neq?(?![A-Za-z])|\\not\s*=|!=)"
    r"|(?:≠|\\neq?(?![A-Za-z])|\\not\s*=|!=)\s*\$?\s*(-?\d+(?:\.\d+)?)"
)


def _denied(result: ClaimResult, text: str) -> bool:
    """``5^2 + 5^2 = 6^2 ... 50 ≠ 36``: the step writes the false claim's true value as unequal."""
    if result.left_value is None:
        return False
    for m in _UNEQUAL.finditer(text):
        number = float(m.group(1) or m.group(2))
        if abs(number - result.left_value) <= 1e-9 * max(1.0, abs(number)):
            return True
    return False


@dataclass(slots=True)
class EquationVerifier:
    """A :class:`~prmforge.verifiers.base.StepVerifier` for math steps, around :func:`check_text`.

    The problem's words count for each of its steps (a problem in another base or about
    remainders, or one defining its own ``*``); :meth:`check_step` alone knows no problem.
    """

    _problems: dict[str, Mentions] = field(default_factory=dict)

    def check_step(self, text: str, problem: Mentions | None = None) -> Check:
        return check_text(text, problem)[0]

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        mentions = self._mentions(problem)
        return [self.check_step(text, mentions) for text in steps]

    def _mentions(self, problem: Problem) -> Mentions:
        key = problem.question
        if key not in self._problems:
            if len(self._problems) > 4096:
                self._problems.clear()
            self._problems[key] = problem_mentions(problem.question)
        return self._problems[key]
