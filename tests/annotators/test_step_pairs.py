"""Step preference pairs from a search tree: margin, outcome conditions, edit distance, order."""

from __future__ import annotations

import doctest
import functools
import itertools
import json

import pytest

from prmforge.annotators import step_pairs
from prmforge.annotators.omegaprm import OmegaPRMAnnotator
from prmforge.annotators.search_tree import SearchTree, TreeBuilder, TreeRollout
from prmforge.annotators.step_pairs import StepPair, levenshtein, mine_step_pairs, pairs_to_rows
from prmforge.annotators.tree_labels import subtree_counts
from prmforge.policies.base import GenerationRequest, split_steps
from prmforge.policies.simulated import SimulatedPolicy
from prmforge.schemas.records import Rollout, SamplingParams
from prmforge.suites.arith import generate_arith_problems
from prmforge.verifiers.answer import AnswerGrader


def test_doctests() -> None:
    assert doctest.testmod(step_pairs).failed == 0


@functools.cache
def naive(a: str, b: str) -> int:
    if not a or not b:
        return len(a) + len(b)
    return min(naive(a[1:], b) + 1, naive(a, b[1:]) + 1, naive(a[1:], b[1:]) + (a[0] != b[0]))


def test_levenshtein_matches_the_recursive_definition() -> None:
    words = ["", "a", "ab", "ba", "abc", "acb", "x = 7", "x = 8", "kitten", "sitting", "é7"]
    for a, b in itertools.product(words, repeat=2):
        assert levenshtein(a, b) == naive(a, b) == levenshtein(b, a), (a, b)


def _leaves(*outcomes: bool) -> list[TreeRollout]:
    return [TreeRollout("The answer is: 1", ("The answer is: 1",), o, 4) for o in outcomes]


def tree_s() -> SearchTree:
    """root -> p -> x = 7 (0.75), x = 8 (0.0), y (0.5), z (unmeasured), w (1.0, no leaf), v (0.0, one
    right leaf)."""
    builder = TreeBuilder("s", "test")
    p = builder.ensure(0, ["p"])
    children = {}
    for step, mc, outcomes in [
        ("x = 7", 0.75, (True, True, True, False)),
        ("x = 8", 0.0, (False, False, False, False)),
        ("y", 0.5, (True, False, True, False)),
        ("z", None, (True, False)),
        ("w", 1.0, ()),
        ("v", 0.0, ()),
    ]:
        node = children[step] = builder.ensure(p, [step])
        if mc is not None:
            builder.set_mc(node, mc)
        for rollout in _leaves(*outcomes):
            builder.add_rollout(node, rollout)
    builder.add_rollout(0, TreeRollout("p\n\nv", ("p", "v"), True, 2))  # v's only leaf is right
    for _ in range(3):
        builder.visit(children["x = 7"])
    builder.visit(children["x = 8"])
    assert list(children.values()) == [2, 3, 4, 5, 6, 7]
    return builder.freeze()


def test_pairs_need_the_margin_a_right_and_a_wrong_leaf() -> None:
    tree = tree_s()
    pairs = mine_step_pairs(tree, "Q?")
    assert [(p.chosen, p.rejected) for p in pairs] == [("x = 7", "x = 8"), ("y", "x = 8")]
    first = pairs[0]
    assert first == StepPair(
        problem_id="s",
        parent_id=1,
        prompt="Q?\n\np\n\n",
        prefix=("p",),
        chosen="x = 7",
        rejected="x = 8",
        chosen_node=2,
        rejected_node=3,
        chosen_value=0.75,
        rejected_value=0.0,
        chosen_visits=3,
        rejected_visits=1,
        chosen_leaves=(3, 4),
        rejected_leaves=(0, 4),
        edit_distance=1,
    )
    assert first.margin == 0.75
    assert (pairs[1].margin, pairs[1].edit_distance) == (0.5, 5)
    # w (1.0) has no right leaf and v (0.0) no wrong one: neither is ever paired; z is unmeasured.
    assert subtree_counts(tree)[6] == (0, 0)
    assert subtree_counts(tree)[7] == (1, 1)
    assert not {p.chosen_node for p in pairs} & {5, 6, 7}
    assert not {p.rejected_node for p in pairs} & {5, 6, 7}


def test_options_filter_the_pairs() -> None:
    tree = tree_s()
    assert [(p.chosen, p.rejected) for p in mine_step_pairs(tree, "Q?", min_edit_distance=2)] == [
        ("y", "x = 8")
    ]
    assert [(p.chosen, p.rejected) for p in mine_step_pairs(tree, "Q?", max_pairs_per_parent=1)] == [
        ("x = 7", "x = 8")
    ]
    assert [(p.chosen, p.rejected) for p in mine_step_pairs(tree, "Q?", margin=0.25)] == [
        ("x = 7", "x = 8"),
        ("y", "x = 8"),
        ("x = 7", "y"),
    ]
    assert mine_step_pairs(tree, "Q?", margin=0.8) == []


def test_pair_rows_are_json_able() -> None:
    rows = pairs_to_rows(mine_step_pairs(tree_s(), "Q?"))
    assert json.loads(json.dumps(rows)) == rows
    assert rows[0]["chosen_leaves"] == [3, 4]
    assert rows[0]["prefix"] == ["p"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"margin": 1.5}, r"margin must be in \[0, 1\]"),
        ({"min_edit_distance": -1}, "min_edit_distance must be >= 0"),
        ({"max_pairs_per_parent": 0}, "max_pairs_per_parent must be None or >= 1"),
    ],
)
def test_bad_options_name_the_parameter(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mine_step_pairs(tree_s(), "Q?", **options)  # type: ignore[arg-type]


def test_pairs_from_searched_trees_of_the_simulated_suite() -> None:
    """Trees OmegaPRM grew on the simulated suite give pairs, each meeting every condition, in one order."""
    problems = generate_arith_problems(6, seed=11, min_steps=8, max_steps=10)
    policy = SimulatedPolicy(seed=1)
    grader = AnswerGrader()
    requests = [GenerationRequest(p, (), 4, SamplingParams(), 7) for p in problems]
    rollouts = []
    for problem, result in zip(problems, policy.generate(requests), strict=True):
        for i, completion in enumerate(result.completions):
            rollouts.append(
                Rollout(
                    rollout_id=f"{problem.problem_id}-{i}",
                    problem_id=problem.problem_id,
                    policy=policy.fingerprint,
                    sampling=SamplingParams(),
                    seed=7,
                    text=completion.text,
                    steps=split_steps(completion.text),
                    final_answer=None,
                    outcome=grader.grade(completion.text, problem.gold),
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=completion.tokens,
                )
            )
    omega = OmegaPRMAnnotator(policy, grader, seed=2, search_limit=30)
    omega.annotate({p.problem_id: p for p in problems}, rollouts)
    questions = {p.problem_id: p.question for p in problems}
    pairs = [p for pid, tree in omega.trees.items() for p in mine_step_pairs(tree, questions[pid])]
    assert len(pairs) >= 5
    for pair in pairs:
        tree = omega.trees[pair.problem_id]
        counts = subtree_counts(tree)
        assert (
            tree.node(pair.chosen_node).parent_id == tree.node(pair.rejected_node).parent_id == pair.parent_id
        )
        assert pair.chosen_value - pair.rejected_value >= 0.5
        assert counts[pair.chosen_node][0] > 0
        assert counts[pair.rejected_node][0] < counts[pair.rejected_node][1]
        assert pair.edit_distance == levenshtein(pair.chosen, pair.rejected) >= 1
        assert pair.prompt.startswith(questions[pair.problem_id])
    again = [p for pid, tree in omega.trees.items() for p in mine_step_pairs(tree, questions[pid])]
    assert again == pairs
