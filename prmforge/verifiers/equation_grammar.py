"""The grammar of one side of a claim: its tokens as a small expression tree (no evaluation here).

Tokens come from :class:`~prmforge.verifiers.equation_text.Claim`: numbers,
``+ - * / ^``, brackets, ``%``, variables (``x``, ``a_1``), the constant ``pi``,
the functions ``sqrt``, ``floor``, ``ceil`` (one bracketed argument), ``root``
and ``binom`` (two) and the postfix ``!``. A tree is a nested tuple whose head
names the node: ``("num", "3.5")``, ``("var", "x")``, ``("pi",)``,
``("+", a, b)`` (also ``-``, ``*``, ``/``, ``^``), ``("neg", a)``,
``("%", a)``, ``("!", a)``, ``("sqrt", a)``, ``("floor", a)``, ``("ceil", a)``,
``("root", n, a)``, ``("binom", n, k)``. Trees are plain data (JSON-ready lists
after :func:`to_json`), so the symbolic checker can rebuild them in a child process.

Precedence: ``^`` (right-associative) over unary minus over ``* /`` and
juxtaposition (``2x``, ``3(4+1)``, ``2\\sqrt{3}``) over ``+ -``. Readings that
people write both ways raise :class:`Ambiguous`: a juxtaposed factor right after
a ``/`` (``1/2x``, ``6/2(1+2)``) and a minus before a power of a number
(``-2^2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_NODES", "Ambiguous", "GrammarError", "Node", "has", "parse", "to_json", "variables"]

MAX_NODES = 400
MAX_DEPTH = 40  # brackets, minus signs and exponents nested in one another
Node = tuple[Any, ...]
_OPEN = {"(": ")", "[": "]", "{": "}"}
_UNARY_FN = frozenset({"sqrt", "floor", "ceil"})
_BINARY_FN = frozenset({"root", "binom"})


class GrammarError(ValueError):
    """Tokens that are no expression (unbalanced, cut, unknown)."""


class Ambiguous(GrammarError):
    """An expression that people write meaning two different things."""


def is_variable(token: str) -> bool:
    return token[:1].isalpha() and (len(token) == 1 or token[1] == "_")


class _Parser:
    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens, self.pos, self.nodes, self.depth = tokens, 0, 0, 0

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise GrammarError("expression nested too deeply")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise GrammarError("unexpected end of expression")
        self.pos += 1
        return token

    def node(self, *parts: Any) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise GrammarError("expression too large")
        return tuple(parts)

    def parse(self) -> Node:
        tree = self.sum()
        if self.peek() is not None:
            raise GrammarError(f"unexpected {self.peek()!r}")
        return tree

    def sum(self) -> Node:
        tree = self.product()
        while self.peek() in ("+", "-"):
            op = self.take()
            tree = self.node(op, tree, self.product())
        return tree

    def _juxtaposed(self) -> bool:
        token = self.peek()
        return token is not None and (
            token in _OPEN or is_variable(token) or token in _UNARY_FN or token in _BINARY_FN or token == "pi"
        )

    def product(self) -> Node:
        tree = self.unary()
        after_division = False
        while True:
            if self.peek() in ("*", "/"):
                op = self.take()
                tree = self.node(op, tree, self.unary())
                after_division = op == "/"
            elif self._juxtaposed():
                if after_division:
                    raise Ambiguous("a factor written right after a division")
                tree = self.node("*", tree, self.unary())
            else:
                return tree

    def unary(self) -> Node:
        self.deeper()
        try:
            return self._unary()
        finally:
            self.depth -= 1

    def _unary(self) -> Node:
        if self.peek() == "-":
            self.take()
            if self.peek() is not None and self.peek()[0].isdigit() and self._power_follows():  # type: ignore[index]
                raise Ambiguous("a minus before a power of a number")
            return self.node("neg", self.unary())
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def _power_follows(self) -> bool:
        return self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1] == "^"

    def power(self) -> Node:
        base = self.postfix()
        if self.peek() == "^":
            self.take()
            return self.node("^", base, self.unary())
        return base

    def postfix(self) -> Node:
        tree = self.primary()
        while self.peek() in ("%", "!"):
            tree = self.node(self.take(), tree)
        return tree

    def group(self) -> Node:
        opener = self.take()
        if opener not in _OPEN:
            raise GrammarError(f"expected a bracket, not {opener!r}")
        tree = self.sum()
        if self.take() != _OPEN[opener]:
            raise GrammarError("unbalanced brackets")
        return tree

    def primary(self) -> Node:
        token = self.peek()
        if token is None:
            raise GrammarError("unexpected end of expression")
        if token in _OPEN:
            return self.group()
        self.take()
        if token[0].isdigit() or token[0] == ".":
            return self.node("num", token)
        if token == "pi":
            return self.node("pi")
        if token in _UNARY_FN:
            return self.node(token, self.group())
        if token in _BINARY_FN:
            first = self.group()
            return self.node(token, first, self.group())
        if is_variable(token):
            return self.node("var", token)
        raise GrammarError(f"unexpected {token!r}")


def parse(tokens: Sequence[str]) -> Node:
    """The tree of one claim side; raises :class:`GrammarError` (or :class:`Ambiguous`)."""
    return _Parser(tokens).parse()


def has(tree: Node, heads: frozenset[str]) -> bool:
    """Whether some node of ``tree`` has one of ``heads``."""
    if tree[0] in heads:
        return True
    return any(isinstance(part, tuple) and has(part, heads) for part in tree[1:])


def variables(tree: Node) -> frozenset[str]:
    if tree[0] == "var":
        return frozenset({tree[1]})
    found: frozenset[str] = frozenset()
    for part in tree[1:]:
        if isinstance(part, tuple):
            found |= variables(part)
    return found


def to_json(tree: Node) -> list[Any]:
    return [to_json(p) if isinstance(p, tuple) else p for p in tree]
