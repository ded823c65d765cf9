"""Reading an LLM judge's answers (pure functions): the earliest wrong step of a critique, a step verdict.

Nothing here guesses. A response either states an answer through one of the forms below or the
vote abstains with a reason (:class:`Parsed` with ``value None``); no form has a default.

**Critique** (:func:`parse_critique`), the first form present decides:

1. ``boxed`` -- the LAST ``\\boxed{…}`` (nested braces allowed), as ProcessBench's ``run_eval.py``
   reads a critic. Its content must be an index (``2``, ``-1``, ``paragraph 2``, ``Step 2``,
   ``paragraph_2``, ``\\text{2}``) or a "no error" word (``none``, ``no error``); anything else, or
   an unclosed last ``\\boxed{`` (a truncated answer), abstains: the model's explicit final answer
   is unreadable, and earlier prose is not read in its place.
2. ``json`` -- the last JSON object holding a known key (:data:`CRITIQUE_KEYS`, e.g.
   ``{"first_error": 2}`` or ``{"earliest_error_step": 2}``). An integer (or its string) is the
   index; ``-1``, ``null``, ``"none"`` mean no error. Two known keys that disagree abstain.
3. ``bare`` -- the whole response is an index or a "no error" word (``2``, ``Paragraph 2.``, ``-1``,
   ``None``).
4. ``phrase`` -- sentences in prose: "the earliest/first error … is in paragraph/step k" (decides
   when present; all such phrases must agree), else "paragraph/step k is incorrect / contains an
   error" (the smallest such k: the question is the earliest wrong step), and "all steps are
   correct" / "no errors in the solution" for -1. An error phrase beside a no-error phrase, or
   earliest-error phrases naming different steps, abstain as ambiguous.

Every index is read in ``index_base`` (0: the default prompt's ``<paragraph_0>`` is index 0; 1: a
template numbering from 1) and converted to 0-based; ``-1`` always means "no wrong step". An index
outside ``-1 .. n_steps - 1`` after conversion abstains, naming the index and the range.

**Per-step verdict** (:func:`parse_verdict`), the first form present decides:

1. ``boxed`` -- the last ``\\boxed{…}``: correct / incorrect, yes / no, true / false, valid /
   invalid, right / wrong (case-insensitive, ``\\text{}`` allowed); anything else abstains.
2. ``json`` -- the last JSON object holding ``correct``, ``is_correct``, ``step_correct`` or
   ``verdict``: a boolean or one of the words above.
3. ``words`` -- verdict words anywhere ("incorrect", "not correct", "no", "wrong", "false", "invalid"
   against "correct", "yes", "true", "valid", "no error(s)"); they must all agree, or the vote
   abstains as ambiguous.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prmforge.verifiers.answer_extract import braced_span

__all__ = [
    "CRITIQUE_KEYS",
    "VERDICT_KEYS",
    "Parsed",
    "find_json_objects",
    "last_boxed",
    "parse_critique",
    "parse_verdict",
]

T = TypeVar("T")

CRITIQUE_KEYS = frozenset(
    {
        "first_error",
        "first_error_step",
        "first_error_paragraph",
        "first_error_index",
        "earliest_error",
        "earliest_error_step",
        "earliest_error_paragraph",
        "earliest_error_index",
        "first_incorrect_step",
        "first_incorrect_paragraph",
        "earliest_incorrect_step",
        "earliest_incorrect_paragraph",
    }
)
"""JSON keys that hold a critique's earliest-error index (compared lower-case, ``-``/space as ``_``)."""

VERDICT_KEYS = frozenset({"correct", "is_correct", "step_correct", "verdict"})
"""JSON keys that hold a per-step verdict."""


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    """One vote read from one response: ``value`` (None: the vote abstains), how, or why not.

    ``via`` names the form that gave the value (``boxed``, ``json``, ``bare``, ``phrase``, ``words``)
    or, for an abstention, the form that was tried last and failed (``""`` when none was present);
    ``reason`` is empty for a value and says why for an abstention.
    """

    value: T | None
    via: str
    reason: str = ""


# ---------------------------------------------------------------- shared extraction

_BOXED = re.compile(r"\\boxed\s*\{")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mathbf|texttt|textit)\s*\{([^{}]*)\}")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{…}`` (braces nested), ``None`` if there is none.

    Raises :class:`ValueError` when the last ``\\boxed{`` is never closed.

    >>> last_boxed(r"\\boxed{1} then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    inside = braced_span(text, starts[-1])
    if inside is None:
        raise ValueError("the last \\boxed{ is never closed (a truncated response?)")
    return inside


def find_json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object embedded in ``text`` (e.g. in a fenced block), each followed by the objects
    nested in it, in order.

    >>> find_json_objects('a {"x": {"y": 1}} b [1] {"z": 2}')
    [{'x': {'y': 1}}, {'y': 1}, {'z': 2}]
    """
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    i = text.find("{")
    while i >= 0:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        _collect(value, found)
        i = text.find("{", end)
    return found


def _collect(value: Any, found: list[dict[str, Any]]) -> None:
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)


def _clean(content: str) -> str:
    """A short answer without LaTeX text commands, dollars, braces, outer spaces and end punctuation."""
    previous = None
    while previous != content:
        previous, content = content, _TEXT_COMMAND.sub(r"\1", content)
    content = content.replace("$", "").replace("{", "").replace("}", "").replace("\u2212", "-")
    return " ".join(content.split()).strip(" .,;:!*`\"'").lower()


def _key(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


# ---------------------------------------------------------------- critique

_NONE_WORDS = frozenset(
    {
        "none",
        "no error",
        "no errors",
        "no mistake",
        "no mistakes",
        "no incorrect paragraph",
        "no incorrect step",
        "all correct",
        "n/a",
    }
)
_INDEX = re.compile(r"(?:(?:paragraph|step)\s*_?\s*)?(-?\d+)")
_EARLIEST = re.compile(
    r"\b(?:earliest|first)\s+(?:error|mistake|incorrect|wrong|erroneous|flaw)\w*\b[^.\n\d]{0,40}?"
    r"\b(?:paragraph|step)\s*_?\s*(-?\d+)",
    re.IGNORECASE,
)
_IS_WRONG = re.compile(
    r"\b(?:paragraph|step)\s*_?\s*(\d+)\b[^.\n\d]{0,30}?\b(?:is|contains|has|was)\s+"
    r"(?:(?:also|clearly|actually|already|definitely)\s+)?(?:the\s+)?"
    r"(?:earliest\s+|first\s+)?(?:incorrect|wrong|erroneous|flawed|not\s+correct|an?\s+error|"
    r"an?\s+mistake|error|mistake)",
    re.IGNORECASE,
)
_ALL_CORRECT = re.compile(
    r"\ball\s+(?:of\s+the\s+|the\s+)?(?:steps|paragraphs)\s+(?:are|were)\s+(?:correct|right|valid)"
    r"|\bno\s+(?:incorrect|wrong|erroneous)\s+(?:steps|paragraphs)\b"
    r"|\bnone\s+of\s+the\s+(?:steps|paragraphs)\s+(?:is|are|was|were)\s+(?:incorrect|wrong)"
    r"|\bno\s+(?:errors?|mistakes?)\s+in\s+(?:the|this|any)\s+(?:solution|steps?|paragraphs?)\b"
    r"|\b(?:the|this)\s+(?:whole\s+|entire\s+)?solution\s+(?:is\s+(?:entirely\s+|fully\s+|completely\s+)?"
    r"correct|(?:has|contains)\s+no\s+(?:errors?|mistakes?))",
    re.IGNORECASE,
)


def _index_of(answer: str) -> int | None:
    """The index a short answer states (-1 for a "no error" word), None if it states none."""
    cleaned = _clean(answer)
    if cleaned in _NONE_WORDS:
        return -1
    match = _INDEX.fullmatch(cleaned)
    return int(match.group(1)) if match else None


def _in_range(raw: int, via: str, n_steps: int, index_base: int) -> Parsed[int]:
    """The 0-based index of ``raw`` (read in ``index_base``), or an abstention when out of range."""
    if raw == -1:
        return Parsed(-1, via)
    index = raw - index_base
    if 0 <= index < n_steps:
        return Parsed(index, via)
    first, last = index_base, index_base + n_steps - 1
    return Parsed(
        None,
        via,
        f"index {raw} is out of range: -1 or {first}..{last} for {n_steps} steps ({index_base}-based)",
    )


def _json_index(value: Any) -> int | None:
    if value is None:
        return -1
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return _index_of(value)
    return None


def _critique_json(text: str) -> tuple[int | None, str] | None:
    """(index or None, reason) from the last JSON object with a known key; None if there is none."""
    for obj in reversed(find_json_objects(text)):
        known = {_key(k): v for k, v in obj.items() if _key(k) in CRITIQUE_KEYS}
        if not known:
            continue
        indices = {k: _json_index(v) for k, v in known.items()}
        if any(i is None for i in indices.values()):
            bad = next(k for k, i in indices.items() if i is None)
            return None, f"JSON key {bad!r} holds {known[bad]!r}, not an index"
        if len(set(indices.values())) > 1:
            return None, f"JSON keys disagree: {json.dumps(known, sort_keys=True)}"
        return next(iter(indices.values())), ""
    return None


def parse_critique(text: str, n_steps: int, index_base: int = 0) -> Parsed[int]:
    """The 0-based earliest wrong step a critique names, -1 for none (see the module for the forms).

    >>> parse_critique(r"Paragraph 1 is off. \\boxed{1}", 3)
    Parsed(value=1, via='boxed', reason='')
    >>> parse_critique("All steps are correct.", 3)
    Parsed(value=-1, via='phrase', reason='')
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if index_base not in (0, 1):
        raise ValueError(f"index_base must be 0 or 1, got {index_base}")
    try:
        boxed = last_boxed(text)
    except ValueError as err:
        return Parsed(None, "boxed", str(err))
    if boxed is not None:
        raw = _index_of(boxed)
        if raw is None:
            return Parsed(None, "boxed", f"the last \\boxed{{}} holds {boxed[:80]!r}, not an index or -1")
        return _in_range(raw, "boxed", n_steps, index_base)
    from_json = _critique_json(text)
    if from_json is not None:
        raw, reason = from_json
        return Parsed(None, "json", reason) if raw is None else _in_range(raw, "json", n_steps, index_base)
    raw = _index_of(text)
    if raw is not None:
        return _in_range(raw, "bare", n_steps, index_base)
    return _critique_phrases(text, n_steps, index_base)


def _critique_phrases(text: str, n_steps: int, index_base: int) -> Parsed[int]:
    earliest = sorted({int(m.group(1)) for m in _EARLIEST.finditer(text)})
    wrong = sorted({int(m.group(1)) for m in _IS_WRONG.finditer(text)})
    all_correct = _ALL_CORRECT.search(text)
    if (earliest or wrong) and all_correct:
        said = (earliest or wrong)[0]
        return Parsed(
            None, "phrase", f"ambiguous: names step {said} as wrong and says {all_correct.group(0)!r}"
        )
    if len(earliest) > 1:
        return Parsed(None, "phrase", f"ambiguous: earliest-error phrases name steps {earliest}")
    if earliest:
        return _in_range(earliest[0], "phrase", n_steps, index_base)
    if wrong:
        return _in_range(wrong[0], "phrase", n_steps, index_base)
    if all_correct:
        return Parsed(-1, "phrase")
    return Parsed(None, "", "no \\boxed{} answer, JSON index, or phrase naming the earliest wrong step")


# ---------------------------------------------------------------- per-step verdict

_TRUE_WORDS = frozenset({"correct", "yes", "true", "valid", "right", "y"})
_FALSE_WORDS = frozenset({"incorrect", "no", "false", "invalid", "wrong", "not correct", "n"})
# Longer phrases first, so that "not correct" and "no errors" are read before "correct" and "no".
_VERDICT_WORD = re.compile(
    r"\b(?P<neg>not\s+(?:correct|right|valid|true)|isn'?t\s+(?:correct|right|valid)|incorrect|wrong|"
    r"invalid|false)\b|\b(?P<pos>no\s+(?:errors?|mistakes?|issues?))\b|\b(?P<no>no)\b|"
    r"\b(?P<yes>correct|yes|true|valid)\b",
    re.IGNORECASE,
)


def _verdict_of(answer: str) -> bool | None:
    cleaned = _clean(answer)
    if cleaned in _TRUE_WORDS:
        return True
    if cleaned in _FALSE_WORDS:
        return False
    return None


def _json_verdict(text: str) -> tuple[bool | None, str] | None:
    for obj in reversed(find_json_objects(text)):
        known = {_key(k): v for k, v in obj.items() if _key(k) in VERDICT_KEYS}
        if not known:
            continue
        verdicts = {
            k: v if isinstance(v, bool) else _verdict_of(v) if isinstance(v, str) else None
            for k, v in known.items()
        }
        if any(v is None for v in verdicts.values()):
            bad = next(k for k, v in verdicts.items() if v is None)
            return None, f"JSON key {bad!r} holds {known[bad]!r}, not a verdict"
        if len(set(verdicts.values())) > 1:
            return None, f"JSON keys disagree: {json.dumps(known, sort_keys=True)}"
        return next(iter(verdicts.values())), ""
    return None


def parse_verdict(text: str) -> Parsed[bool]:
    """Whether a per-step answer says the step is correct (see the module for the forms).

    >>> parse_verdict(r"The sum is right. \\boxed{correct}")
    Parsed(value=True, via='boxed', reason='')
    >>> parse_verdict("Yes, but it is also wrong.").reason
    "ambiguous: says both 'Yes' and 'wrong'"
    """
    try:
        boxed = last_boxed(text)
    except ValueError as err:
        return Parsed(None, "boxed", str(err))
    if boxed is not None:
        verdict = _verdict_of(boxed)
        if verdict is None:
            return Parsed(None, "boxed", f"the last \\boxed{{}} holds {boxed[:80]!r}, not correct/incorrect")
        return Parsed(verdict, "boxed")
    from_json = _json_verdict(text)
    if from_json is not None:
        value, reason = from_json
        return Parsed(value, "json", reason)
    positive: str | None = None
    negative: str | None = None
    for match in _VERDICT_WORD.finditer(text):
        if match.group("neg") or match.group("no"):
            negative = negative or match.group(0)
        else:
            positive = positive or match.group(0)
    if positive and negative:
        first, second = sorted((positive, negative), key=text.find)
        return Parsed(None, "words", f"ambiguous: says both {first!r} and {second!r}")
    if positive or negative:
        return Parsed(positive is not None, "words")
    return Parsed(None, "", "no \\boxed{} verdict, JSON verdict, or verdict word")
