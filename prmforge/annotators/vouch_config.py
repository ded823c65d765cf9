"""The vouch annotator's config: ``{kind: vouch, of: [equations], n: 4}`` (see :mod:`.vouch`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator
from prmforge.annotators.vouch import VouchAnnotator
from prmforge.schemas.config import SamplingConfig
from prmforge.schemas.records import Problem, Rollout
from prmforge.schemas.seeds import derive_seed
from prmforge.verifiers.answer import AnswerGrader
from prmforge.verifiers.grounding import first_ungrounded

__all__ = ["VouchConfig", "ungrounded_before"]


def ungrounded_before(problem: Problem, rollout: Rollout, error: int) -> int | None:
    """The first of steps 0..error-1 computing with a number neither the question nor an earlier
    claimed result gives (strict grounding, as SCAN's ``suspect: ungrounded``)."""
    return first_ungrounded(problem.question, rollout.steps[:error], strict=True)


class VouchConfig(AnnotatorConfig):
    """Completions after the step before a precise checker's first failure: the prefix is vouched
    for when one reaches the answer (and its numbers are grounded)."""

    domains = frozenset({"math"})
    continues_prefixes = True

    kind: Literal["vouch"] = "vouch"
    of: list[str] = Field(
        min_length=1,
        description="the earlier sources (equations, z3) whose located error at step k > 0 it checks: "
        "steps 0..k-1 are vouched for when a completion after step k-1 reaches the answer",
    )
    n: int = Field(4, ge=1, description="completions after the step before the located error")
    grounded: bool = Field(
        True,
        description="also require steps 0..k-1 to compute only with numbers the question or an earlier "
        "result gives (a silent correction hides an earlier error); no completions where they do not",
    )
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="sampling of completions")

    def reads_labels_of(self) -> tuple[str, ...]:
        return tuple(self.of)

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        return BuiltAnnotator(
            VouchAnnotator(
                policy=context.policy,
                grader=AnswerGrader(),
                of=self.of,
                n=self.n,
                sampling=self.sampling.to_params(),
                seed=derive_seed(context.seed, "annotator", self.source),
                grounding=ungrounded_before if self.grounded else None,
                name=self.source,
            )
        )

    def provenance(self, isolation: str) -> dict[str, str]:
        tool = "number grounding (prmforge.verifiers.grounding)" if self.grounded else "none"
        return {"method": "vouch", "tool": tool, "isolation": "no code executed"}

    def card_sentence(self) -> str:
        grounded = " whose steps compute only with grounded numbers" if self.grounded else ""
        return (
            f"Vouching for the steps before {', '.join(self.of)}'s first failure at step k > 0: on a "
            f"rollout{grounded}, N={self.n} completions after step k-1; one reaching the answer vouches "
            "for steps 0..k-1, none leaves the rollout unlabelled."
        )
