"""The step plan, pure: which rows each optimizer step trains on, and its learning-rate factor.

An optimizer step trains on ``global_batch = batch_size * gradient_accumulation_steps * processes`` rows.
Epoch ``e`` visits the rows in the order ``epoch_order(n, seed, e)`` (a shuffle seeded by
``rng("train-order", seed, e)``); its last batch, when short, is filled by wrapping around to the start
of that order, so every step's batch is full and the same on any number of processes. A step's rows
depend only on ``(n, global_batch, seed, step)``: a resumed run trains on exactly the rows an
uninterrupted one would, with no data-loader state to save. Process ``rank`` of ``world`` takes
``batch[rank::world]`` and splits it into ``gradient_accumulation_steps`` micro-batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from prmforge.schemas.seeds import rng

__all__ = [
    "epoch_order",
    "lr_factor",
    "micro_batches",
    "step_rows",
    "steps_per_epoch",
    "total_steps",
]


def steps_per_epoch(rows: int, global_batch: int) -> int:
    """Steps in one pass over ``rows`` (the last one wrapped round to a full batch).

    >>> steps_per_epoch(10, 4), steps_per_epoch(8, 4), steps_per_epoch(3, 4)
    (3, 2, 1)
    """
    if rows < 1 or global_batch < 1:
        raise ValueError(f"{rows} rows in batches of {global_batch}")
    return math.ceil(rows / global_batch)


def total_steps(rows: int, global_batch: int, epochs: int, max_steps: int | None) -> int:
    """``max_steps`` when given, else ``epochs`` passes."""
    return max_steps if max_steps is not None else epochs * steps_per_epoch(rows, global_batch)


def epoch_order(rows: int, seed: int, epoch: int) -> list[int]:
    """The order epoch ``epoch`` visits ``range(rows)`` in."""
    order = list(range(rows))
    rng("train-order", seed, epoch).shuffle(order)
    return order


def step_rows(rows: int, global_batch: int, seed: int, step: int) -> list[int]:
    """The row indices optimizer step ``step`` (0-based) trains on, ``global_batch`` of them.

    >>> sorted(step_rows(5, 2, 0, 0) + step_rows(5, 2, 0, 1) + step_rows(5, 2, 0, 2)[:1])
    [0, 1, 2, 3, 4]
    """
    per_epoch = steps_per_epoch(rows, global_batch)
    epoch, position = divmod(step, per_epoch)
    order = epoch_order(rows, seed, epoch)
    start = position * global_batch
    return [order[(start + i) % rows] for i in range(global_batch)]


def micro_batches(batch: Sequence[int], rank: int, world: int, accumulation: int) -> list[list[int]]:
    """Process ``rank``'s share of a step's rows, as ``accumulation`` micro-batches.

    >>> micro_batches([0, 1, 2, 3, 4, 5, 6, 7], rank=1, world=2, accumulation=2)
    [[1, 3], [5, 7]]
    """
    if len(batch) % (world * accumulation):
        raise ValueError(f"a batch of {len(batch)} rows does not split into {world} x {accumulation}")
    mine = list(batch[rank::world])
    size = len(mine) // accumulation
    return [mine[i * size : (i + 1) * size] for i in range(accumulation)]


def lr_factor(
    step: int, total: int, warmup: int = 0, schedule: Literal["linear", "cosine", "constant"] = "linear"
) -> float:
    """The multiplier of the peak learning rate at optimizer step ``step`` (0-based) of ``total``.

    Warmup rises linearly to 1 over the first ``warmup`` steps (``(step + 1) / warmup``); after it,
    ``linear`` falls as ``1 - p`` and ``cosine`` as ``(1 + cos(pi p)) / 2`` where
    ``p = (step - warmup) / (total - warmup)``.

    >>> [round(lr_factor(s, 4), 3) for s in range(4)], lr_factor(0, 4, warmup=2)
    ([1.0, 0.75, 0.5, 0.25], 0.5)
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
