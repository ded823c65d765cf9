"""Verdicts from the facts the host gathered outside the sample. Pure functions, and total: whatever
the jail sent, :func:`derive` returns a Decision, never raises.

Everything that came from the jail is first validated against its schema (``reports.py``: exact
types, bounded sizes, allowed keys). A malformed report that only trusted code writes (the worker's
exit statuses, the exec-error report, the tests report) or malformed host facts make the run
INFRA_ERROR; a malformed report that the sample can write (the program report) is ignored by the
limit checks below and is a FAIL at step 7.

Precedence, first match wins (a limit that was hit explains what failed after it):

1. INFRA_ERROR: the harness failed (worker lost without a timeout, a command that cannot be executed,
   leaked processes, malformed worker statuses / exec-error report / tests report / host facts).
2. MEMORY_LIMIT: an OOM kill in the job's memory cgroup; a ``MemoryError`` from the program (its report
   or a failed call seen by the tests); for ``exec``, a failed run whose stderr carries an
   out-of-memory marker (``MemoryError``, ``std::bad_alloc``, ``out of memory``, ``Cannot allocate
   memory``): RLIMIT_AS makes allocations fail inside the process, so the process is the only witness.
3. FILE_LIMIT: SIGXFSZ; the scratch tmpfs full (no blocks or no inodes left after the run); EFBIG /
   ENOSPC / EDQUOT from the program; for ``exec``, a failed run whose stderr says ``File too large``,
   ``File size limit exceeded`` (gcc when ``as`` got SIGXFSZ) or ``No space left on device``.
4. OUTPUT_LIMIT: a stream went over its cap (the job was killed at that moment).
5. TIMEOUT: the wall-clock deadline (the host killed the job's cgroup), SIGXCPU, or a SIGKILL after the
   process used its RLIMIT_CPU budget.
6. CRASH: the main process was killed by any other signal (SIGSEGV from a stack overflow, SIGABRT...).
7. PASS / FAIL: ``exec``: exit code 0. Python without tests: the program ran to its end (or exited with
   status 0) and said so in a well-formed report. Python with tests: the program phase did not raise
   or exit non-zero, no malformed program report came, and a tests report with this run's nonce and
   status ``ok`` came from the tests process, which itself exited 0. Anything else is FAIL with the
   reason (a failing test: its line in tests.py and its statement; a unittest test: its name).

Markers in stderr can be forged by a sample, but only towards a non-PASS verdict.
"""

from __future__ import annotations

import errno
import hashlib
import signal
from dataclasses import dataclass
from typing import Final

from prmforge.verifiers.sandbox import reports
from prmforge.verifiers.sandbox.jobio import Job, RawRun
from prmforge.verifiers.verdict import Verdict

MEMORY_MARKERS: Final = (b"MemoryError", b"std::bad_alloc", b"out of memory", b"Cannot allocate memory")
FILE_MARKERS: Final = (
    b"File too large",
    b"File size limit exceeded",
    b"No space left on device",
    b"Disk quota exceeded",
)
FILE_ERRNOS: Final = frozenset({errno.EFBIG, errno.ENOSPC, errno.EDQUOT})
INTERNAL_ERROR: Final = "internal error in the verdict code"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str


def output_digest(stdout: bytes, stderr: bytes) -> str:
    """sha256 over both captured streams, length-prefixed so that no split is ambiguous."""
    h = hashlib.sha256()
    for part in (stdout, stderr):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def flaky(first_digest: str, first: Verdict, second_digest: str, second: Verdict) -> bool:
    """Two runs of the same input that disagree (verdict or output): label the sample flaky (J36)."""
    return first is not second or first_digest != second_digest


def derive(job: Job, raw: RawRun) -> Decision:
    try:
        return _derive(job, raw)
    except Exception as err:  # unreachable by construction (test_reports); never an exception in the host
        return Decision(Verdict.INFRA_ERROR, f"{INTERNAL_ERROR}: {type(err).__name__}"[:500])


def exit_status(raw: RawRun) -> tuple[int | None, int | None]:
    """The program process's exit code and signal, validated (``None, None`` if malformed), for display."""
    status = reports.program_status(raw)
    return (None, None) if status is None else (status.code, status.signal)


def _derive(job: Job, raw: RawRun) -> Decision:
    problem = reports.host_problem(raw)
    if problem:
        return Decision(Verdict.INFRA_ERROR, f"malformed run facts: {problem}"[:500])
    if raw.leaked:
        return Decision(Verdict.INFRA_ERROR, f"{raw.leaked} job processes survived the harness kill")
    if raw.lost and not raw.timed_out:
        return Decision(Verdict.INFRA_ERROR, f"sandbox harness failed: {raw.lost}"[:500])
    facts = reports.read(job, raw)
    if isinstance(facts, str):
        return Decision(
            Verdict.INFRA_ERROR, f"malformed report from the jail's trusted harness: {facts}"[:500]
        )
    if job.kind == "exec" and facts.exec_error is not None:
        command = job.argv[0] if job.argv else ""
        return Decision(Verdict.INFRA_ERROR, f"cannot execute {command!r}: {facts.exec_error.message}"[:500])
    s, t, program, tests = facts.program_status, facts.tests_status, facts.program, facts.tests
    failed = bool(s.own_signal) or s.code not in (None, 0)
    signum = s.own_signal or t.own_signal

    if raw.oom_kills:
        return Decision(Verdict.MEMORY_LIMIT, f"memory cgroup limit: {raw.oom_kills} OOM kill(s)")
    if "MemoryError" in (program and program.builtin, tests and tests.remote_builtin):
        return Decision(Verdict.MEMORY_LIMIT, "MemoryError (address-space limit)")
    if job.kind == "exec" and failed and _has(raw.stderr, MEMORY_MARKERS):
        return Decision(Verdict.MEMORY_LIMIT, "out-of-memory message in stderr (address-space limit)")

    if signum == signal.SIGXFSZ:
        return Decision(Verdict.FILE_LIMIT, "SIGXFSZ: file size limit")
    if raw.scratch_full:
        return Decision(Verdict.FILE_LIMIT, "scratch filesystem full (bytes or inodes)")
    if program and program.errno in FILE_ERRNOS:
        return Decision(Verdict.FILE_LIMIT, f"file limit: {program.message}"[:500])
    if tests and tests.remote_errno in FILE_ERRNOS:
        return Decision(Verdict.FILE_LIMIT, f"file limit: {tests.remote_builtin}"[:500])
    if job.kind == "exec" and failed and _has(raw.stderr, FILE_MARKERS):
        return Decision(Verdict.FILE_LIMIT, "file limit message in stderr")

    if raw.output_overflow:
        which = [
            n for n, over in (("stdout", raw.stdout_truncated), ("stderr", raw.stderr_truncated)) if over
        ]
        return Decision(Verdict.OUTPUT_LIMIT, f"{'/'.join(which)} over {job.limits.output_bytes} bytes")

    if raw.timed_out:
        return Decision(Verdict.TIMEOUT, f"wall-clock limit of {job.limits.wall_s:g}s")
    if signum == signal.SIGXCPU or _cpu_exhausted(s, job) or _cpu_exhausted(t, job):
        return Decision(Verdict.TIMEOUT, f"CPU limit of {job.limits.cpu_seconds}s")

    if s.own_signal:
        return Decision(Verdict.CRASH, f"killed by {_signame(s.own_signal)}")
    if job.kind == "exec":
        if s.code == 0:
            return Decision(Verdict.PASS, "exit code 0")
        return Decision(Verdict.FAIL, f"exit code {s.code}")
    return _python_verdict(job, raw, facts)


def _python_verdict(job: Job, raw: RawRun, facts: reports.Facts) -> Decision:
    s, t, program, tests = facts.program_status, facts.tests_status, facts.program, facts.tests
    if program is not None and program.outcome == "exception":
        return Decision(Verdict.FAIL, f"program raised {program.error}: {program.message}"[:500])
    if program is not None and program.outcome == "exit" and program.code != 0:
        return Decision(Verdict.FAIL, f"program exited with status {program.code}")
    if facts.program_problem:
        return Decision(Verdict.FAIL, f"the program's report is malformed: {facts.program_problem}"[:500])
    if job.tests is None:
        if s.code == 0 and program is not None:
            return Decision(Verdict.PASS, "program ran to completion")
        if program is None and s.code == 0:
            return Decision(Verdict.FAIL, "program exit code 0 without its report (report pipe closed?)")
        return Decision(Verdict.FAIL, f"program exit code {s.code}")
    if t.signal:
        return Decision(Verdict.FAIL, f"tests interpreter killed by {_signame(t.signal)}")
    if tests is None or t.code != 0:
        return Decision(Verdict.FAIL, "the tests did not report completion")
    if tests.nonce != raw.nonce:
        return Decision(Verdict.FAIL, "tests report with a wrong nonce (forged)")
    if tests.status != "ok":
        return Decision(Verdict.FAIL, _failure_reason(tests))
    ran = "" if tests.tests_ran is None else f"{tests.tests_ran} unittest test(s), "
    return Decision(
        Verdict.PASS, f"all tests completed ({ran}{_count(tests.calls, 'call')} into the program)"
    )


def _failure_reason(tests: reports.TestsReport) -> str:
    """``tests failed: [TEST: ]line N: STATEMENT (Error: message)``, bounded."""
    what = f"{tests.error}: {tests.message}" if tests.message else tests.error
    if tests.remote_error and tests.remote_error not in (tests.error, tests.remote_builtin):
        what += f", raised by the program as {tests.remote_error}"
    where = f"line {tests.line}: {tests.source} ({what})" if tests.line else what
    if tests.test:
        where = f"{tests.test}: {where}"
    return f"tests failed: {where}"[:500]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cpu_exhausted(status: reports.Status, job: Job) -> bool:
    return status.signal == signal.SIGKILL and status.cpu_s >= job.limits.cpu_seconds


def _has(text: bytes, markers: tuple[bytes, ...]) -> bool:
    return any(m in text for m in markers)


def _signame(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
