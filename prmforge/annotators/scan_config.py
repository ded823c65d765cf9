"""SCAN's annotator config: ``{kind: scan, n: 8, confidence: 0.75, distance: 2}`` (METHODS.md §2(e)).

The defaults are SCAN's (8 completions per step, the self-confidence filter at 0.75, soft labels
within 2 steps before the predicted error); see :mod:`prmforge.annotators.scan`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator
from prmforge.annotators.scan import ScanAnnotator, Suspect
from prmforge.schemas.config import SamplingConfig
from prmforge.schemas.records import Problem, Rollout
from prmforge.schemas.seeds import derive_seed
from prmforge.verifiers.answer import AnswerGrader
from prmforge.verifiers.grounding import first_ungrounded

__all__ = ["ScanConfig", "ungrounded_suspect"]


def ungrounded_suspect(problem: Problem, rollout: Rollout) -> int | None:
    """The first step computing with a number that neither the question nor a claimed result gives
    (:func:`~prmforge.verifiers.grounding.first_ungrounded`, strict: numbers merely written in an
    earlier step's prose do not ground it)."""
    return first_ungrounded(problem.question, rollout.steps, strict=True)


class ScanConfig(AnnotatorConfig):
    """SCAN: Monte Carlo with early stop on the incorrect rollouts of confident questions only, with
    noise-tolerant soft labels near the predicted error (self-denoising)."""

    domains = frozenset({"math"})
    continues_prefixes = True

    kind: Literal["scan"] = "scan"
    n: int = Field(8, ge=1, description="completions per step of an incorrect rollout (SCAN: 8)")
    confidence: float = Field(
        0.75,
        gt=0.0,
        le=1.0,
        description="keep a question iff the share of its rollouts that are correct is at least this",
    )
    distance: int = Field(
        2, ge=0, description="soft labels min(1, c_t / SC) within this many steps before t*"
    )
    ratio: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="the error rule: 0 is SCAN's (the first step whose estimate is 0); in (0, 1] GenPRM's "
        "relative progress, the first step whose estimate is below ratio x the previous step's (SC before "
        "step 0); the early stop follows it",
    )
    suspect: Literal["none", "ungrounded"] = Field(
        "none",
        description="none: SCAN's rule, a correct rollout is all positive for free; ungrounded: a correct "
        "rollout with a step computing with a number neither the question nor an earlier claimed result "
        "gives (a silent self-correction hides an error there) is rolled out through that step like an "
        "incorrect one, and a fall in value there is its error",
    )
    suspected: Literal["rollout", "abstain"] = Field(
        "rollout",
        description="with suspect: rollout locates a suspected correct rollout's error with completions "
        "(a fall in value there is its error, none keeps it correct); abstain leaves it unlabelled at no "
        "cost (few completions place a hidden error poorly)",
    )
    confirm: bool = Field(
        False,
        description="with ratio > 0: a step the ratio rule flags while some completions still reach the "
        "answer (a fall, not a zero) is estimated again with n more completions; the pooled 2n decide, "
        "and the search goes on past it when they show no error (N=4 estimates are noisy)",
    )
    last_step_from_outcome: bool = Field(
        True, description="an incorrect rollout's last step is 0 from its outcome, without completions"
    )
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="sampling of completions")

    @model_serializer(mode="wrap")
    def _unset_confirm_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``confirm`` is dumped only when on: a config that leaves it keeps its config hash (and its
        stage's), so builds made before the option existed resume."""
        data: dict[str, Any] = handler(self)
        if data.get("confirm") is False:
            del data["confirm"]
        return data

    @model_validator(mode="after")
    def _confirm_needs_a_ratio(self) -> ScanConfig:
        if self.confirm and self.ratio == 0:
            raise ValueError(
                "confirm: needs ratio > 0 (SCAN's own rule flags only estimates of 0, which are not "
                "re-estimated)"
            )
        return self

    @model_validator(mode="after")
    def _sees_every_rollout(self) -> ScanConfig:
        """SCAN's self-confidence is the share of a question's rollouts that are correct: it sees them all."""
        if self.defer_to:
            raise ValueError(
                "defer_to: SCAN computes each question's self-confidence from all of its rollouts, so it "
                "cannot skip those an earlier source decided; fuse it with them instead (e.g. rule earliest)"
            )
        return self

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        return BuiltAnnotator(
            ScanAnnotator(
                policy=context.policy,
                grader=AnswerGrader(),
                n=self.n,
                confidence=self.confidence,
                distance=self.distance,
                sampling=self.sampling.to_params(),
                # A named source gets its own stream, as Monte Carlo's does.
                seed=context.seed if self.name is None else derive_seed(context.seed, "annotator", self.name),
                last_step_from_outcome=self.last_step_from_outcome,
                name=self.source,
                ratio=self.ratio,
                suspect=self._suspect(),
                suspected=self.suspected,
                confirm=self.confirm,
            )
        )

    def _suspect_sentence(self) -> str:
        if self.suspect == "none":
            return ""
        what = "rolled out the same way through that step" if self.suspected == "rollout" else "left out"
        return (
            " A correct rollout that computes with a number neither the question nor an earlier result "
            f"gives (a silent self-correction hides an error there) is {what}."
        )

    def _suspect(self) -> Suspect | None:
        return ungrounded_suspect if self.suspect == "ungrounded" else None

    def provenance(self, isolation: str) -> dict[str, str]:
        tool = "number grounding (prmforge.verifiers.grounding)" if self.suspect == "ungrounded" else "none"
        return {"method": "scan", "tool": tool, "isolation": "no code executed"}

    def card_sentence(self) -> str:
        rule = (
            "the first step valued 0"
            if self.ratio == 0
            else f"the first step valued 0 or below {self.ratio:g} x the step before it (SC before step 0: "
            "GenPRM's relative progress)"
        )
        return (
            f"SCAN self-denoising Monte Carlo: questions whose rollouts are less than {self.confidence:g} "
            f"correct are dropped; N={self.n} completions per step of each incorrect rollout, stopping at "
            f"{rule}; soft labels min(1, c/SC) within {self.distance} steps before it."
            + (
                " A fall that some completions survive is estimated again with N more before it counts."
                if self.confirm
                else ""
            )
            + self._suspect_sentence()
        )
