"""OmegaPRM's annotator config: ``{kind: omegaprm, k: 8, search_limit: 100}`` (METHODS.md §2(b)).

The defaults are the paper's (k=8 rollouts per estimate, alpha=0.5, beta=0.9, L=500, c_puct=0.125,
100 searches per question); the pre-filter (OpenR's ``should_process_question``) is off by default,
so that every rollout gets labels (on, a question whose k root rollouts all agree abstains).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator
from prmforge.annotators.omegaprm import OmegaPRMAnnotator
from prmforge.schemas.config import SamplingConfig
from prmforge.schemas.seeds import derive_seed
from prmforge.verifiers.answer import AnswerGrader

__all__ = ["OmegaPRMConfig"]


class OmegaPRMConfig(AnnotatorConfig):
    """OmegaPRM: binary search for each rollout's first error by Monte Carlo estimates, inside a
    tree search per question (divide-and-conquer MCTS)."""

    domains = frozenset({"math"})
    continues_prefixes = True

    kind: Literal["omegaprm"] = "omegaprm"
    k: int = Field(8, ge=1, description="completions per Monte Carlo estimate of a prefix (paper: 8)")
    alpha: float = Field(
        0.5, gt=0.0, le=1.0, description="Q(s,r) = alpha^(1-MC(s)) * beta^(len(r)/L): the MC weight"
    )
    beta: float = Field(0.9, gt=0.0, le=1.0, description="Q's length weight: prefers short rollouts")
    length_norm: float = Field(
        500.0, gt=0.0, description="L of Q's length term, in generated tokens of the rollout"
    )
    c_puct: float = Field(0.125, ge=0.0, description="exploration: U(s) = c_puct * sqrt(sum N) / (1 + N(s))")
    search_limit: int = Field(
        100,
        ge=0,
        description="binary searches per question, those of the rollouts to label included (they always run)",
    )
    rollout_budget: int | None = Field(
        None, ge=0, description="completions per question after which no new search starts (null: none)"
    )
    prefilter: bool = Field(
        False, description="drop questions whose k rollouts from the question are all right or all wrong"
    )
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="sampling of completions")

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        return BuiltAnnotator(
            OmegaPRMAnnotator(
                policy=context.policy,
                grader=AnswerGrader(),
                k=self.k,
                alpha=self.alpha,
                beta=self.beta,
                length_norm=self.length_norm,
                c_puct=self.c_puct,
                search_limit=self.search_limit,
                rollout_budget=self.rollout_budget,
                prefilter=self.prefilter,
                sampling=self.sampling.to_params(),
                # A named source gets its own stream, as Monte Carlo's does.
                seed=context.seed if self.name is None else derive_seed(context.seed, "annotator", self.name),
                name=self.source,
            )
        )

    def provenance(self, isolation: str) -> dict[str, str]:
        return {"method": "omegaprm", "tool": "none", "isolation": "no code executed"}

    def card_sentence(self) -> str:
        budget = "no rollout budget" if self.rollout_budget is None else f"budget {self.rollout_budget}"
        return (
            f"OmegaPRM binary search for the first error (k={self.k} completions per estimate), in a tree "
            f"search of up to {self.search_limit} searches per question ({budget}; alpha={self.alpha}, "
            f"beta={self.beta}, L={self.length_norm:g}, c_puct={self.c_puct}), pre-filter "
            f"{'on' if self.prefilter else 'off'}."
        )
