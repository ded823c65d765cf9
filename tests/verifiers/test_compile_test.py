"""Compile-and-test line labels, run in the real sandbox (bubblewrap jail per run)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from prmforge.languages.code_program import CodeSpec, CodeSpecError, code_spec_of, parse_c_tests
from prmforge.schemas.records import Problem
from prmforge.suites.code import Bug, apply_bug, code_tasks, generate_code_problems
from prmforge.verifiers.base import StepVerifier
from prmforge.verifiers.compile_test import CompileTestVerifier, Outcome
from prmforge.verifiers.sandbox import IsolationUnavailable, SandboxLimits
from prmforge.verifiers.verdict import Verdict

PROBLEMS = {p.meta["task"]: p for p in generate_code_problems(16, 0)}
TASKS = {t.name: t for t in code_tasks()}
GCD = code_spec_of(PROBLEMS["gcd_c"])
RIGHT_GCD = "int gcd(int a, int b) { while (b) { int t = a % b; a = b; b = t; } return a; }\n"


def run_c(verifier: CompileTestVerifier, body: str, spec: CodeSpec = GCD) -> Outcome:
    """``body`` as the solution of a C task (after the task's prelude)."""
    return verifier.run_c(spec, f"{spec.prelude}\n{body}")


@pytest.fixture(scope="module")
def verifier() -> Iterator[CompileTestVerifier]:
    try:
        yield CompileTestVerifier(run_limits=SandboxLimits(wall_s=1.0, address_space_bytes=256 << 20, pids=8))
    except IsolationUnavailable as err:
        pytest.skip(f"sandbox unavailable here: {err}")


def test_is_a_step_verifier(verifier: CompileTestVerifier) -> None:
    """The verifier satisfies the StepVerifier protocol."""
    assert isinstance(verifier, StepVerifier)


@pytest.mark.parametrize("task", ["fizzbuzz", "binary_search_c"])
def test_reference_passes_on_every_line(verifier: CompileTestVerifier, task: str) -> None:
    """A reference copy gets PASS on every line (one run: the program passes as written)."""
    steps = TASKS[task].reference
    checks = verifier.check_steps(PROBLEMS[task], steps)
    assert [c.verdict for c in checks] == [Verdict.PASS] * len(steps)
    assert checks[0].tool.startswith("compile-test/")


MUTATIONS = [
    ("sum_digits", Bug(4, "operator_swap", "+=", "-=")),
    ("binary_search", Bug(2, "off_by_one", "- 1", "- 2")),
    ("running_max", Bug(6, "wrong_variable", "(best)", "(x)")),
    ("fizzbuzz", Bug(3, "wrong_constant", "15", "10")),
    ("compress", Bug(10, "deleted_line")),
    ("sum_digits_c", Bug(4, "operator_swap", "+=", "-=")),
    ("is_prime_c", Bug(1, "off_by_one", "n < 2", "n < 3")),
    ("fib_c", Bug(5, "wrong_variable", "a = b", "a = t")),
    ("count_words_c", Bug(5, "wrong_constant", "0", "1")),
    ("count_words_c", Bug(7, "deleted_line")),
]


@pytest.mark.parametrize(("task", "bug"), MUTATIONS, ids=[f"{t}-{b.kind}" for t, b in MUTATIONS])
def test_each_mutation_kind_fails_at_exactly_the_mutated_line(
    verifier: CompileTestVerifier, task: str, bug: Bug
) -> None:
    """Lines before the bug PASS, the mutated line FAILs; every later line is invalid (PRM convention)."""
    assert bug in TASKS[task].bugs
    steps = apply_bug(TASKS[task].reference, bug)
    checks = verifier.check_steps(PROBLEMS[task], steps)
    assert [c.verdict for c in checks[: bug.line]] == [Verdict.PASS] * bug.line
    assert checks[bug.line].verdict is Verdict.FAIL
    assert all(c.status == "invalid" for c in checks[bug.line :])


def test_truncated_program_fails_only_at_its_last_line(verifier: CompileTestVerifier) -> None:
    """Every prefix of a truncated program is completable; the program as written fails."""
    steps = TASKS["gcd_c"].reference[:4]
    checks = verifier.check_steps(PROBLEMS["gcd_c"], steps)
    assert [c.verdict for c in checks] == [Verdict.PASS] * 3 + [Verdict.COMPILE_ERROR]
    python_steps = TASKS["gcd"].reference[:3]
    checks = verifier.check_steps(PROBLEMS["gcd"], python_steps)
    assert [c.verdict for c in checks] == [Verdict.PASS, Verdict.PASS, Verdict.FAIL]


def test_c_compile_error(verifier: CompileTestVerifier) -> None:
    """A missing semicolon is a COMPILE_ERROR at its line (and in the program as written)."""
    steps = list(TASKS["fib_c"].reference)
    steps[4] = steps[4].rstrip(";")
    checks = verifier.check_steps(PROBLEMS["fib_c"], steps)
    assert [c.verdict for c in checks[:4]] == [Verdict.PASS] * 4
    assert {c.verdict for c in checks[4:]} == {Verdict.COMPILE_ERROR}
    assert "expected" in checks[4].reason


def _big_files(root: str, threshold: int) -> list[str]:
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            try:
                if os.lstat(path).st_size > threshold:
                    found.append(path)
            except OSError:
                continue
    return found


def _scratch_root() -> str:
    return str(Path(tempfile.gettempdir()) / "prmforge-sandbox")


def test_two_gib_static_array_is_a_compile_limit_and_leaves_no_file(verifier: CompileTestVerifier) -> None:
    """``char big[1L<<31]={1};`` -> COMPILE_LIMIT (file-size limit), no big object file anywhere."""
    free_before = shutil.disk_usage(tempfile.gettempdir()).free
    scratch_before = set(os.listdir(_scratch_root())) if os.path.isdir(_scratch_root()) else set()
    outcome = run_c(verifier, "char big[1L<<31] = {1};\n" + RIGHT_GCD)
    assert outcome.verdict is Verdict.COMPILE_LIMIT
    assert "File size limit" in outcome.reason
    assert outcome.seconds < 5
    assert free_before - shutil.disk_usage(tempfile.gettempdir()).free < 256 << 20
    assert _big_files(_scratch_root(), verifier.compile_limits.file_size_bytes) == []
    # Only this call's scratch directories must be gone: warm pools of other tests keep theirs alive.
    mine = {d for d in os.listdir(_scratch_root()) if d.startswith(f"{os.getpid()}-")}
    assert mine <= scratch_before


def test_include_dev_zero_is_a_compile_limit(verifier: CompileTestVerifier) -> None:
    """``#include </dev/zero>`` is stopped by the compile address-space limit -> COMPILE_LIMIT."""
    outcome = run_c(verifier, "#include </dev/zero>\n" + RIGHT_GCD)
    assert outcome.verdict is Verdict.COMPILE_LIMIT
    assert "out of memory" in outcome.reason


def test_self_include_is_a_compile_limit(verifier: CompileTestVerifier) -> None:
    """A file that includes itself hits gcc's include-depth limit -> COMPILE_LIMIT."""
    outcome = run_c(verifier, '#include "sample.c"\n' + RIGHT_GCD)
    assert outcome.verdict is Verdict.COMPILE_LIMIT


def test_infinite_loop_in_c_is_a_timeout(verifier: CompileTestVerifier) -> None:
    """A function that never returns is killed at the run wall limit -> TIMEOUT (compiling was fine)."""
    outcome = run_c(
        verifier, "int gcd(int a, int b) { (void)a; (void)b; volatile int x = 0; for (;;) { x++; } }\n"
    )
    assert outcome.verdict is Verdict.TIMEOUT
    assert outcome.seconds < 5


def test_infinite_loop_in_a_line_labels_that_line_timeout(verifier: CompileTestVerifier) -> None:
    """Deleting ``i++`` from a Python loop makes line t's program hang: TIMEOUT is an invalid label."""
    problem = PROBLEMS["is_prime"]
    steps = apply_bug(TASKS["is_prime"].reference, Bug(7, "deleted_line"))
    fast = CompileTestVerifier(verifier.sandbox, verifier.python, python_timeout_s=1.0)
    checks = fast.check_steps(problem, steps)
    assert [c.verdict for c in checks[:7]] == [Verdict.PASS] * 7
    assert checks[7].verdict is Verdict.TIMEOUT
    assert checks[7].status == "invalid"


def test_non_code_problem_abstains(verifier: CompileTestVerifier) -> None:
    """A problem without a code task in its meta gets ABSTAIN, not FAIL."""
    problem = Problem("m1", "math", "1+1?", "2", "arith")
    checks = verifier.check_steps(problem, ["1+1=2"])
    assert [c.verdict for c in checks] == [Verdict.ABSTAIN]


def test_a_reference_that_fails_is_an_infra_error(verifier: CompileTestVerifier) -> None:
    """If the reference does not pass its tests, nothing can be labelled: INFRA_ERROR, never FAIL."""
    problem = PROBLEMS["gcd"]
    broken = Problem(problem.problem_id, "code", problem.question, problem.gold, "code",
                     {**problem.meta, "tests": "assert gcd(2, 4) == 3\n"})  # fmt: skip
    checks = verifier.check_steps(broken, TASKS["gcd"].reference)
    assert {c.verdict for c in checks} == {Verdict.INFRA_ERROR}


@pytest.mark.slow
def test_every_bug_site_of_the_suite_is_caught_at_its_line(verifier: CompileTestVerifier) -> None:
    """The suite's guarantee: each of its bug sites is found exactly at its line (first invalid check)."""
    misses = []
    for task in code_tasks():
        for bug in task.bugs:
            checks = verifier.check_steps(PROBLEMS[task.name], apply_bug(task.reference, bug))
            first = next((t for t, c in enumerate(checks) if c.status == "invalid"), -1)
            if first != bug.line or any(c.status != "valid" for c in checks[: bug.line]):
                misses.append((task.name, bug, [c.verdict.value for c in checks]))
    assert misses == []


def test_legacy_free_form_c_tests_abstain(verifier: CompileTestVerifier) -> None:
    """An ``int main`` test driver in ``meta["tests"]`` would run inside the sample: refused, ABSTAIN."""
    problem = PROBLEMS["gcd_c"]
    legacy = Problem(problem.problem_id, "code", problem.question, problem.gold, "code",
                     {**problem.meta, "tests": "int main(void) { return gcd(12, 18) != 6; }\n"})  # fmt: skip
    checks = verifier.check_steps(legacy, TASKS["gcd_c"].reference)
    assert {c.verdict for c in checks} == {Verdict.ABSTAIN}
    assert "free-form C test driver (int main ...) is refused" in checks[0].reason


def test_malformed_c_tests_name_the_field(verifier: CompileTestVerifier) -> None:
    """A structured check with a bad field: ABSTAIN whose reason names the field."""
    problem = PROBLEMS["gcd_c"]
    tests = json.loads(problem.meta["tests"])
    tests["checks"][2]["returns"] = "struct s"
    broken = Problem(problem.problem_id, "code", problem.question, problem.gold, "code",
                     {**problem.meta, "tests": json.dumps(tests)})  # fmt: skip
    checks = verifier.check_steps(broken, TASKS["gcd_c"].reference)
    assert {c.verdict for c in checks} == {Verdict.ABSTAIN}
    assert "tests.checks[2].returns: expected void or one of" in checks[0].reason


def test_c_tests_that_do_not_build_are_an_infra_error(verifier: CompileTestVerifier) -> None:
    """An expected value that is not C is the tests' fault: INFRA_ERROR for every line, never FAIL."""
    problem = PROBLEMS["gcd_c"]
    tests = json.loads(problem.meta["tests"])
    tests["checks"][0]["expect"] = "no_such_name"
    broken = Problem(problem.problem_id, "code", problem.question, problem.gold, "code",
                     {**problem.meta, "tests": json.dumps(tests)})  # fmt: skip
    checks = verifier.check_steps(broken, TASKS["gcd_c"].reference)
    assert {c.verdict for c in checks} == {Verdict.INFRA_ERROR}
    assert "the C tests do not build" in checks[0].reason


def test_a_c_program_costs_two_jails_and_its_digest_is_stable(verifier: CompileTestVerifier) -> None:
    """Build and run: two jail launches per program once the task's driver is built; the output digest
    leaves the per-run nonce out, so two runs of one program agree (no false flaky label)."""
    calls = []
    real = verifier.sandbox.exec

    def counting(argv: Sequence[str], **kwargs: Any) -> Any:
        calls.append(argv[0])
        return real(argv, **kwargs)

    first = run_c(verifier, RIGHT_GCD)
    verifier.c.sandbox = verifier.sandbox = cast(Any, SimpleNamespace(exec=counting))
    try:
        again = run_c(verifier, RIGHT_GCD)
    finally:
        verifier.c.sandbox = verifier.sandbox = cast(Any, real.__self__)
    assert (first.verdict, again.verdict) == (Verdict.PASS, Verdict.PASS)
    assert calls == ["/bin/sh", "./driver"]
    assert first.digest == again.digest


MALFORMED = [
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int);", "checks": []}', "tests.checks: expected"),
    ('{"format": "x", "prototype": "int f(int);", "checks": [{"call": "f(1)"}]}', "tests.format: expected"),
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int) { return 1; }", '
     '"checks": [{"call": "f(1)"}]}',
     "tests.prototype: expected one declaration"),
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int);", '
     '"checks": [{"call": "f(1)", "extra": 1}]}',
     "tests.checks[0].extra: unknown field"),
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int);", "checks": [{"call": "f(1); exit(0)"}]}',
     "tests.checks[0].call: ';' outside brackets"),
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int);", "checks": [{"call": "f(1))"}]}',
     "tests.checks[0].call: unbalanced ')'"),
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int);", "checks": [{"call": "f(1)", '
     '"returns": "int"}]}', "tests.checks[0].expect: required exactly when returns is not void"),
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int);", "checks": [{"call": "f(b)", '
     '"buffers": [{"name": "b", "type": "char", "length": 0}]}]}', "tests.checks[0].buffers[0].length"),
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int);", "checks": [{"call": "f(1)", '
     '"setup": "}\\nint main(void) {"}]}', "tests.checks[0].setup: unbalanced"),
    ('{"format": "prmforge-c-checks/1", "prototype": "int f(int);", "checks": [{"call": "f(1)", '
     '"setup": "#define x 1"}]}', "tests.checks[0].setup: no comments, preprocessor lines"),
    ("int main(void) { return 0; }", "a free-form C test driver (int main ...) is refused"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_structured_c_tests_are_refused_naming_the_field(text: str, message: str) -> None:
    """Every malformed part of the C tests' JSON is a CodeSpecError that names its field."""
    with pytest.raises(CodeSpecError) as err:
        parse_c_tests(text)
    assert message in str(err.value)


def test_an_entry_point_named_like_a_builtin_is_the_programs(verifier: CompileTestVerifier) -> None:
    """A task whose function is called ``sorted`` tests the program's ``sorted``; other program names
    still never shadow a builtin."""
    right = "def sorted(xs):\n    return list(reversed(xs))\n"
    tests = "assert sorted([1, 2, 3]) == [3, 2, 1]\n"
    assert verifier.run_python(right, tests, "sorted").verdict is Verdict.PASS
    assert verifier.run_python(right, tests, "other").verdict is Verdict.FAIL
