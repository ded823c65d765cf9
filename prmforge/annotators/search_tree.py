"""A search tree over a question's solution prefixes, as data (METHODS.md §2(b)).

The tree is a trie of steps: node 0 is the bare question (empty prefix); every other node adds one
step to its parent's prefix, and no two children of a node add the same step. A node holds its Monte
Carlo value ``mc`` (the share of its sampled rollouts whose final answer is right; ``None`` where
it was never estimated), its visit count ``visits`` (the N(s) of OmegaPRM's selection) and the
rollouts sampled from it. A rollout to label is attached to the root with its ``rollout_id`` (it is
a solution from the bare question too) and does not count in the root's estimate.

Sampled rollouts are kept as text on the node that sampled them, not as nodes: a rollout *passes
through* its origin, the origin's ancestors, and every node its steps reach by walking the trie from
the origin (:meth:`SearchTree.rollout_paths`). Each rollout is one leaf, under each node it passes
through: that is how the tree labels count the leaves of a subtree.

``to_rows`` / ``from_rows`` give one plain JSON-able dict per node and back, exactly::

    rows = tree.to_rows()
    assert SearchTree.from_rows(json.loads(json.dumps(rows))) == tree
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RolloutRef", "SearchTree", "TreeBuilder", "TreeNode", "TreeRollout", "trees_from_rows"]

RolloutRef = tuple[int, int]
"""A rollout of a tree: ``(node id it was sampled from, its index in that node's rollouts)``."""


@dataclass(frozen=True, slots=True)
class TreeRollout:
    """A completion sampled from a node (or, with ``rollout_id``, a rollout to label at the root).

    ``steps`` is the completion split into steps; ``outcome`` the grader's verdict on the node's
    prefix followed by the completion (``None``: no answer could be graded); ``tokens`` its
    generated tokens.
    """

    text: str
    steps: tuple[str, ...]
    outcome: bool | None
    tokens: int
    rollout_id: str | None = None

    @property
    def sampled(self) -> bool:
        """True for a completion of the node's Monte Carlo estimate, False for a rollout to label."""
        return self.rollout_id is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "steps": list(self.steps),
            "outcome": self.outcome,
            "tokens": self.tokens,
            "rollout_id": self.rollout_id,
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> TreeRollout:
        return cls(
            text=row["text"],
            steps=tuple(row["steps"]),
            outcome=row["outcome"],
            tokens=row["tokens"],
            rollout_id=row["rollout_id"],
        )


@dataclass(frozen=True, slots=True)
class TreeNode:
    """One prefix state: ``prefix`` is its parent's prefix followed by ``step`` (the root: ``()``, ``""``).

    ``depth`` is ``len(prefix)``, the number of steps. ``mc`` is the node's value: the share of its
    sampled rollouts that are right, or a finished rollout's own outcome (1.0 / 0.0) at the node
    that ends it; ``None`` where it was not measured.
    """

    node_id: int
    parent_id: int | None
    depth: int
    step: str
    prefix: tuple[str, ...]
    mc: float | None
    visits: int
    rollouts: tuple[TreeRollout, ...] = ()

    @property
    def samples(self) -> tuple[TreeRollout, ...]:
        """The rollouts of the node's Monte Carlo estimate (not the rollouts to label)."""
        return tuple(r for r in self.rollouts if r.sampled)

    @property
    def correct(self) -> int:
        """How many of :attr:`samples` are right."""
        return sum(1 for r in self.rollouts if r.sampled and r.outcome is True)


_TREE_KEYS = ("problem_id", "source")
_NODE_KEYS = ("node_id", "parent_id", "depth", "step", "prefix", "mc", "visits", "rollouts")


@dataclass(frozen=True)
class SearchTree:
    """The tree of one question: nodes indexed by ``node_id`` (node 0 the root), checked on creation."""

    problem_id: str
    source: str
    nodes: tuple[TreeNode, ...]
    _children: Mapping[int, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    _index: Mapping[tuple[int, str], int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError(f"tree of {self.problem_id!r}: nodes must hold at least the root")
        children: dict[int, list[int]] = {}
        index: dict[tuple[int, str], int] = {}
        for position, node in enumerate(self.nodes):
            _check_node(self.problem_id, position, node, self.nodes)
            children[node.node_id] = []
            if node.parent_id is not None:
                key = (node.parent_id, node.step)
                if key in index:
                    raise ValueError(
                        f"tree of {self.problem_id!r}: nodes {index[key]} and {node.node_id} both add "
                        f"step {node.step!r} to node {node.parent_id}"
                    )
                index[key] = node.node_id
                children[node.parent_id].append(node.node_id)
        object.__setattr__(self, "_children", {k: tuple(v) for k, v in children.items()})
        object.__setattr__(self, "_index", index)

    @property
    def root(self) -> TreeNode:
        return self.nodes[0]

    @property
    def rollout_ids(self) -> tuple[str, ...]:
        """The rollouts to label that the tree started from (attached at the root), in order."""
        return tuple(r.rollout_id for r in self.root.rollouts if r.rollout_id is not None)

    def node(self, node_id: int) -> TreeNode:
        if not 0 <= node_id < len(self.nodes):
            raise ValueError(f"tree of {self.problem_id!r} has no node {node_id}")
        return self.nodes[node_id]

    def children(self, node_id: int) -> tuple[int, ...]:
        """The node's children, in node-id order."""
        self.node(node_id)
        return self._children[node_id]

    def child(self, node_id: int, step: str) -> int | None:
        """The child of ``node_id`` that adds ``step``, or None."""
        return self._index.get((node_id, step))

    def find(self, prefix: Sequence[str], start: int = 0) -> int | None:
        """The node whose prefix is ``start``'s followed by ``prefix``, or None."""
        node: int | None = start
        for step in prefix:
            node = self.child(node, step) if node is not None else None
        return node

    def path(self, steps: Sequence[str]) -> tuple[int, ...]:
        """The nodes of a solution's prefixes of 1 .. len(steps) steps (its path, root excluded)."""
        path: list[int] = []
        node = 0
        for t, step in enumerate(steps):
            found = self.child(node, step)
            if found is None:
                raise ValueError(f"tree of {self.problem_id!r} has no node for the first {t + 1} steps")
            path.append(found)
            node = found
        return tuple(path)

    def ancestors(self, node_id: int) -> tuple[int, ...]:
        """The nodes from the root down to ``node_id``, both included."""
        chain = [node_id]
        while (parent := self.node(chain[-1]).parent_id) is not None:
            chain.append(parent)
        return tuple(reversed(chain))

    def rollout_paths(self) -> dict[RolloutRef, tuple[int, ...]]:
        """The nodes every rollout passes through, root first: its origin's ancestors, its origin, then
        each node its steps reach by walking the trie from the origin (a leaf under all of them)."""
        paths: dict[RolloutRef, tuple[int, ...]] = {}
        for node in self.nodes:
            for index, rollout in enumerate(node.rollouts):
                walk = list(self.ancestors(node.node_id))
                for step in rollout.steps:
                    found = self.child(walk[-1], step)
                    if found is None:
                        break
                    walk.append(found)
                paths[(node.node_id, index)] = tuple(walk)
        return paths

    def rollout(self, ref: RolloutRef) -> TreeRollout:
        return self.node(ref[0]).rollouts[ref[1]]

    def to_rows(self) -> list[dict[str, Any]]:
        """One JSON-able dict per node (node-id order), each with the tree's ``problem_id`` and ``source``."""
        return [
            {
                "problem_id": self.problem_id,
                "source": self.source,
                "node_id": n.node_id,
                "parent_id": n.parent_id,
                "depth": n.depth,
                "step": n.step,
                "prefix": list(n.prefix),
                "mc": n.mc,
                "visits": n.visits,
                "rollouts": [r.to_dict() for r in n.rollouts],
            }
            for n in self.nodes
        ]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> SearchTree:
        """The tree whose :meth:`to_rows` gave ``rows`` (any order); all rows must be of one tree."""
        rows = list(rows)
        if not rows:
            raise ValueError("rows must hold at least the root's row")
        heads = {tuple(row[k] for k in _TREE_KEYS) for row in rows}
        if len(heads) != 1:
            raise ValueError(f"rows are of {len(heads)} trees (problem_id, source): {sorted(heads)}")
        ((problem_id, source),) = heads
        nodes = []
        for row in sorted(rows, key=lambda r: int(r["node_id"])):
            missing = [k for k in (*_TREE_KEYS, *_NODE_KEYS) if k not in row]
            if missing:
                raise ValueError(f"row of node {row.get('node_id')!r} lacks {missing}")
            nodes.append(
                TreeNode(
                    node_id=row["node_id"],
                    parent_id=row["parent_id"],
                    depth=row["depth"],
                    step=row["step"],
                    prefix=tuple(row["prefix"]),
                    mc=row["mc"],
                    visits=row["visits"],
                    rollouts=tuple(TreeRollout.from_dict(r) for r in row["rollouts"]),
                )
            )
        return cls(problem_id=problem_id, source=source, nodes=tuple(nodes))


def trees_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[SearchTree]:
    """The trees of a table of node rows (several trees), in order of their first row."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in _TREE_KEYS), []).append(row)
    return [SearchTree.from_rows(group) for group in groups.values()]


def _check_node(problem_id: str, position: int, node: TreeNode, nodes: Sequence[TreeNode]) -> None:
    where = f"tree of {problem_id!r}, node {node.node_id}"
    if node.node_id != position:
        raise ValueError(f"{where}: node_id must equal its position {position}")
    if position == 0:
        if (node.parent_id, node.depth, node.step, node.prefix) != (None, 0, "", ()):
            raise ValueError(f"{where}: the root must have parent_id None, depth 0, step '' and prefix ()")
    else:
        if node.parent_id is None or not 0 <= node.parent_id < position:
            raise ValueError(f"{where}: parent_id must be an earlier node's id, got {node.parent_id!r}")
        parent = nodes[node.parent_id]
        if node.prefix != (*parent.prefix, node.step):
            raise ValueError(f"{where}: prefix must be its parent's prefix followed by its step")
        if node.depth != len(node.prefix):
            raise ValueError(f"{where}: depth must be len(prefix) = {len(node.prefix)}, got {node.depth}")
    if node.mc is not None and (math.isnan(node.mc) or not 0.0 <= node.mc <= 1.0):
        raise ValueError(f"{where}: mc must be None or in [0, 1], got {node.mc}")
    if node.visits < 0:
        raise ValueError(f"{where}: visits must be >= 0, got {node.visits}")
    for rollout in node.rollouts:
        if rollout.tokens < 0:
            raise ValueError(f"{where}: a rollout's tokens must be >= 0, got {rollout.tokens}")
        if rollout.rollout_id is not None and position != 0:
            raise ValueError(f"{where}: rollouts to label (with a rollout_id) hang at the root only")


@dataclass(slots=True)
class _Draft:
    parent_id: int | None
    step: str
    prefix: tuple[str, ...]
    mc: float | None = None
    visits: int = 0
    rollouts: list[TreeRollout] = field(default_factory=list)
    children: dict[str, int] = field(default_factory=dict)


class TreeBuilder:
    """The mutable tree a search grows, frozen into a :class:`SearchTree` by :meth:`freeze`."""

    def __init__(self, problem_id: str, source: str) -> None:
        self.problem_id = problem_id
        self.source = source
        self._nodes: list[_Draft] = [_Draft(parent_id=None, step="", prefix=())]

    def __len__(self) -> int:
        return len(self._nodes)

    def ensure(self, start: int, steps: Sequence[str]) -> int:
        """The node of ``start``'s prefix followed by ``steps``, creating the missing nodes on the way."""
        node = start
        for step in steps:
            found = self._nodes[node].children.get(step)
            if found is None:
                found = len(self._nodes)
                self._nodes.append(
                    _Draft(parent_id=node, step=step, prefix=(*self._nodes[node].prefix, step))
                )
                self._nodes[node].children[step] = found
            node = found
        return node

    def prefix(self, node: int) -> tuple[str, ...]:
        return self._nodes[node].prefix

    def mc(self, node: int) -> float | None:
        return self._nodes[node].mc

    def visits(self, node: int) -> int:
        return self._nodes[node].visits

    def total_visits(self) -> int:
        return sum(n.visits for n in self._nodes)

    def visit_counts(self) -> dict[int, int]:
        """N of every visited node (the others are 0)."""
        return {i: n.visits for i, n in enumerate(self._nodes) if n.visits}

    def rollouts(self, node: int) -> tuple[TreeRollout, ...]:
        return tuple(self._nodes[node].rollouts)

    def set_mc(self, node: int, mc: float) -> None:
        if not 0.0 <= mc <= 1.0:
            raise ValueError(f"mc must be in [0, 1], got {mc}")
        self._nodes[node].mc = mc

    def add_rollout(self, node: int, rollout: TreeRollout) -> int:
        """Attach a rollout to ``node``; its index among the node's rollouts."""
        self._nodes[node].rollouts.append(rollout)
        return len(self._nodes[node].rollouts) - 1

    def visit(self, node: int) -> None:
        self._nodes[node].visits += 1

    def freeze(self) -> SearchTree:
        return SearchTree(
            problem_id=self.problem_id,
            source=self.source,
            nodes=tuple(
                TreeNode(
                    node_id=i,
                    parent_id=d.parent_id,
                    depth=len(d.prefix),
                    step=d.step,
                    prefix=d.prefix,
                    mc=d.mc,
                    visits=d.visits,
                    rollouts=tuple(d.rollouts),
                )
                for i, d in enumerate(self._nodes)
            ),
        )
