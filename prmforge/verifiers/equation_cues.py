"""What a step's (and its problem's) words say about the equalities it writes.

A false equality is only called false when the words around it do not change its
meaning: "about" or "≈" (an approximation), "percent", a scale word ("thousand"),
modular arithmetic or another base ("mod 7", "units digit", "base 5"), a trial
("try", "check whether"), an equation being solved ("solve", "set ... equal"), or
the step rejecting its own claim ("does not work"). :class:`Mentions` collects
them per step; :func:`problem_mentions` adds what the problem says for every step
(a problem in base 7 or modulo 9 makes every step's integers doubtful; a problem
that defines ``a * b`` makes ``*`` an unknown operation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from prmforge.verifiers.equation_latex import split_math

__all__ = ["Mentions", "problem_mentions", "step_mentions"]

_APPROX = re.compile(
    r"≈|\\approx|\b(?:approx(?:\.|imately|imate)?|about|around|roughly|nearly|almost|rounded|rounding"
    r"|estimat\w*|rounds?\s+(?:up|down|off|to)|decimal\s+places?|nearest)\b",
    re.IGNORECASE,
)
_PERCENT = re.compile(r"%|\bpercent", re.IGNORECASE)
_SCALE = re.compile(r"\b(?:hundreds?|thousands?|millions?|billions?|dozens?|cents?|k)\b", re.IGNORECASE)
_MODULAR = re.compile(
    r"\\pmod|\\bmod|\\mod\b|\\equiv|≡|\bmod(?:ulo|ular)?\b|\bcongruen\w*|\bremainders?\b|\bresidues?\b"
    r"|\b(?:units?|ones|last|tens|final|leftmost|rightmost)\s+(?:two\s+|three\s+)?digits?\b"
    r"|\bdigits?\s+sum\b|\bsum\s+of\s+(?:the\s+|its\s+)?digits\b|\bdivisib\w*|\bclock\b",
    re.IGNORECASE,
)
# "base 5", "base-12", "base ten", "base b", "base_{7}"; never "baseball" or "the base of the triangle".
_BASE = re.compile(r"\bbase(?:[-\s]+(?:\d+|ten|two|eight|sixteen|[a-z])\b|\s*_\s*\{?\w+\}?)"
                   r"|\b(?:binary|octal|hexadecimal)\b|\d_\{?\d+\}?", re.IGNORECASE)  # fmt: skip
_TRIAL = re.compile(
    r"\b(?:try(?:ing)?|tried|test(?:ing)?|check(?:ing)?\s+(?:if|whether)|suppose|assum\w*|guess\w*"
    r"|whether|candidates?|hypothe\w*|if\s+we\s+(?:let|take|set))\b|\?",
    re.IGNORECASE,
)
_SOLVING = re.compile(
    r"\b(?:solv\w*|equations?|equat(?:e|ing)|set(?:ting)?\s+(?:\w+\s+){0,4}(?:equal|to)|cross[-\s]?multipl\w*"
    r"|implies|such\s+that|satisf\w*|condition|constraint|unknown|roots?|zeros?|intersect\w*|system"
    r"|(?:left|right|both)[\s-]+(?:hand[\s-]+)?sides?|lhs|rhs)\b"
    r"|\\implies|\\Rightarrow|\\iff|⇒|\\Longrightarrow|\\therefore",
    re.IGNORECASE,
)
_REWRITING = re.compile(
    r"\b(?:expand\w*|simplif\w*|factor(?:s|ed|ing|i[sz]\w*)?|distribut\w*|multiply(?:ing)?\s+out|foil\w*"
    r"|combin\w*\s+like\s+terms|rewrit\w*|identit\w*|identically|for\s+(?:all|every|any)\s+(?:real\s+)?)\b",
    re.IGNORECASE,
)
_REJECTS = re.compile(
    r"\b(?:does\s+not|doesn't|do\s+not|don't|did\s+not|didn't|would\s+not|wouldn't|cannot|can't|isn't"
    r"|is\s+not|are\s+not|aren't)\s+(?:\w+\s+){0,2}(?:work|hold|match|equal|satisfy|fit|true|correct|valid"
    r"|possible|right|make\s+sense)"
    r"|\bnot\s+(?:true|correct|equal|valid|possible)|\bcontradict\w*|\bincorrect\b|\bimpossible\b"
    r"|\bthat(?:'s| is)\s+wrong\b|\bno\s+(?:real\s+|integer\s+)?solutions?\b|\babsurd\b|\bmistake\b"
    r"|\berror\b|\bwrong\b|\bfalse\b|\binvalid\b|\bnever\b"
    # a step that corrects itself: "Wait, 3 + 4 = 8? No, 3 + 4 = 7."
    r"|\bwait\b|\bactually\b|\boops\b|\bre-?(?:check|calculat|comput|evaluat|examin|do)\w*"
    r"|\bcorrect(?:ion|ing|ed)\b|\bmis(?:calculat|read|tak)\w*|\bno,",
    re.IGNORECASE,
)
_DIVISION = re.compile(
    r"\b(?:long|synthetic|polynomial)\s+division\b|\bbring(?:ing)?\s+down\b|\bdivisor\b|\bdividend\b"
    r"|\bquotient\b|\bremainder\b",
    re.IGNORECASE,
)
# ``*`` between letters in math: an operation of the text's own ("Let $a * b = a^b + b^a$").
_STAR_BETWEEN_LETTERS = re.compile(r"[A-Za-z)]\s*\*\s*[A-Za-z(]")
_OPERATION = re.compile(r"\boperations?\b", re.IGNORECASE)


def _custom_star(text: str, *, defines: bool = False) -> bool:
    """``*`` between letters in math, or (``defines``: a problem that names an operation) any ``*``."""
    math = [piece for is_math, piece in split_math(text) if is_math]
    if defines and _OPERATION.search(text) and any("*" in piece for piece in math):
        return True
    return any(_STAR_BETWEEN_LETTERS.search(piece) for piece in math)


@dataclass(frozen=True, slots=True)
class Mentions:
    """What the words say about a step's numbers; each flag makes some false claims undecidable."""

    approximate: bool = False
    percent: bool = False
    scale: bool = False
    modular: bool = False  # mod, remainders, digits, divisibility: an integer claim may be a congruence
    base: bool = False  # another number base: 3 + 4 = 12 may be right
    trial: bool = False  # a value being tried: a false evaluation may be the point
    solving: bool = False  # an equation being solved: equalities with unknowns are conditions
    rewriting: bool = False  # expanding, simplifying, factoring, an identity "for all x"
    rejects: bool = False  # the step itself says something does not hold
    division: bool = False  # long or synthetic division: partial remainders drop terms on purpose
    custom_star: bool = False  # the problem defines its own ``*``

    def merged(self, other: Mentions) -> Mentions:
        """Both steps' and problem's flags (a flag set in either is set)."""
        flags = {name: getattr(self, name) or getattr(other, name) for name in self.__slots__}
        return replace(self, **flags)


def step_mentions(text: str) -> Mentions:
    return Mentions(
        approximate=bool(_APPROX.search(text)),
        percent=bool(_PERCENT.search(text)),
        scale=bool(_SCALE.search(text)),
        modular=bool(_MODULAR.search(text)),
        base=bool(_BASE.search(text)),
        trial=bool(_TRIAL.search(text)),
        solving=bool(_SOLVING.search(text)),
        rewriting=bool(_REWRITING.search(text)),
        rejects=bool(_REJECTS.search(text)),
        division=bool(_DIVISION.search(text)),
        custom_star=_custom_star(text),
    )


def problem_mentions(question: str) -> Mentions:
    """The flags a problem statement sets for every step of its solutions."""
    return Mentions(
        modular=bool(_MODULAR.search(question)),
        base=bool(_BASE.search(question)),
        custom_star=_custom_star(question, defines=True),
    )
