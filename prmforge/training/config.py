"""The training configuration of ``prmforge train --config FILE`` (YAML): strict fields, errors name them.

Example::

    learning_rate: 2.0e-5
    batch_size: 8                 # rows per device per optimizer step (times gradient_accumulation_steps)
    epochs: 2                     # or max_steps: 500 (max_steps wins when given)
    seed: 0
    separator: "\\n\\n"            # appended to every step; its last token carries the step's label
    max_length: 1024              # prompt + steps, in tokens; a step that does not fit is dropped whole
    label_mode: hard              # hard: two-class cross-entropy; soft: BCE on the positive-class score
    bf16: false
    gradient_checkpointing: false
    checkpoint_every: 100
    eval_split: validation        # a build's split (or a dataset folder's files named after it)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prmforge.schemas.config_errors import format_validation_error
from prmforge.schemas.errors import ConfigError
from prmforge.schemas.yaml_file import read_yaml

__all__ = [
    "PRM_META",
    "LabelMode",
    "Tokenization",
    "TrainConfig",
    "load_train_config",
    "parse_train_config",
]

LabelMode = Literal["hard", "soft"]
Tokenization = Literal["prmforge", "trl"]
PRM_META = "prmforge-prm.json"
"""The file a trained PRM's folder carries: how it reads steps, what it was trained on (written last)."""


class TrainConfig(BaseModel):
    """How a PRM is fine-tuned (``prmforge train``); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(1e-5, gt=0, description="AdamW's peak learning rate")
    batch_size: int = Field(8, ge=1, description="rows per device in one micro-batch")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    epochs: int = Field(1, ge=1, description="passes over the training rows (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    seed: int = Field(0, description="seed of the new head's weights and of the row order")
    separator: str = Field("\n\n", min_length=1, description="appended to every step (TRL: step_separator)")
    tokenization: Tokenization = Field(
        "prmforge",
        description="prmforge: the prompt with the tokenizer's own special tokens, whole steps kept or "
        "dropped at max_length; trl: exactly TRL 1.13's tokenize_row (no special tokens but a BOS, "
        "token-level cuts)",
    )
    max_length: int | None = Field(1024, ge=2, description="most tokens of prompt + steps (null: no limit)")
    max_completion_length: int | None = Field(
        None, ge=1, description="most tokens of the steps (with their separators); null: no limit"
    )
    label_mode: LabelMode = Field(
        "hard",
        description="hard: two-class cross-entropy on 0/1 labels; soft: binary cross-entropy of the "
        "positive-class probability against the step's soft score",
    )
    lr_schedule: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="decay of the learning rate after warmup"
    )
    warmup_steps: int = Field(0, ge=0, description="steps of linear warmup from 0")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay")
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping norm (null: none)")
    bf16: bool = Field(False, description="bfloat16 mixed precision (fp32 master weights)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass")
    checkpoint_every: int | None = Field(None, ge=1, description="save a resumable checkpoint every N steps")
    keep_checkpoints: int = Field(2, ge=1, description="the newest checkpoints kept; older ones are removed")
    eval_split: Literal["validation", "test"] | None = Field(
        None, description="rows evaluated (loss, step accuracy) at the end and every eval_every steps"
    )
    eval_every: int | None = Field(None, ge=1, description="steps between evaluations (null: at the end)")
    logging_every: int = Field(10, ge=1, description="steps between lines of metrics.jsonl")

    @model_validator(mode="after")
    def _eval_needs_a_split(self) -> TrainConfig:
        if self.eval_every is not None and self.eval_split is None:
            raise ValueError("eval_every: needs an eval_split to evaluate on")
        return self

    def with_max_steps(self, max_steps: int | None) -> TrainConfig:
        """The config with ``max_steps`` replaced (the command line's ``--max-steps``) when given."""
        return self if max_steps is None else self.model_copy(update={"max_steps": max_steps})


def parse_train_config(data: Any, origin: str = "<train config>") -> TrainConfig:
    """Validate a mapping; a :class:`ConfigError` names each offending field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: the training configuration must be a mapping, got {type(data).__name__}"
        )
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin, data, TrainConfig)) from None


def load_train_config(path: Path) -> TrainConfig:
    """Read and validate a YAML training configuration."""
    data = read_yaml(path, "training configuration")
    return parse_train_config(data, origin=str(path))
