"""Tokens of a normalised step text (:mod:`prmforge.verifiers.equation_latex`): numbers, operators,
brackets, ``=``, words, variables and function markers, and the poison no claim may touch."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from prmforge.verifiers.equation_latex import FN, VAR
from prmforge.verifiers.equation_lexicon import FUNCTIONS, GLUED_UNITS

__all__ = ["NUMBER", "OPERATOR_LIKE", "Kind", "Tok", "tokenize"]

Kind = Literal[
    "num", "op", "lp", "rp", "pct", "eq", "word", "poison", "break", "boundary", "unit", "var", "fn"
]  # fmt: skip

_FN_NAMES = {marker: name for name, marker in FN.items()}
NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"  # 1,000.5, 12, 2.5, .5: a number token
_TOKEN = re.compile(
    r"(?P<var>" + VAR + r"[^\W\d_](?:_[A-Za-z0-9]+)?)|(?P<fn>[" + "".join(FN.values()) + r"])"
    r"|(?P<num>" + NUMBER + ")"
    r"|(?P<op>[-+*/^])|(?P<lp>[(\[{])|(?P<rp>[)\]}])|(?P<pct>%)|(?P<eq>=)"
    r"|(?P<approx>≈)|(?P<boundary>¦|\n|[.:;!?](?=\s|$))|(?P<poison>§)"
    r"|(?P<word>[A-Za-z][A-Za-z0-9_']*)|(?P<space>[ \t\r\f\v]+)|(?P<other>.)"
)
# Characters before a chain's first operand that make it the tail of some other expression
# ("\frac{7}{30} @ \frac{10}{21}", "|3 - 5|", "x_3", "5's").
OPERATOR_LIKE = frozenset("@#&|_~'\"\\")


@dataclass(slots=True)
class Tok:
    kind: Kind
    text: str
    space: bool  # whitespace before it
    units: tuple[str, ...] = field(default=())
    math: bool = False


def tokenize(text: str, math: bool = False) -> list[Tok]:
    tokens: list[Tok] = []
    space = True
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "space":
            space = True
            continue
        value = match.group()
        previous = tokens[-1] if tokens else None
        if kind == "var":
            tokens.append(Tok("var", value[1:], space, math=True))
        elif kind == "fn":
            tokens.append(Tok("fn", _FN_NAMES[value], space, math=math))
        elif kind in ("approx", "other"):
            tokens.append(Tok("break", value, space, math=math))
        elif _poisonous(kind, value, previous) or _glued_variable(kind, value, previous, space):
            tokens.append(Tok("poison", value, space, math=math))
        else:
            tokens.append(Tok(kind, value, space, math=math))  # type: ignore[arg-type]
        space = False
    return _functions_applied(tokens)


def _glued_variable(kind: str | None, value: str, previous: Tok | None, space: bool) -> bool:
    """``2ab``: a word glued to the number before it that is no unit abbreviation is a variable."""
    return (
        kind == "word"
        and not space
        and previous is not None
        and previous.kind == "num"
        and value.lower() not in GLUED_UNITS
    )


def _functions_applied(tokens: list[Tok]) -> list[Tok]:
    """A name applied to an argument (``f(3)``, ``f'(3)``, ``\\log_2(4)``) is a function: poison it, its
    subscript and primes, so ``2(4)`` or ``(3)`` is never left to be checked."""
    out = list(tokens)
    for i, tok in enumerate(out):
        if tok.kind == "word" and "'" in tok.text:
            out[i] = Tok("poison", tok.text, tok.space)
        nxt = out[i + 1] if i + 1 < len(out) else None
        if tok.kind == "word" and nxt is not None and nxt.kind == "lp" and not nxt.space:
            out[i] = Tok("poison", tok.text, tok.space)
        if tok.kind == "poison" and nxt is not None and nxt.text == "_":
            out[i + 1] = Tok("poison", "_", nxt.space)
            after = out[i + 2] if i + 2 < len(out) else None
            if after is not None and after.kind in ("num", "word") and not after.space:
                out[i + 2] = Tok("poison", after.text, after.space)
    return out


def _poisonous(kind: str | None, value: str, previous: Tok | None) -> bool:
    """A token no claim may touch: a function or variable name, a clock time (0900), a stray dot."""
    if kind == "word":
        return value.lower() in FUNCTIONS or "_" in value or any(c.isdigit() for c in value)
    if kind == "num":
        return re.match(r"0\d", value) is not None
    return kind == "boundary" and previous is not None and previous.kind == "op"
