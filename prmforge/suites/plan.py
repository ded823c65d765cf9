"""Reference solutions of the built-in suites, and the exact arithmetic they rest on.

A :class:`Plan` is a list of :class:`PlanStep`; each step holds one or more
:class:`Calc` and the text around them. A calc is an arithmetic expression over
literal numbers and references ``{cK}`` to the result of the K-th calc of the
plan (0-based, counted across steps, always an earlier one).

Calcs are rendered in the GSM8K calculator convention ``<<expr=value>>value``
(preceded by ``expr = `` when the calc echoes its expression), so a solution's
claims can be read back exactly with :func:`parse_annotations`.

Values are exact :class:`~fractions.Fraction`. :func:`format_value` writes an
integer when the value is integral, a terminating decimal when there is one
(``3.5``), and a reduced fraction otherwise (``10/3``); :func:`parse_value`
reads all three forms.

Plans serialise to JSON-able dicts (``Problem.meta["plan"]``) with
:meth:`Plan.to_dict` and back with :meth:`Plan.from_dict`.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from prmforge.schemas.records import Problem

__all__ = [
    "ANSWER_PREFIX",
    "Calc",
    "ExprError",
    "Plan",
    "PlanError",
    "PlanStep",
    "answer_line",
    "canonical",
    "evaluate",
    "fill",
    "format_operand",
    "format_value",
    "join_tokens",
    "parse_annotations",
    "parse_answer_line",
    "parse_value",
    "plan_of",
    "refs_of",
    "render_calc",
    "tokenize",
]

ANSWER_PREFIX = "The answer is: "
MAX_EXPR_CHARS = 500
MAX_DECIMALS = 12

_REF_RE = re.compile(r"\{c(\d+)\}")
_REF_NAME_RE = re.compile(r"_ref(\d+)_")
_TOKEN_RE = re.compile(r"\s*(\{c\d+\}|\d+(?:\.\d*)?|\.\d+|[-+*/()])")
_VALUE_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")
_ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")
_ANSWER_RE = re.compile(r"The answer is:?\s*\$?\s*(-?[\d.,/]*\d)")


class ExprError(ValueError):
    """An expression the safe evaluator refuses or cannot evaluate (the message says why)."""


class PlanError(ValueError):
    """A plan (or its dict form) that is malformed; the message names the part."""


# --------------------------------------------------------------------- values


def format_value(value: Fraction) -> str:
    """``24``, ``3.5``, ``-0.25`` or ``10/3``: integer, terminating decimal, else reduced fraction."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    places = max(twos, fives)
    if den != 1 or places > MAX_DECIMALS:
        return f"{value.numerator}/{value.denominator}"
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0")
    return f"-{text}" if value < 0 else text


def parse_value(text: str) -> Fraction:
    """Read a value written by :func:`format_value` (commas allowed, as in ``1,200``)."""
    cleaned = text.strip().replace(",", "")
    if not _VALUE_RE.fullmatch(cleaned):
        raise ExprError(f"{text!r} is not a number")
    try:
        return Fraction(cleaned)
    except ZeroDivisionError:
        raise ExprError(f"{text!r} divides by zero") from None


# ---------------------------------------------------------------- expressions


def refs_of(expr: str) -> tuple[int, ...]:
    """The calc indices ``expr`` references, in order of appearance."""
    return tuple(int(m.group(1)) for m in _REF_RE.finditer(expr))


@functools.lru_cache(maxsize=4096)
def _parse(expr: str) -> ast.expr:
    if len(expr) > MAX_EXPR_CHARS:
        raise ExprError(f"expression of {len(expr)} characters is above the limit of {MAX_EXPR_CHARS}")
    if "_ref" in expr:
        raise ExprError("names are not allowed")
    source = _REF_RE.sub(lambda m: f"_ref{m.group(1)}_", expr)
    try:
        return ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExprError(f"{expr!r} is not a valid arithmetic expression") from None


_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div)


def _eval(node: ast.expr, refs: Sequence[Fraction]) -> Fraction:
    if isinstance(node, ast.BinOp) and isinstance(node.op, _BINOPS):
        left, right = _eval(node.left, refs), _eval(node.right, refs)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise ExprError("division by zero")
        return left / right
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand, refs)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExprError(f"the constant {node.value!r} is not a number")
        if isinstance(node.value, float):
            if not math.isfinite(node.value):
                raise ExprError(f"the constant {node.value!r} is not a finite number")
            return Fraction(repr(node.value))
        return Fraction(node.value)
    if isinstance(node, ast.Name) and (match := _REF_NAME_RE.fullmatch(node.id)):
        index = int(match.group(1))
        if index >= len(refs):
            raise ExprError(f"reference {{c{index}}} is not defined here")
        return refs[index]
    if isinstance(node, ast.BinOp):
        raise ExprError(f"the operator {type(node.op).__name__} is not allowed (only + - * /)")
    raise ExprError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def evaluate(expr: str, refs: Sequence[Fraction] = ()) -> Fraction:
    """Evaluate ``expr`` exactly; ``{cK}`` reads ``refs[K]``.

    Only numbers, ``+ - * /``, unary minus and parentheses are accepted;
    names, calls, attributes, powers and everything else raise :class:`ExprError`.
    """
    try:
        return _eval(_parse(expr), refs)
    except RecursionError:
        raise ExprError("expression nested too deeply") from None


Canon = tuple[Any, ...]


def _canon(node: ast.expr) -> Canon:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        return ("+", tuple(sorted(_terms(node), key=repr)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Div):
        return ("*", tuple(sorted(_factors(node), key=repr)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _negate(_canon(node.operand))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _canon(node.operand)
    return ("n", _eval(node, ()))


def _terms(node: ast.expr) -> list[Canon]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _terms(node.left) + _terms(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
        return _terms(node.left) + [_negate(term) for term in _terms(node.right)]
    return [_canon(node)]


def _factors(node: ast.expr) -> list[Canon]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left) + _factors(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _factors(node.left) + [_invert(factor) for factor in _factors(node.right)]
    return [_canon(node)]


def _negate(canon: Canon) -> Canon:
    if canon[0] == "n":
        return ("n", -canon[1])
    if canon[0] == "neg":
        return tuple(canon[1])
    return ("neg", canon)


def _invert(canon: Canon) -> Canon:
    return tuple(canon[1]) if canon[0] == "inv" else ("inv", canon)


def canonical(expr: str) -> Canon:
    """A comparable form of ``expr`` (no references): equal for ``2*3+1`` and ``1 + 3*2``.

    Sums and products are flattened and their operands sorted; a difference is a
    sum with a negated term and a quotient a product with an inverted factor.
    The numbers themselves are compared exactly, so ``48/2`` and ``48*0.5`` differ.
    """
    try:
        return _canon(_parse(expr))
    except RecursionError:
        raise ExprError("expression nested too deeply") from None


def tokenize(expr: str) -> list[str]:
    """Numbers, references ``{cK}``, operators and parentheses of ``expr``, without spaces."""
    tokens: list[str] = []
    pos = 0
    text = expr.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise ExprError(f"unexpected character {text[pos:].lstrip()[:1]!r} in {expr!r}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def join_tokens(tokens: Sequence[str]) -> str:
    return "".join(tokens)


def fill(expr: str, values: Sequence[Fraction]) -> str:
    """``expr`` with every ``{cK}`` replaced by ``values[K]`` (parenthesised when negative or a fraction)."""

    return _REF_RE.sub(lambda match: format_operand(values[int(match.group(1))]), expr)


def format_operand(value: Fraction) -> str:
    """:func:`format_value`, parenthesised when negative or a fraction (so it reads as one operand)."""
    text = format_value(value)
    return f"({text})" if text.startswith("-") or "/" in text else text


# ---------------------------------------------------------------- rendering


def render_calc(calc: Calc, filled: str, value: Fraction) -> str:
    """``48/2 = <<48/2=24>>24`` (echo) or ``<<48/2=24>>24``."""
    shown = format_value(value)
    annotation = f"<<{filled}={shown}>>{shown}"
    return f"{filled} = {calc.lead}{annotation}" if calc.echo else annotation


def parse_annotations(text: str) -> list[tuple[str, str]]:
    """Every ``<<expr=value>>`` in ``text`` as ``(expr, value)`` texts (value ``""`` without ``=``)."""
    found = []
    for match in _ANNOTATION_RE.finditer(text):
        expr, sep, value = match.group(1).rpartition("=")
        found.append((expr, value) if sep else (match.group(1), ""))
    return found


def parse_answer_line(text: str) -> str | None:
    """The value stated by the last ``The answer is: V`` in ``text``, or None."""
    matches = _ANSWER_RE.findall(text)
    return matches[-1] if matches else None


# -------------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class Calc:
    """One calculation: ``expr`` over literals and ``{cK}`` references to earlier calcs.

    ``echo`` writes the filled expression before the annotation (``expr = <<...>>``),
    with ``lead`` (such as ``$``) between the ``=`` and the annotation.
    """

    expr: str
    echo: bool = True
    lead: str = ""


@dataclass(frozen=True, slots=True)
class PlanStep:
    """A solution step: ``text[0] calc0 text[1] calc1 ... text[-1]`` (``len(text) == len(calcs) + 1``)."""

    text: tuple[str, ...]
    calcs: tuple[Calc, ...]

    def render(self, filled: Sequence[str], values: Sequence[Fraction]) -> str:
        parts = [self.text[0]]
        for calc, expr, value, after in zip(self.calcs, filled, values, self.text[1:], strict=True):
            parts.extend((render_calc(calc, expr, value), after))
        return "".join(parts)


def answer_line(value: Fraction) -> str:
    return f"{ANSWER_PREFIX}{format_value(value)}"


@dataclass(frozen=True, slots=True)
class Plan:
    """A reference solution. The answer is the value of the last calc of the last step."""

    steps: tuple[PlanStep, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise PlanError("a plan needs at least one step")
        index = 0
        for t, step in enumerate(self.steps):
            if not step.calcs:
                raise PlanError(f"step {t} has no calc")
            if len(step.text) != len(step.calcs) + 1:
                raise PlanError(f"step {t} has {len(step.calcs)} calcs but {len(step.text)} text parts")
            for part in step.text:
                if "\n\n" in part or "<<" in part:
                    raise PlanError(f"step {t}: text parts may not contain a blank line or '<<'")
            for calc in step.calcs:
                try:
                    tokenize(calc.expr)
                    _parse(calc.expr)
                except ExprError as err:
                    raise PlanError(f"step {t}, calc {index}: {err}") from None
                late = [k for k in refs_of(calc.expr) if k >= index]
                if late:
                    raise PlanError(f"step {t}, calc {index} references {{c{late[0]}}}, not an earlier calc")
                index += 1
        self.true_values()  # raises PlanError for a refused operator or a division by zero

    @property
    def calcs(self) -> tuple[Calc, ...]:
        return tuple(calc for step in self.steps for calc in step.calcs)

    def first_calc(self, step: int) -> int:
        """Global index of the first calc of ``step``."""
        return sum(len(s.calcs) for s in self.steps[:step])

    def true_values(self) -> tuple[Fraction, ...]:
        values: list[Fraction] = []
        for index, calc in enumerate(self.calcs):
            try:
                values.append(evaluate(calc.expr, values))
            except ExprError as err:
                raise PlanError(f"calc {index} ({calc.expr}): {err}") from None
        return tuple(values)

    def answer(self) -> Fraction:
        return self.true_values()[-1]

    def render_step(self, step: int, values: Sequence[Fraction], *, final: bool) -> str:
        """Step ``step`` with calcs filled from ``values`` (all calcs of the plan, in order)."""
        start = self.first_calc(step)
        plan_step = self.steps[step]
        own = values[start : start + len(plan_step.calcs)]
        filled = [fill(calc.expr, values) for calc in plan_step.calcs]
        text = plan_step.render(filled, own)
        return f"{text}\n{answer_line(values[start + len(own) - 1])}" if final else text

    def reference_steps(self) -> tuple[str, ...]:
        """The correct solution, the last step ending with ``The answer is: V``."""
        values = self.true_values()
        last = len(self.steps) - 1
        return tuple(self.render_step(t, values, final=t == last) for t in range(len(self.steps)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [
                {
                    "text": list(step.text),
                    "calcs": [{"expr": c.expr, "echo": c.echo, "lead": c.lead} for c in step.calcs],
                }
                for step in self.steps
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`; raises :class:`PlanError` naming the bad part."""
        raw_steps = data.get("steps") if isinstance(data, Mapping) else None
        if not isinstance(raw_steps, list):
            raise PlanError("plan: 'steps' must be a list")
        steps = []
        for t, raw in enumerate(raw_steps):
            if not isinstance(raw, Mapping):
                raise PlanError(f"plan step {t}: expected an object")
            text, calcs = raw.get("text"), raw.get("calcs")
            if not isinstance(text, list) or not all(isinstance(p, str) for p in text):
                raise PlanError(f"plan step {t}: 'text' must be a list of strings")
            if not isinstance(calcs, list):
                raise PlanError(f"plan step {t}: 'calcs' must be a list")
            steps.append(PlanStep(tuple(text), tuple(_calc_from_dict(c, t) for c in calcs)))
        return cls(tuple(steps))


def _calc_from_dict(raw: object, step: int) -> Calc:
    if not isinstance(raw, Mapping):
        raise PlanError(f"plan step {step}: each calc must be an object")
    expr, echo, lead = raw.get("expr"), raw.get("echo", True), raw.get("lead", "")
    if not isinstance(expr, str) or not isinstance(echo, bool) or not isinstance(lead, str):
        raise PlanError(f"plan step {step}: a calc needs 'expr' (string), 'echo' (bool), 'lead' (string)")
    return Calc(expr, echo, lead)


def plan_of(problem: Problem) -> Plan:
    """The plan stored in ``problem.meta["plan"]``; :class:`PlanError` naming the problem if absent or bad."""
    raw = problem.meta.get("plan")
    if raw is None:
        raise PlanError(f"problem {problem.problem_id} has no plan in meta['plan']")
    try:
        return Plan.from_dict(raw)
    except PlanError as err:
        raise PlanError(f"problem {problem.problem_id}: {err}") from None
