"""The pure parts of training: losses, the step plan, the learning-rate factor, and the modules' doctests."""

from __future__ import annotations

import doctest
import math
from types import ModuleType

import pytest
import torch

from prmforge.training import bestofn, data, eval_metrics, plan, scoring, tokenize
from prmforge.training.losses import step_logit, step_loss_sum, step_scores
from prmforge.training.plan import (
    epoch_order,
    lr_factor,
    micro_batches,
    step_rows,
    steps_per_epoch,
    total_steps,
)
from prmforge.training.tokenize import IGNORE


@pytest.mark.parametrize(
    "module", [bestofn, data, eval_metrics, plan, scoring, tokenize], ids=lambda m: m.__name__
)
def test_the_module_doctests_pass(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0
    assert result.attempted > 0


def _logits(pairs: list[tuple[float, float]]) -> torch.Tensor:
    return torch.tensor([pairs], dtype=torch.float32)  # (1, T, 2)


def test_hard_loss_is_two_class_cross_entropy_on_labelled_positions_only() -> None:
    logits = _logits([(0.0, 2.0), (5.0, -5.0), (1.0, 0.0)])
    labels = torch.tensor([[1.0, IGNORE, 0.0]])
    loss, count = step_loss_sum(logits, labels, "hard")
    expected = -math.log(math.exp(2) / (1 + math.exp(2))) - math.log(math.exp(1) / (math.exp(1) + 1))
    assert int(count) == 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_soft_loss_equals_hard_loss_on_zero_one_targets() -> None:
    logits = _logits([(0.3, -1.2), (2.0, 0.5), (-0.4, 0.9)])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    hard, _ = step_loss_sum(logits, labels, "hard")
    soft, _ = step_loss_sum(logits, labels, "soft")
    assert float(soft) == pytest.approx(float(hard), rel=1e-6)


def test_the_soft_gradient_is_score_minus_target_and_vanishes_at_the_target() -> None:
    z = torch.tensor([[[0.0, math.log(0.7 / 0.3)], [0.0, 0.0]]], requires_grad=True)  # scores 0.7, 0.5
    loss, _ = step_loss_sum(z, torch.tensor([[0.7, 0.2]]), "soft")
    loss.backward()
    assert z.grad is not None
    assert z.grad[0, 0, 1].item() == pytest.approx(0.0, abs=1e-6)  # d/dz1 = s - y = 0.7 - 0.7
    assert z.grad[0, 1, 1].item() == pytest.approx(0.5 - 0.2, abs=1e-6)
    assert z.grad[0, 1, 0].item() == pytest.approx(-(0.5 - 0.2), abs=1e-6)


def test_scores_are_the_positive_class_probability() -> None:
    logits = _logits([(1.0, 3.0), (0.0, 0.0)])
    assert step_scores(logits)[0].tolist() == pytest.approx(torch.softmax(logits[0], -1)[:, 1].tolist())
    one = torch.tensor([[[2.0]]])
    assert step_logit(one).item() == 2.0
    assert step_scores(one).item() == pytest.approx(1 / (1 + math.exp(-2)))
    with pytest.raises(ValueError, match="1 or 2 labels"):
        step_logit(torch.zeros(1, 1, 3))


def test_an_epoch_visits_every_row_and_its_last_batch_wraps_round() -> None:
    rows, batch = 10, 4
    assert steps_per_epoch(rows, batch) == 3
    seen = [i for s in range(3) for i in step_rows(rows, batch, seed=5, step=s)]
    assert len(seen) == 12
    assert set(seen) == set(range(10))
    order = epoch_order(rows, 5, 0)
    assert seen == [*order, *order[:2]]
    assert step_rows(rows, batch, 5, 3) == epoch_order(rows, 5, 1)[:4]  # next epoch, a new order
    assert epoch_order(rows, 5, 1) != order
    assert epoch_order(rows, 5, 0) == order


def test_total_steps_and_micro_batches() -> None:
    assert total_steps(10, 4, epochs=2, max_steps=None) == 6
    assert total_steps(10, 4, epochs=2, max_steps=5) == 5
    assert micro_batches([0, 1, 2, 3, 4, 5, 6, 7], 0, 2, 2) == [[0, 2], [4, 6]]
    assert micro_batches([3, 1, 2, 0], 0, 1, 1) == [[3, 1, 2, 0]]
    with pytest.raises(ValueError, match="does not split"):
        micro_batches([0, 1, 2], 0, 2, 1)


@pytest.mark.parametrize(
    ("schedule", "warmup", "expected"),
    [
        ("linear", 0, [1.0, 0.75, 0.5, 0.25]),
        ("linear", 2, [0.5, 1.0, 1.0, 0.5]),
        ("constant", 1, [1.0, 1.0, 1.0, 1.0]),
        ("cosine", 0, [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]),
    ],
)
def test_lr_factor(schedule: str, warmup: int, expected: list[float]) -> None:
    got = [lr_factor(s, 4, warmup, schedule) for s in range(4)]  # type: ignore[arg-type]
    assert got == pytest.approx(expected)
