"""Word lists the equation checker reads steps with (see :mod:`prmforge.verifiers.equation_text`)."""

from __future__ import annotations

__all__ = [
    "ARTICLES",
    "FUNCTIONS",
    "GLUED_UNITS",
    "GREEK",
    "LABELS",
    "MATH_FUNCTIONS",
    "MATH_UNITS",
    "STOP",
    "WORD_OPS",
]

# Unit abbreviations written glued to a number ("20km", "5kg", "3rd"); any other glued word ("2ab",
# "3iz", "68k") is a variable coefficient, so the claim is not checked.
GLUED_UNITS = frozenset((
    "km", "cm", "mm", "m", "kg", "g", "mg", "l", "ml", "lb", "lbs", "oz", "ft", "in", "mi", "yd", "h", "hr",
    "hrs", "min", "mins", "s", "sec", "secs", "mph", "kph", "st", "nd", "rd", "th", "am", "pm", "x",
))  # fmt: skip

STOP = frozenset((
    "of", "and", "or", "is", "are", "was", "were", "be", "so", "then", "to", "for", "in", "on", "at", "by",
    "from", "with", "which", "that", "this", "the", "an", "we", "he", "she", "they", "it", "its", "if", "as",
    "equals", "gives", "makes", "each", "left", "more", "less", "than", "total", "now", "not", "no", "but",
    "because", "since", "when", "there", "will", "would", "can", "has", "have", "had", "do", "does", "get",
    "gets", "got", "need", "needs", "also", "both", "all", "his", "her", "their", "our", "your", "already",
    "up", "down", "out", "away", "back", "off", "over", "just", "only", "still", "very", "too", "into",
))  # fmt: skip

# Nouns that number things: "day 1 * 2 = ..." starts a claim with a label, not with the number 1.
LABELS = frozenset((
    "day", "week", "month", "year", "step", "page", "part", "case", "option", "question", "problem",
    "chapter", "grade", "level", "row", "room", "table", "line", "item", "group", "team", "round", "game",
    "house", "number", "floor", "lane", "stage", "phase", "version", "box", "bag", "car", "bus", "no",
))  # fmt: skip

WORD_OPS = {"times": "*", "plus": "+", "minus": "-"}

# Function names, and ordinal suffixes ("1st - 5 = 6th" is about positions, not numbers).
FUNCTIONS = frozenset((
    "sqrt", "log", "ln", "sin", "cos", "tan", "exp", "mod", "pi", "lim", "max", "min", "floor", "ceil", "abs",
    "st", "nd", "rd", "th",
))  # fmt: skip

ARTICLES = frozenset({"a", "A", "I"})

# Inside math, a run of letters that names a function is never a product of variables.
MATH_FUNCTIONS = frozenset((
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "lg", "exp", "lim", "max", "min", "gcd", "lcm",
    "mod", "det", "arg", "deg", "dim", "ker", "sgn", "sign", "abs", "Re", "Im",
))  # fmt: skip

# Inside math, a run of letters right after a number that is a unit ("$80 cm^3$") stays a word.
MATH_UNITS = frozenset((
    "km", "cm", "mm", "kg", "mg", "ml", "lb", "lbs", "oz", "ft", "in", "mi", "yd", "hr", "hrs", "min",
    "mins", "sec", "secs", "mph", "kph", "units", "unit", "sq",
))  # fmt: skip

# Greek letters that name variables (``\pi`` is the constant and is not here).
GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "theta": "θ", "lambda": "λ", "mu": "μ",
    "phi": "φ", "varphi": "φ", "psi": "ψ", "omega": "ω", "sigma": "σ", "tau": "τ", "rho": "ρ", "nu": "ν",
    "kappa": "κ", "xi": "ξ", "zeta": "ζ", "eta": "η", "chi": "χ",
}  # fmt: skip
