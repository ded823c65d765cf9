"""Under CI a skip in the isolation suites fails; elsewhere it stays a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ci_rules import ROOT, required_in_ci

pytest_plugins = ["pytester"]


def test_the_isolation_suites_are_the_ones_required() -> None:
    assert required_in_ci(ROOT / "verifiers/sandbox/test_sandbox_exec.py")
    assert required_in_ci(ROOT / "verifiers/test_lsp.py")
    assert required_in_ci(ROOT / "verifiers/test_compile_test.py")
    assert not required_in_ci(ROOT / "verifiers/test_answer.py")
    assert not required_in_ci(ROOT / "inputs/test_inputs_paths.py")
    assert not required_in_ci(Path("/elsewhere/verifiers/sandbox/test_x.py"))


@pytest.mark.parametrize(("ci", "expected"), [("true", "failed"), ("", "skipped")])
def test_a_skip_in_an_isolation_suite_fails_only_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, expected: str
) -> None:
    monkeypatch.setenv("CI", ci)
    target = ROOT / "verifiers" / "sandbox" / f"zz_ci_probe_{os.getpid()}_{ci or 'local'}.py"
    target.write_text("import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('bwrap missing')\n")
    try:
        result = pytester.runpytest_inprocess(str(target), "-p", "no:cacheprovider", "-q")
    finally:
        target.unlink()
    outcomes = result.parseoutcomes()
    assert outcomes.get(expected) == 1, outcomes
    if expected == "failed":
        result.stdout.fnmatch_lines(["*skipped under CI*bwrap missing*"])
