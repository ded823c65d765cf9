"""Compile-and-test line labels for ``code`` rollouts (PRLCoder style), run in the sandbox.

**What runs.** A Python program runs in :class:`PythonSandbox` with the
problem's tests (PASS only when the outside harness saw every test complete).
A C program is compiled by gcc in one :meth:`Sandbox.exec` jail under
*compile limits* of its own (address space, file size, wall time, a capped
log): ``char big[1L<<31]={1};`` or ``#include </dev/zero>`` end in
COMPILE_LIMIT instead of a 2 GiB object file or a 4 GiB allocation. The
binary is collected and run in a *separate* jail under run limits; the test
driver's ``main`` returns nonzero on the first failed check.

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
reference's run. Every outcome is cached by program text, so reference
copies and repeated prefixes cost nothing after the first time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from prmforge.languages.code_program import (
    CodeSpec,
    CodeSpecError,
    assemble_program,
    code_spec_of,
    completed_prefix,
)
from prmforge.schemas.records import Problem
from prmforge.verifiers.sandbox import PythonSandbox, Sandbox, SandboxLimits, SandboxResult
from prmforge.verifiers.verdict import Check, Verdict

__all__ = [
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
"""The compiled test binary's jail."""
CFLAGS: Final = ("-std=c11", "-O1", "-fmax-errors=5", "-o", "prog", "main.c")
_LIMIT_VERDICTS: Final = frozenset(
    {Verdict.TIMEOUT, Verdict.MEMORY_LIMIT, Verdict.OUTPUT_LIMIT, Verdict.FILE_LIMIT, Verdict.CRASH}
)
_UNCHECKED_VERDICTS: Final = frozenset({Verdict.INFRA_ERROR, Verdict.UNAVAILABLE, Verdict.ABSTAIN})
_RESOURCE_MESSAGE = re.compile(
    rb"memory exhausted|out of memory|cannot allocate|file size limit|file too large|"
    rb"no space left|signal terminated program|killed signal|"
    rb"nested depth|depth exceeds maximum|exceeds maximum of|iteration count exceeds",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict of one program run (compile included), with its provenance."""

    verdict: Verdict
    reason: str
    seconds: float
    digest: str = ""


def classify_compile(result: SandboxResult) -> Verdict | None:
    """The verdict of a gcc run: None when it compiled; an unchecked verdict passes through.

    COMPILE_LIMIT when a limit stopped it: a sandbox limit (time, memory, file size, log size, a
    signal), or a resource or nesting limit named in gcc's log (out of memory, file size, include
    or template depth, constexpr iterations). COMPILE_ERROR for an ordinary rejected program.
    """
    if result.verdict in _UNCHECKED_VERDICTS:
        return result.verdict
    if result.verdict is Verdict.PASS:
        return None
    if result.verdict in _LIMIT_VERDICTS or result.signal is not None:
        return Verdict.COMPILE_LIMIT
    if result.stderr_truncated or _RESOURCE_MESSAGE.search(result.stderr):
        return Verdict.COMPILE_LIMIT
    return Verdict.COMPILE_ERROR


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

    ``sandbox`` runs gcc and C binaries; ``python`` runs Python programs with
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
        self._cache: OrderedDict[tuple[str, str, str], Outcome] = OrderedDict()

    # ---- one program -----------------------------------------------------------

    def tool(self, language: str) -> tuple[str, str]:
        """(tool, tool_version) for a language."""
        if language == "c":
            return "compile-test/gcc", self.gcc_version
        return "compile-test/python", "python3"

    def run_program(self, spec: CodeSpec, lines: Sequence[str]) -> Outcome:
        """Compile (C) and test ``lines`` as the solution to ``spec``; cached by program text."""
        program = assemble_program(spec, lines, with_tests=spec.language == "c")
        key = (spec.language, program, spec.tests if spec.language == "python" else "")
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return Outcome(cached.verdict, cached.reason, 0.0, cached.digest)
        outcome = self.run_c(program) if spec.language == "c" else self.run_python(program, spec.tests)
        self.runs += 1
        self._cache[key] = outcome
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return outcome

    def run_python(self, program: str, tests: str) -> Outcome:
        result = self.python.run(program, tests=tests, timeout_s=self.python_timeout_s)
        return Outcome(
            result.verdict, result.reason or _tail(result.stderr), result.seconds, result.output_digest
        )

    def run_c(self, source: str) -> Outcome:
        """gcc in one jail (compile limits), the binary in another (run limits)."""
        built = self.sandbox.exec(
            [self.gcc, *CFLAGS],
            files={"main.c": source.encode("utf-8")},
            limits=self.compile_limits,
            collect=("prog",),
        )
        verdict = classify_compile(built)
        binary = (built.files or {}).get("prog")
        if verdict is None and binary is None:
            verdict, reason = Verdict.COMPILE_LIMIT, "gcc exited 0 but left no binary"
        else:
            reason = f"gcc: {built.reason}; {_tail(built.stderr)}" if verdict is not None else ""
        if verdict is not None:
            return Outcome(verdict, reason, built.seconds, built.output_digest)
        assert binary is not None
        ran = self.sandbox.exec(["./prog"], files={"prog": binary}, limits=self.run_limits)
        reason = ran.reason or (f"exit code {ran.exit_code}" if ran.exit_code else "")
        return Outcome(ran.verdict, reason, built.seconds + ran.seconds, ran.output_digest)

    # ---- line labels -------------------------------------------------------------

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        try:
            spec = code_spec_of(problem)
        except CodeSpecError as err:
            return [Check(Verdict.ABSTAIN, str(err), "compile-test", "") for _ in steps]
        tool, version = self.tool(spec.language)
        if not steps:
            return []
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
