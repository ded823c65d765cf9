"""Typed access to the columns of one decoded row; every failure is a RowError naming the column."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from prmforge.schemas.errors import RowError
from prmforge.schemas.records import StepTruth, first_error_of, prefix_labels
from prmforge.schemas.validation import string_field, type_name

MISSING = object()


def get(row: Mapping[str, object], column: str, *, optional: bool = False) -> object:
    """The column's value; RowError when it is absent (``MISSING`` instead when ``optional``)."""
    if column in row:
        return row[column]
    if optional:
        return MISSING
    raise RowError(column, "missing required field")


def text_field(
    row: Mapping[str, object], column: str, *, max_bytes: int | None = None, limit: str | None = None
) -> str:
    """A required, non-blank string column, at most ``max_bytes`` UTF-8 bytes (``limits.<limit>``)."""
    value = string_field(row, column)
    if not value.strip():
        raise RowError(column, "is empty")
    check_size(column, value, max_bytes, limit)
    return value


def check_size(column: str, value: str, max_bytes: int | None, limit_name: str | None = None) -> None:
    if max_bytes is None:
        return
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        limit = f"limits.{limit_name} ({max_bytes})" if limit_name else f"the limit of {max_bytes} bytes"
        raise RowError(column, f"is {size} bytes, above {limit}")


def scalar_text(column: str, value: object) -> str:
    """A string, or an integer or decimal number written as text (ids and answers are often numbers)."""
    if isinstance(value, str):
        string_field({column: value}, column)  # rejects unpaired surrogates
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise RowError(column, f"expected a string or a number, found {type_name(value)}")


def id_field(row: Mapping[str, object], column: str) -> str:
    """A required id: a non-blank string or an integer."""
    value = get(row, column)
    if isinstance(value, float):
        raise RowError(column, f"expected a string or an integer id, found the number {value!r}")
    text = scalar_text(column, value)
    if not text.strip():
        raise RowError(column, "is empty")
    return text


def optional_text(row: Mapping[str, object], column: str | None, *, optional: bool) -> str | None:
    """A string column that may be null (or absent when ``optional``); None for both."""
    if column is None:
        return None
    value = get(row, column, optional=optional)
    if value is MISSING or value is None:
        return None
    return scalar_text(column, value)


def optional_bool(row: Mapping[str, object], column: str | None, *, optional: bool) -> bool | None:
    if column is None:
        return None
    value = get(row, column, optional=optional)
    if value is MISSING or value is None:
        return None
    if not isinstance(value, bool):
        raise RowError(column, f"expected a boolean, found {type_name(value)}")
    return value


def string_list(column: str, value: object) -> tuple[str, ...]:
    """An array of non-blank strings, each stripped of surrounding whitespace."""
    if isinstance(value, str):
        raise RowError(column, "expected an array of strings, found string (map raw text as columns.text)")
    if not isinstance(value, list | tuple):
        raise RowError(column, f"expected an array of strings, found {type_name(value)}")
    steps: list[str] = []
    for k, item in enumerate(value):
        if not isinstance(item, str):
            raise RowError(column, f"step {k} is {type_name(item)}, not a string")
        string_field({column: item}, column)
        if not item.strip():
            raise RowError(column, f"step {k} is empty")
        steps.append(item.strip())
    return tuple(steps)


def step_label(column: str, k: int, value: object) -> bool:
    """One human step label as "is this step correct": booleans, '+'/'-', or PRM800K ratings (-1 wrong)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (-1, 0, 1):
        return value != -1
    if value in ("+", "-"):
        return value == "+"
    raise RowError(column, f"label {k} is {value!r}; expected true/false, '+'/'-' or a rating -1/0/1")


def human_truth(
    row: Mapping[str, object],
    steps: int,
    labels: str | None,
    first_error: str | None,
    optional: frozenset[str],
) -> StepTruth | None:
    """The human step truth from a labels column and/or a first-error column; None when neither gives one.

    A first error alone labels by the prefix rule (correct before it, wrong
    from it on). Labels alone give the first error as the first wrong step.
    Both must agree. A null value means "not labelled".
    """
    correct: tuple[bool, ...] | None = None
    if labels is not None:
        value = get(row, labels, optional="labels" in optional)
        if value is not MISSING and value is not None:
            if not isinstance(value, list | tuple):
                raise RowError(labels, f"expected an array of labels, found {type_name(value)}")
            if len(value) != steps:
                raise RowError(labels, f"has {len(value)} labels for {steps} steps")
            correct = tuple(step_label(labels, k, item) for k, item in enumerate(value))
    index: int | None = None
    if first_error is not None:
        value = get(row, first_error, optional="first_error" in optional)
        if value is not MISSING and value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise RowError(first_error, f"expected an integer step index, found {type_name(value)}")
            if not -1 <= value < steps:
                raise RowError(
                    first_error, f"is {value}; expected -1 (no error) or a step index below {steps}"
                )
            index = value
    if correct is None:
        return None if index is None else StepTruth(index, prefix_labels(index, steps))
    derived = first_error_of(correct)
    if index is not None and index != derived:
        raise RowError(first_error or "", f"is {index} but the labels' first wrong step is {derived}")
    return StepTruth(derived, correct)


def question_key(question: str) -> str:
    """A short stable digest of a question (whitespace-normalised): the problem id of imported rollouts."""
    normal = " ".join(question.split())
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()[:16]
