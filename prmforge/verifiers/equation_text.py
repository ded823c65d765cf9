"""Reading the equalities a math step claims: LaTeX and Unicode normalisation, tokens, ``=`` chains.

:func:`extract_claims` returns one :class:`Claim` per adjacent pair of a chain
``a = b = c`` and per GSM8K annotation ``<<expr=value>>``. A claim's sides
are token tuples over numbers, ``+ - * / ^``, parentheses and ``%``; unit
words met inside a side (``2 books * 3 pounds/book``) are removed and kept as
the side's unit set. The rules that keep a doubtful operand out (variables,
functions, labels, cut chains) are listed in :mod:`prmforge.verifiers.equations`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Claim", "Mentions", "extract_claims", "normalize", "step_mentions", "tokenize"]

MAX_TEXT_CHARS = 20000

Kind = Literal["num", "op", "lp", "rp", "pct", "eq", "word", "poison", "break", "boundary", "unit"]

_ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>=]*)>>")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|boxed|fbox)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FRAC_DIGITS = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")
_SUBSCRIPT = re.compile(r"_\{([^{}]*)\}")
_SUPERSCRIPT = re.compile(r"\^\{([^{}]*)\}")
_MIXED = re.compile(r"(\d)\s*(?=\\[dt]?frac)")
_UNIT_POWER = re.compile(r"(?<![A-Za-z])([A-Za-z]{2,4})\s*\^\s*(?:\(\d\)|\d)")
# Unit abbreviations written glued to a number ("20km", "5kg", "3rd"); any other glued word ("2ab",
# "3iz", "68k") is a variable coefficient, so the claim is not checked.
_GLUED_UNITS = frozenset((
    "km", "cm", "mm", "m", "kg", "g", "mg", "l", "ml", "lb", "lbs", "oz", "ft", "in", "mi", "yd", "h", "hr",
    "hrs", "min", "mins", "s", "sec", "secs", "mph", "kph", "st", "nd", "rd", "th", "am", "pm", "x",
))  # fmt: skip
_TIMES_X = re.compile(r"(?<=[\d)])\s*[xX]\s*(?=[\d(])")
_BULLET = re.compile(r"(?m)^[ \t]*(?:[-*•]|\d+[.)])[ \t]+")
_RATIO = re.compile(r"(?<=\d):(?=\d)|(?<=\d)\s+:\s+(?=\$?\d)")
_CURRENCY = re.compile(r"\$(?=\s?[\d.])")
_APPROX_WORDS = re.compile(
    r"≈|\b(?:approx(?:\.|imately|imate)?|about|around|roughly|nearly|almost|rounded|rounding|estimat\w*"
    r"|rounds?\s+(?:up|down|off|to))\b",
    re.IGNORECASE,
)
_PERCENT_WORDS = re.compile(r"%|\bpercent", re.IGNORECASE)
_SCALE_WORDS = re.compile(r"\b(?:hundreds?|thousands?|millions?|billions?|dozens?|cents?|k)\b", re.IGNORECASE)
_ESCAPES = ((r"\\%", "%"), (r"\\\$", "$"), (r"\{,\}", ","))
_REPLACEMENTS = (
    (r"\\[()\[\]]", " ¦ "),
    (r"\$\$?", " ¦ "),
    (r"\\(?:left|right|displaystyle|bigl?|bigr?|Bigl?|Bigr?)(?![A-Za-z])", " "),
    (r"\\(?:quad|qquad)(?![A-Za-z])|\\[,;:! ]", " "),
    (r"\\(?:times|cdot|ast)(?![A-Za-z])", " * "),
    (r"\\div(?![A-Za-z])", " / "),
    (r"\\(?:approx|sim|simeq|cong)(?![A-Za-z])", " ≈ "),
    (r"\\(?:neq|ne|leq?|geq?|lt|gt|implies|Rightarrow|rightarrow|to|Longrightarrow)(?![A-Za-z])", " ≠ "),
    (r"\\[A-Za-z]+|[√∛π∑∫]", " § "),
    (r"[×✕⋅·]", " * "),
    (r"÷", " / "),
    (r"−", "-"),
    (r"[≃∼~]", " ≈ "),
    (r"[≤≥<>]=?|!=|=>|⇒|→|≠", " ≠ "),
    (r"==", "="),
    (r"[–—]\s?(?=[\d(])", " - "),  # an en dash before a number is a minus ("97 – 12")
    (r"[–—…]", " ¬ "),
    (r"(?<=[\d)])\s?²", "^2"),
    (r"(?<=[\d)])\s?³", "^3"),
    (r"[²³]", ""),  # a unit's exponent (cm³)
    (r"\*\*", " "),
)
_TOKEN = re.compile(
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<op>[-+*/^])|(?P<lp>[(\[{])|(?P<rp>[)\]}])|(?P<pct>%)|(?P<eq>=)"
    r"|(?P<approx>≈)|(?P<boundary>¦|\n|[.:;!?](?=\s|$))|(?P<poison>§)"
    r"|(?P<word>[A-Za-z][A-Za-z0-9_']*)|(?P<space>[ \t\r\f\v]+)|(?P<other>.)"
)
_STOP = frozenset((
    "of", "and", "or", "is", "are", "was", "were", "be", "so", "then", "to", "for", "in", "on", "at", "by",
    "from", "with", "which", "that", "this", "the", "an", "we", "he", "she", "they", "it", "its", "if", "as",
    "equals", "gives", "makes", "each", "left", "more", "less", "than", "total", "now", "not", "no", "but",
    "because", "since", "when", "there", "will", "would", "can", "has", "have", "had", "do", "does", "get",
    "gets", "got", "need", "needs", "also", "both", "all", "his", "her", "their", "our", "your", "already",
    "up", "down", "out", "away", "back", "off", "over", "just", "only", "still", "very", "too", "into",
))  # fmt: skip
# Nouns that number things: "day 1 * 2 = ..." starts a claim with a label, not with the number 1.
_LABELS = frozenset((
    "day", "week", "month", "year", "step", "page", "part", "case", "option", "question", "problem",
    "chapter", "grade", "level", "row", "room", "table", "line", "item", "group", "team", "round", "game",
    "house", "number", "floor", "lane", "stage", "phase", "version", "box", "bag", "car", "bus", "no",
))  # fmt: skip
_WORD_OPS = {"times": "*", "plus": "+", "minus": "-"}
# Function names, and ordinal suffixes ("1st - 5 = 6th" is about positions, not numbers).
_FUNCTIONS = frozenset((
    "sqrt", "log", "ln", "sin", "cos", "tan", "exp", "mod", "pi", "lim", "max", "min", "floor", "ceil", "abs",
    "st", "nd", "rd", "th",
))  # fmt: skip
_ARTICLES = frozenset({"a", "A", "I"})


@dataclass(slots=True)
class _Tok:
    kind: Kind
    text: str
    space: bool  # whitespace before it
    units: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Claim:
    """``left = right`` as expression tokens, with the unit words each side carried."""

    left: tuple[str, ...]
    right: tuple[str, ...]
    left_units: frozenset[str] = frozenset()
    right_units: frozenset[str] = frozenset()
    source: Literal["text", "annotation"] = "text"

    @property
    def shown(self) -> str:
        return f"{''.join(self.left)} = {''.join(self.right)}"


@dataclass(frozen=True, slots=True)
class Mentions:
    """What a step's words say about its numbers: it approximates, talks percent, or scales (thousand)."""

    approximate: bool = False
    percent: bool = False
    scale: bool = False


def step_mentions(text: str) -> Mentions:
    return Mentions(
        approximate=bool(_APPROX_WORDS.search(text)),
        percent=bool(_PERCENT_WORDS.search(text)),
        scale=bool(_SCALE_WORDS.search(text)),
    )


def normalize(text: str) -> str:
    """LaTeX and Unicode to plain arithmetic text; ``¦`` marks math delimiters, ``§`` unknown commands."""
    for pattern, replacement in _ESCAPES:
        text = re.sub(pattern, replacement, text)
    for _ in range(4):
        text = _TEXT_CMD.sub(lambda m: f" {m.group(1)} ", text)
    text = _MIXED.sub(r"\1 § ", text)  # 3\frac{4}{5}: a mixed number or a product; never guessed
    for _ in range(4):
        text = _FRAC.sub(lambda m: f"(({m.group(1)})/({m.group(2)}))", text)
    text = _FRAC_DIGITS.sub(r"((\1)/(\2))", text)
    text = _SUBSCRIPT.sub(lambda m: "_" + re.sub(r"\W", "", m.group(1)), text)
    text = _SUPERSCRIPT.sub(r"^(\1)", text)
    text = _CURRENCY.sub("", text)
    for pattern, replacement in _REPLACEMENTS:
        text = re.sub(pattern, replacement, text)
    text = _UNIT_POWER.sub(r"\1", text)  # 80 cm^3: the exponent is the unit's, not the number's
    text = _BULLET.sub("", text)
    text = _RATIO.sub(" § ", text)
    return _TIMES_X.sub(" * ", text)


def tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    space = True
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "space":
            space = True
            continue
        value = match.group()
        previous = tokens[-1] if tokens else None
        if kind in ("approx", "other"):
            tokens.append(_Tok("break", value, space))
        elif _poisonous(kind, value, previous) or _glued_variable(kind, value, previous, space):
            tokens.append(_Tok("poison", value, space))
        else:
            tokens.append(_Tok(kind, value, space))  # type: ignore[arg-type]
        space = False
    return _functions_applied(tokens)


def _glued_variable(kind: str | None, value: str, previous: _Tok | None, space: bool) -> bool:
    """``2ab``: a word glued to the number before it that is no unit abbreviation is a variable."""
    return (
        kind == "word"
        and not space
        and previous is not None
        and previous.kind == "num"
        and value.lower() not in _GLUED_UNITS
    )


def _functions_applied(tokens: list[_Tok]) -> list[_Tok]:
    """A name applied to an argument (``f(3)``, ``f'(3)``, ``\\log_2(4)``) is a function: poison it, its
    subscript and primes, so ``2(4)`` or ``(3)`` is never left to be checked."""
    out = list(tokens)
    for i, tok in enumerate(out):
        if tok.kind == "word" and "'" in tok.text:
            out[i] = _Tok("poison", tok.text, tok.space)
        nxt = out[i + 1] if i + 1 < len(out) else None
        if tok.kind == "word" and nxt is not None and nxt.kind == "lp" and not nxt.space:
            out[i] = _Tok("poison", tok.text, tok.space)
        if tok.kind == "poison" and nxt is not None and nxt.text == "_":
            out[i + 1] = _Tok("poison", "_", nxt.space)
            after = out[i + 2] if i + 2 < len(out) else None
            if after is not None and after.kind in ("num", "word") and not after.space:
                out[i + 2] = _Tok("poison", after.text, after.space)
    return out


def _poisonous(kind: str | None, value: str, previous: _Tok | None) -> bool:
    """A token no claim may touch: a function or variable name, a clock time (0900), a stray dot."""
    if kind == "word":
        return value.lower() in _FUNCTIONS or "_" in value or any(c.isdigit() for c in value)
    if kind == "num":
        return re.match(r"0\d", value) is not None
    return kind == "boundary" and previous is not None and previous.kind == "op"


def _is_unit(tok: _Tok) -> bool:
    return tok.kind == "word" and len(tok.text) >= 2 and tok.text.lower() not in _STOP


def _singular(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _rewrite(tokens: list[_Tok]) -> list[_Tok]:
    """Drop word-only parentheticals, turn word operators into operators, fold unit phrases."""
    out: list[_Tok] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "lp":  # "(initially invited)", "(from step 2)": a comment
            j = i + 1
            while (
                j < len(tokens) and tokens[j].kind in ("word", "num", "boundary") and tokens[j].text != "\n"
            ):
                j += 1
            inner = tokens[i + 1 : j]
            inner_words = [t for t in inner if t.kind == "word"]
            closed = j < len(tokens) and tokens[j].kind == "rp"
            if closed and inner and inner[0].kind == "word" and all(len(t.text) >= 2 for t in inner_words):
                touching = not tok.space and bool(out) and out[-1].kind in ("num", "rp")
                if touching:  # ".1(Number of Minutes)": a product with a quantity, not a comment
                    out.append(_Tok("poison", "(...)", False))
                i = j + 1
                continue
        prev = out[-1] if out else None
        operand_before = prev is not None and prev.kind in ("num", "rp", "pct", "unit")
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        operand_after = nxt is not None and nxt.kind in ("num", "lp")
        if tok.kind == "word" and operand_before and operand_after and tok.text.lower() in _WORD_OPS:
            out.append(_Tok("op", _WORD_OPS[tok.text.lower()], True))
        elif tok.kind == "word" and tok.text.lower() == "of" and operand_after and _fraction_or_percent(out):
            out.append(_Tok("op", "*", True))
        elif operand_before and tok.kind in ("word", "op") and prev is not None and prev.kind != "unit":
            words, j = _unit_phrase(tokens, i)
            if words:
                out.append(_Tok("unit", " ".join(words), tok.space, tuple(_singular(w) for w in words)))
                i = j
                continue
            out.append(tok)
        else:
            out.append(tok)
        i += 1
    return out


def _fraction_or_percent(out: Sequence[_Tok]) -> bool:
    if out and out[-1].kind == "pct":
        return True
    return len(out) >= 3 and [t.kind for t in out[-3:]] == ["num", "op", "num"] and out[-2].text == "/"


def _unit_phrase(tokens: Sequence[_Tok], i: int) -> tuple[list[str], int]:
    """Up to two unit words from ``tokens[i]``, joined by ``/`` or ``per`` (``pounds/book``)."""
    words: list[str] = []
    j = i
    while j < len(tokens) and len(words) < 2:
        tok = tokens[j]
        joiner = (tok.kind == "op" and tok.text == "/") or (tok.kind == "word" and tok.text.lower() == "per")
        if joiner and j + 1 < len(tokens) and _is_unit(tokens[j + 1]):
            words.append(tokens[j + 1].text)
            j += 2
        elif _is_unit(tok) and tok.text.lower() not in _WORD_OPS:
            words.append(tok.text)
            j += 1
        else:
            break
    return words, j


_EXPR = frozenset({"num", "op", "lp", "rp", "pct", "unit"})
_OPERAND_END = frozenset({"num", "rp", "pct", "unit"})


def _split(tokens: Sequence[_Tok]) -> list[list[_Tok] | _Tok]:
    """Maximal runs of expression tokens, and every other token on its own.

    A math delimiter next to an operator is dropped (``20 \\(\\times\\) 2``), and a
    parenthesis after a space ends a run (``$0.20 (20 cents)`` is not a product).
    """
    items: list[list[_Tok] | _Tok] = []
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        last = items[-1] if items else None
        if tok.text == "¦" and (
            (isinstance(last, list) and last[-1].kind == "op") or (nxt is not None and nxt.kind == "op")
        ):
            continue
        if tok.kind not in _EXPR:
            items.append(tok)
        elif isinstance(last, list) and not (
            tok.kind == "lp" and tok.space and last[-1].kind in _OPERAND_END
        ):
            last.append(tok)
        else:
            items.append([tok])
    return items


def _trim(run: list[_Tok], *, left: bool, right: bool) -> list[_Tok]:
    """Drop a chain's unmatched outer parentheses: leading ``(`` of its first operand, ``)`` of its last."""
    run = list(run)
    while left and run and run[0].kind == "lp" and _depth(run) > 0:
        run = run[1:]
    while right and run and run[-1].kind == "rp" and _depth(run) < 0:
        run = run[:-1]
    return run


def _depth(run: Sequence[_Tok]) -> int:
    return sum(t.kind == "lp" for t in run) - sum(t.kind == "rp" for t in run)


def _tainted(neighbour: _Tok | None, *, touching: bool) -> bool:
    """Whether a token beside an operand makes it doubtful (a variable, a function, unknown LaTeX)."""
    if neighbour is None:
        return False
    if neighbour.kind == "poison":
        return True
    if neighbour.kind != "word":
        return False
    if len(neighbour.text) == 1:
        return neighbour.text not in _ARTICLES or touching
    return touching and not neighbour.text.islower()


def _operand(
    run: list[_Tok], before: _Tok | None, after: _Tok | None
) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """A run's expression tokens and units, or None when it is doubtful."""
    if not run or not any(t.kind == "num" for t in run):
        return None
    if run[0].kind == "op" and not (run[0].text == "-" and len(run) > 1 and not run[1].space):
        return None  # cut off: "x + 4"
    if run[-1].kind == "op" or run[0].kind == "unit":
        return None
    if _tainted(before, touching=not run[0].space) or _tainted(
        after, touching=after is not None and not after.space
    ):
        return None
    units = frozenset(u for t in run if t.kind == "unit" for u in t.units)
    return tuple(
        t.text.replace(",", "") if t.kind == "num" else t.text for t in run if t.kind != "unit"
    ), units


def _chain_claims(items: Sequence[list[_Tok] | _Tok], start: int) -> tuple[list[Claim], int]:
    """Claims of the chain whose first operand is ``items[start]``, and the index after it."""
    k = start
    operands: list[tuple[tuple[str, ...], frozenset[str]] | None] = []
    while True:
        run = items[k]
        assert isinstance(run, list)
        is_first = k == start
        has_next = k + 2 < len(items) and _is_eq(items[k + 1]) and isinstance(items[k + 2], list)
        run = _trim(run, left=is_first, right=not has_next)
        after = items[k + 1] if k + 1 < len(items) and not has_next else None
        tok_after = after if isinstance(after, _Tok) else None
        operand = None
        if not is_first:
            operand = _operand(run, None, tok_after)
        elif not _mid_phrase(run, items[k - 1] if k > 0 else None, items[k - 2] if k > 1 else None):
            before = items[k - 1] if k > 0 else None
            operand = _operand(run, before if isinstance(before, _Tok) else None, tok_after)
        operands.append(operand)
        if not has_next:
            break
        k += 2
    claims = []
    for a, b in itertools.pairwise(operands):
        if a is not None and b is not None:
            claims.append(Claim(a[0], b[0], a[1], b[1]))
    return claims, k + 1


def _is_eq(item: list[_Tok] | _Tok) -> bool:
    return not isinstance(item, list) and item.kind == "eq"


def _mid_phrase(
    run: Sequence[_Tok], before: list[_Tok] | _Tok | None, before2: list[_Tok] | _Tok | None
) -> bool:
    """Whether a chain's first operand may start inside a phrase, so its first number is not its own.

    ``2 (3+4) = 14`` (a number right before), ``Week 2 = 35`` and ``in 5 years = 51``
    (a bare number after a word), ``day 1 * 2 = 20`` (after a counting noun),
    ``1 and 1/4 = 1.25`` (a mixed number), ``14, 400 / 80`` (a spaced thousands
    separator), ``Weeks 1-2 = ...`` (a range); and a bare number with a unit, which
    names a quantity or converts it (``8 batches = 5.5 * 8``, ``20 gallons = 160 pints``).
    """
    values = [t for t in run if t.kind not in ("unit", "pct")]
    bare = len(values) == 1 or (len(values) == 2 and values[0].text == "-")
    if bare and any(t.kind == "unit" for t in run):  # "20 gallons = 160 pints", "8 batches = 5.5 * 8"
        return True
    if before is None:
        return False
    if isinstance(before, list):
        return True
    if bare and before.kind != "boundary":
        return True
    word = before.text.lower()
    if before.kind == "word" and (word in _LABELS or word.removesuffix("s") in _LABELS):
        return True
    if before.text in (",", "and") and isinstance(before2, list):
        return True
    tight_range = [t.kind for t in values] == ["num", "op", "num"] and values[1].text == "-"
    return tight_range and not values[1].space and not values[2].space and before.kind == "word"


def extract_claims(text: str) -> list[Claim]:
    """Every equality ``text`` claims: calculator annotations first, then ``=`` chains."""
    text = text[:MAX_TEXT_CHARS]
    claims: list[Claim] = []
    for match in _ANNOTATION.finditer(text):
        left, right = (tuple(t.text.replace(",", "") for t in tokenize(normalize(s))) for s in match.groups())
        claims.append(Claim(left, right, source="annotation"))
    items = _split(_rewrite(tokenize(normalize(_ANNOTATION.sub(" ", text)))))
    k = 0
    while k < len(items):
        if isinstance(items[k], list) and k + 2 < len(items) and _is_eq(items[k + 1]):
            found, k = _chain_claims(items, k)
            claims.extend(found)
        else:
            k += 1
    return claims
