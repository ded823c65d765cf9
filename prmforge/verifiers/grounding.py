"""Where a step's numbers come from: an operand no earlier text derived (number grounding).

A sound solution computes with the numbers its problem states and the results it has derived; an
operand that appears in neither was taken from nowhere the reader can see: a hallucinated value, a
computation done silently, or a *silent self-correction* (a step that uses the right value after an
earlier step claimed a wrong one, so the final answer comes out right and the outcome hides the error).

:func:`ungrounded_operands` lists, per step, the operands of its claimed equalities
(:func:`~prmforge.verifiers.equation_text.extract_claims`: ``<<48/2=24>>`` and ``=`` chains) that are

- not a number of the question (digits, ``1,000``, decimals, and number words: ``three``, ``twice``,
  ``half``, ``a fifth``, ``dozen``...),
- not a result claimed before them (the right side of an earlier claim of this step or of an earlier
  step, a fraction ``17/3`` as a whole too),
- not a number an earlier step's text states (``"There are 7 days in a week"``), unless ``strict``,
- not one of ``constants`` (default :data:`CONSTANTS`: 0, 1, 2, 10, 12, 24, 60, 100, 1000: unit
  conversions and percentages that solutions write without stating).

Signs are ignored (``(-9)+2`` uses 9). This is evidence, not a verdict: an ungrounded operand says
some step at or before it is suspect, never which one; the cascade spends Monte Carlo rollouts on the
rollout to locate the error (SCAN's ``suspect: ungrounded``), and a correct outcome with no drop
in value keeps the rollout clean. Pure functions, no I/O.

>>> q = "Pablo has 9 pencils. Emma has twice as many pencils as Pablo."
>>> ungrounded_operands(q, ["Emma has 9*2 = <<9*2=18>>18 pencils.", "Ava has 18-9 = <<18-9=9>>9.",
...                         "Wei has 15+18 = <<15+18=33>>33 pencils."])
[(), (), (Fraction(15, 1),)]
>>> first_ungrounded(q, ["Emma has 9*2 = <<9*2=18>>18 pencils."]) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from fractions import Fraction

from prmforge.verifiers.equation_text import extract_claims
from prmforge.verifiers.equation_tokens import NUMBER

__all__ = ["CONSTANTS", "first_ungrounded", "question_numbers", "text_numbers", "ungrounded_operands"]

CONSTANTS: frozenset[Fraction] = frozenset(Fraction(n) for n in (0, 1, 2, 10, 12, 24, 60, 100, 1000))

_NUMBER = re.compile(NUMBER)  # read as the equation checker's tokenizer reads numbers
_UNITS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
_TENS = ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_WORDS: dict[str, int] = {
    **{w: i for i, w in enumerate(_UNITS)},
    **{w: 30 + 10 * i for i, w in enumerate(_TENS)},
    "hundred": 100, "thousand": 1000, "million": 1_000_000, "dozen": 12, "score": 20,
    "twice": 2, "double": 2, "doubles": 2, "half": 2, "halves": 2, "pair": 2, "pairs": 2,
    "triple": 3, "triples": 3, "thrice": 3, "third": 3, "thirds": 3,
    "quadruple": 4, "quarter": 4, "quarters": 4, "fourth": 4, "fourths": 4,
    "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
    "fifths": 5, "sixths": 6, "sevenths": 7, "eighths": 8, "ninths": 9, "tenths": 10,
}  # fmt: skip
_WORD = re.compile(r"[A-Za-z]+")


def _value(token: str) -> Fraction | None:
    try:
        return abs(Fraction(token.replace(",", "")))
    except (ValueError, ZeroDivisionError):
        return None


def text_numbers(text: str) -> set[Fraction]:
    """The numbers ``text`` writes in digits (``1,000``, ``2.5``), as absolute values."""
    return {v for m in _NUMBER.finditer(text) if (v := _value(m.group())) is not None}


def question_numbers(question: str) -> set[Fraction]:
    """The numbers a question states, in digits or in words (``three``, ``twice``, ``a fifth``)."""
    found = text_numbers(question)
    found.update(Fraction(_WORDS[w.lower()]) for w in _WORD.findall(question) if w.lower() in _WORDS)
    return found


def _results(right: Sequence[str]) -> set[Fraction]:
    """The values a claim's right side states: each number, and ``a/b`` as a whole."""
    out = {v for t in right if (v := _value(t)) is not None}
    numbers = [t for t in right if t not in ("-", "(", ")")]
    if len(numbers) == 3 and numbers[1] == "/":
        a, b = _value(numbers[0]), _value(numbers[2])
        if a is not None and b:
            out.add(a / b)
    return out


def ungrounded_operands(
    question: str,
    steps: Sequence[str],
    *,
    constants: Collection[Fraction] = CONSTANTS,
    strict: bool = False,
) -> list[tuple[Fraction, ...]]:
    """Per step, the operands of its claims that nothing before them grounds (in order, each once)."""
    known = question_numbers(question) | set(constants)
    out: list[tuple[Fraction, ...]] = []
    for text in steps:
        missing: list[Fraction] = []
        for claim in extract_claims(text):
            for token in claim.left:
                value = _value(token)
                if value is not None and value not in known and value not in missing:
                    missing.append(value)
            known |= _results(claim.right)
        out.append(tuple(missing))
        if not strict:
            known |= text_numbers(text)
    return out


def first_ungrounded(
    question: str,
    steps: Sequence[str],
    *,
    constants: Collection[Fraction] = CONSTANTS,
    strict: bool = False,
) -> int | None:
    """The first step with an ungrounded operand (:func:`ungrounded_operands`), or None."""
    found = ungrounded_operands(question, steps, constants=constants, strict=strict)
    return next((i for i, missing in enumerate(found) if missing), None)
