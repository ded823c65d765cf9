"""Fast exact arithmetic for the simulated policy: plan calcs compiled once, evaluated on ints.

:func:`compile_expr` turns a calc expression (numbers, ``{cK}`` references,
``+ - * /``, unary signs, parentheses) into a function of the reference values.
Values are :data:`Num`: a plain ``int`` while they are integers and a
:class:`~fractions.Fraction` only when a division (or a decimal literal) gives a
non-integer, so the common case never pays for ``Fraction`` arithmetic. The
results are exactly those of :func:`prmforge.suites.plan.evaluate` (the same
parse, the same exact operations; decimal literals read as ``Fraction(repr(float))``
as there), compared as numbers: ``3 == Fraction(3)``.

A compiled function raises :class:`ZeroDivisionError` where ``evaluate`` raises
its division-by-zero :class:`~prmforge.suites.plan.ExprError`; every reference
must be defined (the plans of the simulated policy only reference earlier calcs).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol, cast

from prmforge.suites.plan import MAX_EXPR_CHARS, ExprError, format_operand, parse_value

__all__ = ["Compiled", "Num", "Values", "compile_expr", "normal", "operand_text", "parse_claim"]

Num = int | Fraction


class Values(Protocol):
    """What an expression reads its references from: a list or tuple of values, or a view of them."""

    def __getitem__(self, index: int, /) -> Num: ...

    def __len__(self) -> int: ...


Compiled = Callable[[Values], Num]

_REF_RE = re.compile(r"\{c(\d+)\}")
_REF_NAME_RE = re.compile(r"_ref(\d+)_")


def normal(value: Num) -> Num:
    """``value`` as an ``int`` when it is integral (equal, and faster to compute with)."""
    if type(value) is Fraction and value.denominator == 1:
        return value.numerator
    return value


def operand_text(value: Num) -> str:
    """:func:`~prmforge.suites.plan.format_operand` (``7``, ``(-3)``, ``(10/3)``, ``3.5``), fast on ints."""
    if type(value) is int:
        return str(value) if value >= 0 else f"({value})"
    return format_operand(cast(Fraction, value))


def parse_claim(text: str) -> Num:
    """:func:`~prmforge.suites.plan.parse_value` (:class:`ExprError` when not a number), fast on integers."""
    cleaned = text.strip().replace(",", "")
    if cleaned.isascii() and cleaned.isdigit():
        return int(cleaned)
    return normal(parse_value(text))


def _div(left: Num, right: Num) -> Num:
    if type(left) is int and type(right) is int:
        quotient, remainder = divmod(left, right)  # ZeroDivisionError when right == 0
        return quotient if remainder == 0 else Fraction(left, right)
    # A Fraction operand: exact, and ZeroDivisionError when right == 0.
    if type(left) is Fraction:
        return left / right
    return left / cast(Fraction, right)


def _constant(value: object) -> Num:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExprError(f"the constant {value!r} is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExprError(f"the constant {value!r} is not a finite number")
        return normal(Fraction(repr(value)))
    return value


def _build(node: ast.expr) -> Compiled:
    if isinstance(node, ast.BinOp):
        left, right = _build(node.left), _build(node.right)
        if isinstance(node.op, ast.Add):
            return lambda refs: left(refs) + right(refs)
        if isinstance(node.op, ast.Sub):
            return lambda refs: left(refs) - right(refs)
        if isinstance(node.op, ast.Mult):
            return lambda refs: left(refs) * right(refs)
        if isinstance(node.op, ast.Div):
            return lambda refs: _div(left(refs), right(refs))
        raise ExprError(f"the operator {type(node.op).__name__} is not allowed (only + - * /)")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _build(node.operand)
        if isinstance(node.op, ast.UAdd):
            return inner
        return lambda refs: -inner(refs)
    if isinstance(node, ast.Constant):
        value = _constant(node.value)
        return lambda refs: value
    if isinstance(node, ast.Name) and (match := _REF_NAME_RE.fullmatch(node.id)):
        index = int(match.group(1))
        return lambda refs: refs[index]
    raise ExprError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def compile_expr(expr: str) -> Compiled:
    """A function of the reference values that evaluates ``expr`` exactly.

    The parse is :func:`prmforge.suites.plan.evaluate`'s, and the same
    expressions are refused (:class:`ExprError`), here when compiling.
    """
    if len(expr) > MAX_EXPR_CHARS:
        raise ExprError(f"expression of {len(expr)} characters is above the limit of {MAX_EXPR_CHARS}")
    if "_ref" in expr:
        raise ExprError("names are not allowed")
    source = _REF_RE.sub(lambda m: f"_ref{m.group(1)}_", expr)
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExprError(f"{expr!r} is not a valid arithmetic expression") from None
    try:
        return _build(tree)
    except RecursionError:
        raise ExprError("expression nested too deeply") from None
