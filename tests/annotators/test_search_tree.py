"""The search tree as data: the trie's invariants, walks of rollouts, and the exact row round trip."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from prmforge.annotators.search_tree import SearchTree, TreeBuilder, TreeNode, TreeRollout, trees_from_rows


def _tree(problem_id: str = "p1") -> SearchTree:
    """root -> a -> b -> c (the rollout to label), a -> x (sampled), with rollouts on the root and on a."""
    builder = TreeBuilder(problem_id, "omegaprm")
    builder.add_rollout(0, TreeRollout("a\n\nb\n\nc", ("a", "b", "c"), False, 9, rollout_id="r1"))
    builder.add_rollout(0, TreeRollout("a\n\nb\n\nz", ("a", "b", "z"), True, 7))
    builder.add_rollout(0, TreeRollout("q", ("q",), None, 1))
    a = builder.ensure(0, ["a"])
    c = builder.ensure(a, ["b", "c"])
    x = builder.ensure(a, ["x"])
    builder.set_mc(0, 0.5)
    builder.set_mc(a, 0.25)
    builder.set_mc(c, 0.0)
    builder.add_rollout(a, TreeRollout("x\n\ny", ("x", "y"), True, 4))
    builder.add_rollout(a, TreeRollout("", (), False, 0))
    builder.visit(0)
    builder.visit(a)
    builder.visit(a)
    assert (a, c, x) == (1, 3, 4)
    return builder.freeze()


def test_the_builder_makes_a_trie_of_steps() -> None:
    tree = _tree()
    assert [n.prefix for n in tree.nodes] == [(), ("a",), ("a", "b"), ("a", "b", "c"), ("a", "x")]
    assert [n.parent_id for n in tree.nodes] == [None, 0, 1, 2, 1]
    assert [n.depth for n in tree.nodes] == [0, 1, 2, 3, 2]
    assert [n.step for n in tree.nodes] == ["", "a", "b", "c", "x"]
    assert [n.mc for n in tree.nodes] == [0.5, 0.25, None, 0.0, None]
    assert [n.visits for n in tree.nodes] == [1, 2, 0, 0, 0]
    assert tree.children(1) == (2, 4)
    assert tree.child(1, "x") == 4
    assert tree.child(1, "nope") is None
    assert tree.find(["a", "b"]) == 2
    assert tree.find(["b", "c"], start=1) == 3
    assert tree.find(["a", "q"]) is None
    assert tree.path(["a", "b", "c"]) == (1, 2, 3)
    assert tree.ancestors(3) == (0, 1, 2, 3)
    assert tree.rollout_ids == ("r1",)
    assert len(tree.root.samples) == 2
    assert tree.root.correct == 1
    assert tree.node(1).correct == 1


def test_ensure_reuses_existing_nodes() -> None:
    builder = TreeBuilder("p", "s")
    first = builder.ensure(0, ["a", "b"])
    assert builder.ensure(0, ["a", "b"]) == first
    assert builder.ensure(builder.ensure(0, ["a"]), ["b"]) == first
    assert builder.ensure(0, []) == 0
    assert len(builder) == 3


def test_a_rollout_passes_through_its_origins_ancestors_and_the_nodes_its_steps_reach() -> None:
    tree = _tree()
    assert tree.rollout_paths() == {
        (0, 0): (0, 1, 2, 3),  # the rollout to label: its whole path
        (0, 1): (0, 1, 2),  # shares "a", "b", then "z" has no node
        (0, 2): (0,),  # "q" has no node
        (1, 0): (0, 1, 4),  # sampled at a: a's ancestors, a, then x (y has no node)
        (1, 1): (0, 1),  # an empty completion stays at its origin
    }
    assert tree.rollout((1, 0)).steps == ("x", "y")


def test_path_names_the_first_missing_prefix() -> None:
    with pytest.raises(ValueError, match="no node for the first 3 steps"):
        _tree().path(["a", "b", "zz"])


def test_rows_round_trip_exactly_through_json() -> None:
    tree = _tree()
    rows = tree.to_rows()
    assert len(rows) == 5
    assert rows[3] == {
        "problem_id": "p1",
        "source": "omegaprm",
        "node_id": 3,
        "parent_id": 2,
        "depth": 3,
        "step": "c",
        "prefix": ["a", "b", "c"],
        "mc": 0.0,
        "visits": 0,
        "rollouts": [],
    }
    assert rows[0]["rollouts"][0] == {
        "text": "a\n\nb\n\nc",
        "steps": ["a", "b", "c"],
        "outcome": False,
        "tokens": 9,
        "rollout_id": "r1",
    }
    again = json.loads(json.dumps(rows))
    assert SearchTree.from_rows(again) == tree
    assert SearchTree.from_rows(again).to_rows() == rows
    shuffled = list(again)
    random.Random(0).shuffle(shuffled)
    assert SearchTree.from_rows(shuffled) == tree


def test_a_table_of_several_trees_splits_back_in_order() -> None:
    one, two = _tree("p1"), _tree("p2")
    rows = two.to_rows() + one.to_rows()
    assert trees_from_rows(json.loads(json.dumps(rows))) == [two, one]


def test_from_rows_refuses_mixed_trees_missing_keys_and_no_rows() -> None:
    with pytest.raises(ValueError, match="rows are of 2 trees"):
        SearchTree.from_rows(_tree("p1").to_rows() + _tree("p2").to_rows())
    rows = _tree().to_rows()
    del rows[2]["visits"]
    with pytest.raises(ValueError, match=r"row of node 2 lacks \['visits'\]"):
        SearchTree.from_rows(rows)
    with pytest.raises(ValueError, match="at least the root"):
        SearchTree.from_rows([])


def _with(tree: SearchTree, index: int, **changes: object) -> tuple[TreeNode, ...]:
    nodes = list(tree.nodes)
    nodes[index] = dataclasses.replace(nodes[index], **changes)  # type: ignore[arg-type]
    return tuple(nodes)


@pytest.mark.parametrize(
    ("index", "changes", "message"),
    [
        (0, {"prefix": ("a",)}, "the root must have"),
        (2, {"node_id": 7}, "node_id must equal its position 2"),
        (2, {"parent_id": 3}, "parent_id must be an earlier node's id"),
        (2, {"prefix": ("a", "q")}, "prefix must be its parent's prefix followed by its step"),
        (2, {"depth": 5}, "depth must be len"),
        (2, {"mc": 1.5}, r"mc must be None or in \[0, 1\]"),
        (2, {"mc": float("nan")}, r"mc must be None or in \[0, 1\]"),
        (2, {"visits": -1}, "visits must be >= 0"),
        (1, {"rollouts": (TreeRollout("t", ("t",), True, 1, rollout_id="r9"),)}, "hang at the root only"),
        (1, {"rollouts": (TreeRollout("t", ("t",), True, -1),)}, "tokens must be >= 0"),
        (4, {"step": "b", "prefix": ("a", "b")}, "nodes 2 and 4 both add step 'b' to node 1"),
    ],
)
def test_a_malformed_tree_is_refused_naming_the_node(
    index: int, changes: dict[str, object], message: str
) -> None:
    tree = _tree()
    with pytest.raises(ValueError, match=message):
        SearchTree(tree.problem_id, tree.source, _with(tree, index, **changes))


def test_a_tree_needs_a_root() -> None:
    with pytest.raises(ValueError, match="at least the root"):
        SearchTree("p", "s", ())


def test_node_lookup_names_the_missing_id() -> None:
    with pytest.raises(ValueError, match="has no node 9"):
        _tree().node(9)


def test_set_mc_refuses_values_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"mc must be in \[0, 1\]"):
        TreeBuilder("p", "s").set_mc(0, -0.1)
