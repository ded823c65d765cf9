"""The code domain grades an outcome from the compile-test verdict; a run that checked nothing is unknown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from prmforge.languages.code_program import CodeSpec
from prmforge.pipelines.domains import CodeDomain
from prmforge.suites.code import generate_code_problems
from prmforge.verifiers.verdict import Verdict


@dataclass
class _Outcome:
    verdict: Verdict


class _Programs:
    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.seen: list[tuple[str, ...]] = []

    def run_program(self, spec: CodeSpec, lines: Sequence[str]) -> _Outcome:
        self.seen.append(tuple(lines))
        return _Outcome(self.verdict)


@pytest.mark.parametrize(
    ("verdict", "correct"),
    [
        (Verdict.PASS, True),
        (Verdict.FAIL, False),
        (Verdict.TIMEOUT, False),
        (Verdict.COMPILE_ERROR, False),
        (Verdict.INFRA_ERROR, None),
        (Verdict.ABSTAIN, None),  # e.g. a free-form C main the harness refuses to trust
        (Verdict.UNAVAILABLE, None),
    ],
)
def test_grade_follows_the_verdict_and_unchecked_is_unknown(verdict: Verdict, correct: bool | None) -> None:
    problem = generate_code_problems(1, 0, languages=("python",))[0]
    programs = _Programs(verdict)
    domain = CodeDomain(lambda: programs)
    assert domain.grade(problem, "def f():\n\n    return 1\n") == (None, correct)
    assert programs.seen == [("def f():", "    return 1")]
