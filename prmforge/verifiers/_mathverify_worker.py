"""The child process behind :mod:`prmforge.verifiers.answer`: math-verify comparisons, one per line.

Run as a script (``python _mathverify_worker.py``) by the parent, never imported by the pipeline. It
reads one JSON request a line on stdin, ``{"pred": ..., "gold": ..., "tol": ...}``, and writes one
JSON reply a line on stdout, ``{"equal": true | false | null}``; the first line it writes is
``{"ready": true}`` once math-verify is imported. math-verify runs with its signal-based timeouts
off (``parsing_timeout=None``, ``timeout_seconds=None``): the parent bounds each request's wall
clock and kills this process when one runs over. Its address space is capped so that one huge
expression cannot exhaust the machine.

Only :class:`math_verify.LatexExtractionConfig` is used: it parses with latex2sympy's grammar and
never ``eval``\\s text, unlike the plain-expression extractor (sympy's ``parse_expr``).
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from typing import Any

_ADDRESS_SPACE_BYTES = 4 << 30
GOLD_CACHE_SIZE = 4096


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE_BYTES, _ADDRESS_SPACE_BYTES))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform dependent
        pass


def _parse(answer: str) -> tuple[Any, ...]:
    import math_verify  # type: ignore[import-untyped]

    config = (math_verify.LatexExtractionConfig(boxed_match_priority=0),)
    return tuple(
        math_verify.parse(
            "\\boxed{" + answer + "}",
            extraction_config=config,
            parsing_timeout=None,  # no SIGALRM: the parent bounds the time
            raise_on_error=False,
        )
    )


@lru_cache(maxsize=GOLD_CACHE_SIZE)
def parse_gold(gold: str) -> tuple[Any, ...]:
    """The parsed gold answer; cached per gold string, as one problem's gold is graded K times a step."""
    return _parse(gold)


def _within(gold: Any, pred: Any, tolerance: float) -> bool:
    import sympy  # type: ignore[import-untyped]

    if not (isinstance(gold, sympy.Basic) and isinstance(pred, sympy.Basic)):
        return False
    if not (gold.is_number and pred.is_number):
        return False
    g, p = complex(sympy.N(gold)), complex(sympy.N(pred))
    return abs(g - p) <= tolerance * abs(g)


def equal(pred: str, gold: str, tolerance: float = 0.0) -> bool | None:
    """Whether math-verify finds ``pred`` equal to ``gold``; None when the gold cannot be parsed."""
    import math_verify

    golds = parse_gold(gold)
    if not golds:
        return None
    preds = _parse(pred)
    if not preds:
        return False
    if tolerance > 0 and any(_within(g, p, tolerance) for g in golds for p in preds):
        return True
    return bool(math_verify.verify(list(golds), list(preds), timeout_seconds=None, raise_on_error=False))


def _quiet() -> None:
    """math-verify warns once that its timeout is off: here that is intended."""
    import logging

    import math_verify.grader  # type: ignore[import-untyped]
    import math_verify.parser  # type: ignore[import-untyped]

    math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)


def main() -> None:
    _limit_memory()
    sys.setrecursionlimit(10_000)
    _quiet()
    equal("1", "1")  # warm the parser
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        result: bool | None
        try:
            request = json.loads(line)
            if "sleep" in request:  # a test hook: a request that runs past any deadline
                import time

                time.sleep(float(request["sleep"]))
            result = equal(str(request["pred"]), str(request["gold"]), float(request.get("tol", 0.0)))
        except (Exception, MemoryError, RecursionError):
            result = None
        out.write(json.dumps({"equal": result}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
