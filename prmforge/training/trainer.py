"""``prmforge train``: rows in, a fine-tuned token-classification PRM out (with ``prmforge-prm.json``).

The model is ``AutoModelForTokenClassification.from_pretrained(MODEL, num_labels=2)`` (a causal LM's
body with a new two-label head drawn from ``seed``, or an existing two-label PRM to train further).
The output folder holds the model and tokenizer (``save_pretrained``, safetensors), ``metrics.jsonl``,
``checkpoints/`` and, written last, ``prmforge-prm.json``: how the model reads steps (separator,
tokenization mode, label mode), what it was trained on and its evaluation. Scoring
(:mod:`prmforge.training.scoring`) reads it, so a step is tokenised at inference exactly as in training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prmforge.schemas.errors import ConfigError
from prmforge.training.config import PRM_META, TrainConfig
from prmforge.training.data import load_train_data, rows_for_training
from prmforge.training.loop import TrainResult, fit
from prmforge.training.tokenize import TokenizedRow, TokenizeSpec, tokenize_rows

__all__ = ["rows_digest", "spec_of", "train", "weight_fields", "write_model"]

META_VERSION = 1
_NOT_IN_WEIGHTS = ("checkpoint_every", "keep_checkpoints", "logging_every", "eval_every", "eval_split")


def spec_of(config: TrainConfig) -> TokenizeSpec:
    return TokenizeSpec(
        config.separator, config.tokenization, config.max_length, config.max_completion_length
    )


def weight_fields(config: TrainConfig) -> dict[str, Any]:
    """The fields that decide the weights (not checkpointing, logging or evaluation): a resume must match."""
    return {k: v for k, v in config.model_dump(mode="json").items() if k not in _NOT_IN_WEIGHTS}


def rows_digest(rows: Sequence[TokenizedRow]) -> str:
    """sha256 of the tokenised rows (ids and labels): a resume must train on the same ones."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(array("q", row.input_ids).tobytes())
        digest.update(array("d", row.labels).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def pad_id_of(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _versions() -> dict[str, str]:
    import accelerate  # type: ignore[import-untyped]
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
    }


def write_model(
    output: Path, model: Any, tokenizer: Any, meta: dict[str, Any], state_dict: Any = None
) -> None:
    """Write the model and tokenizer into ``output`` through a staging folder; ``prmforge-prm.json`` last."""
    staging = output / ".final.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (output / PRM_META).unlink(missing_ok=True)  # the folder is not a finished model while files move
    for path in staging.iterdir():
        os.replace(path, output / path.name)
    staging.rmdir()
    blob = json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n"
    tmp = output / f".{PRM_META}.tmp"
    tmp.write_text(blob, encoding="utf-8")
    os.replace(tmp, output / PRM_META)


def train(
    data_path: Path,
    model_name: str,
    output: Path,
    config: TrainConfig,
    *,
    resume: bool = False,
    stop_after: int | None = None,
) -> TrainResult:
    """Fine-tune ``model_name`` on ``data_path`` (a build or a TRL stepwise dataset) into ``output``."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    if (output / PRM_META).exists():
        raise ConfigError(
            f"--output: {output} already holds a trained PRM ({PRM_META}); choose another output folder"
        )
    data = load_train_data(data_path, config.eval_split)
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    spec = spec_of(config)
    tokenised = tokenize_rows(tokenizer, rows_for_training(data.rows, config.label_mode), spec)
    rows = [r for r in tokenised if r.kept_steps]
    evals = [
        r
        for r in tokenize_rows(tokenizer, rows_for_training(data.eval_rows, config.label_mode), spec)
        if r.kept_steps
    ]
    steps_in = sum(len(r.completions) for r in data.rows)
    summary: dict[str, Any] = {
        "source": data.source,
        "kind": data.kind,
        "rows": len(data.rows),
        "rows_trained": len(rows),
        "rows_dropped": len(tokenised) - len(rows),  # not one step fits in max_length
        "steps": steps_in,
        "steps_labelled": sum(r.kept_steps for r in rows),
        "steps_cut": steps_in - sum(r.kept_steps for r in tokenised),
        "eval_rows": len(evals),
        "fingerprint": rows_digest(rows),
    }
    torch.manual_seed(config.seed)  # the new head's weights
    model = AutoModelForTokenClassification.from_pretrained(model_name, num_labels=2, dtype=torch.float32)
    fingerprint = {"data": summary["fingerprint"], "model": model_name, "config": weight_fields(config)}

    def save_final(accelerator: Any, wrapped: Any, result: TrainResult) -> None:
        state = accelerator.get_state_dict(wrapped)  # gathered from every process under FSDP / DeepSpeed
        if not accelerator.is_main_process:
            return
        meta = {
            "prmforge_prm": META_VERSION,
            "format": "token-classification",
            "separator": config.separator,
            "tokenization": config.tokenization,
            "max_length": config.max_length,
            "max_completion_length": config.max_completion_length,
            "label_mode": config.label_mode,
            "positive_label": 1,
            "base_model": model_name,
            "steps": result.step,
            "config": config.model_dump(mode="json"),
            "data": summary,
            "eval": result.eval,
            "last_loss": result.last_loss,
            "versions": _versions(),
        }
        write_model(output, accelerator.unwrap_model(wrapped), tokenizer, meta, state)

    result = fit(
        model,
        rows,
        config,
        output,
        pad_id=pad_id_of(tokenizer),
        eval_rows=evals,
        resume=resume,
        stop_after=stop_after,
        fingerprint=fingerprint,
        save_final=save_final,
    )
    result.data = summary
    return result
