"""Finite-model entailment for the logic suite's truth: independent of Z3.

``entails(premises, conclusion)`` searches for a model of the premises in
which the conclusion is false:

- propositional and monadic checks (atoms and unary predicates): exact. A
  monadic theory with k predicates has a model iff it has one whose elements
  are distinct predicate types (bit masks over the k predicates), so it is
  enough to try every non-empty set of types, with every assignment of the
  constants to them (at most :data:`MAX_MONADIC_PREDICATES` unary predicates);
- checks with a binary predicate: every model with up to
  :data:`RELATIONAL_DOMAIN` elements. A countermodel found proves
  non-entailment; finding none is taken as entailment, which holds for the
  suite's relational inferences (its tests cross-check every step with Z3).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prmforge.languages.formula import And, Atom, Forall, Formula, Iff, Implies, Not, Or, signature

__all__ = ["MAX_MONADIC_PREDICATES", "RELATIONAL_DOMAIN", "entails"]

RELATIONAL_DOMAIN = 3
MAX_MONADIC_PREDICATES = 4


@dataclass(frozen=True, slots=True)
class _Model:
    domain: tuple[int, ...]
    truth: dict[str, Any]  # atom -> bool, unary -> set of elements, binary -> set of pairs
    constants: dict[str, int]


def _holds(f: Formula, m: _Model, env: dict[str, int]) -> bool:
    if isinstance(f, Atom):
        if not f.args:
            return bool(m.truth[f.pred])
        args = tuple(env[a] if a in env else m.constants[a] for a in f.args)
        return (args[0] if len(args) == 1 else args) in m.truth[f.pred]
    if isinstance(f, Not):
        return not _holds(f.body, m, env)
    if isinstance(f, And):
        return _holds(f.left, m, env) and _holds(f.right, m, env)
    if isinstance(f, Or):
        return _holds(f.left, m, env) or _holds(f.right, m, env)
    if isinstance(f, Implies):
        return not _holds(f.left, m, env) or _holds(f.right, m, env)
    if isinstance(f, Iff):
        return _holds(f.left, m, env) == _holds(f.right, m, env)
    test = all if isinstance(f, Forall) else any
    return test(_holds(f.body, m, {**env, f.var: e}) for e in m.domain)


def _subsets(items: Sequence[Any]) -> list[frozenset[Any]]:
    return [frozenset(c) for n in range(len(items) + 1) for c in itertools.combinations(items, n)]


def _models(formulas: Sequence[Formula]) -> Iterator[_Model]:
    sig = signature(formulas)
    atoms = [p for p, arity in sig.predicates if arity == 0]
    unary = [p for p, arity in sig.predicates if arity == 1]
    binary = [p for p, arity in sig.predicates if arity == 2]
    if any(arity > 2 for _, arity in sig.predicates):
        raise ValueError("the judge handles predicates of arity 0, 1 and 2")
    if binary:
        spaces = []
        for n in range(1, RELATIONAL_DOMAIN + 1):
            domain = tuple(range(n))
            pairs = list(itertools.product(domain, repeat=2))
            choices = [_subsets(domain)] * len(unary) + [_subsets(pairs)] * len(binary)
            spaces.append((domain, [*unary, *binary], choices))
    else:  # monadic: every model is equivalent to one whose elements are distinct types (bit masks)
        if len(unary) > MAX_MONADIC_PREDICATES:
            raise ValueError(
                f"the judge handles at most {MAX_MONADIC_PREDICATES} unary predicates in a check"
            )
        types = tuple(range(2 ** len(unary)))
        spaces = []
        for realised in _subsets(types):
            if realised:
                domain = tuple(sorted(realised))
                choices = [[frozenset(e for e in domain if e >> j & 1)] for j in range(len(unary))]
                spaces.append((domain, unary, choices))
    for domain, names, choices in spaces:
        for extensions in itertools.product(*choices):
            for values in itertools.product((False, True), repeat=len(atoms)):
                for consts in itertools.product(domain, repeat=len(sig.constants)):
                    truth: dict[str, Any] = dict(zip(names, extensions, strict=True))
                    truth.update(zip(atoms, values, strict=True))
                    yield _Model(domain, truth, dict(zip(sig.constants, consts, strict=True)))


@functools.lru_cache(maxsize=4096)
def entails(premises: tuple[Formula, ...], conclusion: Formula) -> bool:
    """Whether every model of ``premises`` satisfies ``conclusion`` (the bounds: module docstring)."""
    return not any(
        all(_holds(p, m, {}) for p in premises) and not _holds(conclusion, m, {})
        for m in _models([*premises, conclusion])
    )
