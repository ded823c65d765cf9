"""Propositional and first-order derivations with exact per-step truth (FoVer-style, METHODS.md §2(g)).

A problem states premises ``P1..Pn`` and a goal; its reference derivation is
a list of steps, each concluding a formula from cited premises and earlier
steps with a named rule, rendered as ``Step 3: from P2 and S1, by modus
ponens: Q(a)`` (:mod:`prmforge.languages.formula` holds the notation).

Premises include distractors (an implication *into* a known fact, or one out
of its negation) that make tempting fallacies available. Every reference step
carries error recipes, each an invalid inference built so that its cited
formulas do not entail its conclusion: affirming the consequent, denying the
antecedent, wrong instantiation, illicit quantifier swap, illicit conversion,
hasty generalization, dropped or added negation. A rollout replaces steps by
recipes with probability ``error_rate`` and copies the other reference steps
verbatim. The first replaced step is always incorrect; a later step that cites
a replaced one rests on a wrong claim and is judged on it, like any other.

Truth is local, as in FoVer: a step is correct iff the formulas it cites (the
premises, and earlier steps' conclusions taken as written) entail its
conclusion. :func:`exact_logic_truth` decides it from the step texts by
finite models, independently of Z3 (:mod:`prmforge.suites.logic_semantics`):
exactly for propositional and monadic checks, over every model of up to
three elements for checks with a binary relation.

Problems are reproducible: problem i depends only on ``(seed, i)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prmforge.languages.formula import (
    And,
    Atom,
    Citation,
    Exists,
    Forall,
    Formula,
    FormulaError,
    Implies,
    Not,
    Or,
    format_formula,
    format_step,
    parse_formula,
    parse_step,
)
from prmforge.schemas import seeds
from prmforge.schemas.records import Problem, StepTruth, first_error_of
from prmforge.suites.logic_semantics import entails

__all__ = ["exact_logic_truth", "generate_logic_problems", "generate_logic_rollouts"]

_ATOMS = (
    "Rain", "Wet", "Cold", "Late", "Tired", "Sunny", "Windy", "Busy", "Hungry", "Open", "Loud", "Calm",
    "Bright", "Quiet", "Happy", "Ready", "Safe", "Warm", "Dry", "Full", "Dark", "Noisy", "Slow", "Fast",
)  # fmt: skip
_PREDICATES = (
    "Dog", "Cat", "Mammal", "Animal", "Pet", "Loyal", "Fed", "Calm", "Student", "Tired", "Smart", "Kind",
    "Brave", "Strong", "Young", "Rich", "Poet", "Baker", "Tall", "Quick", "Shy", "Proud", "Wise", "Bold",
)  # fmt: skip
_RELATIONS = ("Likes", "Knows", "Trusts", "Helps")
_CONSTANTS = ("rex", "tom", "ann", "bob", "kim", "lea", "max", "zoe")


def _neg(f: Formula) -> Formula:
    return f.body if isinstance(f, Not) else Not(f)


def _subst(f: Formula, old: str, new: str) -> Formula:
    """``f`` with the term ``old`` replaced by ``new`` (our bound variables never clash with constants)."""
    if isinstance(f, Atom):
        return Atom(f.pred, tuple(new if a == old else a for a in f.args))
    if isinstance(f, Not):
        return Not(_subst(f.body, old, new))
    if isinstance(f, Forall | Exists):
        return type(f)(f.var, _subst(f.body, old, new))
    return type(f)(_subst(f.left, old, new), _subst(f.right, old, new))


# ------------------------------------------------------------------ building


@dataclass(frozen=True, slots=True)
class _Inference:
    kind: str
    cites: tuple[Citation, ...]
    rule: str
    conclusion: Formula

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cites": [str(c) for c in self.cites],
            "rule": self.rule,
            "formula": format_formula(self.conclusion),
        }


@dataclass(slots=True)
class _Builder:
    rng: random.Random
    first_order: bool
    premises: list[Formula] = field(default_factory=list)
    steps: list[tuple[_Inference, list[_Inference]]] = field(default_factory=list)
    fact: Formula = field(default_factory=lambda: Atom("X"))
    fact_cite: Citation = field(default_factory=lambda: Citation("P", 1))
    distracted: set[Citation] = field(default_factory=set)
    names: list[str] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)
    constants: list[str] = field(default_factory=list)
    used: int = 0

    def fresh(self) -> str:
        self.used += 1
        return self.names.pop() if self.names else f"{'Q' if self.first_order else 'A'}{self.used}"

    def fresh_relation(self) -> str:
        self.used += 1
        return self.relations.pop() if self.relations else f"R{self.used}"

    def premise(self, f: Formula) -> Citation:
        self.premises.append(f)
        return Citation("P", len(self.premises))

    @property
    def a(self) -> str:
        return self.constants[0]

    @property
    def b(self) -> str:
        return self.constants[1]

    def literal(self, *, negate_p: float = 0.3) -> Formula:
        atom = Atom(self.fresh(), (self.a,) if self.first_order else ())
        return Not(atom) if self.rng.random() < negate_p else atom

    def schema(self, f: Formula) -> Formula:
        """A fact about constant ``a`` as an open formula in ``x``."""
        return _subst(f, self.a, "x")

    def step(
        self, cites: tuple[Citation, ...], rule: str, conclusion: Formula, *errors: _Inference
    ) -> Citation:
        recipes = [e for e in errors if e.conclusion != conclusion]
        if not isinstance(conclusion, Forall | Exists):
            kind = "dropped negation" if isinstance(conclusion, Not) else "added negation"
            recipes.append(_Inference(kind, cites, rule, _neg(conclusion)))
        if self.fact_cite in cites and self.fact_cite not in self.distracted:
            self.distracted.add(self.fact_cite)
            recipes.extend(self.fallacies())
        self.steps.append((_Inference("valid", cites, rule, conclusion), recipes))
        return Citation("S", len(self.steps))

    def fallacies(self) -> list[_Inference]:
        """Distractor premises about the current fact, and the fallacies they invite."""
        found = []
        fact, cite, fo = self.fact, self.fact_cite, self.first_order
        if self.rng.random() < 0.5:  # affirming the consequent: from X -> F and F conclude X
            x = Atom(self.fresh(), (self.a,) if fo else ())
            imp = Implies(self.schema(x), self.schema(fact)) if fo else Implies(x, fact)
            p = self.premise(Forall("x", imp) if fo else imp)
            rule = "universal modus ponens" if fo else "modus ponens"
            found.append(_Inference("affirming the consequent", (p, cite), rule, x))
        if self.rng.random() < 0.4:  # denying the antecedent: from ~F -> Y and F conclude ~Y
            y = Atom(self.fresh(), (self.a,) if fo else ())
            imp = Implies(self.schema(_neg(fact)), self.schema(y)) if fo else Implies(_neg(fact), y)
            p = self.premise(Forall("x", imp) if fo else imp)
            rule = "universal modus tollens" if fo else "modus tollens"
            found.append(_Inference("denying the antecedent", (p, cite), rule, Not(y)))
        return found

    def advance(self, fact: Formula, cite: Citation) -> None:
        self.fact, self.fact_cite = fact, cite


_Move = Callable[[_Builder], None]


def _mp(b: _Builder) -> None:
    g = b.literal()
    p = b.premise(Implies(b.fact, g))
    b.advance(g, b.step((p, b.fact_cite), "modus ponens", g))


def _mt(b: _Builder) -> None:
    g = Atom(b.fresh())
    p = b.premise(Implies(g, _neg(b.fact)))
    b.advance(Not(g), b.step((p, b.fact_cite), "modus tollens", Not(g)))


def _ds(b: _Builder) -> None:
    g = b.literal(negate_p=0.0)
    p = b.premise(Or(_neg(b.fact), g))
    b.advance(g, b.step((p, b.fact_cite), "disjunctive syllogism", g))


def _conj_mp(b: _Builder) -> None:
    h, g = b.literal(negate_p=0.0), b.literal()
    ph = b.premise(h)
    both = And(b.fact, h)
    s1 = b.step((b.fact_cite, ph), "conjunction introduction", both)
    p = b.premise(Implies(both, g))
    b.advance(g, b.step((p, s1), "modus ponens", g))


def _conj_elim(b: _Builder) -> None:
    g, h = b.literal(), b.literal(negate_p=0.0)
    p = b.premise(Implies(b.fact, And(g, h)))
    s1 = b.step((p, b.fact_cite), "modus ponens", And(g, h))
    b.advance(g, b.step((s1,), "conjunction elimination", g))


def _hs(b: _Builder) -> None:
    m, g = b.literal(negate_p=0.0), b.literal()
    p1, p2 = b.premise(Implies(b.fact, m)), b.premise(Implies(m, g))
    converse = _Inference("illicit conversion", (p1, p2), "hypothetical syllogism", Implies(g, b.fact))
    s1 = b.step((p1, p2), "hypothetical syllogism", Implies(b.fact, g), converse)
    b.advance(g, b.step((s1, b.fact_cite), "modus ponens", g))


def _ui_mp(b: _Builder) -> None:
    g = b.literal()
    p = b.premise(Forall("x", Implies(b.schema(b.fact), b.schema(g))))
    mixed = _Inference(
        "wrong instantiation", (p,), "universal instantiation", Implies(b.fact, _subst(g, b.a, b.b))
    )
    s1 = b.step((p,), "universal instantiation", Implies(b.fact, g), mixed)
    b.advance(g, b.step((s1, b.fact_cite), "modus ponens", g))


def _ump(b: _Builder) -> None:
    g = b.literal()
    p = b.premise(Forall("x", Implies(b.schema(b.fact), b.schema(g))))
    cites = (p, b.fact_cite)
    wrong = _Inference("wrong instantiation", cites, "universal modus ponens", _subst(g, b.a, b.b))
    b.advance(g, b.step(cites, "universal modus ponens", g, wrong))


def _usyl(b: _Builder) -> None:
    m, g = b.literal(negate_p=0.0), b.literal()
    f, mx, gx = b.schema(b.fact), b.schema(m), b.schema(g)
    p1, p2 = b.premise(Forall("x", Implies(f, mx))), b.premise(Forall("x", Implies(mx, gx)))
    converse = _Inference(
        "illicit conversion", (p1, p2), "hypothetical syllogism", Forall("x", Implies(gx, f))
    )
    s1 = b.step((p1, p2), "hypothetical syllogism", Forall("x", Implies(f, gx)), converse)
    cites = (s1, b.fact_cite)
    wrong = _Inference("wrong instantiation", cites, "universal modus ponens", _subst(g, b.a, b.b))
    b.advance(g, b.step(cites, "universal modus ponens", g, wrong))


def _eg_mp(b: _Builder) -> None:
    f = b.schema(b.fact)
    hasty = _Inference("hasty generalization", (b.fact_cite,), "existential generalization", Forall("x", f))
    s1 = b.step((b.fact_cite,), "existential generalization", Exists("x", f), hasty)
    b.constants.reverse()  # the chain moves on to the other constant
    g = b.literal(negate_p=0.0)
    p = b.premise(Implies(Exists("x", f), g))
    b.advance(g, b.step((p, s1), "modus ponens", g))


def _swap(b: _Builder) -> None:
    r, c = b.fresh_relation(), b.literal(negate_p=0.0)
    rel = Atom(r, ("x", "y"))
    some = Exists("y", Atom(r, (b.a, "y")))
    if b.rng.random() < 0.5:
        p = b.premise(Forall("x", Exists("y", rel)))
        swapped = _Inference(
            "illicit quantifier swap", (p,), "quantifier exchange", Exists("y", Forall("x", rel))
        )
        s1 = b.step((p,), "universal instantiation", some, swapped)
    else:
        p = b.premise(Exists("y", Forall("x", rel)))
        s0 = b.step((p,), "quantifier exchange", Forall("x", Exists("y", rel)))
        s1 = b.step((s0,), "universal instantiation", some)
    p2 = b.premise(Forall("x", Implies(Exists("y", rel), b.schema(c))))
    b.advance(c, b.step((p2, s1), "universal modus ponens", c))


_PROP_MOVES: tuple[tuple[_Move, int], ...] = (
    (_mp, 4),
    (_mt, 2),
    (_ds, 2),
    (_conj_mp, 1),
    (_conj_elim, 1),
    (_hs, 1),
)
_FO_MOVES: tuple[tuple[_Move, int], ...] = ((_ui_mp, 3), (_ump, 4), (_usyl, 2), (_eg_mp, 1), (_swap, 2))


def _build(rng: random.Random, first_order: bool, n_steps: int) -> _Builder:
    names = list(_PREDICATES if first_order else _ATOMS)
    rng.shuffle(names)
    relations = list(_RELATIONS)
    rng.shuffle(relations)
    constants = rng.sample(_CONSTANTS, 2)
    b = _Builder(rng, first_order, names=names, relations=relations, constants=constants)
    start = b.literal(negate_p=0.0)
    b.advance(start, b.premise(start))
    if first_order:  # a fact about the other constant, so a wrong instantiation has somewhere to go
        b.premise(Atom(b.fresh(), (b.b,)))
    moves = [move for move, weight in (_FO_MOVES if first_order else _PROP_MOVES) for _ in range(weight)]
    while len(b.steps) < n_steps:
        rng.choice(moves)(b)
    return b


def _renumber(cites: Sequence[Citation], order: dict[int, int]) -> tuple[Citation, ...]:
    return tuple(Citation("P", order[c.number]) if c.kind == "P" else c for c in cites)


def _problem(seed: int, index: int, min_steps: int, max_steps: int, first_order_share: float) -> Problem:
    rng = seeds.rng("logic", seed, index)
    first_order = rng.random() < first_order_share
    b = _build(rng, first_order, rng.randint(min_steps, max_steps))
    shuffled = list(range(1, len(b.premises) + 1))
    rng.shuffle(shuffled)
    order = {old: new for new, old in enumerate(shuffled, start=1)}  # premise old -> its shown number
    premises = [format_formula(b.premises[old - 1]) for old in shuffled]
    plan = []
    for valid, errors in b.steps:
        entry = _Inference(valid.kind, _renumber(valid.cites, order), valid.rule, valid.conclusion).to_dict()
        entry["errors"] = [
            _Inference(e.kind, _renumber(e.cites, order), e.rule, e.conclusion).to_dict() for e in errors
        ]
        plan.append(entry)
    goal = plan[-1]["formula"]
    lines = [f"P{n}: {text}" for n, text in enumerate(premises, start=1)]
    question = "\n".join(
        [
            "Premises:",
            *lines,
            f"Goal: {goal}",
            "Derive the goal, one step a line: 'Step N: from <citations>, by <rule>: <formula>', "
            "citing premises as P1, P2, ... and earlier steps as S1, S2, ...",
        ]
    )
    return Problem(
        problem_id=f"logic-{seed}-{index}",
        domain="logic",
        question=question,
        gold=goal,
        source="logic",
        meta={"premises": premises, "plan": plan, "first_order": first_order, "steps": len(plan)},
    )


def generate_logic_problems(
    count: int,
    seed: int,
    min_steps: int = 3,
    max_steps: int = 8,
    first_order_share: float = 0.5,
    *,
    start: int = 0,
) -> list[Problem]:
    """``count`` problems of ``min_steps`` to ``max_steps`` reference steps (a last move may add one or two).

    ``first_order_share`` of them (in expectation) are first-order, the rest
    propositional. ``meta`` carries ``premises`` (formula texts, in the order
    shown as P1, P2, ...) and ``plan`` (per step: ``cites``, ``rule``,
    ``formula`` and its ``errors`` recipes). Problem i depends only on ``(seed, i)``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps} and {max_steps}")
    if not 0.0 <= first_order_share <= 1.0:
        raise ValueError(f"first_order_share must be in [0, 1], got {first_order_share}")
    return [_problem(seed, i, min_steps, max_steps, first_order_share) for i in range(start, start + count)]


def _render(number: int, entry: dict[str, Any]) -> str:
    cites = [Citation(c[0], int(c[1:])) for c in entry["cites"]]
    return format_step(number, cites, entry["rule"], parse_formula(entry["formula"]))


def generate_logic_rollouts(
    problem: Problem, k: int, seed: int, error_rate: float = 0.2
) -> list[tuple[tuple[str, ...], StepTruth]]:
    """``k`` derivations of ``problem``: each reference step is replaced by one of its error
    recipes with probability ``error_rate`` (when it has one); truth by :func:`exact_logic_truth`.

    Rollout i depends only on ``(seed, problem_id, i)``.
    """
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    plan = problem.meta["plan"]
    out = []
    for i in range(k):
        rng = seeds.rng("logic-rollout", seed, problem.problem_id, i)
        steps = []
        for t, entry in enumerate(plan):
            chosen = entry
            if entry["errors"] and rng.random() < error_rate:
                chosen = rng.choice(entry["errors"])
            steps.append(_render(t + 1, chosen))
        out.append((tuple(steps), exact_logic_truth(problem, steps)))
    return out


# ------------------------------------------------------------------- truth


def exact_logic_truth(problem: Problem, steps: Sequence[str]) -> StepTruth:
    """Exact local truth of ``steps`` (see the module docstring); evaluation only.

    A step that does not parse, or cites a premise or step that does not exist
    (or an earlier step that does not parse), is incorrect. No steps gives
    ``first_error = 0``.
    """
    if not steps:
        return StepTruth(first_error=0, step_correct=())
    premises = [parse_formula(text) for text in problem.meta["premises"]]
    claimed: list[Formula | None] = []
    correct = []
    for t, text in enumerate(steps):
        try:
            claim = parse_step(text)
        except FormulaError:
            claimed.append(None)
            correct.append(False)
            continue
        claimed.append(claim.conclusion)
        cited: list[Formula] = []
        for cite in claim.cites:
            if cite.kind == "P" and 1 <= cite.number <= len(premises):
                cited.append(premises[cite.number - 1])
            elif (
                cite.kind == "S" and 1 <= cite.number <= t and (found := claimed[cite.number - 1]) is not None
            ):
                cited.append(found)
            else:
                break
        else:
            correct.append(entails(tuple(cited), claim.conclusion))
            continue
        correct.append(False)
    first_error = first_error_of(correct)
    return StepTruth(first_error=first_error, step_correct=tuple(correct))
