"""The child process behind :mod:`prmforge.verifiers.equation_engine`: sympy facts about one claim a line.

Run as a script by the parent, never imported by the pipeline. It reads one JSON request a line,
``{"left": tree, "right": tree, "percent": bool, "subs": {name: tree}}`` (trees as written by
:func:`prmforge.verifiers.equation_grammar.to_json`), and writes one JSON line of facts
(:func:`facts`), or ``{"error": "..."}``; its first line is ``{"ready": true}`` once sympy is
imported. The parent bounds each request's wall clock and kills this process when one runs over;
its address space is capped so that one huge expansion cannot exhaust the machine. Trees are
rebuilt node by node: no text is ever parsed or ``eval``-ed here.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from typing import Any

_ADDRESS_SPACE_BYTES = 2 << 30
DIGITS = 50
EQUAL_RELATIVE = 1e-35


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE_BYTES, _ADDRESS_SPACE_BYTES))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform dependent
        pass


# Node heads and how many of their parts are subtrees (see prmforge.verifiers.equation_grammar).
_NODES = {"num": 0, "var": 0, "pi": 0, "neg": 1, "%": 1, "!": 1, "sqrt": 1, "floor": 1, "ceil": 1}
_NODES |= {"root": 2, "binom": 2, "+": 2, "-": 2, "*": 2, "/": 2, "^": 2}


def build(tree: list[Any], percent: bool) -> Any:
    """The sympy expression of a tree."""
    import sympy  # type: ignore[import-untyped]

    head, parts = tree[0], tree[1:]
    if head not in _NODES or not all(isinstance(p, list) for p in parts[: _NODES[head]]):
        raise ValueError(f"not a claim tree: {str(head)[:20]!r}")
    if head == "num":
        value = Fraction(str(parts[0]))  # a decimal literal; never handed to sympy's parser
        return sympy.Rational(value.numerator, value.denominator)
    if head == "var":
        return sympy.Symbol(parts[0])
    if head == "pi":
        return sympy.pi
    args = [build(p, percent) for p in parts]
    unary = {
        "neg": lambda a: -a,
        "%": lambda a: a / 100 if percent else a,
        "!": sympy.factorial,
        "sqrt": sympy.sqrt,
        "floor": sympy.floor,
        "ceil": sympy.ceiling,
    }
    if head in unary:
        return unary[head](args[0])
    a, b = args
    if head == "root":
        if b.is_number and b.is_negative and a.is_integer and a % 2 == 1:
            return -sympy.root(-b, a)
        return sympy.root(b, a)
    binary = {
        "+": lambda: a + b,
        "-": lambda: a - b,
        "*": lambda: a * b,
        "/": lambda: a / b,
        "^": lambda: a**b,
        "binom": lambda: sympy.binomial(a, b),
    }
    return binary[head]()


def _degree(expr: Any, symbols: list[Any]) -> int | None:
    import sympy

    if not symbols:
        return 0
    expanded = sympy.expand(expr)
    if not expanded.is_polynomial(*symbols):
        return None
    return int(sympy.Poly(expanded, *symbols).total_degree()) if expanded != 0 else -1


def _numeric(left: Any, right: Any) -> dict[str, Any]:
    import sympy

    lv, rv = complex(sympy.N(left, DIGITS)), complex(sympy.N(right, DIGITS))
    real = abs(lv.imag) <= 1e-30 * max(1.0, abs(lv)) and abs(rv.imag) <= 1e-30 * max(1.0, abs(rv))
    difference = sympy.N(left - right, DIGITS)
    scale = max(1.0, abs(lv), abs(rv))
    equal = difference == 0 or abs(complex(difference)) <= EQUAL_RELATIVE * scale
    gap = abs(lv - rv) / max(abs(lv), abs(rv)) if max(abs(lv), abs(rv)) > 0 else 0.0
    return {
        "numeric": True,
        "real": real,
        "equal": bool(equal),
        "left": f"{lv.real:.10g}",
        "right": f"{rv.real:.10g}",
        "gap": gap,
        "integers": bool(left.is_integer and right.is_integer),
    }


def facts(request: dict[str, Any]) -> dict[str, Any]:
    """What sympy says about ``left = right``: numeric values, or identity, gap and degrees."""
    import sympy

    percent = bool(request.get("percent", False))
    left, right = build(request["left"], percent), build(request["right"], percent)
    subs = {sympy.Symbol(k): build(v, percent) for k, v in request.get("subs", {}).items()}
    if subs:
        left, right = left.subs(subs), right.subs(subs)
    free_left = sorted(str(s) for s in left.free_symbols)
    free_right = sorted(str(s) for s in right.free_symbols)
    if not free_left and not free_right:
        return _numeric(left, right) | {"free": [[], []]}
    symbols = sorted(left.free_symbols | right.free_symbols, key=str)
    difference = sympy.expand(left - right)
    if difference != 0 and not difference.is_polynomial(*symbols):
        numerator, _ = sympy.fraction(sympy.cancel(sympy.together(difference)))
        difference = sympy.expand(numerator) if sympy.expand(numerator) == 0 else sympy.cancel(difference)
    equal = difference == 0
    constant = None
    if not equal and not difference.free_symbols:
        value = complex(sympy.N(difference, DIGITS))
        equal = abs(value) <= EQUAL_RELATIVE
        constant = None if equal else str(sympy.nsimplify(difference) if difference.is_number else difference)
    degrees = [_degree(left, symbols), _degree(right, symbols), _degree(left - right, symbols)]
    return {
        "numeric": False,
        "real": True,
        "equal": bool(equal),
        "constant_gap": constant,
        "degrees": degrees if all(d is not None for d in degrees) else None,
        "free": [free_left, free_right],
    }


def main() -> None:
    _limit_memory()
    sys.setrecursionlimit(10_000)
    facts({"left": ["var", "x"], "right": ["+", ["var", "x"], ["num", "1"]]})  # warm sympy
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if "sleep" in request:  # a test hook: a request that runs past any deadline
                import time

                time.sleep(float(request["sleep"]))
            reply = facts(request)
        except (Exception, MemoryError, RecursionError) as err:
            reply = {"error": f"{type(err).__name__}: {err}"[:200]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
