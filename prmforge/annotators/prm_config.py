"""The PRM annotator's config: ``{kind: prm, model: PATH, format: token-classification, threshold: 0.5}``.

Example::

    annotate:
      - kind: prm
        model: out/prm                  # a `prmforge train` output folder, or a Hub name
        format: token-classification    # or qwen-step-reward (Qwen/Qwen2.5-Math-PRM-7B, trust_remote_code)
        threshold: 0.5
        batch_size: 8
        device: auto

The model is loaded when a worker first labels a shard, never at validation, so a configuration
naming a model that is still to be trained validates. ``model`` is a Hub name or a folder; a relative
folder that exists beside the configuration when it is loaded is read from there, otherwise from the
working directory of the build. The config hash covers the name, not the
weights: the labels' ``meta`` and the card carry what read the steps.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from prmforge.annotators.config import AnnotatorConfig, AnnotatorContext, BuiltAnnotator

__all__ = ["PRMConfig"]


class PRMConfig(AnnotatorConfig):
    """A trained process reward model scores every step; a step is correct when its score reaches
    ``threshold`` (the scores are kept as the labels' soft values)."""

    domains = frozenset({"math", "logic", "code"})
    samples_a_model = True  # it holds a model of its own (it scores, it does not sample)

    kind: Literal["prm"] = "prm"
    model: str = Field(..., min_length=1, description="a `prmforge train` output folder or a Hub model name")
    revision: str | None = Field(None, description="the Hub revision to load (pin a commit)")
    format: Literal["token-classification", "qwen-step-reward"] = Field(
        "token-classification",
        description="token-classification: steps read as in `prmforge train` (score at each separator's last "
        "token); qwen-step-reward: Qwen2.5-Math-PRM's chat with `<extra_0>` after every step",
    )
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="a step whose score is below this is wrong")
    batch_size: int = Field(8, ge=1, description="solutions per forward pass")
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="auto (cuda when present), cpu, cuda, cuda:N, mps",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on a GPU that has it, else float32"
    )
    max_length: int | None = Field(
        None, ge=2, description="most tokens read per solution (default: the model's positions)"
    )
    separator: str | None = Field(
        None, min_length=1, description="token-classification without `prmforge-prm.json`: the step separator"
    )
    tokenization: Literal["prmforge", "trl"] | None = Field(
        None, description="token-classification without `prmforge-prm.json`: how its rows were tokenised"
    )
    trust_remote_code: bool = Field(False, description="run the model repository's own code (Qwen's PRM)")

    def build(self, context: AnnotatorContext) -> BuiltAnnotator:
        from prmforge.annotators.prm import PRMAnnotator
        from prmforge.training.scoring import PRMScorer

        scorer = PRMScorer(
            self.model,
            format=self.format,
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch_size,
            max_length=self.max_length,
            separator=self.separator,
            tokenization=self.tokenization,
            revision=self.revision,
            trust_remote_code=self.trust_remote_code,
        )
        return BuiltAnnotator(PRMAnnotator(scorer, self.threshold, self.source), scorer.close)

    def _label(self) -> str:
        return self.model + (f"@{self.revision}" if self.revision else "")

    def provenance(self, isolation: str) -> dict[str, str]:
        return {
            "method": "prm",
            "tool": f"PRM {self._label()} ({self.format})",
            "isolation": "no code executed",
        }

    def card_sentence(self) -> str:
        return (
            f"a trained PRM ({self._label()}, {self.format}) scores every step; a step is correct when its "
            f"score is at least {self.threshold:g} (the scores are kept as soft values)."
        )
