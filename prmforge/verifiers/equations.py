"""The equalities a math step claims, checked exactly (GroundedPRM-style tool grounding, METHODS.md §2(f)).

A step's claims are read from GSM8K calculator annotations ``<<48/2=24>>``
and from ``=`` chains in plain text or LaTeX (``3 + 4 = 7``, ``$5 * 3 = $15``,
``2 x 3 = 6``, ``50% of 80 = 40``, ``\\frac{3}{4} \\times 8 = 6``,
``a = b = c``). Each claim is evaluated exactly with
:class:`fractions.Fraction` over numbers, ``+ - * / ^`` (small integer
powers), parentheses (implicit products ``2(3+4)``), ``%`` and ``of`` after a
percentage or a fraction. Nothing is ever ``eval``-ed.

Precision over recall: a claim is only called false when no honest reading
makes it true. The checker ABSTAINS on (or never extracts):

- operands next to variables, functions or unknown LaTeX (``3x = 12``,
  ``\\sqrt{16}``, ``f(2)``), a chain end cut by a word (``x + 4 = 10``),
  mixed numbers, ratios and times (``1:2``, ``7:30``);
- a bare number right after a word on the left of ``=`` (a label such as
  ``Week 2 = ...`` or ``in 5 years = ...``);
- rounding: a claim true once its decimal literals are rounded to their
  shown places (``20/3600 = 0.0056``, ``100/3 = 33``, ``0.33 * 900 = 300``);
- percent ambiguity: ``%`` is read both as ``/100`` and as a mere sign, and a
  factor of exactly 100 is forgiven in a step that talks about percent;
- units: a false claim whose two sides carry different unit words
  (``2 hours = 120 minutes``, ``1 dozen = 12``);
- a false claim within 5% in a step that says "about", "approximately", "≈"...

A chain ``a = b op c = d`` is also read as a running computation (``b`` is
``a``'s value, then ``b op c = d``), so ``3 + 4 = 7 * 2 = 14`` holds.

Verdicts (:class:`~prmforge.verifiers.verdict.Check`): FAIL when some claim is
false (the reason names it), else PASS when some claim holds, else ABSTAIN.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from prmforge.schemas.records import Problem
from prmforge.verifiers.equation_text import Claim, Mentions, extract_claims, step_mentions
from prmforge.verifiers.verdict import Check, Verdict

__all__ = ["TOOL", "TOOL_VERSION", "ClaimResult", "EquationVerifier", "check_claim", "check_text"]

TOOL = "equations"
TOOL_VERSION = "prmforge-equations/1"
MAX_EXPONENT = 64
MAX_DIGITS = 60
APPROX_RELATIVE = Fraction(5, 100)
WIDEN_PLACES = 3

Outcome = Literal["holds", "false", "approx", "ambiguous", "units", "unparseable"]
# Factors between units (and scales) a correct step may convert by: 2 hours = 120 minutes, 1 dozen = 12.
CONVERSIONS = frozenset(
    {Fraction(10) ** k for k in range(1, 10)}
    | {Fraction(n) for n in (7, 12, 16, 24, 30, 36, 52, 60, 144, 168, 365, 1440, 3600, 5280, 86400)}
    | {Fraction(v) for v in ("1.6", "1.609", "2.2", "2.54", "3.28", "3.785", "28.35", "0.9144")}
)


class _EvalError(ValueError):
    """An expression that cannot be evaluated (or is too large to)."""


# ------------------------------------------------------------------ evaluation


@dataclass(frozen=True, slots=True)
class _Value:
    """An exact value and the interval it lies in when its decimal literals are rounded ones."""

    exact: Fraction
    lo: Fraction
    hi: Fraction

    @property
    def point(self) -> bool:
        return self.lo == self.hi


def _literal(text: str, *, widen: int | None) -> _Value:
    """A number; one with ``widen`` or more decimal places may be a rounded value (``0.333``)."""
    value = Fraction(text.replace(",", ""))
    places = len(text.partition(".")[2])
    if widen is None or places < widen:
        return _Value(value, value, value)
    half = Fraction(1, 2 * 10**places)
    return _Value(value, value - half, value + half)


def _combine(op: str, a: _Value, b: _Value) -> _Value:
    if op == "+":
        return _Value(a.exact + b.exact, a.lo + b.lo, a.hi + b.hi)
    if op == "-":
        return _Value(a.exact - b.exact, a.lo - b.hi, a.hi - b.lo)
    if op == "*":
        corners = (a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi)
        return _Value(a.exact * b.exact, min(corners), max(corners))
    if op == "/":
        if b.exact == 0 or b.lo <= 0 <= b.hi:
            if b.exact == 0 or b.point:
                raise _EvalError("division by zero")
            return _Value(a.exact / b.exact, Fraction(-(10**MAX_DIGITS)), Fraction(10**MAX_DIGITS))
        corners = (a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi)
        return _Value(a.exact / b.exact, min(corners), max(corners))
    # "^": integer exponents only, and the base's interval must not straddle zero.
    if not b.point or b.exact.denominator != 1 or abs(b.exact) > MAX_EXPONENT:
        raise _EvalError("only small integer exponents are checked")
    n = int(b.exact)
    if a.exact == 0 and n < 0:
        raise _EvalError("division by zero")
    if not a.point and a.lo <= 0 <= a.hi:
        raise _EvalError("cannot bound a power of an interval around zero")
    ends = (a.lo**n, a.hi**n)
    return _Value(a.exact**n, min(ends), max(ends))


class _Parser:
    """Recursive descent over a claim side's tokens (``NUM``, operators, parentheses, ``%``)."""

    def __init__(self, tokens: Sequence[str], *, percent: bool, widen: int | None) -> None:
        self.tokens, self.pos, self.percent, self.widen = tokens, 0, percent, widen

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _EvalError("unexpected end of expression")
        self.pos += 1
        return token

    def parse(self) -> _Value:
        value = self.sum()
        if self.peek() is not None:
            raise _EvalError(f"unexpected {self.peek()!r}")
        return value

    def sum(self) -> _Value:
        value = self.product()
        while self.peek() in ("+", "-"):
            value = _combine(self.take(), value, self.product())
        return value

    def product(self) -> _Value:
        value = self.power()
        while self.peek() in ("*", "/", "("):
            op = "*" if self.peek() == "(" else self.take()
            value = _combine(op, value, self.power())
        return value

    def power(self) -> _Value:
        base = self.unary()
        if self.peek() == "^":
            self.take()
            return _combine("^", base, self.power())
        return base

    def unary(self) -> _Value:
        if self.peek() == "-":
            self.take()
            inner = self.unary()
            return _Value(-inner.exact, -inner.hi, -inner.lo)
        value = self.primary()
        while self.peek() == "%":
            self.take()
            if self.percent:
                value = _combine("/", value, _literal("100", widen=None))
        return value

    def primary(self) -> _Value:
        token = self.take()
        if token == "(":
            value = self.sum()
            if self.take() != ")":
                raise _EvalError("unbalanced parentheses")
            return value
        if token[0].isdigit() or token[0] == ".":
            if len(token) > MAX_DIGITS:
                raise _EvalError("number too long")
            return _literal(token, widen=self.widen)
        raise _EvalError(f"unexpected {token!r}")


def _evaluate(tokens: Sequence[str], *, percent: bool, widen: bool) -> _Value:
    """Exact value and, with ``widen``, the interval its rounded-looking literals allow.

    Literals of ``WIDEN_PLACES`` or more decimals count as possibly rounded; in a
    product or quotient, where rounding is magnified, so do those of one fewer
    (``0.33 * 900``). Two-decimal amounts in a sum (money) stay exact.
    """
    places = None
    if widen:
        places = WIDEN_PLACES - 1 if any(t in ("*", "/", "^") for t in tokens) else WIDEN_PLACES
    value = _Parser(tokens, percent=percent, widen=places).parse()
    if abs(value.exact.numerator) > 10**MAX_DIGITS or value.exact.denominator > 10**MAX_DIGITS:
        raise _EvalError("value too large to check")
    return value


# ---------------------------------------------------------------- deciding


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """How one claim fared: ``holds``, ``false`` (a FAIL), or a reason it cannot be decided."""

    claim: Claim
    outcome: Outcome
    detail: str = ""


def _bare_places(tokens: Sequence[str]) -> int | None:
    """Decimal places of a side that is one number (with ``%``); None for an expression."""
    body = [t for t in tokens if t != "%"]
    if len(body) != 1 or not (body[0][0].isdigit() or body[0][0] == "."):
        return None
    return len(body[0].partition(".")[2])


def _representable(value: Fraction, places: int) -> bool:
    return bool((value * 10**places).denominator == 1)


def _overlap(a: _Value, b: _Value, b_places: int | None) -> bool:
    """Whether ``a`` could equal ``b`` given rounding (``b_places``: b is a bare literal with that many)."""
    lo, hi = b.lo, b.hi
    if b_places is not None and not _representable(a.exact, b_places):
        step = Fraction(1, 10**b_places)
        lo, hi = b.exact - step, b.exact + step
    if a.point and lo == hi:
        return a.exact == lo
    if a.point:
        return lo < a.exact < hi
    if lo == hi:
        return a.lo < lo < a.hi
    return max(a.lo, lo) < min(a.hi, hi)


def _lead(tokens: Sequence[str]) -> tuple[str, ...] | None:
    """The first operand of a top-level sum or product (``b`` in ``b op c``), if the side is one."""
    depth = 0
    for i, token in enumerate(tokens):
        depth += token == "("
        depth -= token == ")"
        if depth == 0 and i > 0 and token in ("+", "-", "*", "/"):
            return tuple(tokens[:i])
    return None


def _regrouped(tokens: tuple[str, ...]) -> list[tuple[str, ...]]:
    """``a / b / c`` also read as ``a / (b / c)`` (``25 / 1/3 = 75``), the other grouping."""
    for i in range(len(tokens) - 3):
        if tokens[i] == "/" and tokens[i + 2] == "/" and tokens[i + 1][0].isdigit():
            return [(*tokens[: i + 1], "(", *tokens[i + 1 : i + 4], ")", *tokens[i + 4 :])]
    return []


def check_claim(claim: Claim, mentions: Mentions | None = None) -> ClaimResult:
    """Decide one claim (see the module docstring for when a false claim is not called false)."""
    mentions = mentions if mentions is not None else Mentions()
    readings = (True, False) if "%" in (*claim.left, *claim.right) else (False,)
    lead = _lead(claim.right)
    lefts = [claim.left, *_regrouped(claim.left)]
    rights = [claim.right, *_regrouped(claim.right), *([lead] if lead else [])]
    approx = False
    exact_pair: tuple[Fraction, Fraction] | None = None
    try:
        for percent in readings:
            for left, right in itertools.product(lefts, rights):
                a = _evaluate(left, percent=percent, widen=False)
                b = _evaluate(right, percent=percent, widen=False)
                if a.exact == b.exact:
                    return ClaimResult(claim, "holds")
                exact_pair = exact_pair or (a.exact, b.exact)
                left_places, right_places = _bare_places(left), _bare_places(right)
                wa = _evaluate(left, percent=percent, widen=left_places is None)
                wb = _evaluate(right, percent=percent, widen=right_places is None)
                approx = approx or _overlap(wa, wb, right_places) or _overlap(wb, wa, left_places)
    except (_EvalError, ZeroDivisionError, OverflowError) as err:
        return ClaimResult(claim, "unparseable", str(err))
    assert exact_pair is not None
    x, y = exact_pair
    ratio = max(abs(x), abs(y)) / min(abs(x), abs(y)) if x and y else None
    if approx:
        return ClaimResult(claim, "approx", "true up to the rounding of its decimals")
    if len(lefts) + len(rights) > 2 + (lead is not None):
        return ClaimResult(claim, "ambiguous", "a double division reads two ways, neither holds")
    if claim.left_units and claim.right_units and claim.left_units != claim.right_units:
        return ClaimResult(claim, "units", "the sides are in different units")
    if ratio in CONVERSIONS and (claim.left_units != claim.right_units or mentions.scale):
        return ClaimResult(claim, "units", f"off by {_show(ratio)}, a unit or scale conversion")
    if ratio is not None and mentions.percent and abs(ratio - 100) <= 1:
        return ClaimResult(claim, "approx", "off by the percent factor 100")
    if mentions.approximate and y != 0 and abs((x - y) / y) <= APPROX_RELATIVE:
        return ClaimResult(claim, "approx", "within 5% in a step that approximates")
    return ClaimResult(claim, "false", f"the left side is {_show(x)}")


def _show(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    decimal = f"{float(value):.6g}"
    return f"{value.numerator}/{value.denominator} (~{decimal})"


_REJECTS = re.compile(
    r"\b(?:does\s+not|doesn't|do\s+not|don't|did\s+not|didn't)\s+(?:work|hold|match|equal|satisfy|fit)"
    r"|\bnot\s+(?:true|correct|equal|valid|possible)|\bcontradict\w*|\bincorrect\b|\bimpossible\b"
    r"|\bthat(?:'s| is)\s+wrong\b",
    re.IGNORECASE,
)


def check_text(text: str) -> tuple[Check, list[ClaimResult]]:
    """Check every claim of one step; returns the step's Check and the per-claim results."""
    started = time.perf_counter()
    mentions = step_mentions(text)
    results = [check_claim(c, mentions) for c in extract_claims(text)]
    digest = hashlib.sha256(
        json.dumps([[r.claim.shown, r.outcome] for r in results], ensure_ascii=True).encode()
    ).hexdigest()[:16]
    false = [r for r in results if r.outcome == "false"]
    holds = [r for r in results if r.outcome == "holds"]
    if false and _REJECTS.search(text):
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


class EquationVerifier:
    """A :class:`~prmforge.verifiers.base.StepVerifier` for math steps, around :func:`check_text`."""

    def check_step(self, text: str) -> Check:
        return check_text(text)[0]

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        return [self.check_step(text) for text in steps]
