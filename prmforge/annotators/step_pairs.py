"""Step preference pairs mined from a search tree (the rStar-Math idea, METHODS.md §2(b) "pairs").

Two sibling steps under one parent make a pair ``(chosen, rejected)`` when:

- both values are measured (the nodes' MC) and ``value(chosen) - value(rejected) >= margin`` (0.5);
- the chosen step leads to a right answer (a right leaf under it) and the rejected one to a wrong
  answer (a wrong or ungraded leaf under it; leaves as in :mod:`prmforge.annotators.tree_labels`);
- the two step texts are at least ``min_edit_distance`` apart (Levenshtein, in characters). The
  default 1 only asks that they differ: an arithmetic slip (``=7`` against ``=8``) is one character
  and is exactly the pair a PRM should learn; raise it to drop near-duplicates.

Order: parents by node id, then pairs by larger margin first, then chosen and rejected node ids,
so the same tree always gives the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prmforge.annotators.search_tree import SearchTree
from prmforge.annotators.tree_labels import subtree_counts
from prmforge.policies.base import render_prompt

__all__ = ["StepPair", "levenshtein", "mine_step_pairs", "pairs_to_rows"]


def levenshtein(a: str, b: str) -> int:
    """The edit distance between two strings (insertions, deletions, substitutions; each costs 1).

    >>> levenshtein("kitten", "sitting"), levenshtein("", "abc"), levenshtein("same", "same")
    (3, 3, 0)
    """
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@dataclass(frozen=True, slots=True)
class StepPair:
    """A preference pair of sibling steps and the tree statistics that justified it.

    ``prompt`` is the question followed by the parent's prefix (:func:`~prmforge.policies.base.render_prompt`,
    each step followed by a blank line); ``*_leaves`` are ``(right leaves, leaves)`` under each step.
    """

    problem_id: str
    parent_id: int
    prompt: str
    prefix: tuple[str, ...]
    chosen: str
    rejected: str
    chosen_node: int
    rejected_node: int
    chosen_value: float
    rejected_value: float
    chosen_visits: int
    rejected_visits: int
    chosen_leaves: tuple[int, int]
    rejected_leaves: tuple[int, int]
    edit_distance: int

    @property
    def margin(self) -> float:
        return self.chosen_value - self.rejected_value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able row (tuples as lists)."""
        return {
            "problem_id": self.problem_id,
            "parent_id": self.parent_id,
            "prompt": self.prompt,
            "prefix": list(self.prefix),
            "chosen": self.chosen,
            "rejected": self.rejected,
            "chosen_node": self.chosen_node,
            "rejected_node": self.rejected_node,
            "chosen_value": self.chosen_value,
            "rejected_value": self.rejected_value,
            "chosen_visits": self.chosen_visits,
            "rejected_visits": self.rejected_visits,
            "chosen_leaves": list(self.chosen_leaves),
            "rejected_leaves": list(self.rejected_leaves),
            "edit_distance": self.edit_distance,
        }


def mine_step_pairs(
    tree: SearchTree,
    question: str,
    *,
    margin: float = 0.5,
    min_edit_distance: int = 1,
    max_pairs_per_parent: int | None = None,
) -> list[StepPair]:
    """Every qualifying sibling pair of ``tree`` (see the module docstring), at most
    ``max_pairs_per_parent`` per parent (the largest margins) when given."""
    if not 0.0 <= margin <= 1.0:
        raise ValueError(f"margin must be in [0, 1], got {margin}")
    if min_edit_distance < 0:
        raise ValueError(f"min_edit_distance must be >= 0, got {min_edit_distance}")
    if max_pairs_per_parent is not None and max_pairs_per_parent < 1:
        raise ValueError(f"max_pairs_per_parent must be None or >= 1, got {max_pairs_per_parent}")
    counts = subtree_counts(tree)
    pairs: list[StepPair] = []
    for parent in tree.nodes:
        measured = [(n, n.mc) for n in map(tree.node, tree.children(parent.node_id)) if n.mc is not None]
        found: list[StepPair] = []
        for chosen, chosen_value in measured:
            if counts[chosen.node_id][0] == 0:
                continue
            for rejected, rejected_value in measured:
                r_right, r_total = counts[rejected.node_id]
                if rejected is chosen or r_total == r_right or chosen_value - rejected_value < margin:
                    continue
                distance = levenshtein(chosen.step, rejected.step)
                if distance < min_edit_distance:
                    continue
                found.append(
                    StepPair(
                        problem_id=tree.problem_id,
                        parent_id=parent.node_id,
                        prompt=render_prompt(question, parent.prefix),
                        prefix=parent.prefix,
                        chosen=chosen.step,
                        rejected=rejected.step,
                        chosen_node=chosen.node_id,
                        rejected_node=rejected.node_id,
                        chosen_value=chosen_value,
                        rejected_value=rejected_value,
                        chosen_visits=chosen.visits,
                        rejected_visits=rejected.visits,
                        chosen_leaves=counts[chosen.node_id],
                        rejected_leaves=counts[rejected.node_id],
                        edit_distance=distance,
                    )
                )
        found.sort(key=lambda p: (-p.margin, p.chosen_node, p.rejected_node))
        pairs.extend(found if max_pairs_per_parent is None else found[:max_pairs_per_parent])
    return pairs


def pairs_to_rows(pairs: Sequence[StepPair]) -> list[dict[str, Any]]:
    """The pairs as JSON-able rows, in order."""
    return [p.to_dict() for p in pairs]
