"""Deciding one claim: exact rational arithmetic first, sympy when that cannot (the rules of
:mod:`prmforge.verifiers.equations` and :mod:`prmforge.verifiers.equation_symbolic`)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from prmforge.verifiers.equation_cues import Mentions
from prmforge.verifiers.equation_exact import EvalError, NotRational, Value, evaluate
from prmforge.verifiers.equation_grammar import Ambiguous, GrammarError, Node, is_variable, parse, variables
from prmforge.verifiers.equation_symbolic import (
    LinkContext,
    Outcome,
    assignments,
    decide,
    request_facts,
    rewriting_shape,
)
from prmforge.verifiers.equation_text import Claim

__all__ = ["ClaimContext", "ClaimResult", "check_claim", "step_contexts"]

APPROX_RELATIVE = Fraction(5, 100)
WIDEN_PLACES = 3
MAX_VALUE = 10**300
MAX_PAIRS = 6
MAX_SYMBOLIC_EXPONENT = 64
# Factors between units (and scales) a correct step may convert by: 2 hours = 120 minutes, 1 dozen = 12.
CONVERSIONS = frozenset(
    {Fraction(10) ** k for k in range(1, 10)}
    | {Fraction(n) for n in (7, 12, 16, 24, 30, 36, 52, 60, 144, 168, 365, 1440, 3600, 5280, 86400)}
    | {Fraction(v) for v in ("1.6", "1.609", "2.2", "2.54", "3.28", "3.785", "28.35", "0.9144")}
)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """How one claim fared: ``holds``, ``false`` (a FAIL), or a reason it cannot be decided.

    ``identity``: it holds for every value of its variables (a rewriting the next link continues).
    """

    claim: Claim
    outcome: Outcome
    detail: str = ""
    identity: bool = False
    left_value: float | None = None  # the left side's value, for a false claim about numbers


@dataclass(frozen=True, slots=True)
class ClaimContext:
    """What the rest of its step says about a claim: values its variables were given, and more."""

    subs: Mapping[str, Node] = field(default_factory=dict)
    previous_identity: bool = False
    side_reused: bool = False

    def with_previous_identity(self, previous: bool) -> ClaimContext:
        return replace(self, previous_identity=previous)


# ----------------------------------------------------------------------------- exact arithmetic


def _places(tokens: Sequence[str]) -> int:
    """Literals of ``WIDEN_PLACES`` or more decimals count as possibly rounded; in a product or
    quotient, where rounding is magnified, so do those of one fewer (``0.33 * 900``). Two-decimal
    amounts in a sum (money) stay exact."""
    return WIDEN_PLACES - 1 if any(t in ("*", "/", "^") for t in tokens) else WIDEN_PLACES


def _value(tree: Node, tokens: Sequence[str], *, percent: bool, widen: bool) -> Value:
    value = evaluate(tree, percent=percent, widen=_places(tokens) if widen else None)
    if abs(value.exact.numerator) > MAX_VALUE or value.exact.denominator > MAX_VALUE:
        raise EvalError("value too large to check")
    return value


def _bare_places(tokens: Sequence[str]) -> int | None:
    """Decimal places of a side that is one number (with ``%``); None for an expression."""
    body = [t for t in tokens if t != "%"]
    if len(body) != 1 or not (body[0][0].isdigit() or body[0][0] == "."):
        return None
    return len(body[0].partition(".")[2])


def _representable(value: Fraction, places: int) -> bool:
    return bool((value * 10**places).denominator == 1)


def _overlap(a: Value, b: Value, b_places: int | None) -> bool:
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
        depth += token in ("(", "[", "{")
        depth -= token in (")", "]", "}")
        if depth == 0 and i > 0 and token in ("+", "-", "*", "/"):
            return tuple(tokens[:i])
    return None


def _regrouped(tokens: tuple[str, ...]) -> list[tuple[str, ...]]:
    """``a / b / c`` also read as ``a / (b / c)`` (``25 / 1/3 = 75``), the other grouping."""
    for i in range(len(tokens) - 3):
        if tokens[i] == "/" and tokens[i + 2] == "/" and tokens[i + 1][0].isdigit():
            return [(*tokens[: i + 1], "(", *tokens[i + 1 : i + 4], ")", *tokens[i + 4 :])]
    return []


def _show(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    decimal = f"{float(value):.6g}"
    return f"{value.numerator}/{value.denominator} (~{decimal})"


Side = tuple[tuple[str, ...], Node]


def _rational(claim: Claim, lefts: list[Side], rights: list[Side], mentions: Mentions) -> ClaimResult:
    """The exact verdict on a claim whose every reading is rational (raises NotRational otherwise)."""
    readings = (True, False) if "%" in (*claim.left, *claim.right) else (False,)
    approx = False
    exact_pair: tuple[Fraction, Fraction] | None = None
    for percent in readings:
        for (left, lt), (right, rt) in itertools.product(lefts, rights):
            a = _value(lt, left, percent=percent, widen=False)
            b = _value(rt, right, percent=percent, widen=False)
            if a.exact == b.exact:
                return ClaimResult(claim, "holds")
            exact_pair = exact_pair or (a.exact, b.exact)
            left_places, right_places = _bare_places(left), _bare_places(right)
            wa = _value(lt, left, percent=percent, widen=left_places is None)
            wb = _value(rt, right, percent=percent, widen=right_places is None)
            approx = approx or _overlap(wa, wb, right_places) or _overlap(wb, wa, left_places)
    assert exact_pair is not None
    x, y = exact_pair
    ratio = max(abs(x), abs(y)) / min(abs(x), abs(y)) if x and y else None
    if approx:
        return ClaimResult(claim, "approx", "true up to the rounding of its decimals")
    if len(lefts) + len(rights) > 2 + (_lead(claim.right) is not None):
        return ClaimResult(claim, "ambiguous", "a double division reads two ways, neither holds")
    if claim.left_units and claim.right_units and claim.left_units != claim.right_units:
        return ClaimResult(claim, "units", "the sides are in different units")
    if ratio in CONVERSIONS and (claim.left_units != claim.right_units or mentions.scale):
        return ClaimResult(claim, "units", f"off by {_show(ratio)}, a unit or scale conversion")
    if ratio is not None and mentions.percent and abs(ratio - 100) <= 1:
        return ClaimResult(claim, "approx", "off by the percent factor 100")
    if mentions.approximate and y != 0 and abs((x - y) / y) <= APPROX_RELATIVE:
        return ClaimResult(claim, "approx", "within 5% in a step that approximates")
    if (mentions.modular or mentions.base) and x.denominator == 1 and y.denominator == 1:
        return ClaimResult(
            claim, "modular", "integers in a step or problem about remainders, digits or bases"
        )
    return ClaimResult(claim, "false", f"the left side is {_show(x)}", left_value=float(x))


# ------------------------------------------------------------------------------------ symbolic


def _symbolic(
    claim: Claim, lefts: list[Side], rights: list[Side], mentions: Mentions, context: ClaimContext
) -> ClaimResult:
    if claim.left_units and claim.right_units and claim.left_units != claim.right_units:
        return ClaimResult(claim, "units", "the sides are in different units")
    (_, left), (_, right) = lefts[0], rights[0]
    if _too_large(left) or _too_large(right):
        return ClaimResult(claim, "unparseable", "a power too large to expand")
    names = variables(left) | variables(right)
    subs = {n: context.subs[n] for n in names if n in context.subs} if names <= context.subs.keys() else {}
    percent = "%" in (*claim.left, *claim.right)
    facts = request_facts(left, right, percent=percent, subs=subs)
    if facts is None:
        return ClaimResult(claim, "timeout", "sympy gave no answer (its time limit, or an error)")
    if not facts.equal and facts.numeric:  # another reading (a running computation...) may hold
        for (_, lt), (_, rt) in list(itertools.product(lefts, rights))[1:MAX_PAIRS]:
            other = request_facts(lt, rt, percent=percent, subs=subs)
            if other is not None and other.equal:
                return ClaimResult(claim, "holds", "", identity=not other.numeric)
    decimals = any("." in t for t in (*claim.left, *claim.right)) or any(
        "." in json.dumps(tree) for tree in subs.values()
    )
    link = LinkContext(
        mentions=mentions,
        decimals=decimals,
        substituted=bool(subs),
        had_variables=bool(names),
        rational_side=not subs and (_rational_value(left) or _rational_value(right)),
        names_a_variable=_lone_variable(claim.left) or _lone_variable(claim.right),
        previous_identity=context.previous_identity,
        first_link=claim.link == 0,
        rewriting_shape=rewriting_shape(left, right),
        side_reused=context.side_reused,
    )
    outcome, detail = decide(facts, link)
    value = float(facts.left) if facts.numeric and facts.left else None
    return ClaimResult(claim, outcome, detail, outcome == "holds" and not facts.numeric, value)


def _rational_value(tree: Node) -> bool:
    try:
        evaluate(tree, percent=False, widen=None)
    except (EvalError, ZeroDivisionError, OverflowError):
        return False
    return True


def _too_large(tree: Node) -> bool:
    """A power of variables with a literal exponent over ``MAX_SYMBOLIC_EXPONENT`` (``(x+y)^{100}``)."""
    power = tree[0] == "^" and tree[2][0] == "num" and bool(variables(tree[1]))
    if power and float(tree[2][1]) > MAX_SYMBOLIC_EXPONENT:
        return True
    return any(isinstance(part, tuple) and _too_large(part) for part in tree[1:])


# --------------------------------------------------------------------------------------- claims


def _readings(tokens: tuple[str, ...], *, lead: bool) -> list[Side]:
    """The side's readings: as written, the other grouping of ``a / b / c``, its lead operand."""
    alternatives = [tokens, *_regrouped(tokens)]
    first = _lead(tokens) if lead else None
    if first is not None:
        alternatives.append(first)
    return [(alt, parse(alt)) for alt in alternatives]


def check_claim(
    claim: Claim, mentions: Mentions | None = None, context: ClaimContext | None = None
) -> ClaimResult:
    """Decide one claim (see :mod:`prmforge.verifiers.equations` for when a false claim is not false)."""
    mentions = mentions if mentions is not None else Mentions()
    context = context if context is not None else ClaimContext()
    if mentions.custom_star and "*" in (*claim.left, *claim.right):
        return ClaimResult(claim, "ambiguous", "the problem defines its own operation *")
    try:
        lefts = _readings(claim.left, lead=False)
        rights = _readings(claim.right, lead=True)
    except Ambiguous as err:
        return ClaimResult(claim, "ambiguous", str(err))
    except GrammarError as err:
        return ClaimResult(claim, "unparseable", str(err))
    try:
        return _rational(claim, lefts, rights, mentions)
    except NotRational:
        return _symbolic(claim, lefts, rights, mentions, context)
    except (EvalError, ZeroDivisionError, OverflowError) as err:
        return ClaimResult(claim, "unparseable", str(err))


# ---------------------------------------------------------------------------------- step level


def _tree(tokens: tuple[str, ...]) -> Node | None:
    try:
        return parse(tokens)
    except GrammarError:
        return None


def _key(tree: Node) -> str:
    """A value's identity for comparing two assignments (``3 + 4`` and ``7`` are one value)."""
    try:
        return str(evaluate(tree, percent=False, widen=None).exact)
    except (EvalError, ZeroDivisionError, OverflowError):
        return json.dumps(tree)


def _lone_variable(side: tuple[str, ...]) -> bool:
    return len(side) == 1 and is_variable(side[0])


def step_contexts(claims: Sequence[Claim]) -> list[ClaimContext]:
    """Each claim's :class:`ClaimContext`: values given earlier in the step (``x = 3`` before
    ``2x + 1 = 7``; ``y = 2x - 1 = 7`` gives ``y`` the chain's last value), and whether one of its
    sides is also a side of a claim in another chain (an equation being transformed)."""
    given: list[tuple[int, str, Node, str]] = []
    defines: set[int] = set()  # claims that only give a variable its value: "x = 3"
    last_of_chain = {claim.chain: index for index, claim in enumerate(claims)}
    for index, claim in enumerate(claims):
        if not claim.math:
            continue
        for lone, other in ((claim.left, claim.right), (claim.right, claim.left)):
            tree = _tree(other)
            if _lone_variable(lone) and tree is not None and not variables(tree):
                given.append((index, lone[0], tree, _key(tree)))
                defines.add(index)
        last = claims[last_of_chain[claim.chain]]
        end = _tree(last.right)
        if claim.link == 0 and _lone_variable(claim.left) and last is not claim and end is not None:
            given.append((index, claim.left[0], end, _key(end)))
    values = assignments(given)
    sides: dict[tuple[str, ...], set[int]] = {}
    for claim in claims:
        for side in (claim.left, claim.right):
            sides.setdefault(side, set()).add(claim.chain)
    contexts = []
    for index, claim in enumerate(claims):
        subs: dict[str, Node] = {}
        if claim.math and index not in defines:
            subs = {name: tree for name, (at, tree) in values.items() if at <= index}
        reused = any(len(sides[side] - {claim.chain}) > 0 for side in (claim.left, claim.right))
        contexts.append(ClaimContext(subs=subs, side_reused=reused))
    return contexts
