"""Step scores from a trained PRM, in one forward pass per batch of solutions.

Two formats:

- ``token-classification`` (a model ``prmforge train`` wrote, or any ``*ForTokenClassification`` PRM
  such as TRL's): the problem and steps are tokenised exactly as in training
  (:func:`~prmforge.training.tokenize.tokenize_rows`, with the separator and mode its
  ``prmforge-prm.json`` records; without that file, ``separator`` and ``tokenization`` given here,
  defaults ``"\\n\\n"`` and ``prmforge``), and step k's score is read at the last token of its separator.
- ``qwen-step-reward`` (Qwen2.5-Math-PRM, ECOSYSTEM.md §1.4): the steps joined and ended by the step
  tag ``<extra_0>`` in the assistant turn of the chat template, under the model card's system prompt;
  step k's score is read at the k-th tag token. ``Qwen2ForProcessRewardModel`` loads through
  ``AutoModel`` and needs ``trust_remote_code``; any two-label token-classification model whose
  tokenizer has the tag works too.

A score is the positive-class probability (:func:`~prmforge.training.losses.step_scores`: the softmax's
second column of a two-label head). A step past ``max_length`` (default: the model's
``max_position_embeddings``) has no score (None). A solution whose text already contains the step tag
cannot be read (its tags would be miscounted): all its scores are None, with a note.

This module never imports :mod:`prmforge.pipelines` (the PRM annotator imports it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prmforge.schemas.errors import ConfigError
from prmforge.schemas.exporters import QWEN_PRM_SYSTEM_PROMPT, QWEN_STEP_TAG
from prmforge.training.config import PRM_META, Tokenization
from prmforge.training.tokenize import TokenizeSpec, tokenize_rows

__all__ = [
    "PRMScorer",
    "ScoreFormat",
    "StepScores",
    "model_fingerprint",
    "qwen_positions",
    "qwen_text",
    "read_prm_meta",
    "scores_at",
]

ScoreFormat = Literal["token-classification", "qwen-step-reward"]
_HASHED_BYTES = 512 << 20  # files up to this size are hashed whole; larger ones by name and size


@dataclass(frozen=True, slots=True)
class StepScores:
    """One solution's step scores (None: not scored) and the tokens the model read for it."""

    scores: tuple[float | None, ...]
    tokens: int
    note: str | None = None


def read_prm_meta(model: str) -> dict[str, Any]:
    """``prmforge-prm.json`` of a local model folder, or ``{}``."""
    path = Path(model) / PRM_META
    if not path.is_file():
        return {}
    meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return meta


def model_fingerprint(model: str) -> str | None:
    """sha256 over a local model folder's files (contents up to 512 MiB each, else name and size)."""
    root = Path(model)
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode() + b"\0")
        size = path.stat().st_size
        digest.update(path.read_bytes() if size <= _HASHED_BYTES else str(size).encode())
    return digest.hexdigest()


def scores_at(probs: Sequence[float], positions: Sequence[int], steps: int) -> tuple[float | None, ...]:
    """The scores at ``positions`` (step k at ``positions[k]``), None for the steps beyond them (pure).

    >>> scores_at([0.1, 0.9, 0.2, 0.4], [1, 3], 3)
    (0.9, 0.4, None)
    """
    found: list[float | None] = [float(probs[p]) for p in positions[:steps]]
    return tuple(found + [None] * (steps - len(found)))


def qwen_text(tokenizer: Any, problem: str, steps: Sequence[str]) -> str:
    """The Qwen2.5-Math-PRM input: system prompt, the problem, the steps each ended by ``<extra_0>``.

    Without a chat template the three parts are joined by newlines.
    """
    answer = "".join(step + QWEN_STEP_TAG for step in steps)
    messages = [
        {"role": "system", "content": QWEN_PRM_SYSTEM_PROMPT},
        {"role": "user", "content": problem},
        {"role": "assistant", "content": answer},
    ]
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        return text
    return "\n".join(m["content"] for m in messages)


def qwen_positions(ids: Sequence[int], tag_id: int) -> list[int]:
    """Where the step tag sits (pure)."""
    return [i for i, token in enumerate(ids) if token == tag_id]


def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if bf16 else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class PRMScorer:
    """Loads a PRM once and scores solutions in batches (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        format: ScoreFormat = "token-classification",
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_length: int | None = None,
        separator: str | None = None,
        tokenization: Tokenization | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        import torch  # noqa: F401 - fail here, with the import error, when the train extra is missing
        from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, AutoTokenizer

        self.model_name = model
        self.format: ScoreFormat = format
        self.batch_size = batch_size
        meta = read_prm_meta(model)
        self.separator = separator if separator is not None else str(meta.get("separator", "\n\n"))
        self.tokenization: Tokenization = tokenization or meta.get("tokenization", "prmforge")
        self.device = _device(device)
        try:
            config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            raise ConfigError(f"model: cannot load {model!r} ({err})") from None
        architectures = list(getattr(config, "architectures", None) or [])
        if any("ProcessRewardModel" in a for a in architectures):
            loader: Any = AutoModel
        elif any(a.endswith("ForTokenClassification") for a in architectures):
            loader = AutoModelForTokenClassification
        else:
            raise ConfigError(
                f"model: {model!r} ({', '.join(architectures) or 'no architecture'}) has no token-"
                "classification or process-reward head; train one with `prmforge train`"
            )
        self.model = loader.from_pretrained(
            model,
            revision=revision,
            trust_remote_code=trust_remote_code,
            dtype=_dtype(dtype, self.device),
        ).to(self.device)
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(
            model, revision=revision, trust_remote_code=trust_remote_code
        )
        positions = getattr(config, "max_position_embeddings", None)
        self.max_length = max_length or (int(positions) if positions else 4096)
        self.pad_id = next(
            (int(t) for t in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id) if t is not None), 0
        )
        self._fingerprint = model_fingerprint(model)  # the weights that read the steps, for provenance
        self.tag_id: int | None = None
        if format == "qwen-step-reward":
            tag = self.tokenizer.convert_tokens_to_ids(QWEN_STEP_TAG)
            if not isinstance(tag, int) or tag == self.tokenizer.unk_token_id:
                raise ConfigError(f"format: the tokenizer of {model!r} has no {QWEN_STEP_TAG} token")
            self.tag_id = int(tag)

    def describe(self) -> dict[str, Any]:
        """What reads the steps, for provenance."""
        out: dict[str, Any] = {"model": self.model_name, "format": self.format, "max_length": self.max_length}
        if self._fingerprint is not None:
            out["model_sha256"] = self._fingerprint
        if self.format == "token-classification":
            out |= {"separator": self.separator, "tokenization": self.tokenization}
        return out

    def _encode(self, problem: str, steps: Sequence[str]) -> tuple[list[int], list[int], str | None]:
        """``(ids, positions, note)``; positions index the steps in order."""
        if self.format == "token-classification":
            spec = TokenizeSpec(self.separator, self.tokenization, self.max_length, None)
            row = tokenize_rows(self.tokenizer, [(problem, steps, [0.0] * len(steps))], spec)[0]
            return list(row.input_ids), list(row.positions), None
        if QWEN_STEP_TAG in problem or any(QWEN_STEP_TAG in s for s in steps):
            return [], [], f"the text contains the step tag {QWEN_STEP_TAG}"
        text = qwen_text(self.tokenizer, problem, steps)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])[: self.max_length]
        assert self.tag_id is not None
        return ids, qwen_positions(ids, self.tag_id), None

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[StepScores]:
        """Each ``(problem, steps)``'s step scores, ``batch_size`` solutions per forward pass."""
        import torch

        from prmforge.training.losses import step_scores

        encoded = [self._encode(problem, steps) for problem, steps in items]
        out: list[StepScores] = []
        for start in range(0, len(items), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            width = max([len(ids) for ids, _, _ in chunk] + [1])
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (row, _, _) in enumerate(chunk):
                ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[i, : len(row)] = 1
            with torch.no_grad():
                result = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            logits = getattr(result, "logits", None)
            probs = step_scores(result[0] if logits is None else logits).cpu()
            for i, (row, positions, note) in enumerate(chunk):
                steps = len(items[start + i][1])
                scores = scores_at(probs[i].tolist(), positions, steps) if not note else (None,) * steps
                out.append(StepScores(scores, len(row), note))
        return out

    def close(self) -> None:
        """Free the model (and the GPU memory it holds)."""
        import torch

        del self.model
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
