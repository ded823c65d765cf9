"""OmegaPRM: the binary search, the pool (each pair selected once), rounds, costs, the simulated suite."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import json
import math
from collections.abc import Callable, Sequence

import pytest
from pydantic import ValidationError

from prmforge.annotators import omegaprm_search
from prmforge.annotators.base import Annotator
from prmforge.annotators.config import AnnotatorContext
from prmforge.annotators.mc import MonteCarloAnnotator
from prmforge.annotators.omegaprm import OmegaPRMAnnotator, estimate_seed
from prmforge.annotators.omegaprm_config import OmegaPRMConfig
from prmforge.annotators.omegaprm_search import BinarySearch, CandidatePool, q_value, u_value
from prmforge.annotators.search_tree import SearchTree
from prmforge.policies.base import Completion, GenerationRequest, GenerationResult, Policy, split_steps
from prmforge.policies.simulated import SimulatedPolicy, SimulatedPolicyParams
from prmforge.schemas.records import Problem, Rollout, SamplingParams, StepLabels, prefix_labels
from prmforge.schemas.seeds import derive_seed
from prmforge.suites.arith import generate_arith_problems
from prmforge.suites.truth import exact_truth
from prmforge.verifiers.answer import AnswerGrader, extract_final_answer

C = 0.125


# ------------------------------------------------------------------ the search mathematics


def test_doctests() -> None:
    assert doctest.testmod(omegaprm_search).failed == 0


def test_q_and_u_follow_the_paper() -> None:
    assert q_value(1.0, 0, alpha=0.5, beta=0.9, length_norm=500) == 1.0
    assert q_value(0.0, 500, alpha=0.5, beta=0.9, length_norm=500) == 0.5 * 0.9
    assert q_value(0.75, 1000, alpha=0.5, beta=0.9, length_norm=500) == 0.5**0.25 * 0.81
    assert u_value(0, 0, c_puct=C) == 0.0
    assert u_value(9, 2, c_puct=C) == C * 3 / 3
    assert u_value(4, 0, c_puct=C) == C * 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: q_value(1.5, 0, alpha=0.5, beta=0.9, length_norm=500), r"mc must be in \[0, 1\]"),
        (lambda: q_value(0.5, -1, alpha=0.5, beta=0.9, length_norm=500), "length must be >= 0"),
        (lambda: q_value(0.5, 1, alpha=0.0, beta=0.9, length_norm=500), r"alpha must be in \(0, 1\]"),
        (lambda: q_value(0.5, 1, alpha=0.5, beta=1.1, length_norm=500), r"beta must be in \(0, 1\]"),
        (lambda: q_value(0.5, 1, alpha=0.5, beta=0.9, length_norm=0), "length_norm must be > 0"),
        (lambda: u_value(1, 2, c_puct=C), "need 0 <= visits <= total_visits"),
        (lambda: u_value(1, 0, c_puct=-1), "c_puct must be >= 0"),
        (lambda: BinarySearch(-1, ends_wrong=True), "steps must be >= 0"),
    ],
)
def test_bad_arguments_name_the_parameter(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_binary_search_finds_the_first_zero_in_log_steps() -> None:
    """Prefixes of up to 5 steps have MC > 0, longer ones 0: step 5 is the first error, 3 probes."""
    for steps in range(1, 40):
        for first_error in range(steps):
            search = BinarySearch(steps, ends_wrong=True)
            while (probe := search.probe) is not None:
                search.record(0.5 if probe <= first_error else 0.0)
            assert search.first_error == first_error
            assert len(search.path) <= math.ceil(math.log2(steps))
    search = BinarySearch(8, ends_wrong=True)
    while (probe := search.probe) is not None:
        search.record(0.5 if probe <= 5 else 0.0)
    assert search.path == [(4, 0.5), (6, 0.0), (5, 0.5)]


def test_binary_search_of_an_ungraded_rollout_probes_its_whole_text_too() -> None:
    search = BinarySearch(3, ends_wrong=False)
    assert search.probe == 2
    search.record(0.25)
    assert search.probe == 3
    search.record(0.5)
    assert (search.done, search.first_error) == (True, -1)
    search = BinarySearch(3, ends_wrong=False)
    search.record(0.25)
    search.record(0.0)
    assert search.first_error == 2
    with pytest.raises(ValueError, match="nothing to record"):
        search.record(0.5)
    assert BinarySearch(0, ends_wrong=True).first_error == -1
    assert BinarySearch(1, ends_wrong=True).first_error == 0
    with pytest.raises(ValueError, match="not done"):
        _ = BinarySearch(4, ends_wrong=True).first_error


def test_the_pool_selects_the_largest_q_plus_u_and_never_the_same_pair_twice() -> None:
    pool = CandidatePool(c_puct=C)
    pool.add(1, 0, 0.6)
    pool.add(1, 1, 0.55)
    pool.add(2, 0, 0.5)
    # No visits yet: U = 0 everywhere, so Q decides.
    first = pool.select({}, 0)
    assert first is not None
    assert (first.state, first.rollout, first.q, first.u) == (1, 0, 0.6, 0.0)
    # State 1 visited 3 times of 4: U(1) = 0.125 * 2 / 4, U(2) = 0.125 * 2 / 1; 0.55 + 0.0625 < 0.5 + 0.25.
    second = pool.select({1: 3}, 4)
    assert second is not None
    assert (second.state, second.rollout, second.score) == (2, 0, 0.75)
    third = pool.select({1: 3, 2: 1}, 4)
    assert third is not None
    assert (third.state, third.rollout) == (1, 1)
    assert pool.select({}, 0) is None
    assert len(pool) == 0
    assert pool.spent == {(1, 0), (1, 1), (2, 0)}
    assert [(c.state, c.rollout) for c in pool.selected] == [(1, 0), (2, 0), (1, 1)]
    with pytest.raises(ValueError, match="selected already"):
        pool.add(1, 0, 0.9)
    pool.add(3, 0, 0.1)
    with pytest.raises(ValueError, match="in the pool already"):
        pool.add(3, 0, 0.1)
    assert (3, 0) in pool


def test_pool_ties_go_to_the_smaller_state_then_rollout() -> None:
    pool = CandidatePool(c_puct=C)
    for state, rollout in [(5, 1), (2, 3), (2, 1), (5, 0)]:
        pool.add(state, rollout, 0.5)
    order = []
    while (chosen := pool.select({}, 0)) is not None:
        order.append((chosen.state, chosen.rollout))
    assert order == [(2, 1), (2, 3), (5, 0), (5, 1)]


# ------------------------------------------------------------------ the annotator, with a test double


GOLD = 4
SAMPLING = SamplingParams()


def clean(prefix: Sequence[str]) -> bool:
    """A prefix is fine until a step marked ``e`` (an error) or ``bad`` (a sampled wrong step)."""
    return not any(s.startswith(("e", "bad")) for s in prefix)


class PrefixTablePolicy:
    """Test double: after a prefix, the first ``right(prefix)`` of n completions reach the gold answer.

    A right completion is ``"fine\\n\\nThe answer is: 4"``; a wrong one ``"bad\\n\\nThe answer is: 5"``
    (two steps, so it can be searched). Completion i has 10 + i tokens. Batches are recorded.
    """

    def __init__(self, right: Callable[[Sequence[str], int], int], *, cached: bool = False) -> None:
        self._right = right
        self._cached = cached
        self.batches: list[list[GenerationRequest]] = []

    @property
    def fingerprint(self) -> str:
        return "prefix-table-v1"

    @property
    def requests(self) -> list[GenerationRequest]:
        return [r for batch in self.batches for r in batch]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.batches.append(list(requests))
        out = []
        for request in requests:
            right = self._right(request.prefix, request.n)
            completions = tuple(
                Completion(
                    text=f"fine\n\nThe answer is: {GOLD}"
                    if i < right
                    else f"bad\n\nThe answer is: {GOLD + 1}",
                    tokens=10 + i,
                )
                for i in range(request.n)
            )
            out.append(GenerationResult(completions, len(request.prompt.split()), cached=self._cached))
        return out


def half_when_clean(prefix: Sequence[str], n: int) -> int:
    return n // 2 if clean(prefix) else 0


def problem(pid: str = "p1") -> Problem:
    return Problem(problem_id=pid, domain="math", question=f"Question {pid}?", gold=str(GOLD), source="test")


def rollout(rid: str, steps: Sequence[str], outcome: bool | None, pid: str = "p1") -> Rollout:
    return Rollout(
        rollout_id=rid,
        problem_id=pid,
        policy="test",
        sampling=SAMPLING,
        seed=0,
        text="\n\n".join(steps),
        steps=tuple(steps),
        final_answer=None,
        outcome=outcome,
        prompt_tokens=5,
        completion_tokens=3 * len(steps),
    )


WRONG_AT_5 = ("s0", "s1", "s2", "s3", "s4", "e5", "e6", "The answer is: 7")
PROBLEMS = {"p1": problem("p1"), "p2": problem("p2")}


def annotator(policy: Policy, **options: object) -> OmegaPRMAnnotator:
    settings: dict[str, object] = {"k": 4, "seed": 3, "search_limit": 1, **options}
    return OmegaPRMAnnotator(policy, AnswerGrader(), **settings)  # type: ignore[arg-type]


def test_it_is_an_annotator() -> None:
    assert isinstance(annotator(PrefixTablePolicy(half_when_clean)), Annotator)
    assert annotator(PrefixTablePolicy(half_when_clean), name="omega-b").name == "omega-b"


def test_a_wrong_rollout_is_binary_searched_to_its_first_error() -> None:
    policy = PrefixTablePolicy(half_when_clean)
    omega = annotator(policy)
    (labels,) = omega.annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])
    assert labels.first_error == 5
    assert labels.hard == prefix_labels(5, 8)
    assert labels.values == (None, None, None, 0.5, 0.5, 0.0, None, 0.0)
    assert labels.meta["search_path"] == [[4, 0.5], [6, 0.0], [5, 0.5]]
    assert labels.meta["first_error_from"] == "binary-search"
    assert (labels.meta["estimates"], labels.meta["root_mc"], labels.meta["k"]) == (3, 0.5, 4)
    # One round per estimate: the root, then the probes of 4, 6 and 5 steps.
    assert [[len(r.prefix) for r in batch] for batch in policy.batches] == [[0], [4], [6], [5]]
    assert omega.calls == 4
    for request in policy.requests:
        assert (request.n, request.sampling) == (4, SAMPLING)
        assert request.seed == estimate_seed(3, "p1", request.prefix)
        assert request.seed == derive_seed(
            "omegaprm-estimate", 3, "p1", len(request.prefix), *request.prefix, bits=31
        )
    assert len({r.seed for r in policy.requests}) == 4
    # Exact cost: 4 estimates of 4 completions of 10..13 tokens.
    assert (labels.cost.completions, labels.cost.generated_tokens) == (16, 4 * 46)
    assert labels.cost.prompt_tokens == sum(len(r.prompt.split()) for r in policy.requests)
    assert labels.cost.cached_completions == 0
    tree = omega.trees["p1"]
    assert labels.meta["path_node_ids"] == list(tree.path(WRONG_AT_5))
    assert [tree.node(n).mc for n in tree.path(WRONG_AT_5)] == [None, None, None, 0.5, 0.5, 0.0, None, 0.0]
    assert tree.root.visits == 1
    assert (labels.meta["tree_nodes"], labels.meta["tree_searches"], labels.meta["tree_completions"]) == (
        9,
        1,
        16,
    )


def test_a_right_rollout_is_not_searched() -> None:
    policy = PrefixTablePolicy(half_when_clean)
    (labels,) = annotator(policy, search_limit=0).annotate(
        PROBLEMS, [rollout("r1", ("s0", "s1", "The answer is: 4"), True)]
    )
    assert (labels.first_error, labels.hard, labels.values) == (-1, (True,) * 3, (None, None, 1.0))
    assert labels.meta["first_error_from"] == "outcome"
    assert labels.meta["search_path"] == []
    assert labels.cost.completions == 4  # the root's estimate only
    assert [len(r.prefix) for r in policy.requests] == [0]


def test_an_ungraded_rollout_probes_its_last_prefix_too() -> None:
    (fine, broken) = annotator(PrefixTablePolicy(half_when_clean), search_limit=2).annotate(
        PROBLEMS, [rollout("r1", ("s0", "s1", "s2"), None), rollout("r2", ("s0", "e1", "e2"), None)]
    )
    assert (fine.first_error, fine.values, fine.meta["search_path"]) == (
        -1,
        (None, 0.5, 0.5),
        [[2, 0.5], [3, 0.5]],
    )
    assert (broken.first_error, broken.values, broken.meta["search_path"]) == (
        1,
        (0.5, 0.0, None),
        [[2, 0.0], [1, 0.5]],
    )


def test_a_rollout_without_steps_gets_empty_labels() -> None:
    (labels,) = annotator(PrefixTablePolicy(half_when_clean)).annotate(PROBLEMS, [rollout("r1", (), False)])
    assert (labels.values, labels.hard, labels.first_error) == ((), (), -1)
    assert labels.meta["first_error_from"] == "no-steps"


def test_searches_advance_together_and_share_the_prefixes_they_both_need() -> None:
    """Three rollouts of one question and one of another: one call per round; a prefix two searches need
    in one round is estimated once (paid by the first), one estimated in an earlier round is reused."""
    policy = PrefixTablePolicy(half_when_clean)
    rollouts = [
        rollout("a", WRONG_AT_5, False),
        rollout("b", (*WRONG_AT_5[:5], "s5", "e6", "The answer is: 7"), False),
        rollout("c", ("s0", "e1", "s2", "The answer is: 7"), False, pid="p2"),
        rollout("d", (*WRONG_AT_5[:6], "The answer is: 7"), False),
    ]
    a, b, c, d = annotator(policy, search_limit=0).annotate(PROBLEMS, rollouts)
    assert [[(r.problem_id, len(r.prefix)) for r in batch] for batch in policy.batches] == [
        [("p1", 0), ("p2", 0)],
        [("p1", 4), ("p1", 3), ("p2", 2)],  # a and b need the same 4-step prefix: one request, paid by a
        [("p1", 6), ("p1", 6), ("p1", 5), ("p2", 1)],  # a's (s0..e5), b's (s0..s5), d's 5 steps
        [("p1", 7)],  # a's 5 steps and d's 6 steps were estimated in the round before: only b asks
    ]
    assert (a.first_error, b.first_error, c.first_error, d.first_error) == (5, 6, 1, 5)
    assert a.meta["search_path"] == [[4, 0.5], [6, 0.0], [5, 0.5]]
    assert b.meta["search_path"] == [[4, 0.5], [6, 0.5], [7, 0.0]]
    assert c.meta["search_path"] == [[2, 0.0], [1, 0.5]]
    assert d.meta["search_path"] == [[3, 0.5], [5, 0.5], [6, 0.0]]
    assert [x.meta["estimates"] for x in (a, b, c, d)] == [2, 2, 2, 2]
    # p1's root estimate (4 completions) is split 2 + 1 + 1 over a, b, d; p2's stays with c.
    assert [x.cost.completions for x in (a, b, c, d)] == [10, 9, 12, 9]
    labels = (a, b, c, d)
    assert sum(x.cost.completions for x in labels) == sum(r.n for r in policy.requests) == 40
    tokens = sum(10 + i for r in policy.requests for i in range(r.n))
    assert sum(x.cost.generated_tokens for x in labels) == tokens
    assert sum(x.cost.prompt_tokens for x in labels) == sum(len(r.prompt.split()) for r in policy.requests)


def test_the_shared_cost_is_split_in_integers_with_the_remainder_first() -> None:
    rollouts = [rollout(f"r{i}", ("s0", "The answer is: 4"), True) for i in range(3)]
    labels = annotator(PrefixTablePolicy(half_when_clean), search_limit=0).annotate(PROBLEMS, rollouts)
    assert [x.cost.completions for x in labels] == [2, 1, 1]
    assert sum(x.cost.generated_tokens for x in labels) == 46
    assert sum(x.cost.seconds for x in labels) >= 0


def test_labels_of_a_rollout_do_not_depend_on_the_others_in_the_call() -> None:
    alone = annotator(PrefixTablePolicy(half_when_clean), search_limit=50).annotate(
        PROBLEMS, [rollout("a", WRONG_AT_5, False)]
    )[0]
    together = annotator(PrefixTablePolicy(half_when_clean), search_limit=50).annotate(
        PROBLEMS,
        [rollout("b", ("s0", "s1", "e2", "The answer is: 5"), False), rollout("a", WRONG_AT_5, False)],
    )[1]
    assert (alone.first_error, alone.values, alone.hard) == (
        together.first_error,
        together.values,
        together.hard,
    )


def test_the_tree_search_takes_the_best_pairs_once_each_until_the_pool_is_empty() -> None:
    """After the rollout's search, the pool holds the wrong completions of the root and of the 4- and
    5-step prefixes (MC 0.5; the 6-step prefix has MC 0). Each probe of a sampled wrong step has MC 0,
    so no new candidate appears: 6 selections, each pair once, then the pool is empty (OpenR's loop
    pushed the selected pair back and would select it again until the search limit)."""
    omega = annotator(PrefixTablePolicy(half_when_clean), search_limit=100)
    (labels,) = omega.annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])
    tree = omega.trees["p1"]
    four, five = tree.path(WRONG_AT_5)[3], tree.path(WRONG_AT_5)[4]
    pairs = [(c.state, c.rollout) for c in omega.selections["p1"]]
    assert len(pairs) == len(set(pairs)) == 6
    # U(4) = U(5) > U(root) after the root's visit: the tie goes to the 4-step prefix, the shorter
    # (cheaper) rollout first.
    assert pairs[:2] == [(four, 2), (five, 2)]
    # The root's rollouts: the rollout to label (index 0), then its 4 samples (the wrong ones 3 and 4).
    assert sorted(pairs) == sorted([(0, 3), (0, 4), (four, 2), (four, 3), (five, 2), (five, 3)])
    assert labels.meta["tree_searches"] == 7
    assert (tree.root.visits, tree.node(four).visits, tree.node(five).visits) == (3, 2, 2)
    assert labels.first_error == 5  # the tree search does not change the rollout's labels


def test_search_limit_and_rollout_budget_stop_the_tree_search() -> None:
    limited = annotator(PrefixTablePolicy(half_when_clean), search_limit=3)
    limited.annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])
    assert len(limited.selections["p1"]) == 2
    # 16 completions are spent by the rollout's search: a budget of 16 starts no tree search, 17 one.
    for budget, selections in ((16, 0), (17, 1)):
        budgeted = annotator(PrefixTablePolicy(half_when_clean), search_limit=100, rollout_budget=budget)
        (labels,) = budgeted.annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])
        assert len(budgeted.selections["p1"]) == selections
        assert labels.first_error == 5


def test_the_prefilter_drops_a_question_whose_root_rollouts_all_agree() -> None:
    all_right = PrefixTablePolicy(lambda prefix, n: n)
    (labels,) = annotator(all_right, prefilter=True).annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])
    assert labels.meta["abstained"] == "question pre-filter: all 4 rollouts from the question were right"
    assert (labels.values, labels.hard, labels.first_error) == ((None,) * 8, (None,) * 8, None)
    assert labels.cost.completions == 4
    all_wrong = PrefixTablePolicy(lambda prefix, n: 0)
    (labels,) = annotator(all_wrong, prefilter=True).annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])
    assert labels.meta["abstained"].endswith("were wrong")
    kept = annotator(PrefixTablePolicy(half_when_clean), prefilter=True).annotate(
        PROBLEMS, [rollout("r1", WRONG_AT_5, False)]
    )[0]
    assert "abstained" not in kept.meta
    assert kept.first_error == 5
    # Without the filter, a root that is all wrong is still searched: every probe is 0, step 0 is blamed.
    (unfiltered,) = annotator(all_wrong).annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])
    assert unfiltered.first_error == 0


def test_cached_results_are_counted() -> None:
    (labels,) = annotator(PrefixTablePolicy(half_when_clean, cached=True)).annotate(
        PROBLEMS, [rollout("r1", WRONG_AT_5, False)]
    )
    assert labels.cost.cached_completions == labels.cost.completions == 16


def test_the_annotator_refuses_bad_settings_and_inputs() -> None:
    policy = PrefixTablePolicy(half_when_clean)
    cases: list[tuple[dict[str, float], str]] = [
        ({"k": 0}, "k must be >= 1"),
        ({"search_limit": -1}, "search_limit must be >= 0"),
        ({"rollout_budget": -1}, "rollout_budget must be None or >= 0"),
        ({"alpha": 2.0}, "alpha must be in"),
        ({"c_puct": -0.1}, "c_puct must be >= 0"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            annotator(policy, **options)
    with pytest.raises(ValueError, match="problem 'p9' is not among the problems given"):
        annotator(policy).annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False, pid="p9")])

    class ShortPolicy(PrefixTablePolicy):
        def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            return [dataclasses.replace(r, completions=r.completions[:1]) for r in super().generate(requests)]

    with pytest.raises(ValueError, match="policy returned 1 completions, 4 requested"):
        annotator(ShortPolicy(half_when_clean)).annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])


def test_the_tree_of_a_run_round_trips_through_rows() -> None:
    omega = annotator(PrefixTablePolicy(half_when_clean), search_limit=100)
    omega.annotate(PROBLEMS, [rollout("r1", WRONG_AT_5, False)])
    tree = omega.trees["p1"]
    assert tree.source == "omegaprm"
    assert tree.rollout_ids == ("r1",)
    assert SearchTree.from_rows(json.loads(json.dumps(tree.to_rows()))) == tree


# ------------------------------------------------------------------ the config


def test_config_defaults_are_the_papers_and_build_the_annotator() -> None:
    config = OmegaPRMConfig.model_validate({"kind": "omegaprm"})
    assert (config.k, config.alpha, config.beta, config.length_norm, config.c_puct, config.search_limit) == (
        8,
        0.5,
        0.9,
        500.0,
        0.125,
        100,
    )
    assert (config.rollout_budget, config.prefilter, config.source) == (None, False, "omegaprm")
    assert OmegaPRMConfig.domains == frozenset({"math"})
    assert OmegaPRMConfig.continues_prefixes
    policy = PrefixTablePolicy(half_when_clean)
    context = AnnotatorContext(policy=policy, seed=5, isolation="bwrap", programs=lambda: None)
    built = OmegaPRMConfig.model_validate({"kind": "omegaprm", "k": 2, "search_limit": 0}).build(context)
    assert isinstance(built.annotator, OmegaPRMAnnotator)
    built.annotator.annotate(PROBLEMS, [rollout("r1", ("s0", "The answer is: 4"), True)])
    assert policy.requests[0].seed == estimate_seed(5, "p1", ())
    assert policy.requests[0].n == 2
    named = OmegaPRMConfig.model_validate({"kind": "omegaprm", "name": "omega-b", "search_limit": 0})
    named.build(context).annotator.annotate(PROBLEMS, [rollout("r1", ("s0", "The answer is: 4"), True)])
    assert len(policy.requests) == 2
    assert policy.requests[-1].seed == estimate_seed(derive_seed(5, "annotator", "omega-b"), "p1", ())
    assert config.provenance("bwrap") == {
        "method": "omegaprm",
        "tool": "none",
        "isolation": "no code executed",
    }
    assert config.card_sentence() == (
        "OmegaPRM binary search for the first error (k=8 completions per estimate), in a tree search of up "
        "to 100 searches per question (no rollout budget; alpha=0.5, beta=0.9, L=500, c_puct=0.125), "
        "pre-filter off."
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"k": 0},
        {"alpha": 0},
        {"beta": 1.5},
        {"length_norm": 0},
        {"c_puct": -1},
        {"search_limit": -1},
        {"n": 8},
    ],
)
def test_config_refuses_bad_fields(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        OmegaPRMConfig.model_validate({"kind": "omegaprm", **bad})


# ------------------------------------------------------------------ the simulated suite


def _sha(blob: object) -> bytes:
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).digest()


def sample_rollouts(problems: Sequence[Problem], policy: Policy, k: int, seed: int) -> list[Rollout]:
    """``k`` rollouts per problem, graded on the final answer, with their exact truth."""
    grader = AnswerGrader()
    seeds = [int.from_bytes(_sha([str(seed), "generate", p.problem_id])[:8], "big") >> 1 for p in problems]
    requests = [GenerationRequest(p, (), k, SAMPLING, s) for p, s in zip(problems, seeds, strict=True)]
    out = []
    for problem_, req_seed, result in zip(problems, seeds, policy.generate(requests), strict=True):
        for i, completion in enumerate(result.completions):
            steps = split_steps(completion.text)
            answer = extract_final_answer(completion.text)
            out.append(
                Rollout(
                    rollout_id=_sha([problem_.problem_id, req_seed, i]).hex()[:24],
                    problem_id=problem_.problem_id,
                    policy=policy.fingerprint,
                    sampling=SAMPLING,
                    seed=req_seed,
                    text=completion.text,
                    steps=steps,
                    final_answer=answer,
                    outcome=False if answer is None else grader.grade(completion.text, problem_.gold),
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=completion.tokens,
                    truth=exact_truth(problem_, steps),
                )
            )
    return out


def simulated(**params: float) -> tuple[dict[str, Problem], list[Rollout], SimulatedPolicy]:
    """20 arith problems of 8 to 10 steps, 4 rollouts each."""
    problems = generate_arith_problems(20, seed=11, min_steps=8, max_steps=10)
    policy = SimulatedPolicy(SimulatedPolicyParams(**params), seed=1)
    rollouts = sample_rollouts(problems, policy, k=4, seed=3)
    assert min(len(r.steps) for r in rollouts) >= 8
    return {p.problem_id: p for p in problems}, rollouts, policy


def _stable(labels: StepLabels) -> tuple[object, ...]:
    return (labels.values, labels.hard, labels.first_error, dataclasses.replace(labels.cost, seconds=0.0))


def test_on_the_simulated_suite_the_search_finds_the_true_first_error_for_a_fraction_of_mc_cost() -> None:
    """Without self-correction or traps the MC > 0 rule is exact in expectation: the binary search
    must agree with the exact truth on nearly every rollout, at a fraction of per-step MC's cost."""
    problems, rollouts, policy = simulated(trap_share=0.0, self_correct_prob=0.0)
    wrong = [r for r in rollouts if r.outcome is not True]
    assert len(wrong) >= 30
    omega = OmegaPRMAnnotator(policy, AnswerGrader(), seed=2, search_limit=0)
    labels = omega.annotate(problems, [r.redacted() for r in rollouts])
    assert (
        [len(x.values) for x in labels] == [len(x.hard) for x in labels] == [len(r.steps) for r in rollouts]
    )
    truth = [r.truth.first_error if r.truth else None for r in rollouts]
    agree = sum(x.first_error == t for x, t in zip(labels, truth, strict=True))
    agree_wrong = sum(
        x.first_error == t for x, t, r in zip(labels, truth, rollouts, strict=True) if not r.outcome
    )
    assert agree >= 0.95 * len(rollouts)
    assert agree_wrong >= 0.9 * len(wrong)
    spent = sum(x.cost.completions for x in labels)
    full_mc = sum(8 * (len(r.steps) - 1) for r in rollouts)  # N=8 per step, the last from the outcome
    full_mc_wrong = sum(8 * (len(r.steps) - 1) for r in wrong)
    assert spent < full_mc_wrong < full_mc
    assert spent < 0.5 * full_mc_wrong
    mc = MonteCarloAnnotator(policy, AnswerGrader(), n=8, seed=2).annotate(
        problems, [r.redacted() for r in rollouts]
    )
    assert sum(x.cost.completions for x in mc) == full_mc


def test_on_the_simulated_suite_a_full_tree_search_is_deterministic_and_selects_no_pair_twice() -> None:
    problems, rollouts, policy = simulated()
    redacted = [r.redacted() for r in rollouts]
    first = OmegaPRMAnnotator(policy, AnswerGrader(), seed=2, search_limit=30)
    labels = first.annotate(problems, redacted)
    for pid, selections in first.selections.items():
        pairs = [(c.state, c.rollout) for c in selections]
        assert len(pairs) == len(set(pairs)), pid
    assert sum(len(s) for s in first.selections.values()) > 100
    second = OmegaPRMAnnotator(
        SimulatedPolicy(policy.params, seed=1), AnswerGrader(), seed=2, search_limit=30
    )
    assert [_stable(x) for x in second.annotate(problems, redacted)] == [_stable(x) for x in labels]
    assert {pid: t.to_rows() for pid, t in second.trees.items()} == {
        pid: t.to_rows() for pid, t in first.trees.items()
    }
    for tree in first.trees.values():
        assert SearchTree.from_rows(json.loads(json.dumps(tree.to_rows()))) == tree
    # The tree search grows the trees, not the labels: they are those of a search with no tree search.
    alone = OmegaPRMAnnotator(policy, AnswerGrader(), seed=2, search_limit=0).annotate(problems, redacted)
    assert [x.first_error for x in alone] == [x.first_error for x in labels]
    other = OmegaPRMAnnotator(policy, AnswerGrader(), seed=9, search_limit=30)
    other.annotate(problems, redacted)
    assert {pid: t.to_rows() for pid, t in other.trees.items()} != {
        pid: t.to_rows() for pid, t in first.trees.items()
    }
