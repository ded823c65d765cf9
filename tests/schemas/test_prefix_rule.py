"""The one prefix-label rule (``prefix_labels``) and its inverse (``first_error_of``)."""

from __future__ import annotations

import re
from pathlib import Path

import prmforge
from prmforge.schemas.records import StepTruth, first_error_of, prefix_labels


def test_prefix_labels() -> None:
    assert prefix_labels(2, 4) == (True, True, False, False)
    assert prefix_labels(0, 3) == (False, False, False)
    assert prefix_labels(-1, 2) == (True, True)
    assert prefix_labels(-1, 0) == ()


def test_first_error_of_reads_the_first_wrong_step() -> None:
    assert first_error_of((True, False, True)) == 1  # local truth: later steps may be right again
    assert first_error_of((False,)) == 0
    assert first_error_of((True, True)) == -1
    assert first_error_of(()) == -1


def test_the_two_are_inverse() -> None:
    for steps in range(6):
        for first_error in range(-1, steps):
            assert first_error_of(prefix_labels(first_error, steps)) == first_error
    truth = StepTruth(first_error=1, step_correct=(True, False, True))
    assert truth.prefix_labels() == (True, False, False)
    assert first_error_of(truth.step_correct) == truth.first_error


# Hand-written forms of the rule: "t < first_error" label comprehensions and first-False scans.
_REWRITES = (
    re.compile(r"\w+ < 0 or \w+ < \w+ for \w+ in range"),
    re.compile(r"next\(\(\w+ for \w+, \w+ in enumerate\([^)]*\) if not \w+\)"),
)


def test_no_module_rewrites_the_rule() -> None:
    """Only ``schemas/records.py`` spells the rule out; every other module calls it."""
    package = Path(prmforge.__file__).parent
    offenders = [
        f"{path.relative_to(package)}: {match.group(0)}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "records.py"
        for pattern in _REWRITES
        for match in pattern.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
