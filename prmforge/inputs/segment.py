"""Split a solution's raw text into steps.

Every mode normalises line ends (``\\r\\n`` and ``\\r`` become ``\\n``),
strips whitespace around each step and drops empty steps:

- ``blank-lines``: a step ends at an empty line (a line of spaces or tabs
  counts as empty) — the segmentation the built-in policies use
  (``prmforge.policies.base.split_steps``, which the inputs layer may not
  import; a test checks the two agree);
- ``step-headers``: a step starts at each line beginning ``Step k:`` (any
  integer ``k``, any case, optionally as a Markdown heading ``## Step 1:``
  or in bold ``**Step 1:**``). The header stays in the step's text, as in
  Math-Shepherd; text before the first header is a step of its own, and text
  without any header is one step;
- ``regex``: ``pattern`` matches the separators between steps (the matched
  text is dropped; a zero-width pattern such as ``(?=Step \\d)`` splits
  before each match). Groups in the pattern do not add steps;
- ``tags``: each step ends with ``tag`` (``ки``, ``<extra_0>``); the tag is
  dropped, and text after the last tag is a final step when not empty.
"""

from __future__ import annotations

import re
from typing import Final

from prmforge.schemas.inputs import SegmentConfig
from prmforge.schemas.steps import STEP_SEPARATOR

_LINE_END: Final = re.compile(r"\r\n?")
_BLANK_LINE: Final = re.compile(r"\n[ \t]+(?=\n)")
_HEADER: Final = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]+)?(?:\*\*)?step[ \t]+\d+[ \t]*(?:\*\*)?[ \t]*:", re.IGNORECASE | re.MULTILINE
)


def _split_at(text: str, pattern: re.Pattern[str], keep_match: bool) -> list[str]:
    """The pieces of ``text`` between matches of ``pattern`` (a kept match starts the next piece)."""
    pieces: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        if match.start() == 0 and match.end() == 0:
            continue
        pieces.append(text[start : match.start()])
        start = match.start() if keep_match else match.end()
    pieces.append(text[start:])
    return pieces


def segment_steps(text: str, cfg: SegmentConfig) -> tuple[str, ...]:
    """The steps of ``text`` under ``cfg`` (see the module doc); empty when the text has none."""
    text = _LINE_END.sub("\n", text)
    if cfg.mode == "blank-lines":
        pieces = _BLANK_LINE.sub("\n", text).split(STEP_SEPARATOR)
    elif cfg.mode == "step-headers":
        pieces = _split_at(text, _HEADER, keep_match=True)
    elif cfg.mode == "regex":
        if cfg.pattern is None:  # SegmentConfig refuses this; kept for a model built without validation
            raise ValueError("segment.pattern: required when mode is 'regex'")
        pieces = _split_at(text, re.compile(cfg.pattern), keep_match=False)
    else:
        pieces = text.split(cfg.tag)
    return tuple(piece.strip() for piece in pieces if piece.strip())


def join_steps(steps: tuple[str, ...]) -> str:
    """A rollout's text from its steps, joined as the built-in policies join them."""
    return STEP_SEPARATOR.join(steps)
