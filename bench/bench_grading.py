"""Outcome-grader agreement on math-verify's own public equivalence cases (issue #8).

Reads the ``(gold, prediction, expected)`` cases of math-verify's test suite from a checkout of its
repository (``huggingface/Math-Verify``; pass its path, or set ``MATH_VERIFY_REPO``), by parsing the
test files' ``pytest.mark.parametrize`` tables (nothing is copied into this project), and reports
how often :class:`prmforge.verifiers.answer.AnswerGrader` agrees with the expected verdict, and the
disagreements. Not a test: the numbers go to the README.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path

from prmforge.verifiers.answer import DEFAULT_EXTRACTION, AnswerGrader

FILES = ("tests/test_all.py", "tests/test_numina_cases.py", "tests/test_open_thoughts.py")


def cases(repo: Path) -> list[tuple[str, str, bool, str]]:
    out = []
    for name in FILES:
        path = repo / name
        if not path.exists():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "parametrize"):
                continue
            if len(node.args) < 2 or not isinstance(node.args[0], ast.Constant):
                continue
            names = [n.strip() for n in str(node.args[0].value).split(",")]
            if names[:3] != ["gold", "pred", "expected"] or not isinstance(node.args[1], ast.List):
                continue
            for item in node.args[1].elts:
                try:
                    gold, pred, expected = ast.literal_eval(item)[:3]
                except (ValueError, TypeError, SyntaxError):
                    continue
                out.append((str(gold), str(pred), bool(expected), name))
    return out


def main() -> None:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MATH_VERIFY_REPO", ""))
    found = cases(repo)
    if not found:
        raise SystemExit(f"no math-verify test cases under {repo!s} (pass the repository's path)")
    # The cases' predictions are bare answers (no "The answer is"), so the last math expression is read
    # after the usual extractors, as math-verify's own tests read them.
    grader = AnswerGrader(extraction=(*DEFAULT_EXTRACTION, "last_math"))
    agree, wrong = 0, []
    start = time.perf_counter()
    for gold, pred, expected, name in found:
        verdict = grader.grade(pred, gold)
        if bool(verdict) == expected:
            agree += 1
        else:
            wrong.append(
                {"file": name, "gold": gold, "pred": pred[-120:], "expected": expected, "got": verdict}
            )
    seconds = time.perf_counter() - start
    share, ms = agree / len(found), seconds / len(found) * 1000
    print(f"{agree} of {len(found)} cases agree ({share:.1%}); {ms:.1f} ms/case")
    print(json.dumps(wrong[:40], indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
