"""Schema validation of everything the jail sends the host, before a verdict is derived from it.

What crosses from the jail, and who can write it:

* the **program report** (``{"phase": "program", "outcome": ...}``): written by the harness in the
  program process, but the sample holds that pipe while it runs and can write anything there;
* the **exec-error report** (``{"exec_error": ..., "message": ...}``): written by the worker's child
  just before ``execve`` (the pipe is close-on-exec, so the command never holds it);
* the **tests report**: written by the trusted tests process on a pipe only it holds; its strings
  can come from the program (an exception's message) but are bounded and checked there first;
* the worker's **control messages** (``ready``, ``forked``, ``done`` with the exit statuses).

Each is checked against a schema: exact types (``type(v) is int``, so a bool is not an int; no
subclasses), bounded sizes, and allowed keys only; then it becomes a frozen dataclass, so the verdict
code never indexes raw JSON. :func:`read` never raises: a malformed report the sample can write (the
program report) is ``None`` plus a problem string (a FAIL for the verdict); a malformed report only
trusted code writes is a problem string for the whole run (INFRA_ERROR: the harness broke).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # jobio validates its control messages here: no import back at run time
    from prmforge.verifiers.sandbox.jobio import Job, RawRun

Check = Callable[[object, str], Any]
MAX_KEYS: Final = 64
ERRNO_MAX: Final = (1 << 16) - 1


class Malformed(ValueError):
    """A value that does not match its schema; the message names where."""


# ---------------------------------------------------------------- the validator


def integer(lo: int, hi: int) -> Check:
    def check(value: object, where: str) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise Malformed(f"{where}: expected an int in [{lo}, {hi}], got {_show(value)}")
        return value

    return check


def number(lo: float, hi: float) -> Check:
    def check(value: object, where: str) -> float:
        if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:  # type: ignore[arg-type, operator]
            raise Malformed(f"{where}: expected a number in [{lo}, {hi}], got {_show(value)}")
        return float(value)  # type: ignore[arg-type]

    return check


def text(limit: int) -> Check:
    def check(value: object, where: str) -> str:
        if type(value) is not str or len(value) > limit:
            raise Malformed(f"{where}: expected a string of at most {limit} characters, got {_show(value)}")
        return value

    return check


def flag(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise Malformed(f"{where}: expected a bool, got {_show(value)}")
    return value


def one_of(*allowed: str) -> Check:
    def check(value: object, where: str) -> str:
        if type(value) is not str or value not in allowed:
            raise Malformed(f"{where}: expected one of {allowed}, got {_show(value)}")
        return value

    return check


def maybe(inner: Check) -> Check:
    def check(value: object, where: str) -> Any:
        return None if value is None else inner(value, where)

    return check


def record(required: Mapping[str, Check], optional: Mapping[str, Check] | None = None) -> Check:
    """A JSON object with exactly these keys (the optional ones may be absent)."""
    optional = optional or {}

    def check(value: object, where: str) -> dict[str, Any]:
        if type(value) is not dict or len(value) > MAX_KEYS:
            raise Malformed(f"{where}: expected an object, got {_show(value)}")
        unknown = [k for k in value if k not in required and k not in optional]
        missing = [k for k in required if k not in value]
        if unknown or missing:
            raise Malformed(f"{where}: unknown keys {_show(unknown)}, missing keys {missing}")
        checked = {k: required[k](value[k], f"{where}.{k}") for k in required}
        checked.update({k: optional[k](value[k], f"{where}.{k}") for k in optional if k in value})
        return checked

    return check


def _show(value: object) -> str:
    try:
        shown = repr(value)
    except Exception:  # a value from JSON always has a repr; anything else gets a placeholder
        shown = object.__repr__(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


# ---------------------------------------------------------------- the schemas

_ERRNO = maybe(integer(0, ERRNO_MAX))
STATUS: Final = record(
    {},
    {
        "code": maybe(integer(0, 255)),
        "signal": maybe(integer(1, 128)),
        "harness_killed": flag,
        "cpu_s": number(0.0, 1e9),
    },
)
STATUSES: Final = record({}, {"s": STATUS, "t": STATUS})
_PHASE = {"phase": one_of("program")}
PROGRAM_REPORTS: Final = {
    "completed": record({**_PHASE, "outcome": one_of("completed")}),
    "exit": record({**_PHASE, "outcome": one_of("exit"), "code": integer(0, 255)}),
    "exception": record(
        {
            **_PHASE,
            "outcome": one_of("exception"),
            "error": text(200),
            "builtin": text(200),
            "message": text(2000),
            "errno": _ERRNO,
        }
    ),
}
EXEC_REPORT: Final = record({"exec_error": text(64), "message": text(2000)})
REMOTE_ERROR: Final = record({"error": text(2000), "builtin": text(2000), "errno": _ERRNO})
TESTS_REPORT: Final = record(
    {"nonce": text(64), "status": one_of("ok", "failed")},
    {
        "calls": integer(0, 1 << 62),
        "tests_ran": integer(0, 1 << 62),
        "error": text(2000),
        "builtin": text(2000),
        "message": text(4000),
        "errno": _ERRNO,
        "line": maybe(integer(1, 1 << 31)),
        "source": text(1000),
        "test": text(1000),
        "traceback": text(8000),
        "remote": REMOTE_ERROR,
    },
)
_PIDS = integer(1, 1 << 22)
CONTROL: Final = {
    "ready": record({"event": one_of("ready"), "pid": _PIDS}),
    "forked": record({"event": one_of("forked"), "pids": record({"s": _PIDS}, {"t": _PIDS})}),
    "done": record(
        {"event": one_of("done"), "status": STATUSES, "scratch_full": flag},
        {
            "reaped": flag,
            "sockets": integer(-1, 1 << 20),
            "cleaning": flag,
        },
    ),
    "cleaned": record({"event": one_of("cleaned"), "ok": flag, "error": text(2000)}),
}


def control_message(value: object) -> dict[str, Any]:
    """A worker control message (``ready``, ``forked``, ``done``, ``cleaned``), checked; raises
    Malformed. For the host's control loop (``jobio``): the worker is trusted, so a malformed message
    means the harness broke (JailLost, INFRA_ERROR)."""
    event = value.get("event") if type(value) is dict else None
    schema = CONTROL.get(event) if type(event) is str else None
    if schema is None:
        raise Malformed(f"control message: unknown event in {_show(value)}")
    return schema(value, f"control[{event}]")  # type: ignore[no-any-return]


# ---------------------------------------------------------------- typed facts


@dataclass(frozen=True, slots=True)
class Status:
    code: int | None = None
    signal: int | None = None
    harness_killed: bool = False
    cpu_s: float = 0.0

    @property
    def own_signal(self) -> int | None:
        """The signal the process died of, unless the harness killed it after the job had ended."""
        return self.signal if self.signal and not self.harness_killed else None


@dataclass(frozen=True, slots=True)
class ProgramReport:
    outcome: str
    code: int | None = None
    error: str = ""
    builtin: str = ""
    message: str = ""
    errno: int | None = None


@dataclass(frozen=True, slots=True)
class ExecError:
    name: str
    message: str


@dataclass(frozen=True, slots=True)
class TestsReport:
    nonce: str
    status: str
    calls: int = 0
    tests_ran: int | None = None
    error: str = ""
    builtin: str = ""
    message: str = ""
    errno: int | None = None
    line: int | None = None
    source: str = ""
    test: str = ""
    remote_error: str = ""
    remote_builtin: str = ""
    remote_errno: int | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """The validated reports of one run. ``program_problem`` says why a program report that came was
    unusable (the sample can write that pipe)."""

    program_status: Status = Status()
    tests_status: Status = Status()
    program: ProgramReport | None = None
    program_problem: str | None = None
    exec_error: ExecError | None = None
    tests: TestsReport | None = None


_HOST_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "nonce": (str,),
    "stdout": (bytes,),
    "stderr": (bytes,),
    "stdout_truncated": (bool,),
    "stderr_truncated": (bool,),
    "timed_out": (bool,),
    "output_overflow": (bool,),
    "scratch_full": (bool,),
    "oom_kills": (int,),
    "pids_refused": (int,),
    "leaked": (int,),
    "started": (bool,),
    "lost": (str, type(None)),
}


def host_problem(raw: RawRun) -> str | None:
    """Why the host's own facts about the run are unusable (exact types, counts >= 0), or None."""
    for name, kinds in _HOST_FIELDS.items():
        value = getattr(raw, name, None)
        if type(value) not in kinds or (type(value) is int and value < 0):
            return f"RawRun.{name} is {_show(value)}"
    return None


def program_status(raw: RawRun) -> Status | None:
    """The program process's exit status, or None if the worker's statuses are malformed."""
    try:
        return Status(**STATUSES(raw.statuses, "status").get("s", {}))
    except Malformed:
        return None


def read(job: Job, raw: RawRun) -> Facts | str:
    """The run's reports as typed facts, or (a string) why a report only trusted code writes (the
    worker's statuses, the exec-error report, the tests report) is malformed."""
    try:
        checked = STATUSES(raw.statuses, "status")
        exec_error = None
        if job.kind == "exec" and raw.program_report is not None:
            found = EXEC_REPORT(raw.program_report, "exec report")
            exec_error = ExecError(found["exec_error"], found["message"])
        tests = None if job.tests is None else _tests_report(raw.tests_report)
    except Malformed as err:
        return str(err)
    program, program_problem = _sample_report(job, raw.program_report)
    return Facts(
        program_status=Status(**checked.get("s", {})),
        tests_status=Status(**checked.get("t", {})),
        program=program,
        program_problem=program_problem,
        exec_error=exec_error,
        tests=tests,
    )


def _sample_report(job: Job, value: object) -> tuple[ProgramReport | None, str | None]:
    if job.kind != "python" or value is None:
        return None, None
    outcome = value.get("outcome") if type(value) is dict else None
    schema = PROGRAM_REPORTS.get(outcome) if type(outcome) is str else None
    try:
        if schema is None:
            raise Malformed(f"program report: unknown outcome in {_show(value)}")
        found = schema(value, "program report")
    except Malformed as err:
        return None, str(err)
    found.pop("phase")
    return ProgramReport(**found), None


def _tests_report(value: object) -> TestsReport | None:
    if value is None:
        return None
    found = TESTS_REPORT(value, "tests report")
    remote = found.pop("remote", None) or {}
    found.pop("traceback", None)
    found.update({f"remote_{k}": v for k, v in remote.items()})
    return TestsReport(**found)
