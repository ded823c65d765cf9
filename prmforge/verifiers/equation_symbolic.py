"""Claims with variables or irrational numbers: sympy's facts, and when they make a claim false.

A claim reaches this module when exact rational arithmetic cannot decide it
(:class:`~prmforge.verifiers.equation_exact.NotRational`): it has ``pi``, an
irrational root, or variables (only ever read inside math). The facts come from
sympy in a child process under a time limit (:mod:`prmforge.verifiers.equation_engine`);
the rules here are pure functions of those facts and of the step's words.

**Numbers** (no variable left): the claim holds when both sides agree to 35
digits; it is false unless it is within 0.5% of a rational side (an irrational
rounded: ``\\pi \\cdot 49 = 154``, ``\\sqrt{50} = 7``; never
``\\sqrt{8424} = \\sqrt{8504}``), within 2% with a decimal in it
(``\\sqrt{2} = 1.41``), within 5% in a step that approximates, an integer claim in
modular or base context, or not a real number (ABSTAIN). Values the step gives its
variables earlier (``Let $x = 3$ ... $2x + 1 = 7$``) are substituted, but only to
let a claim hold: ``x = 0`` may be one case and the claim after it another
("otherwise, ..."), so a substituted claim that fails is left undecided, and so is a
claim whose variables sympy cancelled (``3/6 = x/x``) in a step that solves or tries.

**Variables left free**: an equality with unknowns usually states a condition
(``2x + 3 = 7`` is to be solved, not a false identity), so it only holds
(identically: ``(x+1)^2 = x^2 + 2x + 1``) or is undecided, except when the step
itself asserts that it holds for every value:

- the two sides differ by a nonzero constant (``2x + 3 = 2x + 5``): no value
  satisfies it, so a step writes it only by mistake or to reach a contradiction,
  which it says ("no solution", "impossible") or shows by solving or trying
  values ("⇒ 0 = -12", "try b = 2"): those steps are left undecided;
- it continues a rewriting: the chain's previous link held identically
  (``x(x+3) - 2 = x^2 + 3x - 2 = x^2 + 3x + 2``), or the step expands,
  simplifies or factors and one side is the unexpanded form of the other
  (``(x+1)^2 = x^2 + x + 1``); in both cases the sides' leading terms agree
  (their difference has a lower degree, as a slip in one coefficient leaves
  it), the step says nothing of solving ("solve", "equation", "set ... equal",
  "⇒"), and neither side is written again in another claim of the step (an
  equation being transformed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prmforge.verifiers.equation_cues import Mentions
from prmforge.verifiers.equation_engine import symbolic_facts
from prmforge.verifiers.equation_grammar import Node, has, to_json, variables

__all__ = [
    "Facts",
    "LinkContext",
    "Outcome",
    "assignments",
    "decide",
    "expanded",
    "request_facts",
    "rewriting_shape",
    "unexpanded",
]

Outcome = Literal[
    "holds", "false", "approx", "ambiguous", "units", "unparseable", "modular", "condition", "timeout"
]  # fmt: skip
ROUNDED_IRRATIONAL = 0.005
ROUNDED_DECIMAL = 0.02
APPROXIMATE = 0.05
MAX_SUBSTITUTIONS = 8


@dataclass(frozen=True, slots=True)
class Facts:
    """What sympy found about ``left = right`` (see :mod:`prmforge.verifiers._equation_worker`)."""

    numeric: bool
    real: bool
    equal: bool
    left: str = ""
    right: str = ""
    gap: float = 0.0
    integers: bool = False
    constant_gap: str | None = None
    degrees: tuple[int, int, int] | None = None
    free: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> Facts:
        degrees = reply.get("degrees")
        free = reply.get("free") or [[], []]
        return cls(
            numeric=bool(reply["numeric"]),
            real=bool(reply.get("real", True)),
            equal=bool(reply["equal"]),
            left=str(reply.get("left", "")),
            right=str(reply.get("right", "")),
            gap=float(reply.get("gap", 0.0)),
            integers=bool(reply.get("integers", False)),
            constant_gap=reply.get("constant_gap"),
            degrees=(int(degrees[0]), int(degrees[1]), int(degrees[2])) if degrees else None,
            free=(frozenset(free[0]), frozenset(free[1])),
        )


@dataclass(frozen=True, slots=True)
class LinkContext:
    """Where a claim stands in its step: the words, and what the rest of the step says about it."""

    mentions: Mentions = field(default_factory=Mentions)
    decimals: bool = False  # a decimal literal in the claim or in a value substituted into it
    substituted: bool = False  # its variables were given values earlier in the step
    had_variables: bool = False  # it was written with variables (that sympy may have cancelled: x/x)
    rational_side: bool = False  # one side is a rational number (154 in pi * 49 = 154)
    names_a_variable: bool = False  # one side is a lone variable: a name (re)defined, "S = S + 5"
    previous_identity: bool = False  # the previous link of its chain held for every value
    first_link: bool = True
    rewriting_shape: bool = False  # one side unexpanded (``(x+1)^2``), the other expanded
    side_reused: bool = False  # one of its sides is also a side of another claim of the step


def _numeric(facts: Facts, ctx: LinkContext) -> tuple[Outcome, str]:
    shown = f"{facts.left} against {facts.right}"
    if not facts.real:
        return "unparseable", "not a real number"
    if facts.equal:
        return "holds", ""
    rounded = ctx.rational_side and facts.gap <= ROUNDED_IRRATIONAL  # pi * 49 = 154, sqrt(50) = 7
    if rounded or (ctx.decimals and facts.gap <= ROUNDED_DECIMAL):
        return "approx", f"{shown}: true up to rounding"
    if ctx.mentions.approximate and facts.gap <= APPROXIMATE:
        return "approx", f"{shown}: within 5% in a step that approximates"
    if facts.integers and (ctx.mentions.modular or ctx.mentions.base):
        return "modular", "integers in a step or problem about remainders, digits or bases"
    if ctx.substituted:
        return "condition", f"with the values the step gives, {shown}"
    if ctx.had_variables and (ctx.mentions.solving or ctx.mentions.trial):
        return "condition", "an equation in its unknowns, in a step that solves or tries values"
    return "false", f"the left side is {facts.left}"


def _leading_terms_agree(facts: Facts) -> bool:
    if facts.degrees is None:
        return False
    left, right, difference = facts.degrees
    return left == right and 0 < difference < left


def decide(facts: Facts, ctx: LinkContext) -> tuple[Outcome, str]:
    """The outcome of a claim from its facts (see the module docstring for the rules)."""
    if facts.numeric:
        return _numeric(facts, ctx)
    if facts.equal:
        return "holds", "for every value of its variables"
    if ctx.mentions.modular or ctx.mentions.base or ctx.mentions.custom_star or ctx.mentions.division:
        return "condition", "variables in a step or problem about remainders, bases or its own operations"
    both_free = bool(facts.free[0]) and bool(facts.free[1])
    if not both_free or ctx.names_a_variable:
        return "condition", "an equation in its unknowns"
    if facts.constant_gap is not None and not (ctx.mentions.solving or ctx.mentions.trial):
        return "false", f"the sides differ by {facts.constant_gap} whatever the variables are"
    asserted = ctx.previous_identity or (ctx.mentions.rewriting and ctx.rewriting_shape and ctx.first_link)
    if asserted and _leading_terms_agree(facts) and not ctx.mentions.solving and not ctx.side_reused:
        how = "continues an identity" if ctx.previous_identity else "rewrites an expression"
        return "false", f"{how} but is not one (its sides differ in lower terms)"
    return "condition", "an equation in its unknowns"


def _sum_with_variable(tree: Node) -> bool:
    return tree[0] in ("+", "-") and bool(variables(tree))


def unexpanded(tree: Node) -> bool:
    """A product or power with a bracketed sum of variables as a factor: ``(x+1)^2``, ``2(x+3)``."""
    if tree[0] == "*" and (_sum_with_variable(tree[1]) or _sum_with_variable(tree[2])):
        return True
    if tree[0] == "^" and _sum_with_variable(tree[1]):
        return True
    return any(isinstance(part, tuple) and unexpanded(part) for part in tree[1:])


def expanded(tree: Node) -> bool:
    """A sum of monomials: variables, no bracketed sum multiplied or raised, no root or division."""
    return bool(variables(tree)) and not unexpanded(tree) and not has(tree, _NON_POLYNOMIAL)


_NON_POLYNOMIAL = frozenset({"/", "sqrt", "root", "floor", "ceil", "!", "binom", "%"})


def request_facts(
    left: Node, right: Node, *, percent: bool, subs: Mapping[str, Node] | None = None
) -> Facts | None:
    """sympy's facts about ``left = right`` (``subs``: values for variables), None on a timeout."""
    request: dict[str, Any] = {"left": to_json(left), "right": to_json(right), "percent": percent}
    if subs:
        request["subs"] = {name: to_json(tree) for name, tree in sorted(subs.items())[:MAX_SUBSTITUTIONS]}
    reply = symbolic_facts(request)
    if reply is None:
        return None
    try:
        return Facts.from_reply(reply)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def rewriting_shape(left: Node, right: Node) -> bool:
    return (unexpanded(left) and expanded(right)) or (unexpanded(right) and expanded(left))


def assignments(sides: Sequence[tuple[int, str, Node, str]]) -> dict[str, tuple[int, Node]]:
    """``x = 3``: each variable given exactly one numeric value in the step, and where (claim index).

    ``sides`` lists ``(claim index, variable, value tree, value key)``; the key compares values
    (``3 + 4`` and ``7`` share one). A variable given two different values (``x = 2`` ...
    ``x = -2``) is given none.
    """
    found: dict[str, tuple[int, Node, str]] = {}
    dropped: set[str] = set()
    for index, name, tree, key in sides:
        if variables(tree):
            continue
        if name in found and found[name][2] != key:
            dropped.add(name)
        found.setdefault(name, (index, tree, key))
    return {name: (index, tree) for name, (index, tree, _) in found.items() if name not in dropped}
