"""Exact rational evaluation of a claim side, with the interval its rounded decimals allow.

:func:`evaluate` walks a tree of :mod:`prmforge.verifiers.equation_grammar` with
:class:`fractions.Fraction`. A decimal literal of ``widen`` or more places may be a
rounded value (``0.333``): its interval is half a unit of its last place either
side, and intervals propagate through ``+ - * / ^``. Roots, factorials, binomial
coefficients and floors are exact when their result is rational (``sqrt(16)``,
``root(3)(27)``, ``(1/4)^(1/2)``, ``5!``, ``binom(5)(2)``); a side with a variable,
``pi`` or an irrational root raises :class:`NotRational` (the symbolic checker's
case), and one too large to check raises :class:`EvalError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from prmforge.verifiers.equation_grammar import Node

__all__ = ["MAX_DIGITS", "EvalError", "NotRational", "Value", "evaluate", "literal"]

MAX_EXPONENT = 64
MAX_BITS = 2000  # a power's result is refused beyond about 600 digits
MAX_DIGITS = 60
MAX_FACTORIAL = 200


class EvalError(ValueError):
    """An expression that cannot be evaluated (or is too large to)."""


class NotRational(EvalError):
    """A value that is not a rational number: a variable, pi, an irrational root."""


@dataclass(frozen=True, slots=True)
class Value:
    """An exact value and the interval it lies in when its decimal literals are rounded ones."""

    exact: Fraction
    lo: Fraction
    hi: Fraction

    @property
    def point(self) -> bool:
        return self.lo == self.hi


def _exactly(value: Fraction) -> Value:
    return Value(value, value, value)


def literal(text: str, *, widen: int | None) -> Value:
    """A number; one with ``widen`` or more decimal places may be a rounded value (``0.333``)."""
    if len(text) > MAX_DIGITS:
        raise EvalError("number too long")
    value = Fraction(text.replace(",", ""))
    places = len(text.partition(".")[2])
    if widen is None or places < widen:
        return _exactly(value)
    half = Fraction(1, 2 * 10**places)
    return Value(value, value - half, value + half)


def _divide(a: Value, b: Value) -> Value:
    if b.exact == 0 or b.lo <= 0 <= b.hi:
        if b.exact == 0 or b.point:
            raise EvalError("division by zero")
        return Value(a.exact / b.exact, Fraction(-(10**MAX_DIGITS)), Fraction(10**MAX_DIGITS))
    corners = (a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi)
    return Value(a.exact / b.exact, min(corners), max(corners))


def _bits(value: Fraction) -> int:
    return max(abs(value.numerator).bit_length(), value.denominator.bit_length())


def _rational_root(value: Fraction, n: int) -> Fraction:
    """The real ``n``-th root of ``value`` when it is rational; else :class:`NotRational`."""
    if value < 0 and n % 2 == 0:
        raise EvalError("an even root of a negative number")
    sign = -1 if value < 0 else 1
    roots = []
    for part in (abs(value.numerator), value.denominator):
        root = round(part ** (1 / n)) if part.bit_length() < 1000 else math.isqrt(part) if n == 2 else None
        if root is None:
            raise EvalError("root of a number too large")
        candidates = [r for r in (root - 1, root, root + 1) if r >= 0 and r**n == part]
        if not candidates:
            raise NotRational("an irrational root")
        roots.append(candidates[0])
    return sign * Fraction(roots[0], roots[1])


def _power(a: Value, b: Value) -> Value:
    if not b.point:
        raise EvalError("an exponent with a rounded decimal")
    p = b.exact
    if p.denominator != 1:
        if not a.point or p.denominator > MAX_EXPONENT:
            raise EvalError("a fractional power of a rounded decimal")
        return _power(_exactly(_rational_root(a.exact, p.denominator)), _exactly(Fraction(p.numerator)))
    n = int(p)
    if a.exact == 0 and n < 0:
        raise EvalError("division by zero")
    if abs(n) > MAX_EXPONENT and (not a.point or _bits(a.exact) * abs(n) > MAX_BITS):
        raise EvalError("only small powers are checked")
    if not a.point and a.lo <= 0 <= a.hi:
        raise EvalError("cannot bound a power of an interval around zero")
    ends = (a.lo**n, a.hi**n)
    return Value(a.exact**n, min(ends), max(ends))


def _integer(value: Value, what: str) -> int:
    if not value.point or value.exact.denominator != 1:
        raise EvalError(f"{what} of a number that is no integer")
    return int(value.exact)


def _function(head: str, args: list[Value]) -> Value:
    if head == "sqrt":
        if not args[0].point:
            raise NotRational("a root of a rounded decimal")
        return _exactly(_rational_root(args[0].exact, 2))
    if head == "root":
        n = _integer(args[0], "a root index")
        if not 2 <= n <= MAX_EXPONENT or not args[1].point:
            raise EvalError("an unusual root")
        return _exactly(_rational_root(args[1].exact, n))
    if head == "!":
        n = _integer(args[0], "a factorial")
        if not 0 <= n <= MAX_FACTORIAL:
            raise EvalError("a factorial out of range")
        return _exactly(Fraction(math.factorial(n)))
    if head == "binom":
        n, k = _integer(args[0], "a binomial"), _integer(args[1], "a binomial")
        if not 0 <= n <= 10 * MAX_FACTORIAL or k < 0:
            raise EvalError("a binomial coefficient out of range")
        return _exactly(Fraction(math.comb(n, k)))
    # floor / ceil: exact when the whole interval rounds the same way
    rounding = math.floor if head == "floor" else math.ceil
    lo, hi = rounding(args[0].lo), rounding(args[0].hi)
    if lo != hi:
        raise EvalError("a floor of a rounded decimal")
    return _exactly(Fraction(lo))


def evaluate(tree: Node, *, percent: bool, widen: int | None) -> Value:
    """The value of ``tree``; ``%`` divides by 100 only when ``percent`` (else it is a mere sign)."""
    head = tree[0]
    if head == "num":
        return literal(tree[1], widen=widen)
    if head in ("var", "pi"):
        raise NotRational("a variable" if head == "var" else "pi")
    args = [evaluate(part, percent=percent, widen=widen) for part in tree[1:]]
    if head == "neg":
        return Value(-args[0].exact, -args[0].hi, -args[0].lo)
    if head == "%":
        return _divide(args[0], _exactly(Fraction(100))) if percent else args[0]
    if head in ("sqrt", "root", "!", "binom", "floor", "ceil"):
        return _function(head, args)
    a, b = args
    if head == "+":
        return Value(a.exact + b.exact, a.lo + b.lo, a.hi + b.hi)
    if head == "-":
        return Value(a.exact - b.exact, a.lo - b.hi, a.hi - b.lo)
    if head == "*":
        corners = (a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi)
        return Value(a.exact * b.exact, min(corners), max(corners))
    if head == "/":
        return _divide(a, b)
    if head == "^":
        return _power(a, b)
    raise EvalError(f"unknown node {head!r}")
