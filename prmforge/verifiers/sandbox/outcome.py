"""Verdicts from the facts the host gathered outside the sample. Pure functions.

Precedence, first match wins (a limit that was hit explains what failed after it):

1. INFRA_ERROR: the harness failed (worker lost without a timeout, a command that cannot be executed,
   leaked processes).
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
7. PASS / FAIL: ``exec``: exit code 0. Python without tests: the program ran to its end (or exited 0).
   Python with tests: only a tests report with this run's nonce and status ``ok`` from the tests
   process, which itself exited 0. Anything else is FAIL with the reason.

Markers in stderr can be forged by a sample, but only towards a non-PASS verdict.
"""

from __future__ import annotations

import errno
import hashlib
import signal
from dataclasses import dataclass
from typing import Any, Final

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
    s = raw.statuses.get("s", {})
    t = raw.statuses.get("t", {})
    program = raw.program_report or {}
    remote = (raw.tests_report or {}).get("remote") or {}
    failed = bool(s.get("signal") and not s.get("harness_killed")) or (s.get("code") not in (None, 0))

    if raw.leaked:
        return Decision(Verdict.INFRA_ERROR, f"{raw.leaked} job processes survived the harness kill")
    if raw.lost and not raw.timed_out:
        return Decision(Verdict.INFRA_ERROR, f"sandbox harness failed: {raw.lost}")
    if job.kind == "exec" and "exec_error" in program:
        return Decision(Verdict.INFRA_ERROR, f"cannot execute {job.argv[0]!r}: {program.get('message')}")

    if raw.oom_kills:
        return Decision(Verdict.MEMORY_LIMIT, f"memory cgroup limit: {raw.oom_kills} OOM kill(s)")
    if "MemoryError" in (program.get("builtin"), remote.get("builtin")):
        return Decision(Verdict.MEMORY_LIMIT, "MemoryError (address-space limit)")
    if job.kind == "exec" and failed and _has(raw.stderr, MEMORY_MARKERS):
        return Decision(Verdict.MEMORY_LIMIT, "out-of-memory message in stderr (address-space limit)")

    if _signal_of(s, t) == signal.SIGXFSZ:
        return Decision(Verdict.FILE_LIMIT, "SIGXFSZ: file size limit")
    if raw.scratch_full:
        return Decision(Verdict.FILE_LIMIT, "scratch filesystem full (bytes or inodes)")
    if program.get("errno") in FILE_ERRNOS or remote.get("errno") in FILE_ERRNOS:
        return Decision(Verdict.FILE_LIMIT, f"file limit: {program.get('message') or remote.get('builtin')}")
    if job.kind == "exec" and failed and _has(raw.stderr, FILE_MARKERS):
        return Decision(Verdict.FILE_LIMIT, "file limit message in stderr")

    if raw.output_overflow:
        which = [
            n for n, over in (("stdout", raw.stdout_truncated), ("stderr", raw.stderr_truncated)) if over
        ]
        return Decision(Verdict.OUTPUT_LIMIT, f"{'/'.join(which)} over {job.limits.output_bytes} bytes")

    if raw.timed_out:
        return Decision(Verdict.TIMEOUT, f"wall-clock limit of {job.limits.wall_s:g}s")
    if _signal_of(s, t) == signal.SIGXCPU or _cpu_exhausted(s, job) or _cpu_exhausted(t, job):
        return Decision(Verdict.TIMEOUT, f"CPU limit of {job.limits.cpu_seconds}s")

    if s.get("signal") and not s.get("harness_killed"):
        return Decision(Verdict.CRASH, f"killed by {_signame(s['signal'])}")
    if job.kind == "exec":
        code = s.get("code")
        if code == 0:
            return Decision(Verdict.PASS, "exit code 0")
        return Decision(Verdict.FAIL, f"exit code {code}")
    return _python_verdict(job, raw, s, t, program)


def _python_verdict(
    job: Job, raw: RawRun, s: dict[str, Any], t: dict[str, Any], program: dict[str, Any]
) -> Decision:
    if program.get("outcome") == "exception":
        return Decision(
            Verdict.FAIL, f"program raised {program.get('error')}: {program.get('message', '')}"[:500]
        )
    if job.tests is None:
        if s.get("code") == 0 and program.get("outcome") in ("completed", "exit"):
            return Decision(Verdict.PASS, "program ran to completion")
        return Decision(Verdict.FAIL, f"program exit code {s.get('code')}")
    if program.get("outcome") == "exit":
        return Decision(Verdict.FAIL, f"program exited (code {program.get('code')}) before the tests ran")
    report = raw.tests_report
    if t.get("signal"):
        return Decision(Verdict.FAIL, f"tests interpreter killed by {_signame(t['signal'])}")
    if report is None or t.get("code") != 0:
        return Decision(Verdict.FAIL, "the tests did not report completion")
    if report.get("nonce") != raw.nonce:
        return Decision(Verdict.FAIL, "tests report with a wrong nonce (forged)")
    if report.get("status") != "ok":
        detail = f"{report.get('error')}: {report.get('message', '')}".strip()
        return Decision(Verdict.FAIL, f"tests failed: {detail}"[:500])
    return Decision(Verdict.PASS, f"all tests completed ({report.get('calls', 0)} calls into the program)")


def _signal_of(*statuses: dict[str, Any]) -> int | None:
    for status in statuses:
        if status.get("signal") and not status.get("harness_killed"):
            return int(status["signal"])
    return None


def _cpu_exhausted(status: dict[str, Any], job: Job) -> bool:
    return (
        status.get("signal") == signal.SIGKILL and float(status.get("cpu_s") or 0) >= job.limits.cpu_seconds
    )


def _has(text: bytes, markers: tuple[bytes, ...]) -> bool:
    return any(m in text for m in markers)


def _signame(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
