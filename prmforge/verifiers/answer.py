"""Outcome grading: pull the final answer out of a solution and compare it with the gold answer.

**Extraction** (:func:`extract_final_answer`) tries the modes of ``extraction`` in order and takes,
from the first mode that finds one, the *last* answer stated in that way:

* ``"boxed"``: the last complete ``\\boxed{...}`` (or ``\\fbox``), joined with the boxes just before
  it when only commas, ``and``/``or``, ``$`` or spacing separate them (``\\boxed{1}, \\boxed{2}`` is
  the one answer ``1, 2``; ``first \\boxed{1}, finally \\boxed{2}`` is ``2``);
* ``"minerva"``: "The final answer is $X$. I hope it is correct.";
* ``"answer_is"``: "The answer is: X" / "The final answer is X" (to the end of the line, or the
  ``$...$`` right after it);
* ``"final_answer"``: "Final Answer: X";
* ``"hashes"``: "#### X" (GSM8K);
* ``"last_math"``: the last ``$...$`` / ``\\(...\\)`` / ``\\[...\\]`` span, else the last number
  (not in the default order: prose that merely mentions a number states no answer).

**Comparison** (:func:`answers_equal`) on normalised strings:

1. exact string equality;
2. the exact-number fast path: when both sides are plain numbers (integers, decimals, ``1e3``,
   thousands separators ``1,000`` / ``14{,}916`` but never ``32, 349``, ``7/2``, ``\\frac{7}{2}``),
   they are compared exactly with :class:`fractions.Fraction` (or within ``tolerance``), without
   sympy or math-verify;
3. everything else goes to `math-verify <https://github.com/huggingface/Math-Verify>`_, in a
   persistent child process (:mod:`prmforge.verifiers._mathverify_worker`) under a wall-clock
   deadline that works from any thread or worker process (no signals). A comparison that runs past
   the deadline kills and restarts the child and is undecided (None), never wrong. The child caches
   each parsed gold answer (an LRU keyed by the gold string).

math-verify unwraps ``\\text{}``/``\\textbf{}``/``\\mathrm{}``, drops units, reads percentages, compares
sets, tuples, intervals and matrices element by element, assignments (``(p,q)=(3,2)``) by their
right-hand side, and inequalities and equations as answers.
"""

from __future__ import annotations

import atexit
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Final

from prmforge.verifiers.answer_extract import (
    DEFAULT_EXTRACTION,
    EXTRACTION_MODES,
    ExtractionMode,
    extract_final_answer,
    gold_answer,
)
from prmforge.verifiers.answer_extract import clean as _clean
from prmforge.verifiers.child_worker import JsonLineWorker

__all__ = [
    "DEFAULT_EXTRACTION",
    "EXTRACTION_MODES",
    "AnswerGrader",
    "ExtractionMode",
    "answers_equal",
    "extract_final_answer",
]

DEFAULT_MAX_EXPRESSION_CHARS: Final = 1000
DEFAULT_TIMEOUT_S: Final = 5.0
_STARTUP_TIMEOUT_S: Final = 60.0

_LATEX_SPACING = re.compile(r"\\[,;:! ]|\\(?:left|right|displaystyle)(?![A-Za-z])")
_SPACE = re.compile(r"(?<![A-Za-z])\s+|\s+(?![A-Za-z])")
_ASSIGNMENT = re.compile(r"[A-Za-z]=(.+)")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# A decimal comma (European style): one comma, not followed by exactly three digits ("2,74",
# "1000,99"), or after a lone zero ("0,111", which no thousands grouping writes).
_DECIMAL_COMMA = re.compile(r"([+-]?\d+),(\d{1,2}|\d{4,})|([+-]?0),(\d+)")
_DECIMAL = re.compile(r"[+-]?\d*\.(\d+)")
_SLASH = re.compile(r"([+-]?\d+)/(\d+)")
_FRAC = re.compile(r"([+-]?)\\[dtc]?frac(?:\{([^{}]+)\}\{([^{}]+)\}|(\d)(\d))")
# A number followed by a unit in words ("18 dollars", "5 \\text{ cm}"): compared by its number.
_UNIT = re.compile(
    r"\s*([+-]?[\d.,{}]+)\s*(?:\\[,;: ]|\s)*"
    r"(?:\\(?:text|mathrm|mbox)\{\s*[A-Za-z][A-Za-z .]*\}|[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*)\s*\.?\s*"
)
# A comma then a space separates the elements of a list, never thousands: "32, 349" is not 32349.
_LIST_COMMA = re.compile(r",\s")


def answers_equal(
    predicted: str | None,
    gold: str,
    *,
    max_expression_chars: int = DEFAULT_MAX_EXPRESSION_CHARS,
    tolerance: float = 0.0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    rounded: bool = True,
) -> bool | None:
    """Whether ``predicted`` states the same answer as ``gold`` (see the module doc).

    False for a missing prediction and for an expression longer than ``max_expression_chars``;
    None when math-verify could not decide within ``timeout_s`` seconds. ``tolerance`` is relative:
    ``|predicted - gold| <= tolerance * |gold|`` for numbers (0: exact). ``rounded``: a decimal with
    at least two fractional digits equals a number with no finite decimal expansion when it is that
    number rounded or cut to the digits shown (0.33 and 0.333 for 1/3, 2.6667 for 8/3; never 0.13 for
    1/8, which a decimal writes exactly), as math-verify's own comparison rounds.
    """
    if predicted is None:
        return False
    gold = gold_answer(gold)
    predicted, gold = _as_interval(_drop_unit(predicted)), _as_interval(_drop_unit(gold))
    a, b = _normalize(predicted), _normalize(gold)
    if "=" not in b and (m := _ASSIGNMENT.fullmatch(a)):
        a = m.group(1)
    if "=" not in a and (m := _ASSIGNMENT.fullmatch(b)):
        b = m.group(1)
    if not a or not b:
        return False
    if a == b:
        return True
    x, y = _fast_number(predicted, a), _fast_number(gold, b)
    if x is not None and y is not None:
        if tolerance:
            return abs(x - y) <= Fraction(tolerance) * abs(y)
        return x == y or (rounded and (_rounded(a, x, y) or _rounded(b, y, x)))
    if len(a) > max_expression_chars or len(b) > max_expression_chars:
        return False
    predicted = (_align_rounded(_clean(predicted), _clean(gold)) if rounded else None) or predicted
    return _ENGINE.equal(_clean(predicted), _clean(gold), tolerance, timeout_s)


@dataclass(frozen=True, slots=True)
class AnswerGrader:
    """Grades a solution's outcome against a gold answer; the pipeline's injected outcome grader.

    ``extraction`` is the order of extraction modes tried (:data:`EXTRACTION_MODES`);
    ``tolerance`` the relative numeric tolerance (0: exact); ``timeout_s`` the wall-clock limit on
    one math-verify comparison.
    """

    max_expression_chars: int = DEFAULT_MAX_EXPRESSION_CHARS
    extraction: tuple[str, ...] = field(default=DEFAULT_EXTRACTION)
    tolerance: float = 0.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    rounded: bool = True

    def __post_init__(self) -> None:
        unknown = [m for m in self.extraction if m not in EXTRACTION_MODES]
        if unknown or not self.extraction:
            raise ValueError(
                f"extraction modes must be a non-empty subset of {EXTRACTION_MODES}, got {unknown}"
            )
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")

    def extract(self, text: str) -> str | None:
        """The final answer ``text`` states, under this grader's extraction modes."""
        return extract_final_answer(text, self.extraction)

    def grade(self, text: str, gold: str) -> bool | None:
        """True or False when ``text`` states a final answer; None when it states none or the
        comparison could not be decided in time."""
        answer = self.extract(text)
        if answer is None:
            return None
        return self.grade_answer(answer, gold)

    def grade_answer(self, answer: str, gold: str) -> bool | None:
        """Whether an extracted ``answer`` equals ``gold`` (None: undecided in time)."""
        return answers_equal(
            answer,
            gold,
            max_expression_chars=self.max_expression_chars,
            tolerance=self.tolerance,
            timeout_s=self.timeout_s,
            rounded=self.rounded,
        )

    @property
    def provenance(self) -> dict[str, str]:
        """Name and versions of the grader, for the dataset card."""
        return {
            "grader": "prmforge.verifiers.answer.AnswerGrader",
            "engine": "math-verify",
            "math_verify_version": _version("math-verify"),
            "latex2sympy2_extended_version": _version("latex2sympy2_extended"),
            "extraction": ",".join(self.extraction),
            "tolerance": repr(self.tolerance),
            "timeout_s": repr(self.timeout_s),
            "rounded_decimals": repr(self.rounded),
        }


@cache
def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


# --- the exact-number fast path ------------------------------------------------------------------


def _normalize(answer: str) -> str:
    answer = _clean(answer).replace("\u2212", "-").replace("{,}", ",")
    answer = _LATEX_SPACING.sub("", answer)
    return _SPACE.sub("", answer).rstrip(".")


def _drop_unit(answer: str) -> str:
    m = _UNIT.fullmatch(answer)
    return m.group(1) if m and _number(_normalize(m.group(1))) is not None else answer


def _fast_number(raw: str, normalized: str) -> Fraction | None:
    """``normalized`` as an exact number when it is a plain one, else None (math-verify decides).

    A percentage, a unit or anything else is never a plain number here; nor is a comma list.
    """
    if _LIST_COMMA.search(raw.replace("{,}", ",")):
        return None
    return _number(normalized)


def _rounded(shown: str, decimal: Fraction, exact: Fraction) -> bool:
    """Whether the decimal ``shown`` (at least two fractional digits) is ``exact`` rounded or cut to
    the digits shown, where ``exact`` has no finite decimal expansion (1/12 as 0.0833, 8/3 as 2.6667).

    A number that a decimal can write exactly (0.125) must be written exactly.
    """
    m = _DECIMAL.fullmatch(shown)
    if m is None or len(m.group(1)) < 2 or _terminates(exact):
        return False
    scale = 10 ** len(m.group(1))
    rounded = abs(decimal - exact) <= Fraction(1, 2 * scale)
    cut = decimal == Fraction(int(exact * scale), scale)  # int() cuts toward zero
    return rounded or cut


def _terminates(value: Fraction) -> bool:
    den = value.denominator
    for prime in (2, 5):
        while den % prime == 0:
            den //= prime
    return den == 1


def _number(text: str) -> Fraction | None:
    if _NUMBER.fullmatch(text):
        return Fraction(text)
    if _THOUSANDS.fullmatch(text) and not _DECIMAL_COMMA.fullmatch(text):
        return Fraction(text.replace(",", ""))
    if m := _DECIMAL_COMMA.fullmatch(text):
        whole, part = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
        return Fraction(f"{whole}.{part}")
    if m := _SLASH.fullmatch(text):
        return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
    if m := _FRAC.fullmatch(text):
        num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
        x, y = _number(num), _number(den)
        if x is None or y is None or y == 0:
            return None
        return -x / y if m.group(1) == "-" else x / y
    return None


# --- structured answers: intervals and rounded elements ---------------------------------------------

_MEMBER = re.compile(r"\s*[A-Za-z]\s*\\in\s*(.+)", re.DOTALL)
_BOUND = r"[+-]?[\d.]+|[+-]?\\[dtc]?frac\{[^{}]+\}\{[^{}]+\}|[+-]?\\infty"
# "\\le", or "\\\\le" as a JSON-escaped answer writes it (math-verify reads both alike).
_LESS = r"\\{1,2}leq?|<|\\{1,2}lt"
_CHAIN = re.compile(rf"\s*({_BOUND})\s*({_LESS})\s*[A-Za-z]\s*({_LESS})\s*({_BOUND})\s*")
_NUMBER_TOKEN = re.compile(
    r"\\[dtc]?frac(?:\{([+-]?\d+)\}\{(\d+)\}|(\d)(\d))|(?<![\w.])[+-]?\d+(?:\.\d+)?(?![\w.])"
)


def _as_interval(answer: str) -> str:
    """``x \\in S`` is the set S; ``a \\le x < b`` (one unknown between two bounds) is ``[a, b)``."""
    if m := _MEMBER.fullmatch(answer.replace("$", "")):
        return m.group(1).strip()
    if m := _CHAIN.fullmatch(answer.replace("$", "")):
        low, low_op, high_op, high = m.groups()
        opening = "[" if "le" in low_op else "("
        closing = "]" if "le" in high_op else ")"
        return f"{opening}{low}, {high}{closing}"
    return answer


def _token_value(m: re.Match[str]) -> Fraction | None:
    num, den = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
    if num is not None:
        return Fraction(int(num), int(den)) if int(den) else None
    return Fraction(m.group())


def _align_rounded(predicted: str, gold: str) -> str | None:
    """``predicted`` with each decimal that is the gold's number in the same place rounded or cut to
    the digits shown (0.33 where the gold has 1/3) written as the gold writes it; None when no number
    needs that or one differs otherwise. Structure (matrix, interval, tuple) is left to math-verify."""
    ps, gs = list(_NUMBER_TOKEN.finditer(predicted)), list(_NUMBER_TOKEN.finditer(gold))
    if not ps or len(ps) != len(gs):
        return None
    out, last, changed = [], 0, False
    for p, g in zip(ps, gs, strict=True):
        x, y = _token_value(p), _token_value(g)
        if x is None or y is None:
            return None
        if x != y:
            if not _rounded(p.group(), x, y):
                return None
            out.append(predicted[last : p.start()] + g.group())
            last, changed = p.end(), True
    return "".join(out) + predicted[last:] if changed else None


# --- math-verify in a child process under a deadline ---------------------------------------------


class _MathVerifyEngine:
    """One persistent child process running math-verify
    (:class:`~prmforge.verifiers.child_worker.JsonLineWorker`): killed and restarted when a request
    runs over its deadline, which then is undecided (None)."""

    def __init__(self) -> None:
        self._worker = JsonLineWorker(
            Path(__file__).with_name("_mathverify_worker.py"), startup_timeout_s=_STARTUP_TIMEOUT_S
        )

    @property
    def calls(self) -> int:
        """Requests sent to the child (the fast path sends none)."""
        return self._worker.calls

    @property
    def restarts(self) -> int:
        return self._worker.restarts

    def equal(self, predicted: str, gold: str, tolerance: float, timeout_s: float) -> bool | None:
        reply = self._worker.request({"pred": predicted, "gold": gold, "tol": tolerance}, timeout_s)
        result = reply.get("equal") if isinstance(reply, dict) else None
        return result if isinstance(result, bool) else None

    def close(self) -> None:
        self._worker.close()


_ENGINE: Final = _MathVerifyEngine()
atexit.register(_ENGINE.close)
