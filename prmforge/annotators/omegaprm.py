"""OmegaPRM (Luo et al. 2024, METHODS.md §2(b)): binary search for the first error, inside a tree search.

Per question, one :class:`~prmforge.annotators.search_tree.SearchTree` is grown:

1. **Root estimate.** k rollouts from the bare question give MC(root). With ``prefilter`` a question
   whose k rollouts are all right or all wrong is dropped, and its rollouts abstain with the reason.
2. **The rollouts to label.** Each is attached at the root; one whose outcome is wrong (or ungraded)
   is binary-searched (:class:`~prmforge.annotators.omegaprm_search.BinarySearch`): every probe is a
   Monte Carlo estimate of k completions after the probed prefix. Its first error is the search's
   answer; a rollout whose outcome is right gets -1 (OmegaPRM searches only incorrect rollouts).
3. **Tree search.** While the question has searches left (``search_limit``, the searches of step 2
   included) and completions left (``rollout_budget``; a search once started runs to its end), the
   (state, incorrect rollout) pair with the largest Q + U is taken from the candidate pool (spent
   for good) and binary-searched; the searched state's N grows by one when its search ends (the
   paper's Maintain: no leaf-to-root backup). Every estimate with 0 < MC < 1 adds its incorrect
   rollouts to the pool (a rollout with no steps cannot be searched and is left out).

Every round sends one ``policy.generate`` call with all the estimates the round needs, over every
question (each question runs one search at a time in step 3; in step 2 all its searches advance
together; a prefix two searches need in one round is estimated once). A prefix already estimated is
reused at no cost. Each request's seed is :func:`estimate_seed` of the base seed, the problem and the
prefix: a prefix gets the same completions whichever search reaches it, so a rollout's labels do
not depend on which other rollouts share the call.

Labels of a rollout of M steps: ``first_error`` from its search, ``hard`` by the prefix rule
(:func:`~prmforge.schemas.records.prefix_labels`), ``values[t]`` the MC of the first t + 1 steps
where its own search measured it (its probes), the last step's value from a known outcome (1.0 / 0.0,
a finished solution's MC), ``None`` elsewhere. Cost: a rollout pays for the estimates its own search
asked for; the question's other estimates (the root, step 3) are split evenly over its rollouts
(integers with the remainder to the first ones), so the costs of a call add up exactly to what it
spent. ``seconds`` is each call's wall time apportioned by generated tokens (by completions when
none), like :class:`~prmforge.annotators.mc.MonteCarloAnnotator`.

``meta``: ``k``, ``root_mc``, ``first_error_from`` (``"binary-search"``, ``"outcome"`` or
``"no-steps"``), ``search_path`` (``[[steps in the probed prefix, MC], ...]`` in probe order),
``estimates`` (the estimates it paid for), ``ungraded`` (its paid completions with no gradeable
answer), ``path_node_ids`` (its step nodes in the tree, for joining with the tree's rows),
``tree_nodes``, ``tree_searches``, ``tree_completions``. :attr:`OmegaPRMAnnotator.trees` holds the
last call's trees by problem id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from prmforge.annotators.grading import AnswerMemo, OutcomeGrader
from prmforge.annotators.omegaprm_question import Question, Settings, Spend, Target
from prmforge.annotators.omegaprm_search import Candidate, q_value, u_value
from prmforge.annotators.search_tree import SearchTree
from prmforge.policies.base import GenerationRequest, Policy
from prmforge.schemas.records import Cost, Problem, Rollout, SamplingParams, StepLabels, prefix_labels
from prmforge.schemas.seeds import derive_seed

__all__ = ["OmegaPRMAnnotator", "estimate_seed"]

_SEED_BITS = 31  # fits every backend's seed type (signed 32-bit included)


def estimate_seed(seed: int, problem_id: str, prefix: Sequence[str]) -> int:
    """The seed of the k completions that estimate MC of ``prefix`` (label ``"omegaprm-estimate"``, 31 bits).

    Stable across processes; distinct per problem and prefix, so a state's completions do not depend on
    which search reached it.
    """
    return derive_seed("omegaprm-estimate", seed, problem_id, len(prefix), *prefix, bits=_SEED_BITS)


class OmegaPRMAnnotator:
    """Labels each rollout by OmegaPRM's binary search for its first error, growing one tree per question.

    Args:
        policy: the completer (wrap it in :class:`~prmforge.policies.cache.CachedPolicy` to resume).
        grader: judges a completed solution's final answer; ``None`` counts as not right.
        k: completions per Monte Carlo estimate (paper: 8).
        alpha, beta, length_norm: Q(s, r) = alpha^(1-MC(s)) * beta^(len(r)/length_norm), len(r) in
            generated tokens (paper: 0.5, 0.9, 500).
        c_puct: U(s) = c_puct * sqrt(sum N) / (1 + N(s)) (paper: 0.125).
        search_limit: binary searches per question, those of the rollouts to label included (paper: 100);
            the rollouts to label are always searched.
        rollout_budget: completions per question after which no new search starts (None: no budget).
        prefilter: drop questions whose k root rollouts are all right or all wrong (their rollouts abstain).
        sampling: sampling parameters of every request.
        seed: base seed of :func:`estimate_seed`.
        name: the ``source`` of the labels and of the trees.

    See the module docstring for the labels, ``meta`` and the cost accounting.
    """

    def __init__(
        self,
        policy: Policy,
        grader: OutcomeGrader,
        *,
        k: int = 8,
        alpha: float = 0.5,
        beta: float = 0.9,
        length_norm: float = 500.0,
        c_puct: float = 0.125,
        search_limit: int = 100,
        rollout_budget: int | None = None,
        prefilter: bool = False,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        name: str = "omegaprm",
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if search_limit < 0:
            raise ValueError(f"search_limit must be >= 0, got {search_limit}")
        if rollout_budget is not None and rollout_budget < 0:
            raise ValueError(f"rollout_budget must be None or >= 0, got {rollout_budget}")
        q_value(1.0, 0, alpha=alpha, beta=beta, length_norm=length_norm)  # checks the three weights
        u_value(0, 0, c_puct=c_puct)  # checks c_puct
        self._settings = Settings(
            k, alpha, beta, length_norm, c_puct, search_limit, rollout_budget, prefilter
        )
        self._policy = policy
        self._memo = AnswerMemo(grader)
        self._sampling = sampling if sampling is not None else SamplingParams()
        self._seed = seed
        self._name = name
        self._trees: dict[str, SearchTree] = {}
        self._selections: dict[str, tuple[Candidate, ...]] = {}
        self.calls = 0
        """``policy.generate`` calls made so far (one per round)."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def trees(self) -> Mapping[str, SearchTree]:
        """The trees of the last :meth:`annotate` call, by problem id (in order of first rollout)."""
        return dict(self._trees)

    @property
    def selections(self) -> Mapping[str, tuple[Candidate, ...]]:
        """The pool selections of the last :meth:`annotate` call, by problem id, in order (each pair once)."""
        return dict(self._selections)

    def annotate(self, problems: Mapping[str, Problem], rollouts: Sequence[Rollout]) -> list[StepLabels]:
        questions: dict[str, Question] = {}
        targets = []
        for rollout in rollouts:
            question = questions.get(rollout.problem_id)
            if question is None:
                question = questions[rollout.problem_id] = self._question(problems, rollout)
            targets.append((question, question.attach(rollout)))
        while True:
            wanted = [(q, node, payer) for q in questions.values() for node, payer in q.wants()]
            if not wanted:
                break
            self._round(wanted)
        self._trees = {pid: q.tree.freeze() for pid, q in questions.items()}
        self._selections = {pid: tuple(q.pool.selected) for pid, q in questions.items()}
        return [self._labels(q, t) for q, t in targets]

    def _question(self, problems: Mapping[str, Problem], rollout: Rollout) -> Question:
        try:
            problem = problems[rollout.problem_id]
        except KeyError:
            missing = f"problem {rollout.problem_id!r} is not among the problems given"
            raise ValueError(f"rollout {rollout.rollout_id!r}: {missing}") from None
        return Question(problem, self._name, self._settings, self._memo)

    def _round(self, wanted: Sequence[tuple[Question, int, Target | None]]) -> None:
        requests = [
            GenerationRequest(
                problem=q.problem,
                prefix=q.tree.prefix(node),
                n=self._settings.k,
                sampling=self._sampling,
                seed=estimate_seed(self._seed, q.problem.problem_id, q.tree.prefix(node)),
            )
            for q, node, _ in wanted
        ]
        started = time.perf_counter()
        results = self._policy.generate(requests)
        elapsed = time.perf_counter() - started
        self.calls += 1
        if len(results) != len(requests):
            raise ValueError(f"policy returned {len(results)} results for {len(requests)} requests")
        spends = [q.record(node, payer, r) for (q, node, payer), r in zip(wanted, results, strict=True)]
        tokens = [sum(c.tokens for c in r.completions) for r in results]
        shares = tokens if sum(tokens) > 0 else [len(r.completions) for r in results]
        total = sum(shares)
        for spend, share in zip(spends, shares, strict=True):
            spend.seconds += elapsed * share / total if total else 0.0

    def _labels(self, question: Question, target: Target) -> StepLabels:
        rollout, steps = target.rollout, len(target.rollout.steps)
        cost = _cost(target.spend) + _share(question.shared, len(question.targets), target.index)
        tree = self._trees[question.problem.problem_id]
        meta: dict[str, Any] = {
            "k": self._settings.k,
            "root_mc": tree.root.mc,
            "tree_nodes": len(tree.nodes),
            "tree_searches": question.searches,
            "tree_completions": question.completions,
            "path_node_ids": list(target.path),
        }
        if question.filtered is not None:
            meta["abstained"] = question.filtered
            none = (None,) * steps
            return StepLabels(self._name, rollout.rollout_id, none, none, None, cost, meta)
        values: list[float | None] = [None] * steps
        path: list[list[float]] = []
        if target.search is not None:
            for probe, mc in target.search.search.path:
                values[probe - 1] = mc
                path.append([probe, mc])
            first_error, source = target.search.search.first_error, "binary-search"
        else:
            first_error, source = -1, "outcome" if steps else "no-steps"
        if steps and rollout.outcome is not None:
            values[-1] = 1.0 if rollout.outcome else 0.0
        meta.update(
            first_error_from=source,
            search_path=path,
            estimates=target.spend.estimates,
            ungraded=target.spend.ungraded,
        )
        hard = prefix_labels(first_error, steps)
        return StepLabels(self._name, rollout.rollout_id, tuple(values), hard, first_error, cost, meta)


def _cost(spend: Spend) -> Cost:
    return Cost(
        completions=spend.completions,
        generated_tokens=spend.tokens,
        seconds=spend.seconds,
        cached_completions=spend.cached,
        prompt_tokens=spend.prompt_tokens,
    )


def _part(total: int, parts: int, index: int) -> int:
    """Share ``index`` of ``total`` split into ``parts`` integers that add up to it (remainder first)."""
    base, remainder = divmod(total, parts)
    return base + (1 if index < remainder else 0)


def _share(spend: Spend, parts: int, index: int) -> Cost:
    return Cost(
        completions=_part(spend.completions, parts, index),
        generated_tokens=_part(spend.tokens, parts, index),
        seconds=spend.seconds / parts,
        cached_completions=_part(spend.cached, parts, index),
        prompt_tokens=_part(spend.prompt_tokens, parts, index),
    )
