"""The step losses and the step score, on a token-classification head's logits (pure torch functions).

A step's score is the probability of the positive class ("this step is correct") at its labelled
token: ``softmax(logits)[1] = sigmoid(z1 - z0)`` for a two-label head (TRL's ``LABEL_1``, Qwen2.5-Math-PRM's
second column), ``sigmoid(z)`` for a one-logit head (SCAN's). Every PRM prmforge trains has two labels.

- ``hard``: two-class cross-entropy of the logits against the 0/1 label (what TRL's trainer optimises).
- ``soft``: binary cross-entropy of the score against the soft target ``y``,
  ``-(y log s + (1 - y) log(1 - s))`` with ``s = sigmoid(z1 - z0)``: its gradient in ``z1 - z0`` is
  ``s - y``, zero exactly at ``s = y``, so a 0.7 label trains the score toward 0.7. On 0/1 targets it
  equals the hard loss.

Positions labelled :data:`~prmforge.training.tokenize.IGNORE` count for nothing. The functions return
the SUM over labelled positions and their count, so a caller can normalise over a whole step's batch
(all micro-batches and processes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prmforge.training.config import LabelMode
from prmforge.training.tokenize import IGNORE

if TYPE_CHECKING:
    import torch

__all__ = ["step_logit", "step_loss_sum", "step_scores"]


def step_logit(logits: torch.Tensor) -> torch.Tensor:
    """``z1 - z0`` of a two-label head, ``z`` of a one-logit head (last dimension: the labels)."""
    labels = logits.shape[-1]
    if labels == 2:
        return logits[..., 1] - logits[..., 0]
    if labels == 1:
        return logits[..., 0]
    raise ValueError(f"a step head has 1 or 2 labels, this one has {labels}")


def step_scores(logits: torch.Tensor) -> torch.Tensor:
    """The positive-class probability at every position."""
    import torch

    return torch.sigmoid(step_logit(logits.float()))


def step_loss_sum(
    logits: torch.Tensor, labels: torch.Tensor, mode: LabelMode
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss summed over the labelled positions, their count)``; logits (B, T, C), labels (B, T)."""
    import torch.nn.functional as F

    mask = labels != IGNORE
    count = mask.sum()
    chosen = logits[mask].float()
    targets = labels[mask].float()
    if mode == "hard" and chosen.shape[-1] == 2:
        loss = F.cross_entropy(chosen, targets.long(), reduction="sum")
    else:
        loss = F.binary_cross_entropy_with_logits(step_logit(chosen), targets, reduction="sum")
    return loss, count
