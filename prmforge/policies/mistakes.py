"""The simulated policy's mistakes: a slip, a wrong operand or a wrong operation in one calc.

:func:`make_mistake` turns a calc (its tokens, the values it is filled from and
its right value) into a wrong ``(filled expression, value)``. Every random
choice is drawn from the ``rng`` it is given, in a fixed order, so a completion
stays a pure function of its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from fractions import Fraction

from prmforge.policies.exact import Num, Values, normal, operand_text
from prmforge.suites.plan import ExprError, evaluate

__all__ = ["make_mistake"]

_OPERATORS = "+-*/"
_OPERATOR_SET = frozenset(_OPERATORS)
_MUTATION_TRIES = 12
_KINDS = ("slip", "operand", "operation")


class _Pool:
    """``[*numbers, *values[:g]]`` without the copy: the operands a wrong-operand mistake draws from."""

    __slots__ = ("_g", "_numbers", "_values")

    def __init__(self, numbers: Sequence[Fraction], values: Values, g: int) -> None:
        self._numbers, self._values, self._g = numbers, values, g

    def __len__(self) -> int:
        return len(self._numbers) + self._g

    def __getitem__(self, index: int) -> Num:
        count = len(self._numbers)
        return self._numbers[index] if index < count else self._values[index - count]


def make_mistake(
    tokens: Sequence[str | int],
    source: Values,
    value: Num,
    g: int,
    numbers: Sequence[Fraction],
    weights: Sequence[float],
    rng: random.Random,
) -> tuple[str, Num, int]:
    """A wrong version of calc ``g``: ``(filled expression, value, expressions evaluated)``.

    ``tokens`` are the calc's tokens with each reference as its calc index,
    ``source`` the values it is filled from, ``value`` its right value over
    them; ``numbers`` are the problem's literals and ``weights`` those of
    slips, wrong operands and wrong operations. The wrong value always differs
    from the right one.
    """
    filled = [tok if isinstance(tok, str) else operand_text(source[tok]) for tok in tokens]
    evaluations = 0
    if all(isinstance(tok, str) or type(source[tok]) is int for tok in tokens):
        right: Num = value  # integer operands read back from the filled text exactly
    else:  # the value of the text as written (a long decimal operand reads back through a float literal)
        right = normal(evaluate("".join(filled)))
        evaluations += 1
    kind = rng.choices(_KINDS, weights=weights)[0]
    found, tries = None, 0
    pool = _Pool(numbers, source, g)
    if kind == "operand" and len(pool):
        pick: Callable[[str], str] = lambda _: operand_text(rng.choice(pool))  # noqa: E731
        found, tries = _vary(filled, _operand_positions(filled), pick, right, rng)
    elif kind == "operation":
        swap: Callable[[str], str] = lambda op: rng.choice(_OPERATORS.replace(op, ""))  # noqa: E731
        found, tries = _vary(filled, _operator_positions(filled), swap, right, rng)
    if found is not None:
        return found[0], found[1], evaluations + tries
    return "".join(filled), _slip(right, rng), evaluations + tries


def _operand_positions(tokens: Sequence[str]) -> list[int]:
    """Numbers (and filled references, which may be parenthesised like ``(7/2)``)."""
    return [i for i, tok in enumerate(tokens) if tok not in _OPERATOR_SET and tok not in ("(", ")")]


def _operator_positions(tokens: Sequence[str]) -> list[int]:
    """Binary operators: an operator right after an operand or a closing parenthesis."""
    return [
        i
        for i in range(1, len(tokens))
        if tokens[i] in _OPERATOR_SET and tokens[i - 1] not in _OPERATOR_SET and tokens[i - 1] != "("
    ]


def _acceptable(value: Num, right: Num) -> bool:
    if value == right:
        return False
    if right.denominator == 1 and value.denominator != 1:
        return False
    return not (right > 0 and value <= 0)


def _vary(
    tokens: list[str],
    positions: list[int],
    replace: Callable[[str], str],
    right: Num,
    rng: random.Random,
) -> tuple[tuple[str, Num] | None, int]:
    """Replace the token at a random position until the value changes acceptably (or give up):
    ``(filled expression and value, or None; expressions evaluated)``."""
    if not positions:
        return None, 0
    for tries in range(1, _MUTATION_TRIES + 1):
        i = rng.choice(positions)
        changed = [*tokens[:i], replace(tokens[i]), *tokens[i + 1 :]]
        text = "".join(changed)
        try:
            value = normal(evaluate(text))
        except ExprError:
            continue
        if _acceptable(value, right):
            return (text, value), tries
    return None, _MUTATION_TRIES


def _slip(right: Num, rng: random.Random) -> Num:
    """A plausible wrong result: off by one, two or ten, a factor of ten, or two digits swapped."""
    options: list[Num] = [right + 1, right - 1, right + 2, right - 2, right + 10, right - 10, right * 10]
    if type(right) is int:
        digits = str(right)
        if len(digits.lstrip("-")) >= 2:
            options.append(int(digits[:-2] + digits[-1] + digits[-2]))
        if right % 10 == 0:
            options.append(right // 10)
    good = [v for v in options if _acceptable(v, right)]
    return normal(rng.choice(good)) if good else right + 1
