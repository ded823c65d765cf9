"""How a solution's steps are joined into its text, and split back (the one definition)."""

from __future__ import annotations

from typing import Final

STEP_SEPARATOR: Final = "\n\n"


def split_steps(text: str) -> tuple[str, ...]:
    """Segment a solution on blank lines, dropping empty segments and outer whitespace.

    >>> split_steps("a = 1\\n\\n  b = 2  \\n\\n")
    ('a = 1', 'b = 2')
    """
    return tuple(s.strip() for s in text.split(STEP_SEPARATOR) if s.strip())
