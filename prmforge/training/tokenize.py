"""A stepwise row as token ids and per-token labels: each step's label on the LAST token of its separator.

The prompt is tokenised first, then every step on its own with the separator's ids appended (steps are
never joined into one string before tokenising: ProcessBench's reproduction found that worth about 4 F1,
and it makes the labelled token the separator's own last token in every step). Every other position is
:data:`IGNORE` (-100). Scoring (:mod:`prmforge.training.scoring`) tokenises exactly the same way.

Two modes, chosen by :attr:`TokenizeSpec.mode`:

======== =================================================== ==============================================
mode     prompt                                              truncation
======== =================================================== ==============================================
prmforge the tokenizer's own special tokens                  whole steps: a step (with its separator) that
         (``add_special_tokens=True``: Llama's BOS, none     does not fit in ``max_completion_length`` or
         for Qwen)                                           ``max_length`` is dropped with every later one
trl      TRL 1.13 ``PRMTrainer.tokenize_row`` exactly: no    token-level: the steps' ids cut at
         special tokens, then ``bos_token_id`` prepended     ``max_completion_length``, then everything at
         when the tokenizer has one                          ``max_length``; a cut step keeps its leading
                                                             tokens but loses its label
======== =================================================== ==============================================

In both modes a step that is cut off loses its label entirely and no label ever sits on another token:
``positions`` lists where the kept labels are, one per kept step, in order. Labels are floats (a soft
score stays 0.7; TRL's ``int()`` would make it 0).

Worked example (prmforge mode; prompt ids ``[5, 6]``, steps ``[[7], [8, 9]]``, separator ``[1]``,
labels ``(1.0, 0.0)``)::

    input_ids (5, 6, 7, 1, 8, 9, 1)
    labels    (-100, -100, -100, 1.0, -100, -100, 0.0)
    positions (3, 6)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from prmforge.training.config import Tokenization

__all__ = ["IGNORE", "TokenizeSpec", "TokenizedRow", "place_labels", "tokenize_row", "tokenize_rows"]

IGNORE = -100.0
"""The label of every position that carries no step label (PyTorch's ``ignore_index``)."""


@dataclass(frozen=True, slots=True)
class TokenizeSpec:
    """How rows become tokens: the separator, the mode (see the module docstring) and the length limits."""

    separator: str = "\n\n"
    mode: Tokenization = "prmforge"
    max_length: int | None = 1024
    max_completion_length: int | None = None


@dataclass(frozen=True, slots=True)
class TokenizedRow:
    """One row's ids and labels; ``positions`` are the labelled indices, one per kept step, in order."""

    input_ids: tuple[int, ...]
    labels: tuple[float, ...]
    positions: tuple[int, ...]

    @property
    def kept_steps(self) -> int:
        return len(self.positions)


def place_labels(
    prompt_ids: Sequence[int],
    steps_ids: Sequence[Sequence[int]],
    separator_ids: Sequence[int],
    targets: Sequence[float],
    *,
    mode: Tokenization = "prmforge",
    max_length: int | None = None,
    max_completion_length: int | None = None,
) -> TokenizedRow:
    """Lay out the ids and put ``targets[k]`` on the last separator token of step k (pure).

    ``prompt_ids`` are final (in trl mode they already start with the BOS). See the module docstring
    for the two truncation rules.

    >>> place_labels([5, 6], [[7], [8, 9]], [1], [1.0, 0.0], max_length=6).positions
    (3,)
    >>> row = place_labels([5, 6], [[7], [8, 9]], [1], [1.0, 0.0], mode="trl", max_length=6)
    >>> row.input_ids, row.labels[-3:], row.positions
    ((5, 6, 7, 1, 8, 9), (1.0, -100.0, -100.0), (3,))
    """
    if len(steps_ids) != len(targets):
        raise ValueError(f"{len(steps_ids)} steps for {len(targets)} labels")
    if not separator_ids:
        raise ValueError("the separator encodes to no tokens: its label would sit on no token")
    if mode == "trl":
        return _place_trl(prompt_ids, steps_ids, separator_ids, targets, max_length, max_completion_length)
    ids = list(prompt_ids)
    labels = [IGNORE] * len(ids)
    positions: list[int] = []
    completion = 0
    for step_ids, target in zip(steps_ids, targets, strict=True):
        piece = [*step_ids, *separator_ids]
        if max_completion_length is not None and completion + len(piece) > max_completion_length:
            break
        if max_length is not None and len(ids) + len(piece) > max_length:
            break
        ids.extend(piece)
        labels.extend([IGNORE] * (len(piece) - 1) + [float(target)])
        positions.append(len(ids) - 1)
        completion += len(piece)
    return TokenizedRow(tuple(ids), tuple(labels), tuple(positions))


def _place_trl(
    prompt_ids: Sequence[int],
    steps_ids: Sequence[Sequence[int]],
    separator_ids: Sequence[int],
    targets: Sequence[float],
    max_length: int | None,
    max_completion_length: int | None,
) -> TokenizedRow:
    """TRL 1.13's ``tokenize_row`` after its tokenizer calls, with float labels kept."""
    pieces = [[*step, *separator_ids] for step in steps_ids]
    step_labels = [[IGNORE] * (len(p) - 1) + [float(t)] for p, t in zip(pieces, targets, strict=True)]
    completion_ids = list(chain.from_iterable(pieces))
    completion_labels = list(chain.from_iterable(step_labels))
    if max_completion_length is not None:
        completion_ids = completion_ids[:max_completion_length]
        completion_labels = completion_labels[:max_completion_length]
    ids = [*prompt_ids, *completion_ids]
    labels = [IGNORE] * len(prompt_ids) + completion_labels
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    positions = []
    end = len(prompt_ids)
    for piece in pieces:  # a label survives exactly when its step's last separator token does
        end += len(piece)
        if end > len(ids) or end - len(prompt_ids) > len(completion_ids):
            break
        positions.append(end - 1)
    return TokenizedRow(tuple(ids), tuple(labels), tuple(positions))


def _prompt_ids(tokenizer: Any, prompts: Sequence[str], mode: Tokenization) -> list[list[int]]:
    if not prompts:
        return []
    if mode == "prmforge":
        return [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]
    encoded = [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    bos = tokenizer.bos_token_id
    return [[bos, *ids] for ids in encoded] if bos is not None else encoded


def tokenize_rows(
    tokenizer: Any,
    rows: Sequence[tuple[str, Sequence[str], Sequence[float]]],
    spec: TokenizeSpec,
) -> list[TokenizedRow]:
    """``(prompt, steps, targets)`` rows tokenised with ``spec`` (the tokenizer is called once per kind)."""
    prompts = _prompt_ids(tokenizer, [prompt for prompt, _, _ in rows], spec.mode)
    flat_steps = [step for _, steps, _ in rows for step in steps]
    flat_ids = (
        [list(ids) for ids in tokenizer(flat_steps, add_special_tokens=False)["input_ids"]]
        if flat_steps
        else []
    )
    separator_ids = list(tokenizer.encode(spec.separator, add_special_tokens=False))
    out = []
    start = 0
    for (_, steps, targets), prompt_ids in zip(rows, prompts, strict=True):
        steps_ids = flat_ids[start : start + len(steps)]
        start += len(steps)
        out.append(
            place_labels(
                prompt_ids,
                steps_ids,
                separator_ids,
                targets,
                mode=spec.mode,
                max_length=spec.max_length,
                max_completion_length=spec.max_completion_length,
            )
        )
    return out


def tokenize_row(
    tokenizer: Any, prompt: str, steps: Sequence[str], targets: Sequence[float], spec: TokenizeSpec
) -> TokenizedRow:
    """One row (see :func:`tokenize_rows`)."""
    return tokenize_rows(tokenizer, [(prompt, steps, targets)], spec)[0]
