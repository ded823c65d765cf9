"""Extraction of the final answer a solution states (see :mod:`prmforge.verifiers.answer`).

:func:`extract_final_answer` tries the modes of ``extraction`` in order and takes, from the first mode
that finds one, the *last* answer stated in that way; the modes are listed in the docstring of
:mod:`prmforge.verifiers.answer`.
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "DEFAULT_EXTRACTION",
    "EXTRACTION_MODES",
    "ExtractionMode",
    "clean",
    "extract_final_answer",
    "gold_answer",
]

ExtractionMode = Literal["boxed", "minerva", "answer_is", "final_answer", "hashes", "last_math"]
EXTRACTION_MODES: Final[tuple[ExtractionMode, ...]] = (
    "boxed",
    "minerva",
    "answer_is",
    "final_answer",
    "hashes",
    "last_math",
)
DEFAULT_EXTRACTION: Final[tuple[ExtractionMode, ...]] = (
    "boxed",
    "minerva",
    "answer_is",
    "final_answer",
    "hashes",
)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_GAP = re.compile(
    r"(?:\s|\$|,|;|\\[,;:! ]|\\quad|\\qquad|\\text\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b"
    # "\\text{ for part (a) and }": a short connective naming the parts
    r"|\\text\{[^{}$]{0,40}\b(?:and|or)\s*\}"
    # "\\) and \\( y_2 = ": the next box is the value of the next named unknown
    r"|\\\(|\\\)|(?<![A-Za-z])[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=)*",
    re.IGNORECASE,
)
_MINERVA_CUE = re.compile(r"final\s+answer\s+is", re.IGNORECASE)
_MINERVA_TAIL = re.compile(r"\s*\$+(.+?)\$+\s*\.?\s*I\s+hope\s+it\s+is\s+correct", re.IGNORECASE | re.DOTALL)
# The sentence a Minerva-style answer ends with when it has no "The final answer is": "Therefore,
# there are 12 sequences. I hope it is correct."
_HOPE_SENTENCE = re.compile(
    r"([^.!?\n]*(?:\.\d[^.!?\n]*)*)[.!?]?\s*I\s+hope\s+it\s+is\s+correct", re.IGNORECASE
)
_ANSWER_IS = re.compile(r"\bthe\s+(?:final\s+)?answer\s+is\b[ \t]*:?[ \t]*([^\n]*)", re.IGNORECASE)
_FINAL_ANSWER = re.compile(
    r"final\s+answer\s*(?:\*\*)?\s*:[ \t]*(?:\*\*)?[ \t]*\n?[ \t]*([^\n]*)", re.IGNORECASE
)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_LEADING_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_MATH_SPAN = re.compile(
    r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<![\\$])\$((?:[^$\\]|\\.)+?)\$", re.DOTALL
)
_LAST_NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_LAST_NUMBER_OR_PERCENT = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?(?:/\d+)?%?")
# "I hope it is correct" ends the answer, and whatever a model wrote after it (a chat template's next
# turn, say) is not part of it.
_HOPE = re.compile(r"\.?\s*I\s+hope\s+it\s+is\s+correct.*$", re.IGNORECASE | re.DOTALL)
# Prose: two words of two or more letters that are not LaTeX commands ("The largest n is 34").
_PROSE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}\b[^A-Za-z\\]+(?<![\\])[A-Za-z]{2,}\b")
# A bare expression: digits, letters of LaTeX commands, operators, brackets and spacing only.
_BARE = re.compile(r"[\s\d.,+\-*/^=<>()\[\]{}|!%'_:;\\A-Za-z]{1,200}")


def extract_final_answer(text: str, extraction: tuple[str, ...] = DEFAULT_EXTRACTION) -> str | None:
    """The final answer in ``text``, or None when it states none (see the module doc for the modes).

    Strips surrounding whitespace, a trailing period, ``$`` signs and markdown bold; units are kept.
    """
    for mode in extraction:
        answer = _EXTRACTORS[mode](text)
        if answer and mode == "boxed" and "minerva" in extraction:
            # Boxed intermediate results, then "The final answer is $X$. I hope it is correct.": X.
            found = _minerva_match(text)
            if found is not None and found[0] > _last_box_end(text):
                return found[1]
        if answer:
            return answer
    return None


def _last_box_end(text: str) -> int:
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return -1
    content = braced_span(text, starts[-1])
    return starts[-1] + (len(content) + 1 if content is not None else 0)


# --- extraction ----------------------------------------------------------------------------------


def _extract_boxed(text: str) -> str | None:
    spans: list[tuple[int, int, str]] = []  # (start of \boxed, end after its brace, content)
    for match in _BOXED.finditer(text):
        content = braced_span(text, match.end())
        if content is not None:
            spans.append((match.start(), match.end() + len(content) + 1, content))
    while spans and not clean(spans[-1][2]):
        spans.pop()
    if not spans:
        return None
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        if not _BOX_GAP.fullmatch(text[span[1] : group[0][0]]) or not clean(span[2]):
            break
        group.insert(0, span)
    return ", ".join(clean(content) for _, _, content in group)


def _minerva_match(text: str) -> tuple[int, str] | None:
    """(position, answer) of the last "final answer is $X$. I hope it is correct" in ``text``."""
    for cue in reversed(list(_MINERVA_CUE.finditer(text))):
        tail = _MINERVA_TAIL.match(text, cue.end())
        if tail is not None and not _MINERVA_CUE.search(tail.group(1)) and (cleaned := clean(tail.group(1))):
            return cue.start(), cleaned
    return None


def _extract_minerva(text: str) -> str | None:
    if found := _minerva_match(text):
        return found[1]
    for match in reversed(list(_HOPE_SENTENCE.finditer(text))):
        if answer := _within_prose(match.group(1)):
            return answer
    return None


def _answer_text(candidate: str) -> str:
    """The answer in what follows an anchor: its leading ``$...$`` span, else the line up to "I hope"."""
    candidate = candidate.strip()
    if m := _LEADING_MATH.match(candidate):
        return clean(next(g for g in m.groups() if g is not None))
    return clean(_HOPE.sub("", candidate))


def _within_prose(answer: str) -> str | None:
    """The answer a sentence states ("The largest $n$ is 34" is 34): its last math span, else its last
    number; None when ``answer`` is not prose (nor a sentence that ends in a leading math span)."""
    answer = _HOPE.sub("", answer.strip())
    if _LEADING_MATH.match(answer) or not _PROSE.search(_MATH_SPAN.sub(" ", answer)):
        return None
    spans = list(_MATH_SPAN.finditer(answer))
    numbers = list(_LAST_NUMBER.finditer(answer))
    if numbers and (not spans or numbers[-1].start() >= spans[-1].end()):
        return numbers[-1].group().rstrip(",")
    return clean(next(g for g in spans[-1].groups() if g is not None)) if spans else None


def _extract_answer_is(text: str) -> str | None:
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        if cleaned := _within_prose(match.group(1)) or _answer_text(match.group(1)):
            return cleaned
    return None


def _extract_final_answer_line(text: str) -> str | None:
    for match in reversed(list(_FINAL_ANSWER.finditer(text))):
        line = match.group(1)
        inner = (
            _extract_minerva(line) or _extract_answer_is(line) or _within_prose(line) or _answer_text(line)
        )
        if inner:
            return inner
    return None


def _extract_hashes(text: str) -> str | None:
    for match in reversed(list(_HASHES.finditer(text))):
        if cleaned := clean(match.group(1)):
            return cleaned
    return None


def _extract_last_math(text: str) -> str | None:
    spans = list(_MATH_SPAN.finditer(text))
    after: list[str] = _LAST_NUMBER_OR_PERCENT.findall(text[spans[-1].end() :]) if spans else []
    if after:  # "... \\geq 2.$$ Therefore it increases by 100%.": the number is stated last
        return after[-1].rstrip(",")
    for match in reversed(spans):
        if cleaned := clean(next(g for g in match.groups() if g is not None)):
            return cleaned
    bare = text.strip()
    if _BARE.fullmatch(bare) and not _PROSE.search(bare) and clean(bare):
        return clean(bare)  # the whole text is one expression: "\\frac{10}{9}", "1 000", ".4"
    numbers = _LAST_NUMBER.findall(text)
    return numbers[-1].rstrip(",") if numbers else None


_EXTRACTORS = {
    "boxed": _extract_boxed,
    "minerva": _extract_minerva,
    "answer_is": _extract_answer_is,
    "final_answer": _extract_final_answer_line,
    "hashes": _extract_hashes,
    "last_math": _extract_last_math,
}


def gold_answer(gold: str) -> str:
    """The answer a gold string states: itself, or when it is a whole worked solution in prose with a
    stated final answer ("The final answer is $X$", "Final Answer:", "####"), that answer. Boxes are
    left to the comparison, which reads every box of a gold ("\\boxed{1} papers and \\boxed{2} bins")."""
    if not _PROSE.search(_MATH_SPAN.sub(" ", gold)):
        return gold
    return extract_final_answer(gold, ("minerva", "answer_is", "final_answer", "hashes")) or gold


def braced_span(text: str, start: int) -> str | None:
    """The text from ``start`` up to the brace that closes the one just before it, if any."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def clean(answer: str) -> str:
    """Without ``$`` signs, surrounding markdown bold, spacing and a trailing period."""
    answer = answer.replace("\\$", "").replace("$", "").strip().rstrip(". \t")
    while answer.startswith("**") and answer.endswith("**") and len(answer) >= 4:
        answer = answer[2:-2].strip()
    return answer.rstrip(". \t").strip()
