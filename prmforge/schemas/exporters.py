"""Pure converters between our steps-and-labels and the PRM formats other tools read.

- TRL stepwise supervision: ``{"prompt", "completions", "labels"}``, one bool per step.
- Math-Shepherd (``peiyi9979/Math-Shepherd``, also read by OpenRLHF and openr):
  ``input`` is the question, a space, then ``"Step k: <step> ки"`` for each step
  joined by newlines; ``label`` is the same text with each ``ки`` replaced by
  ``+`` (good) or ``-`` (bad); ``task`` is ``"GSM8K"`` or ``"MATH"``.
- Qwen2.5-Math-PRM chat: the steps joined and terminated by ``<extra_0>`` in
  the assistant turn, under the model card's system prompt.

Each ``from_*`` inverts its ``to_*`` exactly. A malformed row, or steps that
cannot be written unambiguously, raise :class:`RowError` (a ``ValueError``)
whose ``field`` names the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, TypedDict, TypeVar

from prmforge.schemas.errors import RowError
from prmforge.schemas.records import PRMExample
from prmforge.schemas.validation import type_name

MATH_SHEPHERD_TAG: Final = "ки"
MATH_SHEPHERD_GOOD: Final = "+"
MATH_SHEPHERD_BAD: Final = "-"
QWEN_STEP_TAG: Final = "<extra_0>"
QWEN_PRM_SYSTEM_PROMPT: Final = "Please reason step by step, and put your final answer within \\boxed{}."

_FIRST_STEP: Final = " Step 1: "
_T = TypeVar("_T")


class TrlRow(TypedDict):
    prompt: str
    completions: list[str]
    labels: list[bool]


class MathShepherdRow(TypedDict):
    input: str
    label: str
    task: str


class ChatMessage(TypedDict):
    role: str
    content: str


# --- TRL stepwise supervision -------------------------------------------------------------------------


def to_trl(example: PRMExample) -> TrlRow:
    """TRL's stepwise-supervision row; ``labels`` are the hard bools (TRL truncates floats, never soft)."""
    _check_lengths(example.completions, example.labels)
    return {
        "prompt": example.prompt,
        "completions": list(example.completions),
        "labels": list(example.labels),
    }


def from_trl(row: Mapping[str, object]) -> tuple[str, list[str], list[bool]]:
    """``(prompt, completions, labels)`` from a standard-form TRL row; float labels are refused."""
    prompt = _str_field(row, "prompt")
    completions = _list_field(row, "completions", str, "strings")
    labels = _list_field(row, "labels", bool, "booleans")
    _check_lengths(completions, labels)
    return prompt, completions, labels


# --- Math-Shepherd ------------------------------------------------------------------------------------


def to_math_shepherd(
    prompt: str, completions: Sequence[str], labels: Sequence[bool], task: str = "GSM8K"
) -> MathShepherdRow:
    """Math-Shepherd's ``input``/``label``/``task`` row; steps are numbered ``Step 1:``, ``Step 2:``, ..."""
    _check_lengths(completions, labels)
    _check_steps(completions, MATH_SHEPHERD_TAG)
    if MATH_SHEPHERD_TAG in prompt:
        raise RowError("prompt", f"contains the step tag {MATH_SHEPHERD_TAG!r}")
    if (prompt + _FIRST_STEP).find(_FIRST_STEP) != len(prompt):
        raise RowError("prompt", f"contains {_FIRST_STEP!r}, which would be read back as the first step")
    body = "\n".join(f"Step {k}: {step} {MATH_SHEPHERD_TAG}" for k, step in enumerate(completions, 1))
    text = f"{prompt} {body}"
    parts = text.split(MATH_SHEPHERD_TAG)
    marks = [MATH_SHEPHERD_GOOD if good else MATH_SHEPHERD_BAD for good in labels]
    label = "".join(part + mark for part, mark in zip(parts[:-1], marks, strict=True)) + parts[-1]
    return {"input": text, "label": label, "task": task}


def from_math_shepherd(row: Mapping[str, object]) -> tuple[str, list[str], list[bool]]:
    """``(prompt, completions, labels)`` from a Math-Shepherd row, the ``Step k:`` prefixes removed.

    ``label`` is read against ``input`` character by character, so steps that
    themselves contain ``+`` or ``-`` are labelled correctly.
    """
    text = _str_field(row, "input")
    label = _str_field(row, "label")
    if not text.endswith(f" {MATH_SHEPHERD_TAG}"):
        raise RowError("input", f"does not end with the step tag ' {MATH_SHEPHERD_TAG}'")
    parts = text.split(MATH_SHEPHERD_TAG)
    first = parts[0].find(_FIRST_STEP)
    if first < 0:
        raise RowError("input", f"has no {_FIRST_STEP!r} before the first step tag")
    prompt = parts[0][:first]
    pieces = [parts[0][first:], *parts[1:-1]]
    completions = []
    for k, piece in enumerate(pieces, 1):
        head = (" " if k == 1 else "\n") + f"Step {k}: "
        if not piece.startswith(head) or not piece.endswith(" "):
            raise RowError("input", f"step {k} is not laid out as {head!r} + text + ' {MATH_SHEPHERD_TAG}'")
        completions.append(piece[len(head) : -1])
    return prompt, completions, _read_marks(label, parts)


def _read_marks(label: str, parts: list[str]) -> list[bool]:
    """The +/- marks of ``label`` where ``input`` (split into ``parts`` at its tags) has a tag."""
    marks = []
    pos = 0
    for step, part in enumerate(parts[:-1], 1):
        if not label.startswith(part, pos):
            raise RowError("label", f"differs from input outside the step tags (before step {step}'s mark)")
        pos += len(part)
        mark = label[pos : pos + 1]
        if mark not in (MATH_SHEPHERD_GOOD, MATH_SHEPHERD_BAD):
            raise RowError("label", f"expected '+' or '-' at character {pos} (step {step}), found {mark!r}")
        marks.append(mark == MATH_SHEPHERD_GOOD)
        pos += 1
    if label[pos:] != parts[-1]:
        raise RowError("label", "differs from input after the last step tag")
    return marks


# --- Qwen2.5-Math-PRM chat ----------------------------------------------------------------------------


def to_qwen_messages(
    prompt: str, completions: Sequence[str], system: str | None = QWEN_PRM_SYSTEM_PROMPT
) -> list[ChatMessage]:
    """Chat messages for Qwen2.5-Math-PRM: each step followed by ``<extra_0>``; no system turn if None."""
    _check_steps(completions, QWEN_STEP_TAG)
    if QWEN_STEP_TAG in prompt:
        raise RowError("prompt", f"contains the step tag {QWEN_STEP_TAG!r}")
    messages: list[ChatMessage] = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": prompt})
    messages.append({"role": "assistant", "content": QWEN_STEP_TAG.join(completions) + QWEN_STEP_TAG})
    return messages


def from_qwen_messages(messages: Sequence[Mapping[str, object]]) -> tuple[str, list[str]]:
    """``(prompt, completions)`` from ``[system?, user, assistant]`` messages."""
    roles = [message.get("role") for message in messages]
    if roles not in (["system", "user", "assistant"], ["user", "assistant"]):
        raise RowError("messages", f"expected roles [system,] user, assistant; found {roles}")
    prompt = _str_field(messages[-2], "content")
    content = _str_field(messages[-1], "content")
    if not content.endswith(QWEN_STEP_TAG):
        raise RowError("content", f"the assistant turn does not end with {QWEN_STEP_TAG!r}")
    return prompt, content[: -len(QWEN_STEP_TAG)].split(QWEN_STEP_TAG)


# --- shared checks ------------------------------------------------------------------------------------


def _check_lengths(completions: Sequence[str], labels: Sequence[bool]) -> None:
    if len(completions) != len(labels):
        raise RowError("labels", f"has {len(labels)} entries for {len(completions)} completions")


def _check_steps(completions: Sequence[str], tag: str) -> None:
    if not completions:
        raise RowError("completions", "is empty; the format needs at least one step")
    for index, step in enumerate(completions):
        if tag in step:
            raise RowError("completions", f"step {index} contains the step tag {tag!r}")


def _str_field(row: Mapping[str, object], name: str) -> str:
    if name not in row:
        raise RowError(name, "missing required field")
    value = row[name]
    if not isinstance(value, str):
        raise RowError(name, f"expected a string, found {type_name(value)}")
    return value


def _list_field(row: Mapping[str, object], name: str, kind: type[_T], kind_name: str) -> list[_T]:
    if name not in row:
        raise RowError(name, "missing required field")
    value = row[name]
    if not isinstance(value, list | tuple):
        raise RowError(name, f"expected a list of {kind_name}, found {type_name(value)}")
    items: list[_T] = []
    for index, item in enumerate(value):
        if type(item) is not kind:
            raise RowError(name, f"item {index} is a {type_name(item)}; expected {kind_name}")
        items.append(item)
    return items
