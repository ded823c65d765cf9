"""The LLM judge's annotator config: ``{kind: judge, engine: {...}, votes: 3}`` (METHODS.md §2(d)).

Example::

    annotate:
      - kind: judge
        engine: {kind: openai, base_url: http://127.0.0.1:8000/v1, model: Qwen/Qwen2.5-72B-Instruct}
        votes: 8
        mode: critique

The judge reads only text (the question and the steps), so it labels every domain; the default
prompts speak of "a problem" and "a solution", not of mathematics. The engine's own ``prompt:``
options (system message, chat template, stop strings) apply to the judge's prompts; its
``sampling:`` does not: the judge samples with its own ``sampling`` (every request carries it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator
from prmforge.annotators.judge import JudgeAnnotator, JudgeTemplates
from prmforge.annotators.judge_prompts import (
    CRITIQUE_TEMPLATE,
    STEP_TEMPLATE,
    TemplateKind,
    validate_template,
)
from prmforge.schemas.config import SamplingConfig
from prmforge.schemas.engines import EngineConfig
from prmforge.schemas.seeds import derive_seed

__all__ = ["JudgeConfig", "engine_label"]

_NO_CODE = "no code executed"


def engine_label(engine: EngineConfig) -> str:
    """The engine a judge runs on, in words: its kind, model, revision (and, for a server, its URL)."""
    label = f"{engine.kind} {engine.model}"
    revision = getattr(engine, "revision", None)
    if revision is not None:
        label += f"@{revision}"
    base_url = getattr(engine, "base_url", None)
    if base_url is not None:
        label += f" at {base_url}"
    return label


class JudgeConfig(AnnotatorConfig):
    """LLM-as-judge (ProcessBench critique, Qwen2.5-Math-PRM consensus): a model names the earliest
    wrong step, or judges each step; the majority of ``votes`` samples decides."""

    domains = frozenset({"math", "logic", "code"})
    samples_a_model = True

    kind: Literal["judge"] = "judge"
    engine: EngineConfig = Field(..., description="the judge model's engine (transformers, openai or vllm)")
    votes: int = Field(
        3, ge=1, description="sampled answers per request; the majority decides (ties: earliest)"
    )
    mode: Literal["critique", "per-step"] = Field(
        "critique",
        description="critique: one prompt per rollout asks for the earliest wrong step (ProcessBench); "
        "per-step: one prompt per step asks whether that step is correct",
    )
    critique_template: str = Field(
        CRITIQUE_TEMPLATE,
        description="the critique prompt; placeholders {problem}, {tagged_steps} (required), {first_index}, "
        "{last_index}",
    )
    step_template: str = Field(
        STEP_TEMPLATE,
        description="the per-step prompt; placeholders {problem}, {step} (required), {step_index}, "
        "{previous_steps}",
    )
    index_base: Literal[0, 1] = Field(
        0, description="the first paragraph's index in the prompts and answers (-1 always means none)"
    )
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig,
        description="sampling of the judge's answers (every request carries it; the engine's own "
        "`sampling` is unused)",
    )

    @field_validator("critique_template", "step_template")
    @classmethod
    def _placeholders(cls, value: str, info: ValidationInfo) -> str:
        field = str(info.field_name)
        kind: TemplateKind = "critique" if field == "critique_template" else "step"
        return validate_template(value, field, kind)

    @model_validator(mode="after")
    def _one_answer_per_request(self) -> JudgeConfig:
        if self.votes > 1 and self.sampling.temperature == 0:
            raise ValueError(
                f"votes: {self.votes} votes at sampling.temperature 0 repeat one answer; "
                "set votes: 1 or a temperature above 0"
            )
        return self

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        return BuiltAnnotator(
            JudgeAnnotator(
                context.engine(self.engine),
                mode=self.mode,
                votes=self.votes,
                sampling=self.sampling.to_params(),
                # A named source gets its own stream, so two judges are independent samples.
                seed=context.seed if self.name is None else derive_seed(context.seed, "annotator", self.name),
                templates=JudgeTemplates(critique=self.critique_template, step=self.step_template),
                index_base=self.index_base,
                name=self.source,
            )
        )

    def provenance(self, isolation: str) -> dict[str, str]:
        return {"method": f"judge ({self.mode})", "tool": engine_label(self.engine), "isolation": _NO_CODE}

    def card_sentence(self) -> str:
        how = (
            "names the earliest wrong step of each solution (ProcessBench critique)"
            if self.mode == "critique"
            else "judges each step given the steps before it"
        )
        return (
            f"LLM judge {engine_label(self.engine)} {how}; majority of {self.votes} sampled "
            f"answer(s) at temperature {self.sampling.temperature:g} (ties: the earliest error)."
        )
