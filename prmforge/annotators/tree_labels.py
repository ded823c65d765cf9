"""Step labels derived from a search tree, as pure functions (METHODS.md §2(b), §2(c), §2(i)).

A *path* is a rollout's way through a :class:`~prmforge.annotators.search_tree.SearchTree`: the node
ids of its prefixes of 1 .. M steps, root excluded (:meth:`SearchTree.path`). Every ``*_labels`` /
``*_values`` function over ``(tree, path)`` returns one entry per step, ``None`` where the tree does
not determine it. Along a path, ``m_0 = MC(root)`` and ``m_j`` is the MC of the node after step j-1
(:func:`path_values`, M + 1 values).

A *leaf* is a rollout (sampled, or a rollout to label): it sits under every node it passes through
(:meth:`SearchTree.rollout_paths`). A rollout whose outcome is ``None`` (no gradeable answer) is a
wrong leaf.

Rules:

- **OmegaPRM / Math-Shepherd** (:func:`mc_labels`): soft ``MC(s)``, hard ``MC(s) > 0``.
- **ReST-MCTS*** (:func:`rest_values`), the paper's notation with ``v_0 = 0`` at the root::

      w_k = (1 - v_{k-1}) / (m_k + 1) * (1 - 2 r_k)
      v_k = max(v_{k-1} + w_k, 0)

  ``r_k = 0`` when some right leaf lies under node k (it is on a route to the gold answer), else 1;
  the reasoning distance ``m_k`` (:func:`reasoning_distances`) is, on a route, the fewest further
  steps from node k to a right leaf (0 at a right final step), and off a route that of the nearest
  ancestor on one (the code's ``min_steps_to_correct`` is ``m_k + 1``). A tree without a right leaf
  gives ``None`` at every node but the root (the code skips such nodes: m = 1024). On one route the
  values climb linearly, ``1/(m+1)`` of the way each step: distances 2, 1, 0 give 1/3, 2/3, 1.
- **HRM** (:func:`hrm_labels`): the share of right leaves among a node's leaves. Hierarchical node
  compression (:func:`compress_nodes`) merges a node's step into one child's, re-parents that child to
  the grandparent and recounts; :func:`merge_last_two` is HRM's "merged without splitting" sample.
- **GenPRM relative progress** (:func:`relative_progress`): ``P_j = m_{j+1} / m_j``, label ``P_j >=
  epsilon`` (0.8). After the first ``m = 0`` every later MC counts as 0 (GenPRM), and a ratio whose
  denominator is 0 is defined as 0 (no progress from a state that cannot reach the answer): every
  step from the first zero on is labelled False, as by the prefix rule.
- **PAV progress** (:func:`progress`): ``A_j = Q(s_j, a_j) - V(s_j) = m_{j+1} - m_j``, with Q the MC
  of the node after step j and V the MC of the node before it (``V(s_j) = Q(s_{j-1}, a_{j-1})``),
  both measured under the search's own policy, which stands in for PAV's prover.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from prmforge.annotators.mc_math import hard_labels
from prmforge.annotators.search_tree import SearchTree
from prmforge.schemas.seeds import unit

__all__ = [
    "LabelledNode",
    "compress_nodes",
    "genprm_labels",
    "hrm_labels",
    "mc_labels",
    "merge_last_two",
    "node_path",
    "path_values",
    "pav_progress",
    "progress",
    "reasoning_distances",
    "relative_progress",
    "rest_path_values",
    "rest_step",
    "rest_values",
    "subtree_counts",
]


def _check_path(tree: SearchTree, path: Sequence[int]) -> None:
    parent = 0
    for position, node_id in enumerate(path):
        if tree.node(node_id).parent_id != parent:
            raise ValueError(f"path: node {node_id} (position {position}) is not a child of node {parent}")
        parent = node_id


def path_values(tree: SearchTree, path: Sequence[int]) -> tuple[float | None, ...]:
    """``(m_0, m_1, ..., m_M)``: MC of the root, then of each node of the path."""
    _check_path(tree, path)
    return (tree.root.mc, *(tree.node(n).mc for n in path))


def mc_labels(
    tree: SearchTree, path: Sequence[int]
) -> tuple[tuple[float | None, ...], tuple[bool | None, ...]]:
    """Per step: soft ``MC`` of the node after it, and hard ``MC > 0`` (``None`` where not estimated)."""
    soft = path_values(tree, path)[1:]
    return soft, hard_labels(soft)


def subtree_counts(tree: SearchTree) -> dict[int, tuple[int, int]]:
    """Per node: ``(right leaves, leaves)`` among the rollouts that pass through it."""
    right = [0] * len(tree.nodes)
    total = [0] * len(tree.nodes)
    for ref, nodes in tree.rollout_paths().items():
        good = tree.rollout(ref).outcome is True
        for node_id in nodes:
            total[node_id] += 1
            right[node_id] += good
    return {n.node_id: (right[n.node_id], total[n.node_id]) for n in tree.nodes}


def hrm_labels(tree: SearchTree, path: Sequence[int]) -> tuple[float | None, ...]:
    """HRM: per step, right leaves / leaves under the node after it (``None``: no leaf under it)."""
    _check_path(tree, path)
    counts = subtree_counts(tree)
    return tuple(_fraction(*counts[n]) for n in path)


def _fraction(right: int, total: int) -> float | None:
    return right / total if total else None


def reasoning_distances(tree: SearchTree) -> dict[int, int | None]:
    """Per node: the fewest steps from it to the end of a right leaf (``None``: no right leaf under it)."""
    best: dict[int, int | None] = {n.node_id: None for n in tree.nodes}
    for ref, nodes in tree.rollout_paths().items():
        rollout = tree.rollout(ref)
        if rollout.outcome is not True:
            continue
        end = tree.node(ref[0]).depth + len(rollout.steps)
        for node_id in nodes:
            distance = end - tree.node(node_id).depth
            current = best[node_id]
            best[node_id] = distance if current is None else min(current, distance)
    return best


def rest_step(previous: float, distance: int, *, on_route: bool) -> float:
    """ReST-MCTS*'s update ``max(v + (1 - v) / (m + 1) * (1 - 2r), 0)`` with ``r = 0`` on a route.

    >>> rest_step(0.0, 2, on_route=True), rest_step(0.5, 1, on_route=False)
    (0.3333333333333333, 0.25)
    """
    if math.isnan(previous) or not 0.0 <= previous <= 1.0:
        raise ValueError(f"previous must be in [0, 1], got {previous}")
    if distance < 0:
        raise ValueError(f"distance must be >= 0, got {distance}")
    sign = 1.0 if on_route else -1.0
    return max(previous + (1.0 - previous) / (distance + 1) * sign, 0.0)


def rest_values(tree: SearchTree) -> dict[int, float | None]:
    """ReST-MCTS* value targets of every node (the root's is ``v_0 = 0``; ``None``: no right leaf at all)."""
    distances = reasoning_distances(tree)
    values: dict[int, float | None] = {0: 0.0}
    inherited: dict[int, int | None] = {0: distances[0]}  # m of the nearest node on a route, itself included
    for node in tree.nodes[1:]:  # parents come before their children
        assert node.parent_id is not None
        own = distances[node.node_id]
        m = own if own is not None else inherited[node.parent_id]
        inherited[node.node_id] = m
        previous = values[node.parent_id]
        if previous is None or m is None:
            values[node.node_id] = None
        else:
            values[node.node_id] = rest_step(previous, m, on_route=own is not None)
    return values


def rest_path_values(tree: SearchTree, path: Sequence[int]) -> tuple[float | None, ...]:
    """:func:`rest_values` of each node of the path."""
    _check_path(tree, path)
    values = rest_values(tree)
    return tuple(values[n] for n in path)


def relative_progress(values: Sequence[float | None]) -> tuple[float | None, ...]:
    """GenPRM's ``P_j = m_{j+1} / m_j`` for ``values = (m_0, ..., m_M)``: M ratios.

    From the first known ``m = 0`` on, every later ratio is 0.0 (GenPRM zeroes the later MC; 0/0 is
    defined as 0). ``None`` where a needed value is unknown before any zero.

    >>> relative_progress([0.5, 0.5, 0.25, None, 0.0, 0.5])
    (1.0, 0.5, None, None, 0.0)
    """
    for t, v in enumerate(values):
        if v is not None and (math.isnan(v) or not 0.0 <= v <= 1.0):
            raise ValueError(f"values[{t}] must be None or in [0, 1], got {v}")
    ratios: list[float | None] = []
    dead = False
    for before, after in itertools.pairwise(values):
        if dead or before == 0:
            ratios.append(0.0)
        elif before is None or after is None:
            ratios.append(None)
        else:
            ratios.append(after / before)
        dead = dead or before == 0 or after == 0
    return tuple(ratios)


def genprm_labels(tree: SearchTree, path: Sequence[int], epsilon: float = 0.8) -> tuple[bool | None, ...]:
    """GenPRM relative progress estimation: step j is good iff ``m_{j+1} / m_j >= epsilon`` (default 0.8)."""
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    return tuple(None if p is None else p >= epsilon for p in relative_progress(path_values(tree, path)))


def progress(values: Sequence[float | None]) -> tuple[float | None, ...]:
    """PAV's advantage ``A_j = m_{j+1} - m_j`` for ``values = (m_0, ..., m_M)`` (``None``: one is unknown).

    >>> progress([0.5, 0.75, None, 0.0])
    (0.25, None, None)
    """
    return tuple(
        None if before is None or after is None else after - before
        for before, after in itertools.pairwise(values)
    )


def pav_progress(tree: SearchTree, path: Sequence[int]) -> tuple[float | None, ...]:
    """PAV progress of each step of the path: ``Q(s_j, a_j) - V(s_j)`` from the tree's MC values."""
    return progress(path_values(tree, path))


@dataclass(frozen=True, slots=True)
class LabelledNode:
    """A node of a (possibly compressed) label tree: its prefix and its leaf counts.

    ``merged`` marks a node that hierarchical node compression moved up: its last step is its old
    parent's step and its own, joined.
    """

    node_id: int
    parent_id: int | None
    prefix: tuple[str, ...]
    right: int
    total: int
    merged: bool = False

    @property
    def label(self) -> float | None:
        """HRM's label: right leaves / leaves (``None``: no leaf)."""
        return _fraction(self.right, self.total)


def compress_nodes(
    tree: SearchTree,
    *,
    seed: int,
    min_children: int = 4,
    probability: float = 0.5,
    joiner: str = "\n",
) -> tuple[LabelledNode, ...]:
    """HRM's hierarchical node compression (``split_node``), then the recount, in node-id order.

    Breadth first over the tree: a node p that was not moved itself, is not the root, and has at least
    ``min_children`` children moves at most one child c (the first, in child order, whose draw
    ``unit("hnc", seed, problem_id, c) < probability``) up to p's parent, its step becoming
    ``p.step + joiner + c.step`` (the prefixes under c follow). p then loses c's leaves; every other
    count is unchanged. ``joiner`` has no blank line, so the merged text stays one step.
    Deterministic in ``seed``; without a move it is :func:`subtree_counts` as label nodes.
    """
    if min_children < 1:
        raise ValueError(f"min_children must be >= 1, got {min_children}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    counts = subtree_counts(tree)
    parent = {n.node_id: n.parent_id for n in tree.nodes}
    prefix = {n.node_id: n.prefix for n in tree.nodes}
    right = {i: c[0] for i, c in counts.items()}
    total = {i: c[1] for i, c in counts.items()}
    children = {n.node_id: list(tree.children(n.node_id)) for n in tree.nodes}
    moved: set[int] = set()
    queue = [0]
    while queue:
        p = queue.pop(0)
        kids = list(children[p])
        grandparent = parent[p]
        if grandparent is not None and p not in moved and len(kids) >= min_children:
            for c in kids:
                if unit("hnc", seed, tree.problem_id, c) < probability:
                    moved.add(c)
                    children[p].remove(c)
                    children[grandparent].append(c)
                    parent[c] = grandparent
                    right[p] -= right[c]
                    total[p] -= total[c]
                    merged = prefix[p][-1] + joiner + prefix[c][-1]
                    _reprefix(c, (*prefix[grandparent], merged), prefix, children)
                    break
        queue.extend(kids)
    return tuple(
        LabelledNode(i, parent[i], prefix[i], right[i], total[i], i in moved)
        for i in (n.node_id for n in tree.nodes)
    )


def _reprefix(
    node: int, new: tuple[str, ...], prefix: dict[int, tuple[str, ...]], children: dict[int, list[int]]
) -> None:
    """Give ``node`` the prefix ``new`` and carry the change down its subtree."""
    old = len(prefix[node])
    stack = [node]
    while stack:
        current = stack.pop()
        prefix[current] = new + prefix[current][old:]
        stack.extend(children[current])


def node_path(nodes: Sequence[LabelledNode], node_id: int) -> tuple[LabelledNode, ...]:
    """The label nodes from the root's child down to ``node_id`` (one per step of its prefix)."""
    by_id = {n.node_id: n for n in nodes}
    if node_id not in by_id:
        raise ValueError(f"node_id {node_id} is not among the nodes")
    chain = []
    current: int | None = node_id
    while current is not None and by_id[current].parent_id is not None:
        chain.append(by_id[current])
        current = by_id[current].parent_id
    return tuple(reversed(chain))


def merge_last_two(prefix: Sequence[str], joiner: str = "\n") -> tuple[str, ...]:
    """HRM's "merged without splitting" sample: the last two steps as one (a 1-step prefix is returned as is).

    >>> merge_last_two(["a", "b", "c"])
    ('a', 'b\\nc')
    """
    if len(prefix) < 2:
        return tuple(prefix)
    return (*prefix[:-2], prefix[-2] + joiner + prefix[-1])
