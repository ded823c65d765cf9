"""A small first-order formula language: AST, parser, printer and SMT-LIB2 rendering.

ASCII syntax (Unicode ``¬ ∧ ∨ → ↔ ∀ ∃`` are accepted too)::

    ~A   A & B   A | B   A -> B   A <-> B   all x. A   exists x. A

Binding, loosest first: ``<->`` (left), ``->`` (right), ``|``, ``&``, ``~``. A
quantifier's body extends as far right as it can (``all x. P(x) -> Q(x)``
quantifies the implication). Predicates and propositional atoms are
capitalised (``Rain``, ``Dog(x)``, ``Likes(x, y)``); terms are lower-case
names: a name bound by an enclosing quantifier is a variable, any other is a
constant. There are no function symbols and no equality.

:func:`format_formula` writes the canonical form that :func:`parse_formula`
reads back to the same tree. Derivations are written one step a line,
``Step 3: from P2 and S1, by modus ponens: Q(a)`` (:func:`format_step`,
:func:`parse_step`), under premises stated as ``P2: all x. (Dog(x) -> Animal(x))``
(:func:`parse_premises`). :func:`entailment_smt2` renders "premises and
not conclusion" as SMT-LIB2 over one uninterpreted sort ``U``: the premises
entail the conclusion iff that script is unsatisfiable.
The ``logic`` suite writes in this language and the Z3 verifier reads it (:mod:`prmforge.languages`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "And",
    "Atom",
    "Citation",
    "Exists",
    "Forall",
    "Formula",
    "FormulaError",
    "Iff",
    "Implies",
    "Not",
    "Or",
    "Signature",
    "StepClaim",
    "entailment_smt2",
    "format_formula",
    "format_step",
    "parse_formula",
    "parse_premises",
    "parse_step",
    "signature",
]

MAX_FORMULA_CHARS = 2000
MAX_DEPTH = 60

_TOKEN_RE = re.compile(r"\s*(<->|->|[()~&|,.]|¬|∧|∨|→|↔|∀|∃|[A-Za-z_][A-Za-z0-9_]*)")
_UNICODE = {"¬": "~", "∧": "&", "∨": "|", "→": "->", "↔": "<->", "∀": "all", "∃": "exists"}
_QUANTIFIERS = {"all": "all", "forall": "all", "exists": "exists"}


class FormulaError(ValueError):
    """Text that is not a well-formed formula (the message says where)."""


@dataclass(frozen=True, slots=True)
class Atom:
    pred: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Not:
    body: Formula


@dataclass(frozen=True, slots=True)
class And:
    left: Formula
    right: Formula


@dataclass(frozen=True, slots=True)
class Or:
    left: Formula
    right: Formula


@dataclass(frozen=True, slots=True)
class Implies:
    left: Formula
    right: Formula


@dataclass(frozen=True, slots=True)
class Iff:
    left: Formula
    right: Formula


@dataclass(frozen=True, slots=True)
class Forall:
    var: str
    body: Formula


@dataclass(frozen=True, slots=True)
class Exists:
    var: str
    body: Formula


Formula = Atom | Not | And | Or | Implies | Iff | Forall | Exists
_Binary = And | Or | Implies | Iff


# -------------------------------------------------------------------- parsing


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        match = _TOKEN_RE.match(stripped, pos)
        if match is None:
            raise FormulaError(f"unexpected character {stripped[pos:].lstrip()[:1]!r} at {pos}")
        token = match.group(1)
        tokens.append(_QUANTIFIERS.get(token, _UNICODE.get(token, token)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise FormulaError("unexpected end of formula" + (f", expected {expected!r}" if expected else ""))
        if expected is not None and token != expected:
            raise FormulaError(f"expected {expected!r}, found {token!r}")
        self.pos += 1
        return token

    def formula(self) -> Formula:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError(f"formula nested deeper than {MAX_DEPTH}")
        left = self.implication()
        while self.peek() == "<->":
            self.take()
            left = Iff(left, self.implication())
        self.depth -= 1
        return left

    def implication(self) -> Formula:
        left = self.disjunction()
        if self.peek() == "->":
            self.take()
            return Implies(left, self.implication())
        return left

    def disjunction(self) -> Formula:
        left = self.conjunction()
        while self.peek() == "|":
            self.take()
            left = Or(left, self.conjunction())
        return left

    def conjunction(self) -> Formula:
        left = self.unary()
        while self.peek() == "&":
            self.take()
            left = And(left, self.unary())
        return left

    def unary(self) -> Formula:
        token = self.peek()
        if token == "~":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FormulaError(f"formula nested deeper than {MAX_DEPTH}")
            body = self.unary()
            self.depth -= 1
            return Not(body)
        if token in ("all", "exists"):
            self.take()
            var = self.take()
            if not var[0].islower() or var in _QUANTIFIERS:
                raise FormulaError(f"expected a lower-case variable after {token!r}, found {var!r}")
            self.take(".")
            body = self.formula()
            return Forall(var, body) if token == "all" else Exists(var, body)
        if token == "(":
            self.take()
            inner = self.formula()
            self.take(")")
            return inner
        return self.atom()

    def atom(self) -> Formula:
        name = self.take()
        if not name[0].isupper():
            raise FormulaError(f"expected a capitalised predicate or atom, found {name!r}")
        if self.peek() != "(":
            return Atom(name)
        self.take("(")
        args = [self.term()]
        while self.peek() == ",":
            self.take()
            args.append(self.term())
        self.take(")")
        return Atom(name, tuple(args))

    def term(self) -> str:
        name = self.take()
        if not (name[0].islower() or name[0] == "_") or name in _QUANTIFIERS:
            raise FormulaError(f"expected a lower-case term, found {name!r}")
        return name


def parse_formula(text: str) -> Formula:
    """Parse ``text`` (see the module docstring); raises :class:`FormulaError`."""
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula of {len(text)} characters is above the limit of {MAX_FORMULA_CHARS}")
    tokens = _tokenize(text)
    if not tokens:
        raise FormulaError("empty formula")
    parser = _Parser(tokens)
    result = parser.formula()
    if parser.peek() is not None:
        raise FormulaError(f"unexpected {parser.peek()!r} after a complete formula")
    signature([result])
    return result


# ------------------------------------------------------------------- printing

_LEVEL = {Iff: 1, Implies: 2, Or: 3, And: 4}
_SYMBOL = {Iff: "<->", Implies: "->", Or: "|", And: "&"}


def _level(f: Formula) -> int:
    if isinstance(f, Forall | Exists):
        return 0
    if isinstance(f, _Binary):
        return _LEVEL[type(f)]
    return 5


def _wrap(f: Formula, needs: bool) -> str:
    text = format_formula(f)
    return f"({text})" if needs else text


def format_formula(f: Formula) -> str:
    """The canonical ASCII text of ``f``; ``parse_formula(format_formula(f)) == f``."""
    if isinstance(f, Atom):
        return f"{f.pred}({', '.join(f.args)})" if f.args else f.pred
    if isinstance(f, Not):
        return "~" + _wrap(f.body, _level(f.body) < 5)
    if isinstance(f, Forall | Exists):
        word = "all" if isinstance(f, Forall) else "exists"
        return f"{word} {f.var}. " + _wrap(f.body, isinstance(f.body, _Binary))
    level = _LEVEL[type(f)]
    if isinstance(f, Implies):
        left_needs, right_needs = _level(f.left) <= level, _level(f.right) < level
    else:
        left_needs, right_needs = _level(f.left) < level, _level(f.right) <= level
    return f"{_wrap(f.left, left_needs)} {_SYMBOL[type(f)]} {_wrap(f.right, right_needs)}"


# ----------------------------------------------------------------- signature


@dataclass(frozen=True, slots=True)
class Signature:
    """Predicate arities (0 for propositional atoms) and the constants of some formulas."""

    predicates: tuple[tuple[str, int], ...]
    constants: tuple[str, ...]
    quantified: bool = False

    @property
    def first_order(self) -> bool:
        """Whether the formulas need a domain: a constant, a predicate with arguments or a quantifier."""
        return self.quantified or bool(self.constants) or any(arity > 0 for _, arity in self.predicates)


def _collect(f: Formula, bound: frozenset[str], arities: dict[str, int], constants: set[str]) -> bool:
    """Fill ``arities`` and ``constants``; returns whether ``f`` has a quantifier."""
    if isinstance(f, Atom):
        known = arities.setdefault(f.pred, len(f.args))
        if known != len(f.args):
            raise FormulaError(f"{f.pred} is used with {known} and with {len(f.args)} arguments")
        constants.update(a for a in f.args if a not in bound)
        return False
    if isinstance(f, Not):
        return _collect(f.body, bound, arities, constants)
    if isinstance(f, Forall | Exists):
        _collect(f.body, bound | {f.var}, arities, constants)
        return True
    left = _collect(f.left, bound, arities, constants)
    return _collect(f.right, bound, arities, constants) or left


def signature(formulas: Iterable[Formula]) -> Signature:
    """The joint signature; raises :class:`FormulaError` when a predicate has two arities."""
    arities: dict[str, int] = {}
    constants: set[str] = set()
    quantified = False
    for f in formulas:
        quantified = _collect(f, frozenset(), arities, constants) or quantified
    return Signature(tuple(sorted(arities.items())), tuple(sorted(constants)), quantified)


# -------------------------------------------------------------------- SMT-LIB


def _smt(f: Formula, bound: frozenset[str] = frozenset()) -> str:
    """SMT-LIB2 term of ``f``: atoms ``p_Name``, constants ``c_name``, bound variables ``v_name``."""
    if isinstance(f, Atom):
        if not f.args:
            return f"p_{f.pred}"
        args = " ".join(f"v_{a}" if a in bound else f"c_{a}" for a in f.args)
        return f"(p_{f.pred} {args})"
    if isinstance(f, Not):
        return f"(not {_smt(f.body, bound)})"
    if isinstance(f, Forall | Exists):
        word = "forall" if isinstance(f, Forall) else "exists"
        return f"({word} ((v_{f.var} U)) {_smt(f.body, bound | {f.var})})"
    op = {And: "and", Or: "or", Implies: "=>", Iff: "="}[type(f)]
    return f"({op} {_smt(f.left, bound)} {_smt(f.right, bound)})"


def entailment_smt2(premises: Sequence[Formula], conclusion: Formula) -> str:
    """SMT-LIB2 declarations and assertions of ``premises and not conclusion`` (no ``check-sat``)."""
    sig = signature([*premises, conclusion])
    lines = []
    if sig.first_order:
        lines.append("(declare-sort U 0)")
    lines.extend(f"(declare-const c_{c} U)" for c in sig.constants)
    for name, arity in sig.predicates:
        domain = " ".join(["U"] * arity)
        lines.append(f"(declare-fun p_{name} ({domain}) Bool)")
    lines.extend(f"(assert {_smt(p)})" for p in premises)
    lines.append(f"(assert (not {_smt(conclusion)}))")
    return "\n".join(lines)


# ------------------------------------------------------- derivation text format

_PREMISE_RE = re.compile(r"^\s*P(\d+)\s*:\s*(\S.*?)\s*$", re.MULTILINE)
_STEP_RE = re.compile(
    r"^\s*(?:Step\s+\d+\s*[:.]\s*)?from\s+(?P<cites>[^:]*?),?\s+by\s+(?P<rule>[^:]+?)\s*:\s*(?P<formula>[^:]+?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CITE_RE = re.compile(r"\b([PS])(\d+)\b")


@dataclass(frozen=True, slots=True)
class Citation:
    """A reference to premise ``P<number>`` (``kind == "P"``) or step ``S<number>`` (1-based)."""

    kind: str
    number: int

    def __str__(self) -> str:
        return f"{self.kind}{self.number}"


@dataclass(frozen=True, slots=True)
class StepClaim:
    """What a derivation step says: the rule it names, what it cites and the formula it concludes."""

    cites: tuple[Citation, ...]
    rule: str
    conclusion: Formula


def parse_premises(text: str) -> dict[int, Formula]:
    """Every ``P<n>: formula`` line of ``text`` by number; raises :class:`FormulaError` on a bad one."""
    found: dict[int, Formula] = {}
    for match in _PREMISE_RE.finditer(text):
        number = int(match.group(1))
        if number in found:
            raise FormulaError(f"premise P{number} is stated twice")
        try:
            found[number] = parse_formula(match.group(2))
        except FormulaError as err:
            raise FormulaError(f"premise P{number}: {err}") from None
    return found


def parse_step(text: str) -> StepClaim:
    """Read ``Step 3: from P2 and S1, by modus ponens: Q(a)``; raises :class:`FormulaError`."""
    match = _STEP_RE.match(text)
    if match is None:
        raise FormulaError(
            "not a derivation step of the form 'Step N: from <citations>, by <rule>: <formula>'"
        )
    cites = tuple(Citation(kind, int(number)) for kind, number in _CITE_RE.findall(match.group("cites")))
    return StepClaim(
        cites=cites, rule=match.group("rule").strip(), conclusion=parse_formula(match.group("formula"))
    )


def format_step(number: int, cites: Sequence[Citation], rule: str, conclusion: Formula) -> str:
    """The text :func:`parse_step` reads: ``Step 3: from P2 and S1, by modus ponens: Q(a)``."""
    names = [str(c) for c in cites]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Step {number}: from {joined}, by {rule}: {format_formula(conclusion)}"
