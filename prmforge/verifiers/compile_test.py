"""Compile-and-test line labels for ``code`` rollouts (PRLCoder style), run in the sandbox.

**What runs.** A Python program runs in :class:`PythonSandbox` with the
problem's tests (PASS only when the outside harness saw every test complete).
A C program is judged by structured checks
(:class:`~prmforge.languages.code_program.CTests`) in two jails:

1. *build* (compile limits of its own: address space, file size, wall time, a
   capped log, so ``char big[1L<<31]={1};`` or ``#include </dev/zero>`` end in
   COMPILE_LIMIT): the sample's translation unit (prelude, solution lines and
   the entry point's prototype, which turns a different signature into a
   COMPILE_ERROR) is compiled alone (``gcc -c``), every global symbol but the
   entry point is made local (``objcopy --keep-global-symbol``), and it is
   linked with the runner's stub into ``runner``;
2. on the host, the object files are checked (:mod:`~prmforge.verifiers.c_object`):
   no constructor or destructor tables, no init/fini code, no IFUNC, no
   dynamic-only relocation, no definition of ``main``, ``_start``, a reserved
   or C-library name, and nothing global left but the entry point. A sample
   that breaks a rule is FAIL with the rule as its reason and never runs: the
   program compiled, but it tries to run code outside the tested call or to
   replace the harness's functions, so it cannot pass;
3. *run* (run limits): the trusted driver (:mod:`~prmforge.verifiers.c_driver`,
   built once per task from the checks alone, never linked with sample code)
   runs each check in a fresh runner process and compares the result in its
   own memory. PASS needs the driver's report with this run's nonce (sent on
   stdin, read by the driver after the last check) saying that all N checks
   passed, and the sandbox's PASS for the driver; otherwise the first failed
   check decides (FAIL, CRASH, TIMEOUT, FILE_LIMIT), or the sandbox's verdict.

Two jails per C program, as before (the driver and stub are built once per
task and cached). A free-form C ``int main`` test driver is refused: its lines
are ABSTAIN, with the reason :func:`~prmforge.languages.code_program.code_spec_of` gives.

**Line labels.** PRLCoder (METHODS.md §2(j)) labels line i of a reference by
running the reference with only line i changed: c' = l_1..l_{i-1}, l_i',
l_{i+1}..l_n. For a rollout x_1..x_T this module runs, for each line t, the
*completed prefix* (:func:`~prmforge.languages.code_program.completed_prefix`):
the rollout's lines up to t followed by the reference's lines after t; for the last line, the rollout's
program as written (the rollout ends there, so nothing completes it). At
the first line where the rollout departs from the reference this is exactly
PRLCoder's c'; after it, the prefix keeps the earlier lines, so a line after
an error is judged in the context it was written in (the PRM convention:
every step from the first error on is negative), and deleted or extra lines
keep their meaning. Line t's verdict is that run's verdict: PASS (the prefix
can be completed into a passing program), FAIL, TIMEOUT, COMPILE_ERROR,
COMPILE_LIMIT, CRASH, ... (see :mod:`prmforge.verifiers.verdict`).

Two shortcuts, both exact: when the rollout's own program passes, every
prefix is completable (by its own remainder) and every line is PASS without
further runs; a completed prefix equal to the reference reuses the
reference's run. Every outcome is cached by program text and tests, so reference
copies and repeated prefixes cost nothing after the first time.
"""

from __future__ import annotations

import builtins
import shutil
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from prmforge.languages.code_program import (
    CodeSpec,
    CodeSpecError,
    assemble_program,
    code_spec_of,
    completed_prefix,
)
from prmforge.schemas.records import Problem
from prmforge.verifiers.c_harness import CFLAGS, CHarness, Outcome, classify_compile
from prmforge.verifiers.sandbox import PythonSandbox, Sandbox, SandboxLimits
from prmforge.verifiers.verdict import Check, Verdict

__all__ = [
    "CFLAGS",
    "COMPILE_LIMITS",
    "RUN_LIMITS",
    "CompileTestVerifier",
    "Outcome",
    "classify_compile",
]

MiB: Final = 1 << 20
COMPILE_LIMITS: Final = SandboxLimits(
    wall_s=10.0, address_space_bytes=1024 * MiB, file_size_bytes=32 * MiB, output_bytes=16 * 1024, pids=16
)
"""gcc's jail: 1 GiB of address space, 32 MiB files, 10 s, a 16 KiB log."""
RUN_LIMITS: Final = SandboxLimits(
    wall_s=2.0, address_space_bytes=256 * MiB, file_size_bytes=1 * MiB, output_bytes=64 * 1024, pids=8
)
"""The test driver's jail (the driver and one runner process at a time)."""


def _tail(data: bytes, limit: int = 300) -> str:
    return data.decode("utf-8", "replace").strip()[-limit:]


def _compiler_version(gcc: str) -> str:
    try:
        done = subprocess.run([gcc, "-dumpfullversion"], capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.decode().strip() or "unknown"


class CompileTestVerifier:
    """A :class:`~prmforge.verifiers.base.StepVerifier` for ``code`` problems (see the module docstring).

    ``sandbox`` runs gcc and the C test driver; ``python`` runs Python programs with
    their tests. ``cache_size`` bounds the outcome cache (entries, LRU).
    """

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        python: PythonSandbox | None = None,
        *,
        compile_limits: SandboxLimits = COMPILE_LIMITS,
        run_limits: SandboxLimits = RUN_LIMITS,
        python_timeout_s: float = 5.0,
        gcc: str = "gcc",
        cache_size: int = 4096,
    ) -> None:
        self.sandbox = sandbox if sandbox is not None else Sandbox()
        self.python = python if python is not None else PythonSandbox()
        self.compile_limits = compile_limits
        self.run_limits = run_limits
        self.python_timeout_s = python_timeout_s
        self.gcc = shutil.which(gcc) or gcc
        self.gcc_version = _compiler_version(self.gcc)
        self.cache_size = cache_size
        self.runs = 0
        self.c = CHarness(self.sandbox, compile_limits, run_limits, self.gcc)
        self._cache: OrderedDict[tuple[str, str, str, str], Outcome] = OrderedDict()

    # ---- one program -----------------------------------------------------------

    def tool(self, language: str) -> tuple[str, str]:
        """(tool, tool_version) for a language."""
        if language == "c":
            return "compile-test/gcc", self.gcc_version
        return "compile-test/python", "python3"

    def run_program(self, spec: CodeSpec, lines: Sequence[str]) -> Outcome:
        """Compile (C) and test ``lines`` as the solution to ``spec``; cached by program text and tests."""
        program = assemble_program(spec, lines, with_tests=False)
        key = (spec.language, program, spec.tests, spec.entry_point)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return Outcome(cached.verdict, cached.reason, 0.0, cached.digest)
        if spec.language == "c":
            outcome = self.run_c(spec, program)
        else:
            outcome = self.run_python(program, spec.tests, spec.entry_point)
        self.runs += 1
        self._cache[key] = outcome
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return outcome

    def run_python(self, program: str, tests: str, entry_point: str = "") -> Outcome:
        """The program against its tests. An entry point named like a builtin or a standard-library
        module (``sorted``, ``copy``) is declared, so the tests bind the program's function, not
        the real one (the sandbox never lets other program names shadow those)."""
        shadows = entry_point in vars(builtins) or entry_point in sys.stdlib_module_names
        if entry_point and shadows:
            result = self.python.run(
                program, tests=tests, timeout_s=self.python_timeout_s, entry_points=(entry_point,)
            )
        else:
            result = self.python.run(program, tests=tests, timeout_s=self.python_timeout_s)
        return Outcome(
            result.verdict, result.reason or _tail(result.stderr), result.seconds, result.output_digest
        )

    def run_c(self, spec: CodeSpec, source: str) -> Outcome:
        """The sample translation unit ``source`` (prelude + solution) against ``spec``'s C checks."""
        if spec.c_tests is None:
            return Outcome(Verdict.ABSTAIN, spec.tests_error or "no structured C tests", 0.0)
        return self.c.run(spec, spec.c_tests, source)

    # ---- line labels -------------------------------------------------------------

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        try:
            spec = code_spec_of(problem)
        except CodeSpecError as err:
            return [Check(Verdict.ABSTAIN, str(err), "compile-test", "") for _ in steps]
        tool, version = self.tool(spec.language)
        if not steps:
            return []
        if spec.language == "c" and spec.c_tests is None:
            return [Check(Verdict.ABSTAIN, spec.tests_error, tool, version) for _ in steps]
        reference = self.run_program(spec, spec.reference)
        if reference.verdict is not Verdict.PASS:
            reason = f"the reference solution does not pass ({reference.verdict}): {reference.reason}"
            return [Check(Verdict.INFRA_ERROR, reason, tool, version, reference.digest) for _ in steps]
        full = self.run_program(spec, steps)
        if full.verdict is Verdict.PASS:
            reason = "the program passes its tests, so every prefix is completable"
            return [Check(Verdict.PASS, reason, tool, version, full.digest, full.seconds if t == 0 else 0.0)
                    for t in range(len(steps))]  # fmt: skip
        checks: list[Check] = []
        for t in range(len(steps)):
            program = completed_prefix(steps, spec.reference, t)
            if program == spec.reference:
                checks.append(Check(Verdict.PASS, "completed prefix equals the reference", tool, version,
                                    reference.digest))  # fmt: skip
                continue
            outcome = full if t == len(steps) - 1 else self.run_program(spec, program)
            what = "the program as written" if t == len(steps) - 1 else f"lines 0..{t} + reference remainder"
            reason = f"{what}: {outcome.verdict}" + (f" ({outcome.reason})" if outcome.reason else "")
            checks.append(Check(outcome.verdict, reason, tool, version, outcome.digest, outcome.seconds))
        return checks
