"""One C program through the harness: build jail, object checks on the host, run jail, the verdict.

See :mod:`prmforge.verifiers.compile_test` for the pipeline and
:mod:`prmforge.verifiers.c_driver` / :mod:`prmforge.verifiers.c_object` for
the driver and the rules. :class:`CHarness` keeps the per-task driver and
stub (built once from the checks, in a jail) in a small LRU cache.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Protocol

from prmforge.languages.code_program import CodeSpec, CTests
from prmforge.verifiers.c_driver import DRIVER_ERRORS, Report, driver_source, parse_report, stub_source
from prmforge.verifiers.c_object import libc_names, localized_violation, object_violation
from prmforge.verifiers.sandbox import SandboxLimits, SandboxResult, output_digest
from prmforge.verifiers.verdict import Verdict

__all__ = ["CFLAGS", "CHarness", "Outcome", "classify_compile", "report_verdict"]

CFLAGS: Final = ("-std=c11", "-O1", "-fmax-errors=5", "-fno-common")
_FLAGS: Final = " ".join(CFLAGS)
_BUILD_SAMPLE: Final = (
    f'"$1" {_FLAGS} -c -o sample.o sample.c && "$2" --keep-global-symbol="$3" sample.o checked.o'
    ' && "$1" -o runner stub.o checked.o'
)
_BUILD_HARNESS: Final = f'"$1" {_FLAGS} -c -o stub.o stub.c && "$1" {_FLAGS} -o driver driver.c'
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
_SIGNAL_VERDICTS: Final = {24: Verdict.TIMEOUT, 25: Verdict.FILE_LIMIT}
"""A runner killed by SIGXCPU used its CPU budget; by SIGXFSZ, its file-size limit. Others: CRASH."""


class Runner(Protocol):
    """What the harness needs from a sandbox: :meth:`Sandbox.exec`."""

    def exec(
        self,
        argv: list[str],
        *,
        files: dict[str, bytes] | None = ...,
        limits: SandboxLimits | None = ...,
        stdin: bytes = ...,
        collect: tuple[str, ...] = ...,
    ) -> SandboxResult: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict of one program run (compile included), with its provenance."""

    verdict: Verdict
    reason: str
    seconds: float
    digest: str = ""


@dataclass(frozen=True, slots=True)
class _Built:
    driver: bytes
    stub: bytes


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


def report_verdict(report: Report, tests: CTests) -> tuple[Verdict, str]:
    """PASS when every check passed; else the first failed check's verdict and why."""
    if report.passed:
        return Verdict.PASS, ""
    last = report.results[-1]
    where = f"check {last.index + 1} of {report.checks} ({tests.checks[last.index].call})"
    if last.code == "S":
        return _SIGNAL_VERDICTS.get(last.number, Verdict.CRASH), f"{where}: {last.detail}"
    if last.code == "E":
        # Nothing of the sample ran before the first check: the harness failed. Later, only processes
        # the sample left behind can exhaust what the driver needs: the sample's failure.
        verdict = Verdict.INFRA_ERROR if last.index == 0 else Verdict.FAIL
        return verdict, f"{where}: the driver could not start it: {last.detail}"
    return Verdict.FAIL, f"{where}: {last.detail}"


class CHarness:
    """Builds, checks and runs C programs against structured checks (see the module docstring)."""

    def __init__(
        self,
        sandbox: Runner,
        compile_limits: SandboxLimits,
        run_limits: SandboxLimits,
        gcc: str,
        *,
        cache_size: int = 256,
    ) -> None:
        self.sandbox = sandbox
        self.compile_limits = compile_limits
        self.run_limits = run_limits
        self.gcc = gcc
        self.objcopy = shutil.which("objcopy") or "/usr/bin/objcopy"
        self.cache_size = cache_size
        self._built: OrderedDict[tuple[str, str], _Built | Outcome] = OrderedDict()

    def harness(self, spec: CodeSpec, tests: CTests) -> _Built | Outcome:
        """The task's driver and stub object, built once (a failed build is the tests' fault)."""
        key = (spec.prelude, spec.tests)
        cached = self._built.get(key)
        if cached is not None:
            self._built.move_to_end(key)
            return cached
        built = self.sandbox.exec(
            ["/bin/sh", "-c", _BUILD_HARNESS, "sh", self.gcc],
            files={"stub.c": stub_source(tests, spec.prelude).encode(),
                   "driver.c": driver_source(tests, spec.prelude).encode()},
            limits=self.compile_limits,
            collect=("stub.o", "driver"),
        )  # fmt: skip
        files = built.files or {}
        result: _Built | Outcome
        if built.verdict is Verdict.PASS and "stub.o" in files and "driver" in files:
            result = _Built(files["driver"], files["stub.o"])
        elif built.verdict in _UNCHECKED_VERDICTS:
            return Outcome(built.verdict, f"building the test driver: {built.reason}", built.seconds)
        else:
            reason = f"the C tests do not build ({built.reason}): {_tail(built.stderr)}"
            result = Outcome(Verdict.INFRA_ERROR, reason, built.seconds)
        self._built[key] = result
        while len(self._built) > self.cache_size:
            self._built.popitem(last=False)
        return result

    def run(self, spec: CodeSpec, tests: CTests, source: str) -> Outcome:
        """Judge the sample translation unit ``source`` (prelude + solution lines) against ``tests``."""
        harness = self.harness(spec, tests)
        if isinstance(harness, Outcome):
            return harness
        try:
            reserved = libc_names(self.gcc)
        except RuntimeError as err:
            return Outcome(Verdict.INFRA_ERROR, str(err), 0.0)
        sample = source.rstrip("\n") + f"\n{tests.prototype}\n"
        built = self.sandbox.exec(
            ["/bin/sh", "-c", _BUILD_SAMPLE, "sh", self.gcc, self.objcopy, spec.entry_point],
            files={"sample.c": sample.encode("utf-8", "surrogateescape"), "stub.o": harness.stub},
            limits=self.compile_limits,
            collect=("sample.o", "checked.o", "runner"),
        )
        verdict = classify_compile(built)
        files = built.files or {}
        if verdict is None and not {"sample.o", "checked.o", "runner"} <= files.keys():
            verdict, reason = Verdict.COMPILE_LIMIT, "gcc exited 0 but left no object or binary"
        else:
            reason = f"gcc: {built.reason}; {_tail(built.stderr)}" if verdict is not None else ""
        if verdict is not None:
            return Outcome(verdict, reason, built.seconds, built.output_digest)
        rule = object_violation(files["sample.o"], spec.entry_point, reserved)
        rule = rule or localized_violation(files["checked.o"], spec.entry_point)
        if rule is not None:
            return Outcome(Verdict.FAIL, f"object check: {rule}", built.seconds, built.output_digest)
        nonce = secrets.token_hex(16)
        ran = self.sandbox.exec(
            ["./driver"],
            files={"driver": harness.driver, "runner": files["runner"]},
            limits=self.run_limits,
            stdin=f"{nonce}\n".encode(),
        )
        verdict, reason = self._verdict(ran, nonce, tests)
        digest = output_digest(ran.stdout.replace(nonce.encode(), b"<nonce>"), ran.stderr)
        return Outcome(verdict, reason, built.seconds + ran.seconds, digest)

    @staticmethod
    def _verdict(ran: SandboxResult, nonce: str, tests: CTests) -> tuple[Verdict, str]:
        if ran.verdict is Verdict.FAIL and ran.exit_code in DRIVER_ERRORS:
            return Verdict.INFRA_ERROR, f"{DRIVER_ERRORS[ran.exit_code]}: {_tail(ran.stderr, 200)}"
        if ran.verdict is not Verdict.PASS:
            what = ran.reason or f"exit code {ran.exit_code}"
            return ran.verdict, f"the test driver did not finish: {what}"
        report = parse_report(ran.stdout, nonce, len(tests.checks))
        if isinstance(report, str):
            return Verdict.FAIL, report
        return report_verdict(report, tests)
