"""Reading the equalities a math step claims: tokens, unit phrases and ``=`` chains.

:func:`extract_claims` returns one :class:`Claim` per adjacent pair of a chain
``a = b = c`` and per GSM8K annotation ``<<expr=value>>``. The text is first
split into prose and math and normalised by :mod:`prmforge.verifiers.equation_latex`.
A claim's sides are token tuples over numbers, ``+ - * / ^``, parentheses,
``%``, variables (only from math: ``x``, ``a_1``) and the functions ``sqrt``,
``root``, ``binom``, ``floor``, ``ceil``, ``!`` and the constant ``pi``; unit words
met inside a side (``2 books * 3 pounds/book``) are removed and kept as the
side's unit set. The rules that keep a doubtful operand out (prose letters,
functions, labels, cut chains) are listed in :mod:`prmforge.verifiers.equations`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prmforge.verifiers.equation_latex import normalize_prose, pieces
from prmforge.verifiers.equation_lexicon import ARTICLES, LABELS, STOP, WORD_OPS
from prmforge.verifiers.equation_tokens import OPERATOR_LIKE, Tok, tokenize

__all__ = ["Claim", "extract_claims"]

MAX_TEXT_CHARS = 20000

_ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>=]*)>>")


@dataclass(frozen=True, slots=True)
class Claim:
    """``left = right`` as expression tokens, with the unit words each side carried.

    ``chain`` numbers the ``=`` chain the claim belongs to within its step (-1 for a calculator
    annotation) and ``link`` its place in that chain (0 for ``a = b`` of ``a = b = c``);
    ``math`` says whether it was read inside a math span, where letters are variables.
    """

    left: tuple[str, ...]
    right: tuple[str, ...]
    left_units: frozenset[str] = frozenset()
    right_units: frozenset[str] = frozenset()
    source: Literal["text", "annotation"] = "text"
    chain: int = -1
    link: int = 0
    math: bool = False

    @property
    def shown(self) -> str:
        return f"{''.join(self.left)} = {''.join(self.right)}"


def _is_unit(tok: Tok) -> bool:
    return tok.kind == "word" and len(tok.text) >= 2 and tok.text.lower() not in STOP


def _singular(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _rewrite(tokens: list[Tok]) -> list[Tok]:
    """Drop word-only parentheticals, turn word operators into operators, fold unit phrases."""
    out: list[Tok] = []
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
                    out.append(Tok("poison", "(...)", False))
                i = j + 1
                continue
        prev = out[-1] if out else None
        operand_before = prev is not None and prev.kind in ("num", "rp", "pct", "unit")
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        operand_after = nxt is not None and nxt.kind in ("num", "lp")
        if tok.kind == "word" and operand_before and operand_after and tok.text.lower() in WORD_OPS:
            out.append(Tok("op", WORD_OPS[tok.text.lower()], True, math=tok.math))
        elif tok.kind == "word" and tok.text.lower() == "of" and operand_after and _fraction_or_percent(out):
            if out[-1].text == "¦":  # "$20\%$ of 50": the percentage closed a math span
                out.pop()
            out.append(Tok("op", "*", True, math=tok.math))
        elif operand_before and tok.kind in ("word", "op") and prev is not None and prev.kind != "unit":
            words, j = _unit_phrase(tokens, i)
            if words:
                units = tuple(_singular(w) for w in words)
                out.append(Tok("unit", " ".join(words), tok.space, units, math=tok.math))
                i = j
                continue
            out.append(tok)
        else:
            out.append(tok)
        i += 1
    return out


def _fraction_or_percent(out: Sequence[Tok]) -> bool:
    if out and out[-1].text == "¦":
        out = out[:-1]
    if out and out[-1].kind == "pct":
        return True
    return len(out) >= 3 and [t.kind for t in out[-3:]] == ["num", "op", "num"] and out[-2].text == "/"


def _unit_phrase(tokens: Sequence[Tok], i: int) -> tuple[list[str], int]:
    """Up to two unit words from ``tokens[i]``, joined by ``/`` or ``per`` (``pounds/book``)."""
    words: list[str] = []
    j = i
    while j < len(tokens) and len(words) < 2:
        tok = tokens[j]
        joiner = (tok.kind == "op" and tok.text == "/") or (tok.kind == "word" and tok.text.lower() == "per")
        if joiner and j + 1 < len(tokens) and _is_unit(tokens[j + 1]):
            words.append(tokens[j + 1].text)
            j += 2
        elif _is_unit(tok) and tok.text.lower() not in WORD_OPS:
            words.append(tok.text)
            j += 1
        else:
            break
    return words, j


_EXPR = frozenset({"num", "op", "lp", "rp", "pct", "unit", "var", "fn"})
_OPERAND_END = frozenset({"num", "rp", "pct", "unit", "var"})
_VALUE = frozenset({"num", "var", "fn"})


def _comment_group(tokens: Sequence[Tok], i: int) -> bool:
    """Whether the group opened at ``tokens[i]`` is a quantity with a unit (``(20 cents)``), not a factor."""
    depth = 0
    for tok in tokens[i:]:
        depth += tok.kind == "lp"
        depth -= tok.kind == "rp"
        if tok.kind == "unit":
            return True
        if depth == 0 or tok.kind not in _EXPR:
            return False
    return False


def _split(tokens: Sequence[Tok]) -> list[list[Tok] | Tok]:
    """Maximal runs of expression tokens, and every other token on its own.

    A math delimiter next to an operator is dropped (``20 \\(\\times\\) 2``), and a
    parenthesis after a space ends a run (``$0.20 (20 cents)`` is not a product); in
    math only a group holding a unit does (``68 (1 + k)`` is a product there).
    """
    items: list[list[Tok] | Tok] = []
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        last = items[-1] if items else None
        if tok.text == "¦" and (
            (isinstance(last, list) and last[-1].kind == "op") or (nxt is not None and nxt.kind == "op")
        ):
            continue
        spaced_group = (
            tok.kind == "lp"
            and tok.space
            and isinstance(last, list)
            and last[-1].kind in _OPERAND_END
            and (not tok.math or _comment_group(tokens, i))
        )
        if tok.kind not in _EXPR:
            items.append(tok)
        elif isinstance(last, list) and not spaced_group:
            last.append(tok)
        else:
            items.append([tok])
    return items


def _trim(run: list[Tok], *, left: bool, right: bool) -> list[Tok]:
    """Drop a chain's unmatched outer parentheses: leading ``(`` of its first operand, ``)`` of its last."""
    run = list(run)
    while left and run and run[0].kind == "lp" and _depth(run) > 0:
        run = run[1:]
    while right and run and run[-1].kind == "rp" and _depth(run) < 0:
        run = run[:-1]
    return run


def _depth(run: Sequence[Tok]) -> int:
    return sum(t.kind == "lp" for t in run) - sum(t.kind == "rp" for t in run)


def _tainted(neighbour: Tok | None, *, touching: bool) -> bool:
    """Whether a token beside an operand makes it doubtful (a variable, a function, unknown LaTeX)."""
    if neighbour is None:
        return False
    if neighbour.kind == "poison" or (neighbour.kind == "break" and neighbour.text in OPERATOR_LIKE):
        return True
    if neighbour.kind != "word":
        return False
    if len(neighbour.text) == 1:
        return neighbour.text not in ARTICLES or touching
    return touching and not neighbour.text.islower()


Operand = tuple[tuple[str, ...], frozenset[str]]


def _operand(run: list[Tok], before: Tok | None, after: Tok | None) -> Operand | None:
    """A run's expression tokens and units, or None when it is doubtful."""
    if not run or not any(t.kind in _VALUE for t in run):
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


def _chain_claims(items: Sequence[list[Tok] | Tok], start: int, chain: int) -> tuple[list[Claim], int]:
    """Claims of the chain whose first operand is ``items[start]``, and the index after it."""
    k = start
    operands: list[Operand | None] = []
    math = False
    while True:
        run = items[k]
        assert isinstance(run, list)
        math = math or any(t.math for t in run)
        is_first = k == start
        has_next = k + 2 < len(items) and _is_eq(items[k + 1]) and isinstance(items[k + 2], list)
        run = _trim(run, left=is_first, right=not has_next)
        after = items[k + 1] if k + 1 < len(items) and not has_next else None
        tok_after = after if isinstance(after, Tok) else None
        operand = None
        if not is_first:
            operand = _operand(run, None, tok_after)
        elif not _mid_phrase(run, items[k - 1] if k > 0 else None, items[k - 2] if k > 1 else None):
            before = items[k - 1] if k > 0 else None
            operand = _operand(run, before if isinstance(before, Tok) else None, tok_after)
        operands.append(operand)
        if not has_next:
            break
        k += 2
    claims = []
    for link, (a, b) in enumerate(itertools.pairwise(operands)):
        if a is not None and b is not None:
            claims.append(Claim(a[0], b[0], a[1], b[1], chain=chain, link=link, math=math))
    return claims, k + 1


def _is_eq(item: list[Tok] | Tok) -> bool:
    return not isinstance(item, list) and item.kind == "eq"


def _mid_phrase(run: Sequence[Tok], before: list[Tok] | Tok | None, before2: list[Tok] | Tok | None) -> bool:
    """Whether a chain's first operand may start inside a phrase, so its first number is not its own.

    ``2 (3+4) = 14`` (a number right before), ``Week 2 = 35`` and ``in 5 years = 51``
    (a bare number after a word), ``day 1 * 2 = 20`` (after a counting noun),
    ``1 and 1/4 = 1.25`` (a mixed number), ``14, 400 / 80`` (a spaced thousands
    separator), ``Weeks 1-2 = ...`` (a range), ``a @ b = ...`` (after an unknown
    operator); and a bare number with a unit, which names a quantity or converts it
    (``8 batches = 5.5 * 8``, ``20 gallons = 160 pints``).
    """
    values = [t for t in run if t.kind not in ("unit", "pct")]
    bare = len(values) == 1 or (len(values) == 2 and values[0].text == "-")
    if bare and any(t.kind == "unit" for t in run):  # "20 gallons = 160 pints", "8 batches = 5.5 * 8"
        return True
    if before is None:
        return False
    if isinstance(before, list):
        return True
    if before.kind == "break" and before.text in OPERATOR_LIKE:
        return True
    lone_variable = bare and values[-1].kind == "var"  # "\Rightarrow p = 9": a variable names itself
    if bare and before.kind != "boundary" and (before.kind == "word" or not lone_variable):
        return True
    word = before.text.lower()
    if before.kind == "word" and (word in LABELS or word.removesuffix("s") in LABELS):
        return True
    if before.text in (",", "and") and isinstance(before2, list):
        return True
    tight_range = [t.kind for t in values] == ["num", "op", "num"] and values[1].text == "-"
    return tight_range and not values[1].space and not values[2].space and before.kind == "word"


def _step_tokens(text: str) -> list[Tok]:
    tokens: list[Tok] = []
    for is_math, piece in pieces(text):
        if is_math:
            tokens.append(Tok("boundary", "¦", True))
        tokens.extend(tokenize(piece, math=is_math))
        if is_math:
            tokens.append(Tok("boundary", "¦", True))
    return tokens


def extract_claims(text: str) -> list[Claim]:
    """Every equality ``text`` claims: calculator annotations first, then ``=`` chains."""
    text = text[:MAX_TEXT_CHARS]
    claims: list[Claim] = []
    for match in _ANNOTATION.finditer(text):
        left, right = (
            tuple(t.text.replace(",", "") for t in tokenize(normalize_prose(s))) for s in match.groups()
        )
        claims.append(Claim(left, right, source="annotation"))
    items = _split(_rewrite(_step_tokens(_ANNOTATION.sub(" ", text))))
    k = chain = 0
    while k < len(items):
        if isinstance(items[k], list) and k + 2 < len(items) and _is_eq(items[k + 1]):
            found, k = _chain_claims(items, k, chain)
            claims.extend(found)
            chain += 1
        else:
            k += 1
    return claims
