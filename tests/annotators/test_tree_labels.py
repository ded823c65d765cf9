"""Tree-derived labels on hand-made trees, every rule with exact numbers."""

from __future__ import annotations

import doctest

import pytest

from prmforge.annotators import tree_labels
from prmforge.annotators.search_tree import SearchTree, TreeBuilder, TreeRollout
from prmforge.annotators.tree_labels import (
    LabelledNode,
    compress_nodes,
    genprm_labels,
    hrm_labels,
    mc_labels,
    merge_last_two,
    node_path,
    path_values,
    pav_progress,
    progress,
    reasoning_distances,
    relative_progress,
    rest_path_values,
    rest_step,
    rest_values,
    subtree_counts,
)
from prmforge.schemas.seeds import unit


def sample(*steps: str, outcome: bool | None) -> TreeRollout:
    return TreeRollout("\n\n".join(steps), steps, outcome, len(steps))


def tree_t() -> SearchTree:
    """root(0.5) -> a(0.5) -> b(0.25) -> c(0.0, the labelled rollout's wrong end); b -> d(1.0); a -> y;
    root -> x(0.0).

    Leaves: the rollout to label r = a b c (wrong), R1 = a b d (right) and R2 = x (wrong) from the root,
    S1 = b c (wrong) and S2 = y (right) from a.
    """
    builder = TreeBuilder("t", "test")
    builder.add_rollout(0, TreeRollout("a\n\nb\n\nc", ("a", "b", "c"), False, 3, rollout_id="r"))
    builder.add_rollout(0, sample("a", "b", "d", outcome=True))
    builder.add_rollout(0, sample("x", outcome=False))
    a, b, c = (builder.ensure(0, ["a", "b", "c"][: i + 1]) for i in range(3))
    d = builder.ensure(b, ["d"])
    x = builder.ensure(0, ["x"])
    y = builder.ensure(a, ["y"])
    builder.add_rollout(a, sample("b", "c", outcome=False))
    builder.add_rollout(a, sample("y", outcome=True))
    for node, mc in ((0, 0.5), (a, 0.5), (b, 0.25), (c, 0.0), (d, 1.0), (x, 0.0)):
        builder.set_mc(node, mc)
    assert (a, b, c, d, x, y) == (1, 2, 3, 4, 5, 6)
    return builder.freeze()


A, B, C, D, X, Y = 1, 2, 3, 4, 5, 6
PATH_R = (A, B, C)


def test_doctests() -> None:
    assert doctest.testmod(tree_labels).failed == 0


def test_path_values_and_mc_labels() -> None:
    tree = tree_t()
    assert tree.path(["a", "b", "c"]) == PATH_R
    assert path_values(tree, PATH_R) == (0.5, 0.5, 0.25, 0.0)
    assert mc_labels(tree, PATH_R) == ((0.5, 0.25, 0.0), (True, True, False))
    assert mc_labels(tree, (A, Y)) == ((0.5, None), (True, None))
    assert path_values(tree, ()) == (0.5,)


def test_a_path_must_go_from_the_root_child_by_child() -> None:
    with pytest.raises(ValueError, match=r"path: node 3 \(position 1\) is not a child of node 1"):
        mc_labels(tree_t(), (A, C))
    with pytest.raises(ValueError, match=r"node 2 \(position 0\) is not a child of node 0"):
        hrm_labels(tree_t(), (B,))


def test_subtree_counts_count_every_rollout_under_each_node_it_passes() -> None:
    assert subtree_counts(tree_t()) == {
        0: (2, 5),
        A: (2, 4),
        B: (1, 3),
        C: (0, 2),
        D: (1, 1),
        X: (0, 1),
        Y: (1, 1),
    }


def test_hrm_labels_are_the_share_of_right_leaves() -> None:
    assert hrm_labels(tree_t(), PATH_R) == (0.5, 1 / 3, 0.0)
    assert hrm_labels(tree_t(), (A, B, D)) == (0.5, 1 / 3, 1.0)


def test_a_node_without_leaves_has_no_hrm_label() -> None:
    builder = TreeBuilder("t", "test")
    z = builder.ensure(0, ["z"])
    assert hrm_labels(builder.freeze(), (z,)) == (None,)


def test_an_ungraded_leaf_is_wrong() -> None:
    builder = TreeBuilder("t", "test")
    builder.add_rollout(0, sample("z", outcome=None))
    builder.add_rollout(0, sample("z", outcome=True))
    z = builder.ensure(0, ["z"])
    assert hrm_labels(builder.freeze(), (z,)) == (0.5,)


def test_reasoning_distances_to_the_nearest_right_leaf() -> None:
    # R1 ends at depth 3, S2 (from a, depth 1, one step) at depth 2.
    assert reasoning_distances(tree_t()) == {0: 2, A: 1, B: 1, C: None, D: 0, X: None, Y: 0}


def test_rest_values_follow_the_update_rule() -> None:
    assert rest_values(tree_t()) == {
        0: 0.0,
        A: 0.5,  # on a route, m = 1: 0 + 1/2
        B: 0.75,  # on a route, m = 1: 0.5 + 0.5/2
        D: 1.0,  # the right final step, m = 0: 0.75 + 0.25
        C: 0.625,  # off route, m of b (1): 0.75 - 0.25/2
        Y: 1.0,  # the right final step under a: 0.5 + 0.5
        X: 0.0,  # off route, m of the root (2): max(0 - 1/3, 0)
    }
    assert rest_path_values(tree_t(), PATH_R) == (0.5, 0.75, 0.625)


def test_rest_values_climb_linearly_along_one_route() -> None:
    builder = TreeBuilder("t", "test")
    builder.add_rollout(0, sample("s1", "s2", "s3", outcome=True))
    path = tuple(builder.ensure(0, ["s1", "s2", "s3"][: i + 1]) for i in range(3))
    third = 1 / 3
    # 1/3, then 1/3 + (2/3)/2 (2/3 up to the last bit of the float sum), then the rest of the way.
    assert rest_path_values(builder.freeze(), path) == (third, third + (1 - third) / 2, 1.0)
    assert rest_path_values(builder.freeze(), path)[1] == pytest.approx(2 / 3, abs=1e-15)


def test_rest_values_are_unknown_without_a_right_leaf() -> None:
    builder = TreeBuilder("t", "test")
    builder.add_rollout(0, sample("s1", "s2", outcome=False))
    path = tuple(builder.ensure(0, ["s1", "s2"][: i + 1]) for i in range(2))
    assert rest_path_values(builder.freeze(), path) == (None, None)
    assert rest_values(builder.freeze())[0] == 0.0


def test_rest_step_checks_its_arguments() -> None:
    assert rest_step(0.25, 0, on_route=True) == 1.0
    assert rest_step(0.25, 0, on_route=False) == 0.0
    assert rest_step(0.5, 3, on_route=False) == 0.375
    with pytest.raises(ValueError, match=r"previous must be in \[0, 1\]"):
        rest_step(1.5, 0, on_route=True)
    with pytest.raises(ValueError, match="distance must be >= 0"):
        rest_step(0.5, -1, on_route=True)


def test_genprm_relative_progress() -> None:
    tree = tree_t()
    assert relative_progress(path_values(tree, PATH_R)) == (1.0, 0.5, 0.0)
    assert genprm_labels(tree, PATH_R) == (True, False, False)
    assert genprm_labels(tree, PATH_R, epsilon=0.5) == (True, True, False)
    assert genprm_labels(tree, (A, Y)) == (True, None)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        genprm_labels(tree, PATH_R, epsilon=0.0)


@pytest.mark.parametrize(
    ("values", "ratios"),
    [
        ((0.25, 0.5), (2.0,)),  # progress above 1 is allowed
        ((0.5, 0.0, 0.5), (0.0, 0.0)),  # after the first zero every later MC counts as 0
        ((0.0, 0.5, 1.0), (0.0, 0.0)),  # a root that cannot reach the answer: no step makes progress
        ((None, 0.0, 0.5), (None, 0.0)),  # a known zero still zeroes what follows
        ((0.5, None, 0.25), (None, None)),
        ((0.5,), ()),
        ((), ()),
    ],
)
def test_relative_progress_cases(values: tuple[float | None, ...], ratios: tuple[float | None, ...]) -> None:
    assert relative_progress(values) == ratios


def test_relative_progress_refuses_values_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"values\[1\] must be None or in \[0, 1\]"):
        relative_progress([0.5, 2.0])


def test_pav_progress_is_q_minus_v() -> None:
    assert pav_progress(tree_t(), PATH_R) == (0.0, -0.25, -0.25)
    assert pav_progress(tree_t(), (A, B, D)) == (0.0, -0.25, 0.75)
    assert pav_progress(tree_t(), (A, Y)) == (0.0, None)
    assert progress([None, 0.5]) == (None,)


def tree_h() -> SearchTree:
    """root -> p -> c1 .. c4, c2 -> h1 .. h4; every leaf sampled at the root."""
    builder = TreeBuilder("h", "test")
    leaves = [
        (("p", "c1"), True),
        (("p", "c2", "h1"), True),
        (("p", "c2", "h2"), False),
        (("p", "c2", "h3"), False),
        (("p", "c2", "h4"), True),
        (("p", "c3"), False),
        (("p", "c4"), False),
    ]
    for steps, outcome in leaves:
        builder.add_rollout(0, sample(*steps, outcome=outcome))
        builder.ensure(0, steps)
    return builder.freeze()


P, C1, C2, H1, H2, H3, H4, C3, C4 = range(1, 10)


def test_compression_moves_one_child_per_node_and_recounts() -> None:
    tree = tree_h()
    assert [n.prefix[-1] for n in tree.nodes[1:]] == ["p", "c1", "c2", "h1", "h2", "h3", "h4", "c3", "c4"]
    nodes = compress_nodes(tree, seed=0, probability=1.0)
    assert nodes == (
        LabelledNode(0, None, (), 3, 7),
        LabelledNode(P, 0, ("p",), 2, 6),  # lost c1's leaf
        LabelledNode(C1, 0, ("p\nc1",), 1, 1, merged=True),  # p's step and c1's, now under the root
        LabelledNode(C2, P, ("p", "c2"), 1, 3),  # lost h1's leaf
        LabelledNode(H1, P, ("p", "c2\nh1"), 1, 1, merged=True),
        LabelledNode(H2, C2, ("p", "c2", "h2"), 0, 1),
        LabelledNode(H3, C2, ("p", "c2", "h3"), 0, 1),
        LabelledNode(H4, C2, ("p", "c2", "h4"), 1, 1),
        LabelledNode(C3, P, ("p", "c3"), 0, 1),
        LabelledNode(C4, P, ("p", "c4"), 0, 1),
    )
    assert [n.label for n in nodes[:4]] == [3 / 7, 2 / 6, 1.0, 1 / 3]
    assert node_path(nodes, H1) == (nodes[P], nodes[H1])
    assert node_path(nodes, C1) == (nodes[C1],)
    assert compress_nodes(tree, seed=0, probability=1.0, joiner=" ")[C1].prefix == ("p c1",)


def test_a_moved_node_moves_its_subtree_and_keeps_its_children_in_place() -> None:
    builder = TreeBuilder("m", "test")
    for child in ("c1", "c2", "c3", "c4"):
        builder.add_rollout(0, sample("p", child, outcome=child == "c1"))
    for grandchild in ("g1", "g2", "g3", "g4"):
        builder.add_rollout(0, sample("p", "c1", grandchild, outcome=True))
        builder.ensure(0, ["p", "c1", grandchild])
    for child in ("c2", "c3", "c4"):
        builder.ensure(0, ["p", child])
    nodes = compress_nodes(builder.freeze(), seed=0, probability=1.0)
    # c1 moved up with its four children; c1 was moved, so none of them moves.
    assert [n.prefix for n in nodes if n.parent_id == 2] == [("p\nc1", g) for g in ("g1", "g2", "g3", "g4")]
    assert [n.node_id for n in nodes if n.merged] == [2]
    assert (nodes[1].right, nodes[1].total) == (0, 3)


def test_no_compression_without_enough_children_or_chance() -> None:
    tree = tree_h()
    counts = subtree_counts(tree)
    for options in ({"probability": 0.0}, {"probability": 1.0, "min_children": 5}):
        nodes = compress_nodes(tree, seed=0, **options)  # type: ignore[arg-type]
        assert [(n.right, n.total) for n in nodes] == [counts[i] for i in range(len(tree.nodes))]
        assert [n.prefix for n in nodes] == [n.prefix for n in tree.nodes]
        assert not any(n.merged for n in nodes)


def test_compression_draws_are_seeded_per_node() -> None:
    tree = tree_h()
    for seed in range(6):
        nodes = compress_nodes(tree, seed=seed)
        moved_from_p = next((c for c in (C1, C2, C3, C4) if unit("hnc", seed, "h", c) < 0.5), None)
        moved_from_c2 = next((h for h in (H1, H2, H3, H4) if unit("hnc", seed, "h", h) < 0.5), None)
        expected = {moved_from_p, moved_from_c2 if moved_from_p != C2 else None} - {None}
        assert {n.node_id for n in nodes if n.merged} == expected
        assert compress_nodes(tree, seed=seed) == nodes


def test_compression_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="min_children must be >= 1"):
        compress_nodes(tree_h(), seed=0, min_children=0)
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
        compress_nodes(tree_h(), seed=0, probability=1.5)
    with pytest.raises(ValueError, match="node_id 99 is not among the nodes"):
        node_path(compress_nodes(tree_h(), seed=0), 99)


def test_merge_last_two() -> None:
    assert merge_last_two(["a", "b", "c"]) == ("a", "b\nc")
    assert merge_last_two(["a", "b"], joiner=" ") == ("a b",)
    assert merge_last_two(["a"]) == ("a",)
    assert merge_last_two([]) == ()
