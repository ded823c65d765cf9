"""Multi-step arithmetic word problems with an exact reference plan.

Each problem is a small story about people who own items: one or two people
start with a given number, then every step either relates a new person to
earlier amounts ("Ben has 5 more marbles than Ava", "Cal has as many as Ava
and Ben combined") or changes someone's amount ("Then Ava gives away 4 of her
marbles"). A step may use any earlier amount, not only the previous one; some
steps hold two calcs. The question asks for one person's final amount or for
everyone's total. Every value is a positive integer (divisions are exact).

Problems are reproducible: problem i depends only on ``(seed, i)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from prmforge.schemas import seeds
from prmforge.schemas.records import Problem
from prmforge.suites.plan import Calc, Plan, PlanStep, evaluate, format_value, refs_of

__all__ = ["generate_arith_problems"]

MAX_VALUE = 5000

_PEOPLE = (
    ("Ava", "she", "her"), ("Ben", "he", "his"), ("Chloe", "she", "her"), ("Diego", "he", "his"),
    ("Emma", "she", "her"), ("Farid", "he", "his"), ("Grace", "she", "her"), ("Hiro", "he", "his"),
    ("Isla", "she", "her"), ("Jamal", "he", "his"), ("Keiko", "she", "her"), ("Liam", "he", "his"),
    ("Maya", "she", "her"), ("Noah", "he", "his"), ("Olivia", "she", "her"), ("Pablo", "he", "his"),
    ("Priya", "she", "her"), ("Quinn", "he", "his"), ("Rosa", "she", "her"), ("Sam", "he", "his"),
    ("Tara", "she", "her"), ("Umar", "he", "his"), ("Vera", "she", "her"), ("Wei", "he", "his"),
)  # fmt: skip
_ITEMS = (
    "marbles", "stickers", "seashells", "baseball cards", "cookies", "pencils", "stamps",
    "toy cars", "books", "apples", "coins", "beads", "postcards", "crayons",
)  # fmt: skip
_THEN = ("Then", "After that,", "Later,", "Next,", "The next day,")
_TIMES = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}
_PART = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth", 6: "a sixth"}
_GAIN = ("buys", "finds", "is given", "wins")
_LOSS = ("gives away", "loses", "sells", "trades away")
_TOTAL = ("altogether", "in total", "combined")


@dataclass(slots=True)
class _Person:
    """A person's current amount while a problem is built (mutable scratch state)."""

    name: str
    subj: str
    poss: str
    value: int
    calc: int | None = None
    updated: bool = False

    @property
    def operand(self) -> str:
        return str(self.value) if self.calc is None else f"{{c{self.calc}}}"

    @property
    def now(self) -> str:
        return " has now" if self.updated else ""


class _Builder:
    """Accumulates the question sentences and plan steps of one problem."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.items = rng.choice(_ITEMS)
        self.names = list(_PEOPLE)
        rng.shuffle(self.names)
        self.people: list[_Person] = []
        self.sentences: list[str] = []
        self.steps: list[PlanStep] = []
        self.values: list[int] = []
        self.used: set[int] = set()
        self.force = False

    def dangling(self) -> list[_Person]:
        """People whose current amount is a calc result no later calc uses yet."""
        return [p for p in self.people if p.calc is not None and p.calc not in self.used]

    def pick(self, *, other: _Person | None = None) -> _Person:
        """An operand, preferring amounts not used yet (always one of them when ``force`` is set)."""
        pool = [p for p in self.people if p is not other]
        fresh = [p for p in self.dangling() if p is not other]
        if fresh and (self.force or self.rng.random() < 0.75):
            return self.rng.choice(fresh)
        return self.rng.choice(pool)

    def person(self, value: int) -> _Person:
        name, subj, poss = self.names.pop()
        made = _Person(name, subj, poss, value)
        self.people.append(made)
        return made

    def then(self) -> str:
        return self.rng.choice(_THEN)

    def step(self, sentence: str, texts: tuple[str, ...], exprs: tuple[str, ...]) -> int:
        """Record a step; returns its last calc's value (every value is a positive integer)."""
        start = len(self.values)
        for k, expr in enumerate(exprs):
            value = evaluate(
                expr.replace("{c$}", f"{{c{start + k - 1}}}"), [Fraction(v) for v in self.values]
            )
            if value.denominator != 1 or value <= 0:
                raise AssertionError(f"arith invariant broken: {expr} = {value}")
            self.values.append(int(value))
        calcs = tuple(Calc(e.replace("{c$}", f"{{c{start + k - 1}}}")) for k, e in enumerate(exprs))
        self.used.update(ref for calc in calcs for ref in refs_of(calc.expr))
        self.steps.append(PlanStep(texts, calcs))
        self.sentences.append(sentence)
        return self.values[-1]

    def set(self, who: _Person, value: int, *, updated: bool) -> None:
        who.value, who.calc, who.updated = value, len(self.values) - 1, updated


# Each op returns False when it does not apply to the current state. ``{c$}`` in a
# second calc stands for the step's first calc.
_Op = Callable[[_Builder], bool]


def _more_than(b: _Builder) -> bool:
    a = b.pick()
    n = b.rng.randint(2, 30)
    if not b.names or a.value + n > MAX_VALUE:
        return False
    new = b.person(0)
    it = b.items
    texts = b.rng.choice(
        (
            (f"{new.name} has ", f" {it}."),
            (f"Since {new.name} has {n} more than {a.name}, {new.subj} has ", "."),
        )
    )
    sentence = f"{new.name} has {n} more {it} than {a.name}{a.now}."
    b.set(new, b.step(sentence, texts, (f"{a.operand}+{n}",)), updated=False)
    return True


def _fewer_than(b: _Builder) -> bool:
    a = b.pick()
    if not b.names or a.value < 3:
        return False
    n = b.rng.randint(2, min(a.value - 1, 25))
    new = b.person(0)
    it = b.items
    texts = b.rng.choice(
        ((f"{new.name} has ", f" {it}."), (f"With {n} fewer than {a.name}, {new.name} has ", "."))
    )
    sentence = f"{new.name} has {n} fewer {it} than {a.name}{a.now}."
    b.set(new, b.step(sentence, texts, (f"{a.operand}-{n}",)), updated=False)
    return True


def _times(b: _Builder) -> bool:
    a = b.pick()
    k = b.rng.choice(tuple(_TIMES))
    if not b.names or a.value * k > MAX_VALUE:
        return False
    new = b.person(0)
    it = b.items
    texts = b.rng.choice(
        ((f"{new.name} has ", f" {it}."), (f"{new.name} has {_TIMES[k]} as many, which is ", f" {it}."))
    )
    sentence = f"{new.name} has {_TIMES[k]} as many {it} as {a.name}{a.now}."
    b.set(new, b.step(sentence, texts, (f"{a.operand}*{k}",)), updated=False)
    return True


def _part_of(b: _Builder) -> bool:
    a = b.pick()
    ks = [k for k in _PART if a.value % k == 0]
    if not b.names or not ks:
        return False
    k = b.rng.choice(ks)
    new = b.person(0)
    it = b.items
    texts = b.rng.choice(
        (
            (f"{new.name} has ", f" {it}."),
            (f"{_PART[k].capitalize()} of {a.name}'s {it} is ", f", which is what {new.name} has."),
        )
    )
    sentence = f"{new.name} has {_PART[k]} as many {it} as {a.name}{a.now}."
    b.set(new, b.step(sentence, texts, (f"{a.operand}/{k}",)), updated=False)
    return True


def _combined(b: _Builder) -> bool:
    if not b.names or len(b.people) < 2:
        return False
    a = b.pick()
    c = b.pick(other=a)
    if a.value + c.value > MAX_VALUE:
        return False
    new = b.person(0)
    it = b.items
    both = f"{a.name} and {c.name}"
    texts = b.rng.choice(
        ((f"{new.name} has ", f" {it}."), (f"Together {both} have ", f" {it}, as many as {new.name}."))
    )
    joint = "have together now" if a.updated or c.updated else "combined"
    sentence = f"{new.name} has as many {it} as {both} {joint}."
    b.set(new, b.step(sentence, texts, (f"{a.operand}+{c.operand}",)), updated=False)
    return True


def _difference(b: _Builder) -> bool:
    if not b.names or len(b.people) < 2:
        return False
    a = b.pick()
    c = b.pick(other=a)
    if a.value < c.value:
        a, c = c, a
    if a.value == c.value:
        return False
    new = b.person(0)
    it = b.items
    texts = b.rng.choice(
        (
            (f"{new.name} has ", f" {it}."),
            (f"{a.name} has ", f" more than {c.name}, so {new.name} has that many."),
        )
    )
    sentence = f"{new.name} has as many {it} as {a.name} has more than {c.name}."
    b.set(new, b.step(sentence, texts, (f"{a.operand}-{c.operand}",)), updated=False)
    return True


def _gains(b: _Builder) -> bool:
    a = b.pick()
    n = b.rng.randint(2, 40)
    if a.value + n > MAX_VALUE:
        return False
    texts = b.rng.choice(
        ((f"After that, {a.name} has ", f" {b.items}."), (f"{a.name} now has ", f" {b.items}."))
    )
    sentence = f"{b.then()} {a.name} {b.rng.choice(_GAIN)} {n} more {b.items}."
    b.set(a, b.step(sentence, texts, (f"{a.operand}+{n}",)), updated=True)
    return True


def _loses(b: _Builder) -> bool:
    a = b.pick()
    if a.value < 3:
        return False
    n = b.rng.randint(1, min(a.value - 1, 30))
    texts = b.rng.choice(((f"{a.name} is left with ", f" {b.items}."), (f"{a.name} now has ", ".")))
    sentence = f"{b.then()} {a.name} {b.rng.choice(_LOSS)} {n} of {a.poss} {b.items}."
    b.set(a, b.step(sentence, texts, (f"{a.operand}-{n}",)), updated=True)
    return True


def _grows(b: _Builder) -> bool:
    a = b.pick()
    k = b.rng.choice((2, 3))
    if a.value * k > MAX_VALUE:
        return False
    verb = "doubles" if k == 2 else "triples"
    texts = b.rng.choice(((f"{a.name}'s collection grows to ", f" {b.items}."), (f"{a.name} now has ", ".")))
    sentence = f"{b.then()} {a.name}'s collection of {b.items} {verb}."
    b.set(a, b.step(sentence, texts, (f"{a.operand}*{k}",)), updated=True)
    return True


def _keeps_pile(b: _Builder) -> bool:
    a = b.pick()
    ks = [k for k in (2, 3, 4, 5) if a.value % k == 0]
    if not ks:
        return False
    k = b.rng.choice(ks)
    texts = ("Each pile has ", f" {b.items}, so {a.name} keeps that many.")
    sentence = f"{b.then()} {a.name} splits {a.poss} {b.items} into {k} equal piles and keeps only one pile."
    b.set(a, b.step(sentence, texts, (f"{a.operand}/{k}",)), updated=True)
    return True


def _times_plus(b: _Builder) -> bool:
    a = b.pick()
    k, n = b.rng.choice(tuple(_TIMES)), b.rng.randint(1, 20)
    if not b.names or a.value * k + n > MAX_VALUE:
        return False
    new = b.person(0)
    texts = (f"{_TIMES[k].capitalize()} {a.name}'s {b.items} is ", f", so {new.name} has ", f" {b.items}.")
    sentence = f"{new.name} has {n} more than {_TIMES[k]} as many {b.items} as {a.name}{a.now}."
    b.set(new, b.step(sentence, texts, (f"{a.operand}*{k}", f"{{c$}}+{n}")), updated=False)
    return True


def _combined_minus(b: _Builder) -> bool:
    if not b.names or len(b.people) < 2:
        return False
    a = b.pick()
    c = b.pick(other=a)
    n = b.rng.randint(2, 15)
    if a.value + c.value - n < 1 or a.value + c.value > MAX_VALUE:
        return False
    new = b.person(0)
    texts = (f"{a.name} and {c.name} have ", f" {b.items} together, so {new.name} has ", f" {b.items}.")
    sentence = f"{new.name} has {n} fewer {b.items} than {a.name} and {c.name} have together."
    b.set(new, b.step(sentence, texts, (f"{a.operand}+{c.operand}", f"{{c$}}-{n}")), updated=False)
    return True


def _buys_boxes(b: _Builder) -> bool:
    a = b.pick()
    k, m = b.rng.randint(2, 6), b.rng.randint(3, 12)
    if a.value + k * m > MAX_VALUE:
        return False
    texts = ("The boxes hold ", f" {b.items}, so {a.name} now has ", f" {b.items}.")
    sentence = f"{b.then()} {a.name} buys {k} boxes with {m} {b.items} in each box."
    b.set(a, b.step(sentence, texts, (f"{k}*{m}", f"{a.operand}+{{c$}}")), updated=True)
    return True


_OPS: tuple[tuple[_Op, int], ...] = (
    (_more_than, 3), (_fewer_than, 3), (_times, 3), (_part_of, 2), (_combined, 3), (_difference, 2),
    (_gains, 3), (_loses, 3), (_grows, 1), (_keeps_pile, 1), (_times_plus, 2), (_combined_minus, 2),
    (_buys_boxes, 2),
)  # fmt: skip


def _apply_some_op(b: _Builder) -> None:
    ops = [op for op, weight in _OPS for _ in range(weight)]
    b.rng.shuffle(ops)
    for op in ops:
        if op(b):
            return
    raise AssertionError("no arithmetic step applies")  # unreachable: _gains or _loses always applies


def _final_total(b: _Builder, people: list[_Person]) -> str:
    names = [p.name for p in people]
    who = ", ".join(names[:-1]) + f" and {names[-1]}"
    texts = b.rng.choice(
        (
            ("Altogether they have ", f" {b.items}."),
            (f"In total, the {len(names)} of them have ", f" {b.items}."),
        )
    )
    question = f"How many {b.items} do {who} have {b.rng.choice(_TOTAL)}?"
    b.step(question, texts, ("+".join(p.operand for p in people),))
    b.sentences.remove(question)
    return question


def _problem(seed: int, index: int, min_steps: int, max_steps: int) -> Problem:
    rng = seeds.rng("arith", seed, index)
    b = _Builder(rng)
    n_steps = rng.randint(min_steps, max_steps)
    first = b.person(rng.randint(6, 60))
    givens = [f"{first.name} has {first.value} {b.items}."]
    if rng.random() < 0.5:
        second = b.person(rng.randint(6, 60))
        givens.append(f"{second.name} has {second.value} {b.items}.")
    for _ in range(n_steps - 1):
        _apply_some_op(b)
    open_ends = b.dangling()
    if len(open_ends) >= 2:
        ask = _final_total(b, open_ends)
    else:
        b.force = True
        _apply_some_op(b)
        last = next(p for p in b.people if p.calc == len(b.values) - 1)
        ask = f"How many {b.items} does {last.name} have {'now' if last.updated else 'in the end'}?"
    plan = Plan(tuple(b.steps))
    return Problem(
        problem_id=f"arith-{seed}-{index}",
        domain="math",
        question=" ".join([*givens, *b.sentences, ask]),
        gold=format_value(plan.answer()),
        source="arith",
        meta={"plan": plan.to_dict(), "steps": len(plan.steps)},
    )


def generate_arith_problems(
    count: int, seed: int, min_steps: int = 2, max_steps: int = 6, *, start: int = 0
) -> list[Problem]:
    """Problems ``start .. start + count - 1`` of the suite, with ``min_steps`` to ``max_steps`` steps.

    The same arguments give identical problems; problem i depends only on ``(seed, i)``, so a slice
    is made without the problems before it.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps} and {max_steps}")
    return [_problem(seed, index, min_steps, max_steps) for index in range(start, start + count)]
