"""A step's text as pieces of prose and of math, each rewritten into the equation checker's plain syntax.

:func:`pieces` finds the math spans (``$...$``, ``$$...$$``, ``\\(...\\)``,
``\\[...\\]``, ``align``/``equation``/``gather`` environments) and rewrites
every piece. A ``$`` that opens an amount (``$5 * 3 = $15``) is currency, not
math. Prose keeps the rules tuned on word problems (:func:`normalize_prose`).
In math (:func:`normalize_math`) a letter is a variable: it is written
:data:`VAR` + the letter (``x``, ``a_1``), and ``\\sqrt``, ``\\sqrt[n]``,
``\\binom``, ``\\lfloor``/``\\lceil``, ``!`` and ``\\pi`` become the
one-character markers of :data:`FN`. Words inside ``\\text{}`` stay words
(units, labels), and so does a unit abbreviation after a number
(``80 cm^3``), a stop word or any run of four or more letters. Function
names, ``e`` and ``i``, a number in another base (``1011_2``), a letter with
a prime (``f'``) and decorated letters (``\\vec{v}``, ``\\overline{AB}``)
become the poison mark ``§``, which no claim may touch.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prmforge.verifiers.equation_lexicon import GREEK, MATH_FUNCTIONS, MATH_UNITS, STOP

__all__ = ["FN", "VAR", "normalize_math", "normalize_prose", "pieces", "split_math"]

VAR = "\ue000"
FN = {"sqrt": "\ue001", "root": "\ue002", "binom": "\ue003", "floor": "\ue004", "ceil": "\ue005"}
FN |= {"!": "\ue006", "pi": "\ue007"}
_KEEP_OPEN, _KEEP_CLOSE = "\ue010", "\ue011"  # a word inside math that stays a word
MAX_REWRITES = 400

# ---------------------------------------------------------------------------------------- prose

_ANY_TEXT_CMD = re.compile(
    r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|boxed|fbox)\s*\{([^{}]*)\}"
)
_FRAC = re.compile(r"\\[dtc]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FRAC_DIGITS = re.compile(r"\\[dtc]?frac\s*(\d)\s*(\d)")
_SUBSCRIPT = re.compile(r"_\{([^{}]*)\}")
_SUPERSCRIPT = re.compile(r"\^\{([^{}]*)\}")
_MIXED = re.compile(r"(\d)\s*(?=\\[dtc]?frac)")
_UNIT_POWER = re.compile(r"(?<![A-Za-z])([A-Za-z]{2,4})\s*\^\s*(?:\(\d\)|\d)")
_TIMES_X = re.compile(r"(?<=[\d)])\s*[xX]\s*(?=[\d(])")
_TIMES_X_MATH = re.compile(r"(?<=\d)\s+[xX]\s+(?=\d)")
BULLET = re.compile(r"(?m)^[ \t]*(?:[-*•]|\d+[.)])[ \t]+")
_RATIO = re.compile(r"(?<=\d):(?=\d)|(?<=\d)\s+:\s+(?=\$?\d)")
_CURRENCY = re.compile(r"\$(?=\s?[\d.])")
_ESCAPES = ((r"\\%", "%"), (r"\\\$", "$"), (r"\{,\}", ","), (r"(?<=\d),\\!(?=\d{3})", ","))
_REPLACEMENTS = (
    (r"\\[()\[\]]", " ¦ "),
    (r"\$\$?", " ¦ "),
    (r"\\(?:left|right|displaystyle|bigl?|bigr?|Bigl?|Bigr?)(?![A-Za-z])", " "),
    (r"\\(?:quad|qquad)(?![A-Za-z])|\\[,;:! ]", " "),
    (r"\\(?:times|cdot|ast)(?![A-Za-z])", " * "),
    (r"\\div(?![A-Za-z])", " / "),
    (r"\\(?:approx|sim|simeq|cong|doteq)(?![A-Za-z])", " ≈ "),
    (r"\\(?:neq|ne|leq?|geq?|lt|gt|leqslant|geqslant|implies|Rightarrow|rightarrow|to|Longrightarrow"
     r"|iff|Leftrightarrow|longrightarrow)(?![A-Za-z])", " ≠ "),
    (r"\\[A-Za-z]+|\\[{}|]|[√∛π∑∫|]", " § "),
    (r"[×✕⋅·]", " * "),
    (r"÷", " / "),
    (r"−", "-"),
    (r"[≃∼~]", " ≈ "),
    (r"[≤≥<>]=?|!=|=>|⇒|→|≠", " ≠ "),
    (r"==", "="),
    (r"[–—]\s?(?=[\d(])", " - "),  # an en dash before a number is a minus ("97 – 12")
    (r"[–—…]", " ¬ "),
    (r"(?<=[\d)])\s?²", "^2"),
    (r"(?<=[\d)])\s?³", "^3"),
    (r"[²³]", ""),  # a unit's exponent (cm³)
    (r"\*\*", " "),
)  # fmt: skip


def _escapes(text: str) -> str:
    for pattern, replacement in _ESCAPES:
        text = re.sub(pattern, replacement, text)
    return text


def normalize_prose(text: str) -> str:
    """LaTeX and Unicode outside math to plain arithmetic text; ``¦`` marks delimiters, ``§`` poison."""
    text = _escapes(text)
    for _ in range(4):
        text = _ANY_TEXT_CMD.sub(lambda m: f" {m.group(1)} ", text)
    text = _MIXED.sub(r"\1 § ", text)  # 3\frac{4}{5}: a mixed number or a product; never guessed
    for _ in range(4):
        text = _FRAC.sub(lambda m: f"(({m.group(1)})/({m.group(2)}))", text)
    text = _FRAC_DIGITS.sub(r"((\1)/(\2))", text)
    text = _structured(text, _ROOTS)
    text = _SUBSCRIPT.sub(lambda m: "_" + re.sub(r"\W", "", m.group(1)), text)
    text = _SUPERSCRIPT.sub(r"^(\1)", text)
    text = _CURRENCY.sub("", text)
    for pattern, replacement in _REPLACEMENTS:
        text = re.sub(pattern, replacement, text)
    text = _UNIT_POWER.sub(r"\1", text)  # 80 cm^3: the exponent is the unit's, not the number's
    text = _RATIO.sub(" § ", text)
    return _TIMES_X.sub(" * ", text)


# ------------------------------------------------------------------------------ finding the math

_OPENERS = re.compile(
    r"(?<!\\)\$\$|\\\[|\\\(|\\begin\{(align|equation|gather|eqnarray|multline|aligned|split)\*?\}|(?<!\\)\$"
)
_CLOSERS = {"$$": re.compile(r"(?<!\\)\$\$"), "\\[": re.compile(r"\\\]"), "\\(": re.compile(r"\\\)")}
_PROSE_IN_MATH = re.compile(r"[A-Za-z]{3,}[ \t]+[A-Za-z]{3,}")


def _is_amount(content: str, after: str) -> bool:
    """``$5 * 3 = $15``: a ``$`` pair around an amount and prose is currency, not math."""
    bare = _ANY_TEXT_CMD.sub(" ", content)
    if _PROSE_IN_MATH.search(bare):
        return True
    starts_with_number = re.match(r"\s*[\d.]", content) is not None
    return starts_with_number and (content[-1:].isspace() or after[:1].isdigit())


def split_math(text: str) -> list[tuple[bool, str]]:
    """``text`` as ``(is_math, piece)`` pairs, in order, without the math delimiters."""
    out: list[tuple[bool, str]] = []
    pos = start = 0
    while (m := _OPENERS.search(text, pos)) is not None:
        opener = m.group()
        if m.group(1) is not None:
            closer = re.compile(r"\\end\{" + m.group(1) + r"\*?\}")
        elif opener == "$":
            closer = re.compile(r"(?<!\\)\$")
        else:
            closer = _CLOSERS[opener]
        end = closer.search(text, m.end())
        content = text[m.end() : end.start()] if end is not None else ""
        if end is None or (opener == "$" and ("\n\n" in content or _is_amount(content, text[end.end() :]))):
            pos = m.end()
            continue
        if m.start() > start:
            out.append((False, text[start : m.start()]))
        out.append((True, content))
        pos = start = end.end()
    if start < len(text):
        out.append((False, text[start:]))
    return out


def _drop_bullets(piece: str, at_line_start: bool) -> str:
    """List markers at the start of a line (``- ``, ``1. ``), not a minus right after a math span."""
    return BULLET.sub("", piece) if at_line_start else BULLET.sub("", "\ue012" + piece)[1:]


def pieces(text: str) -> list[tuple[bool, str]]:
    """Each prose and math piece of ``text``, normalised (list bullets dropped at line starts)."""
    out = []
    line_start = True
    for is_math, piece in split_math(text):
        if is_math:
            out.append((True, normalize_math(piece)))
        else:
            out.append((False, normalize_prose(_drop_bullets(piece, line_start))))
        line_start = piece.endswith("\n")
    return out


# ------------------------------------------------------------------------------------- math


def _argument(s: str, i: int) -> tuple[str, int] | None:
    """The argument of a command starting at ``s[i]``: a ``{...}`` group, a command or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s) or s[i] in "}^_&":
        return None
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{" and s[j - 1 : j] != "\\":
                depth += 1
            elif s[j] == "}" and s[j - 1 : j] != "\\":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : j], j + 1
        return None
    if s[i] == "\\":
        m = re.match(r"\\[A-Za-z]+", s[i:])
        return (m.group(), i + len(m.group())) if m else None
    return s[i], i + 1


def _optional(s: str, i: int) -> tuple[str | None, int]:
    """An optional ``[n]`` argument (``\\sqrt[3]{8}``)."""
    m = re.match(r"\s*\[([^\[\]{}]*)\]", s[i:])
    return (m.group(1), i + m.end()) if m else (None, i)


_STRUCTURED = re.compile(
    r"\\(?:[dtc]?frac|sqrt|[dt]?binom|text|textbf|textit|textrm|mathrm|mbox|boxed|fbox|operatorname"
    r"|overline|underline|bar|vec|hat|widehat|tilde|dot|ddot|overrightarrow|mathbf|boldsymbol|mathbb"
    r"|mathcal|textsf|mathsf|not)(?![A-Za-z])"
)
_DECORATIONS = frozenset(
    {"overline", "underline", "bar", "vec", "hat", "widehat", "tilde", "dot", "ddot", "overrightarrow"}
    | {"mathbf", "boldsymbol", "mathbb", "mathcal", "operatorname", "mathsf", "not"}
)
_WORDS = frozenset({"text", "textbf", "textit", "textrm", "mathrm", "mbox", "textsf"})


def _rewrite_command(name: str, s: str, end: int) -> tuple[str, int] | None:
    """The replacement of one structured command whose name ends at ``end``, and where it stops."""
    if name in ("frac", "dfrac", "tfrac", "cfrac", "binom", "dbinom", "tbinom"):
        first = _argument(s, end)
        second = _argument(s, first[1]) if first is not None else None
        if first is None or second is None:
            return None
        if name.endswith("frac"):
            return f"(({first[0]})/({second[0]}))", second[1]
        return f"{FN['binom']}({first[0]})({second[0]})", second[1]
    if name == "sqrt":
        index, after = _optional(s, end)
        arg = _argument(s, after)
        if arg is None:
            return None
        if index is None:
            return f"{FN['sqrt']}({arg[0]})", arg[1]
        return f"{FN['root']}({index})({arg[0]})", arg[1]
    arg = _argument(s, end)
    if arg is None:
        return None
    if name in _WORDS:
        return f" {_KEEP_OPEN}{arg[0]}{_KEEP_CLOSE} ", arg[1]
    if name in ("boxed", "fbox"):
        return f" {arg[0]} ", arg[1]
    return " § ", arg[1]  # decorations: \vec{v}, \overline{AB}, \mathbf{0}


_ROOTS = re.compile(r"\\(?:sqrt|[dt]?binom)(?![A-Za-z])")


def _structured(s: str, commands: re.Pattern[str] = _STRUCTURED) -> str:
    """Rewrite ``\\frac``, ``\\sqrt``, ``\\binom``, ``\\text`` and decorations, innermost first."""
    for _ in range(MAX_REWRITES):
        matches = list(commands.finditer(s))
        if not matches:
            return s
        m = matches[-1]
        name = m.group()[1:]
        done = _rewrite_command(name, s, m.end())
        replacement, end = done if done is not None else (" § ", m.end())
        s = s[: m.start()] + replacement + s[end:]
    return " § "


_MATH_FIRST = (
    (r"\\[&#]", " § "),  # \& and \# name operations of the problem's own
    (r"\\[dt]?frac\s*\{\s*d[^{}]*\}\s*\{\s*d[^{}]*\}|\bd[a-z]\b", " § "),  # d/dx, dy/dx, dx
    (r"\\begin\{([pbvBV]?matrix|cases|array|tabular)\}.*?\\end\{\1\}", " § "),
    (r"\\\\\s*&?\s*(?==|\\approx)", " "),  # an align row continuing the chain: "\\ &= c"
    (r"&\s*(?==|\\approx|<|>|\\[lg]eq?\b|\\neq|\\equiv)|(?<==)\s*&", ""),
    (r"&", " ¦ "),
    (r"\\\\", "\n"),
    (r"\\(?:left|right|displaystyle|textstyle|bigl?|bigr?|Bigl?|Bigr?|biggl?|biggr?)(?![A-Za-z])", ""),
    (r"(?<=\d)\\,(?=\d{3}(?!\d))", ""),  # 1\,000: a thin space between thousands
    (r"\\(?:quad|qquad)(?![A-Za-z])|\\[,;:! ]|~", " "),
    (r"\^\s*\{?\s*\\circ\s*\}?|°", f" {_KEEP_OPEN}degrees{_KEEP_CLOSE} "),
    (r"\{([^{}]*)\\choose([^{}]*)\}", FN["binom"] + r"(\1)(\2)"),
    (r"\\[lr]?(?:vert|Vert|mid)(?![A-Za-z])|\\[{}|&#]|\|", " § "),
)
_MATH_LATER = (
    (r"\\lfloor|⌊", FN["floor"] + "("),
    (r"\\lceil|⌈", FN["ceil"] + "("),
    (r"\\rfloor|\\rceil|⌋|⌉", ")"),
    (r"\\pi(?![A-Za-z])", FN["pi"]),
    (r"\\(?:cdots|ldots|dots|dotsb|dotsc|vdots)(?![A-Za-z])", " § "),
)
_BASE_NUMBER = re.compile(r"\d+(?:\.\d+)?_(?:\{[^{}]*\}|\w)")
_FACTORIAL = re.compile(r"(?<=[\d)A-Za-z])!(?![!=])")
_LETTERS = re.compile(
    _KEEP_OPEN + r"[^" + _KEEP_CLOSE + r"]*" + _KEEP_CLOSE
    + r"|([A-Za-zα-ω]+)(?:_(\([^()]*\)|[A-Za-z0-9]))?('+)?"
)  # fmt: skip
_APPLIED = re.compile(VAR + r"([^\W\d_](?:_\w+)?)(?=(?:\^\(-?\d\))?\()")
_USED = re.compile(VAR + r"([^\W\d_](?:_\w+)?)(?!\w|\(|\^\(-?\d\)\()")


def _subscript(sub: str) -> str | None:
    """``n+1`` as a name part ``np1``; None when it is no simple index."""
    sub = sub.removeprefix("(").removesuffix(")").replace(" ", "")
    if not sub or not re.fullmatch(r"[A-Za-z0-9+\-]+", sub):
        return None
    return sub.replace("+", "p").replace("-", "m")


def _letters(m: re.Match[str], previous: str) -> str:
    run, sub, primes = m.group(1), m.group(2), m.group(3)
    if run is None:
        return m.group()
    if primes:
        return " § "
    after_number = bool(re.search(r"\d\s*$", previous))
    if (after_number and run in MATH_UNITS) or run.lower() in STOP or len(run) >= 4:
        return f" {_KEEP_OPEN}{run}{_KEEP_CLOSE} " + ("" if sub is None else " § ")
    if run in MATH_FUNCTIONS or run == "pi" or "e" in run or "i" in run:
        return " § "
    name = _subscript(sub) if sub is not None else ""
    if name is None:
        return " § "
    letters = [VAR + c for c in run]
    if name:
        letters[-1] += "_" + name
    return "".join(letters)


def _mark_variables(s: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _LETTERS.finditer(s):
        out.append(s[pos : m.start()])
        out.append(_letters(m, s[max(0, m.start() - 12) : m.start()]))
        pos = m.end()
    out.append(s[pos:])
    return "".join(out)


def _functions_applied(s: str) -> str:
    """``f(3)``: a letter written only right before ``(`` is a function, not a factor; poison it."""
    used = set(_USED.findall(s))
    poison: Callable[[re.Match[str]], str] = lambda m: m.group() if m.group(1) in used else " § "  # noqa: E731
    return _APPLIED.sub(poison, s)


def normalize_math(text: str) -> str:
    """One math span in the checker's syntax (see the module docstring)."""
    s = _escapes(text)
    for pattern, replacement in _MATH_FIRST:
        s = re.sub(pattern, replacement, s, flags=re.DOTALL)
    s = _MIXED.sub(r"\1 § ", s)
    s = _structured(s)
    for pattern, replacement in _MATH_LATER:
        s = re.sub(pattern, replacement, s)
    s = re.sub(r"\\([A-Za-z]+)", lambda m: GREEK.get(m.group(1), "\\" + m.group(1)), s)
    s = _SUPERSCRIPT.sub(r"^(\1)", s)
    s = _BASE_NUMBER.sub(" § ", s)
    s = _FACTORIAL.sub(FN["!"], s.replace("!!", " § "))
    s = _TIMES_X_MATH.sub(" * ", s)
    s = _CURRENCY.sub("", s)
    for pattern, replacement in _REPLACEMENTS[2:]:
        s = re.sub(pattern, replacement, s)
    s = _RATIO.sub(" § ", s)
    s = _functions_applied(_mark_variables(s.replace("{", "(").replace("}", ")")))
    s = s.replace(_KEEP_OPEN, " ").replace(_KEEP_CLOSE, " ")
    return _UNIT_POWER.sub(r"\1", s)  # 15 \text{ cm}^2: the exponent is the unit's
