"""Outcome grading: pull the final answer out of a solution and compare it with the gold answer.

Never substring matching: ``"12"`` does not match ``"112"``. Comparison runs,
in order, on normalised strings (``$`` signs, LaTeX spacing, ``\\left``/
``\\right`` and a trailing period removed; whitespace dropped except between
letters):

1. exact string equality;
2. exact numeric equality with :class:`fractions.Fraction` when both sides
   are plain numbers: integers, decimals, ``1e3``, thousands separators
   (``1,000``), ``7/2``, ``\\frac{7}{2}`` / ``\\dfrac`` / ``\\tfrac``;
3. otherwise sympy, ``simplify(a - b) == 0``, on a whitelisted subset
   (digits, single-letter variables, ``+ - * / ^ ( )``, ``sqrt``, ``pi`` and
   the LaTeX ``\\frac``, ``\\sqrt``, ``\\cdot``, ``\\times``, ``\\div``,
   ``\\pi``), capped in length, in literal size and in exponent size.

Percentages are compared as written: the ``%`` sign is dropped, so
``"50%" == "50"`` but ``"50%" != "0.5"``. Units are not stripped:
``"18 dollars" != "18"``. A single-letter assignment ``"x = 5"`` is compared
by its right-hand side when the other side has no ``=``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from tokenize import TokenError
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import sympy  # type: ignore[import-untyped]

DEFAULT_MAX_EXPRESSION_CHARS: Final = 200
_MAX_LITERAL_DIGITS: Final = 50
_MAX_EXPONENT: Final = 1000

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(r"\bthe\s+(?:final\s+)?answer\s+is\b[ \t]*:?[ \t]*([^\n]*)", re.IGNORECASE)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_LATEX_SPACING = re.compile(r"\\[,;:! ]|\\(?:left|right|displaystyle)(?![A-Za-z])")
_SPACE = re.compile(r"(?<![A-Za-z])\s+|\s+(?![A-Za-z])")
_ASSIGNMENT = re.compile(r"[A-Za-z]=(.+)")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SLASH = re.compile(r"([+-]?\d+)/(\d+)")
_FRAC = re.compile(r"([+-]?)\\[dt]?frac(?:\{([^{}]+)\}\{([^{}]+)\}|(\d)(\d))")
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")
_ALLOWED = re.compile(r"[0-9A-Za-z+\-*/^().\s]*")
# A "." not before a digit (attribute access), or scientific notation (1e999999999 would be expanded).
_BAD_LITERAL = re.compile(r"\.(?!\d)|[\d.][eE][+-]?\d")
_FUNCTIONS: Final = frozenset({"sqrt", "pi"})


def extract_final_answer(text: str) -> str | None:
    """The final answer in ``text``, or None when it states none.

    Takes the last complete ``\\boxed{...}`` (nested braces allowed; an
    unterminated one is ignored), else the last "The answer is: X" or "The
    answer is X" (also "The final answer is"; X runs to the end of its
    line), else the last "#### X". Strips surrounding whitespace, a trailing
    period, ``$`` signs and markdown bold; units are kept.
    """
    boxed = [_braced(text, match.end()) for match in _BOXED.finditer(text)]
    answer_is = [match.group(1) for match in _ANSWER_IS.finditer(text)]
    hashes = [match.group(1) for match in _HASHES.finditer(text)]
    for candidates in (boxed, answer_is, hashes):
        for candidate in reversed(candidates):
            if candidate is not None and (cleaned := _clean(candidate)):
                return cleaned
    return None


def answers_equal(
    predicted: str | None, gold: str, *, max_expression_chars: int = DEFAULT_MAX_EXPRESSION_CHARS
) -> bool:
    """Whether ``predicted`` states the same answer as ``gold`` (see the module doc); False for None."""
    if predicted is None:
        return False
    a, b = _normalize(predicted), _normalize(gold)
    if "=" not in b and (m := _ASSIGNMENT.fullmatch(a)):
        a = m.group(1)
    if "=" not in a and (m := _ASSIGNMENT.fullmatch(b)):
        b = m.group(1)
    if not a or not b:
        return False
    if a == b:
        return True
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return x == y
    return _symbolically_equal(a, b, max_expression_chars)


@dataclass(frozen=True, slots=True)
class AnswerGrader:
    """Grades a solution's outcome against a gold answer; the pipeline's injected outcome grader."""

    max_expression_chars: int = DEFAULT_MAX_EXPRESSION_CHARS

    def grade(self, text: str, gold: str) -> bool | None:
        """True or False when ``text`` states a final answer, None when it states none."""
        answer = extract_final_answer(text)
        if answer is None:
            return None
        return answers_equal(answer, gold, max_expression_chars=self.max_expression_chars)


def _braced(text: str, start: int) -> str | None:
    """The text from ``start`` up to the brace that closes the one just before it, if any."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def _clean(answer: str) -> str:
    answer = answer.replace("\\$", "").replace("$", "").strip().rstrip(". \t")
    while answer.startswith("**") and answer.endswith("**") and len(answer) >= 4:
        answer = answer[2:-2].strip()
    return answer.rstrip(". \t").strip()


def _normalize(answer: str) -> str:
    answer = _clean(answer).replace("\u2212", "-")
    answer = _LATEX_SPACING.sub("", answer)
    return _SPACE.sub("", answer).rstrip(".")


def _number(text: str) -> Fraction | None:
    """``text`` as an exact number when it is a plain one (percent sign dropped), else None."""
    text = text.removesuffix("\\%").removesuffix("%")
    if _NUMBER.fullmatch(text):
        return Fraction(text)
    if _THOUSANDS.fullmatch(text):
        return Fraction(text.replace(",", ""))
    if m := _SLASH.fullmatch(text):
        return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
    if m := _FRAC.fullmatch(text):
        num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
        x, y = _number(num), _number(den)
        if x is None or y is None or y == 0:
            return None
        return -x / y if m.group(1) == "-" else x / y
    return None


def _symbolically_equal(a: str, b: str, max_chars: int) -> bool:
    if len(a) > max_chars or len(b) > max_chars:
        return False
    x_text, y_text = _to_sympy_text(a), _to_sympy_text(b)
    if x_text is None or y_text is None:
        return False
    import sympy  # lazy: the import takes 0.3 s

    try:
        x, y = _parse(x_text), _parse(y_text)
        if not (_bounded(x) and _bounded(y)):
            return False
        return bool(sympy.simplify(x - y) == 0)
    except (
        sympy.SympifyError,
        SyntaxError,
        TokenError,
        TypeError,
        ValueError,
        NameError,
        AttributeError,
        ZeroDivisionError,
        OverflowError,
        RecursionError,
    ):
        return False


def _to_sympy_text(text: str) -> str | None:
    """Rewrite the supported LaTeX into sympy syntax; None if anything outside the whitelist remains."""
    text = text.removesuffix("\\%").removesuffix("%")
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            m = _COMMAND.match(text, i)
            if m is None:
                return None
            name, i = m.group(1), m.end()
            if name in ("frac", "dfrac", "tfrac"):
                num, i = _argument(text, i)
                den, i = _argument(text, i)
                parts = [_to_sympy_text(p) if p is not None else None for p in (num, den)]
                if parts[0] is None or parts[1] is None:
                    return None
                out.append(f"(({parts[0]})/({parts[1]}))")
            elif name == "sqrt":
                index = None
                if text.startswith("[", i) and (close := text.find("]", i)) > 0:
                    index, i = _to_sympy_text(text[i + 1 : close]), close + 1
                    if index is None:
                        return None
                arg, i = _argument(text, i)
                inner = _to_sympy_text(arg) if arg is not None else None
                if inner is None:
                    return None
                out.append(f"sqrt({inner})" if index is None else f"(({inner})**(1/({index})))")
            elif name in ("cdot", "times", "div", "pi"):
                out.append({"cdot": "*", "times": "*", "div": "/", "pi": " pi "}[name])
            else:
                return None
        else:
            out.append({"{": "(", "}": ")"}.get(char, char))
            i += 1
    result = "".join(out)
    if not _ALLOWED.fullmatch(result) or _BAD_LITERAL.search(result):
        return None
    if any(len(digits) > _MAX_LITERAL_DIGITS for digits in re.findall(r"\d+", result)):
        return None
    if any(len(word) > 1 and word not in _FUNCTIONS for word in re.findall(r"[A-Za-z]+", result)):
        return None
    return result


def _argument(text: str, i: int) -> tuple[str | None, int]:
    """A LaTeX macro argument at ``i``: a braced group or a single character."""
    if i >= len(text):
        return None, i
    if text[i] == "{":
        inner = _braced(text, i + 1)
        return (None, i) if inner is None else (inner, i + len(inner) + 2)
    return text[i], i + 1


def _parse(text: str) -> sympy.Expr:
    """Parse whitelisted text without evaluating it: no builtins, only the names sympy needs."""
    import sympy
    from sympy.parsing.sympy_parser import (  # type: ignore[import-untyped]
        auto_number,
        auto_symbol,
        convert_xor,
        implicit_multiplication,
        parse_expr,
        rationalize,
    )

    names = {"__builtins__": {}, "sqrt": sympy.sqrt, "pi": sympy.pi}
    for cls in (sympy.Integer, sympy.Float, sympy.Rational, sympy.Symbol, sympy.Add, sympy.Mul, sympy.Pow):
        names[cls.__name__] = cls
    transformations = (auto_symbol, auto_number, rationalize, convert_xor, implicit_multiplication)
    expr: sympy.Expr = parse_expr(
        text, local_dict={}, global_dict=names, transformations=transformations, evaluate=False
    )
    return expr


def _bounded(expr: sympy.Expr) -> bool:
    """False when evaluating ``expr`` could explode: a numeric exponent above 1000 in magnitude.

    Checked bottom-up, so each exponent is evaluated only once its own powers passed.
    """
    import sympy

    for node in sympy.postorder_traversal(expr):
        if isinstance(node, sympy.Pow) and not node.exp.free_symbols:
            magnitude = abs(node.exp.evalf())
            if not magnitude.is_finite or magnitude > _MAX_EXPONENT:
                return False
    return True
