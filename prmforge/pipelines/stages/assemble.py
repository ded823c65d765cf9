"""assemble: a fused label and its rollout become a trainable row; an undecided label is left out."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from prmforge.pipelines.stage import Reject, RowResult, Stage
from prmforge.schemas.records import FusedLabels, PRMExample, Problem, Rollout, Split, prefix_labels
from prmforge.schemas.seeds import unit

_SPACE = re.compile(r"\s+")


def normalised_question(question: str) -> str:
    """NFKC, case-folded, whitespace collapsed: the same question under two ids splits the same way."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", question).casefold()).strip()


def split_for(question: str, seed: int, validation: float, test: float = 0.0) -> Split:
    """Deterministic split by normalised question, so no question straddles two splits."""
    if validation <= 0.0 and test <= 0.0:
        return "train"
    u = unit(seed, "split", normalised_question(question))
    if u < validation:
        return "validation"
    return "test" if u < validation + test else "train"


def example_of(
    problem: Problem, rollout: Rollout, fused: FusedLabels, after_first_error: str, split: Split
) -> PRMExample:
    if fused.first_error is None:
        raise ValueError("the fused label is undecided")
    fe = fused.first_error
    steps, scores = rollout.steps, fused.scores
    hard = prefix_labels(fe, len(steps))
    if after_first_error == "truncate" and fe >= 0:
        steps, hard, scores = steps[: fe + 1], hard[: fe + 1], scores[: fe + 1]
    truth = rollout.truth
    return PRMExample(
        example_id=rollout.rollout_id,
        problem_id=problem.problem_id,
        prompt=problem.question,
        completions=steps,
        labels=hard,
        scores=scores,
        first_error=fe,
        votes=fused.votes,
        agreement=fused.agreement,
        weight=1.0,
        split=split,
        gold=problem.gold,
        final_answer=rollout.final_answer,
        outcome=rollout.outcome,
        truth_first_error=truth.first_error if truth else None,
        truth_step_correct=truth.step_correct if truth else None,
    )


class AssembleStage(Stage):
    reads = ("fused", "rollout", "problem")
    writes = "example"

    def __init__(
        self, after_first_error: str, seed: int, validation: float, test: float, config: Mapping[str, Any]
    ) -> None:
        super().__init__("assemble", ("fuse", "generate", "load"), config)
        self.after_first_error = after_first_error
        self.seed = seed
        self.validation = validation
        self.test = test

    def process(self, batch: Sequence[FusedLabels], side: Mapping[str, Sequence[Any]]) -> list[RowResult]:
        rollouts = {r.rollout_id: r for r in side["generate"]}
        problems = {p.problem_id: p for p in side["load"]}
        out: list[RowResult] = []
        for fused in batch:
            if fused.first_error is None:
                out.append(Reject("first_error", f"undecided: {fused.reason}", excluded=True))
                continue
            rollout = rollouts[fused.rollout_id]
            problem = problems[rollout.problem_id]
            split = split_for(problem.question, self.seed, self.validation, self.test)
            out.append([example_of(problem, rollout, fused, self.after_first_error, split)])
        return out
