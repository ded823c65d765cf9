"""The search of one question for :class:`~prmforge.annotators.omegaprm.OmegaPRMAnnotator`: its tree,
candidate pool, binary searches and spend (internal; the module docstring of ``omegaprm`` describes
the algorithm).

:meth:`Question.wants` advances every search of the question through the values already known and
returns the prefixes it needs estimated this round; :meth:`Question.record` grades one estimate's
completions into the tree and the pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prmforge.annotators.grading import AnswerMemo
from prmforge.annotators.omegaprm_search import BinarySearch, CandidatePool, q_value
from prmforge.annotators.search_tree import TreeBuilder, TreeRollout
from prmforge.policies.base import STEP_SEPARATOR, GenerationResult, split_steps
from prmforge.schemas.records import Problem, Rollout

__all__ = ["Question", "Search", "Settings", "Spend", "Target"]


@dataclass(slots=True)
class Spend:
    """What a rollout (or the question as a whole) paid: estimates, completions, tokens, seconds."""

    estimates: int = 0
    completions: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    cached: int = 0
    ungraded: int = 0
    seconds: float = 0.0


@dataclass(eq=False, slots=True)
class Search:
    """A binary search over ``steps``, a rollout from node ``origin`` (the root for a rollout to label)."""

    origin: int
    steps: tuple[str, ...]
    search: BinarySearch
    finished: bool = False


@dataclass(eq=False, slots=True)
class Target:
    """One rollout to label (hashed by identity)."""

    index: int
    rollout: Rollout
    path: tuple[int, ...]
    search: Search | None
    spend: Spend = field(default_factory=Spend)


@dataclass(frozen=True, slots=True)
class Settings:
    """The annotator's search parameters (see :class:`~prmforge.annotators.omegaprm.OmegaPRMAnnotator`)."""

    k: int
    alpha: float
    beta: float
    length_norm: float
    c_puct: float
    search_limit: int
    rollout_budget: int | None
    prefilter: bool


class Question:
    """The search of one question (its tree, pool, searches and shared spend)."""

    def __init__(self, problem: Problem, source: str, settings: Settings, memo: AnswerMemo) -> None:
        self.problem = problem
        self.settings = settings
        self.memo = memo
        self.tree = TreeBuilder(problem.problem_id, source)
        self.pool = CandidatePool(settings.c_puct)
        self.targets: list[Target] = []
        self.shared = Spend()
        self.completions = 0
        self.searches = 0
        self.current: Search | None = None
        self.filtered: str | None = None

    def attach(self, rollout: Rollout) -> Target:
        tree = self.tree
        tree.add_rollout(
            0,
            TreeRollout(
                text=rollout.text,
                steps=rollout.steps,
                outcome=rollout.outcome,
                tokens=rollout.completion_tokens,
                rollout_id=rollout.rollout_id,
            ),
        )
        path = tuple(tree.ensure(0, rollout.steps[: t + 1]) for t in range(len(rollout.steps)))
        if path and rollout.outcome is not None and tree.mc(path[-1]) is None:
            tree.set_mc(path[-1], 1.0 if rollout.outcome else 0.0)  # a finished solution's MC is its outcome
        search = None
        if path and rollout.outcome is not True:
            search = Search(0, rollout.steps, BinarySearch(len(path), ends_wrong=rollout.outcome is False))
        target = Target(index=len(self.targets), rollout=rollout, path=path, search=search)
        self.targets.append(target)
        return target

    def wants(self) -> list[tuple[int, Target | None]]:
        """Advance every search through the known values; the nodes to estimate this round, with payers."""
        if self.tree.mc(0) is None:
            return [(0, None)]
        if self.filtered is not None:
            return []
        wanted: dict[int, Target | None] = {}
        for target in self.targets:
            if target.search is None or target.search.finished:
                continue
            node = self._advance(target.search)
            if node is not None:
                wanted.setdefault(node, target)
        if wanted:
            return list(wanted.items())
        while True:  # every rollout to label is searched: grow the tree from the pool
            if self.current is None:
                self.current = self._select()
                if self.current is None:
                    return []
            node = self._advance(self.current)
            if node is not None:
                return [(node, None)]
            self.current = None

    def _select(self) -> Search | None:
        s = self.settings
        if self.searches >= s.search_limit:
            return None
        if s.rollout_budget is not None and self.completions >= s.rollout_budget:
            return None
        candidate = self.pool.select(self.tree.visit_counts(), self.tree.total_visits())
        if candidate is None:
            return None
        rollout = self.tree.rollouts(candidate.state)[candidate.rollout]
        search = BinarySearch(len(rollout.steps), ends_wrong=rollout.outcome is False)
        return Search(candidate.state, rollout.steps, search)

    def _advance(self, search: Search) -> int | None:
        """Record every probe whose value is known; the node the search waits for (None: it is done)."""
        while (probe := search.search.probe) is not None:
            node = self.tree.ensure(search.origin, search.steps[:probe])
            mc = self.tree.mc(node)
            if mc is None:
                return node
            search.search.record(mc)
        if not search.finished:
            search.finished = True
            self.searches += 1
            self.tree.visit(search.origin)
        return None

    def record(self, node: int, payer: Target | None, result: GenerationResult) -> Spend:
        """Grade one estimate's completions into the tree; the spend that pays for it."""
        s, tree = self.settings, self.tree
        prefix = tree.prefix(node)
        if len(result.completions) != s.k:
            raise ValueError(
                f"problem {self.problem.problem_id!r}, prefix of {len(prefix)} steps: policy returned "
                f"{len(result.completions)} completions, {s.k} requested"
            )
        spend = payer.spend if payer is not None else self.shared
        prefix_text = STEP_SEPARATOR.join(prefix) + STEP_SEPARATOR if prefix else ""
        wrong: list[tuple[int, int]] = []
        correct = 0
        for completion in result.completions:
            verdict = self.memo.grade(prefix_text, completion.text, self.problem.gold)
            steps = split_steps(completion.text)
            index = tree.add_rollout(node, TreeRollout(completion.text, steps, verdict, completion.tokens))
            correct += verdict is True
            spend.ungraded += verdict is None
            if verdict is not True and steps:
                wrong.append((index, completion.tokens))
        mc = correct / s.k
        tree.set_mc(node, mc)
        if 0 < mc < 1:
            for index, tokens in wrong:
                q = q_value(mc, tokens, alpha=s.alpha, beta=s.beta, length_norm=s.length_norm)
                self.pool.add(node, index, q)
        if node == 0 and s.prefilter and mc in (0.0, 1.0):
            self.filtered = (
                f"question pre-filter: all {s.k} rollouts from the question were "
                f"{'right' if mc == 1.0 else 'wrong'}"
            )
        spend.estimates += 1
        spend.completions += s.k
        spend.tokens += sum(c.tokens for c in result.completions)
        spend.prompt_tokens += result.prompt_tokens
        spend.cached += s.k if result.cached else 0
        self.completions += s.k
        return spend
