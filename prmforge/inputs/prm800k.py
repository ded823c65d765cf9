"""The PRM800K preset: OpenAI's labelled solutions, one nested JSON object per line.

A line is ``{"question": {"problem", "ground_truth_answer", ...}, "label":
{"steps": [{"completions": [{"text", "rating"}], "chosen_completion",
"human_completion"}], "finish_reason"}, ...}``. The imported rollout takes,
at each step, the chosen completion, or the first completion when none was
chosen (the step where labelling stopped, or one a labeller rewrote by hand:
human-written steps are not imported, so a rollout stays model-written and
its label is the model's own step). A rating of -1 is an error; 0 (neutral)
and 1 are not. ``finish_reason`` ``give_up`` and ``bad_problem`` rows are
refused: their labels are incomplete or the problem is broken.

The last step of a PRM800K solution ends ``# Answer\\n\\nX``; X is the
rollout's final answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from prmforge.inputs.fields import check_size, optional_text, text_field
from prmforge.inputs.segment import join_steps
from prmforge.schemas.errors import RowError
from prmforge.schemas.records import StepTruth, first_error_of
from prmforge.schemas.validation import type_name

_ANSWER: Final = re.compile(r"^#[ \t]*Answer[ \t]*\n+(.+)", re.MULTILINE | re.DOTALL)
_REFUSED: Final = {
    "give_up": "the labeller gave up, so the steps' labels are incomplete",
    "bad_problem": "the labeller reported the problem as broken",
}


@dataclass(frozen=True, slots=True)
class Prm800kRow:
    question: str
    gold: str
    steps: tuple[str, ...]
    truth: StepTruth
    final_answer: str | None


def _object(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise RowError(field, f"expected an object, found {type_name(value)}")
    return value


def _nested(field: str, err: RowError) -> RowError:
    return RowError(f"{field}.{err.field}", err.reason)


def stated_answer(step: str) -> str | None:
    """X in a last step ending ``# Answer`` then X, else None."""
    match = _ANSWER.search(step)
    if match is None:
        return None
    return match.group(1).strip() or None


def _step(step: object, t: int) -> tuple[str, bool]:
    where = f"label.steps.{t}"
    data = _object(step, where)
    completions = data.get("completions")
    if not isinstance(completions, list) or not completions:
        raise RowError(f"{where}.completions", "expected a non-empty array of completions")
    chosen = data.get("chosen_completion")
    if chosen is None:
        chosen = 0
    if not isinstance(chosen, int) or isinstance(chosen, bool) or not 0 <= chosen < len(completions):
        raise RowError(f"{where}.chosen_completion", f"is {chosen!r}, not an index below {len(completions)}")
    field = f"{where}.completions.{chosen}"
    completion = _object(completions[chosen], field)
    try:
        text = text_field(completion, "text")
    except RowError as err:
        raise _nested(field, err) from None
    rating = completion.get("rating")
    if rating not in (-1, 0, 1) or isinstance(rating, bool):
        raise RowError(f"{field}.rating", f"is {rating!r}; expected -1, 0 or 1")
    return text.strip(), rating != -1


def parse_prm800k(
    data: Mapping[str, object], max_question_bytes: int, max_steps: int, max_answer_bytes: int
) -> Prm800kRow:
    """One PRM800K line (decoded); RowError naming the nested field (``label.steps.3.completions``)."""
    question_obj = _object(data.get("question"), "question")
    try:
        question = text_field(
            question_obj, "problem", max_bytes=max_question_bytes, limit="max_question_bytes"
        )
        gold = optional_text(question_obj, "ground_truth_answer", optional=True) or ""
    except RowError as err:
        raise _nested("question", err) from None
    check_size("question.ground_truth_answer", gold, max_answer_bytes, "max_answer_bytes")
    label = _object(data.get("label"), "label")
    finish = label.get("finish_reason")
    if isinstance(finish, str) and finish in _REFUSED:
        raise RowError("label.finish_reason", f"is {finish!r}: {_REFUSED[finish]}")
    raw_steps = label.get("steps")
    if not isinstance(raw_steps, list):
        raise RowError("label.steps", f"expected an array of steps, found {type_name(raw_steps)}")
    if not raw_steps:
        raise RowError("label.steps", "has no steps")
    if len(raw_steps) > max_steps:
        raise RowError("label.steps", f"{len(raw_steps)} steps exceed limits.max_steps ({max_steps})")
    parsed = [_step(step, t) for t, step in enumerate(raw_steps)]
    steps = tuple(text for text, _ in parsed)
    check_size("label.steps", join_steps(steps), max_answer_bytes, "max_answer_bytes")
    correct = tuple(ok for _, ok in parsed)
    first_error = first_error_of(correct)
    if finish == "found_error" and first_error < 0:
        raise RowError("label.finish_reason", "is 'found_error' but no step of the trajectory is rated -1")
    return Prm800kRow(question, gold, steps, StepTruth(first_error, correct), stated_answer(steps[-1]))
