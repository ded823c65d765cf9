"""Fresh-jail-per-run entry points: :class:`Sandbox` (any command) and :class:`PythonSandbox`."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from prmforge.verifiers.sandbox import cgroup, outcome, scratch
from prmforge.verifiers.sandbox.cgroup import CgroupBackend
from prmforge.verifiers.sandbox.cgroup_v2 import V2Backend
from prmforge.verifiers.sandbox.limits import (
    Isolation,
    SandboxInputError,
    SandboxLimits,
    SandboxResult,
    validate_name,
)
from prmforge.verifiers.sandbox.probe import JAIL_PYTHON, SANDBOX_UID, require
from prmforge.verifiers.sandbox.seccomp import compile_filter
from prmforge.verifiers.sandbox.worker import Jail, JailConfig, Job, RawRun
from prmforge.verifiers.verdict import Verdict

MAX_INPUT: Final = 8 << 20


_SWEPT: set[str] = set()


def _sweep_once(backend: CgroupBackend | None, root: bool) -> None:
    """Remove cgroups and run directories left by sandbox hosts that died (once per process and
    hierarchy)."""
    if root and "v1" not in _SWEPT:
        _SWEPT.add("v1")
        cgroup.sweep_stale()
    if isinstance(backend, V2Backend) and str(backend.base) not in _SWEPT:
        _SWEPT.add(str(backend.base))
        backend.sweep_stale()
    if "scratch" not in _SWEPT:
        _SWEPT.add("scratch")
        scratch.sweep_stale()


def jail_config(isolation: Isolation, *, allow_weaker: bool) -> JailConfig:
    """Check the machine (fail closed), pick the strongest mode and describe how its jails are built.
    Sweeps leftovers of dead hosts."""
    report = require(isolation, allow_weaker=allow_weaker)
    mode = report.mode if isolation == "bwrap" else None
    backend = report.cgroup_backend() if mode is not None or report.root else None
    _sweep_once(backend, report.root)
    if mode is not None:
        return JailConfig(
            python=JAIL_PYTHON,
            bwrap=report.bwrap,
            seccomp_bpf=compile_filter(),
            cgroups=backend,
            uid=SANDBOX_UID if mode == "root" else None,
            mount_tmpfs=mode == "root",
            jail_tmpfs=mode == "userns",
            nproc=report.nproc,
            nproc_per_userns=report.nproc_per_userns,
            label=report.layers,
        )
    python = JAIL_PYTHON if report.jail_python else sys.executable
    controllers = backend.controllers if backend is not None else ()
    layers = ["rlimits", *controllers] + (["tmpfs", f"uid{SANDBOX_UID}"] if report.root else [])
    return JailConfig(
        python=python,
        bwrap=None,
        seccomp_bpf=None,
        cgroups=backend,
        uid=SANDBOX_UID if report.root and report.jail_python else None,
        mount_tmpfs=report.root,
        label="rlimits-only:" + "+".join(layers),
    )


def program_status(raw: RawRun) -> tuple[int | None, int | None]:
    """``(exit_code, signal)`` of the program process as a user reads them.

    A Python job with tests keeps its program process serving the tests' calls until the tests
    process (the job's main process) ends; then the program exits 0 by itself or, when the harness's
    teardown comes first, is SIGKILLed. That kill is not something the sample did: a program that
    had run to its end is reported as ``(0, None)`` either way, one still running its top level as
    ``(None, None)``. A kill at the deadline or on an output flood is reported as it happened.
    """
    s = raw.statuses.get("s") if isinstance(raw.statuses, dict) else None
    if not isinstance(s, dict):  # malformed facts: the verdict says so; nothing to display
        return None, None
    if s.get("harness_killed") is True and not (raw.timed_out or raw.output_overflow):
        report = raw.program_report if isinstance(raw.program_report, dict) else {}
        return (0 if report.get("outcome") == "completed" else None), None
    code, sig = s.get("code"), s.get("signal")
    return (code if type(code) is int else None), (sig if type(sig) is int else None)


def to_result(job: Job, raw: RawRun, label: str) -> SandboxResult:
    decision = outcome.derive(job, raw)
    exit_code, signal = program_status(raw)
    return SandboxResult(
        verdict=decision.verdict,
        reason=decision.reason,
        exit_code=exit_code,
        signal=signal,
        stdout=raw.stdout,
        stderr=raw.stderr,
        stdout_truncated=raw.stdout_truncated,
        stderr_truncated=raw.stderr_truncated,
        seconds=round(raw.seconds, 4),
        isolation=label,
        output_digest=outcome.output_digest(raw.stdout, raw.stderr),
        files=raw.files,
    )


def infra_result(reason: str, label: str) -> SandboxResult:
    return SandboxResult(
        verdict=Verdict.INFRA_ERROR,
        reason=reason,
        exit_code=None,
        signal=None,
        stdout=b"",
        stderr=b"",
        stdout_truncated=False,
        stderr_truncated=False,
        seconds=0.0,
        isolation=label,
        output_digest=outcome.output_digest(b"", b""),
    )


def run_in_fresh_jail(
    config: JailConfig, job: Job, *, files: Mapping[str, bytes] | None = None, collect: tuple[str, ...] = ()
) -> SandboxResult:
    jail = Jail(config, job.limits, oneshot=True)
    try:
        jail.start()
        raw = jail.run(job, files=dict(files or {}), collect=collect)
    except OSError as err:  # jail could not be set up (cgroup, mount, bwrap spawn)
        return infra_result(f"sandbox setup failed: {err}", config.label)
    finally:
        jail.close()
    return to_result(job, raw, config.label)


class _FreshJails:
    """Default limits and a checked jail configuration (fails closed unless weaker is allowed)."""

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        isolation: Isolation = "bwrap",
        allow_weaker: bool = False,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.config = jail_config(isolation, allow_weaker=allow_weaker)

    @property
    def isolation(self) -> str:
        return self.config.label


class Sandbox(_FreshJails):
    """Run any command in a fresh jail per call (e.g. ``gcc`` then ``./prog``)."""

    def exec(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, bytes] | None = None,
        limits: SandboxLimits | None = None,
        stdin: bytes = b"",
        collect: Sequence[str] = (),
    ) -> SandboxResult:
        """Run ``argv`` with cwd = a private scratch dir holding ``files``; return the result, and in
        ``result.files`` the regular files named in ``collect`` (symlinks and special files refused)."""
        files = dict(files or {})
        job = exec_job(argv, files, collect, stdin, limits or self.limits)
        return run_in_fresh_jail(self.config, job, files=files, collect=tuple(collect))


def exec_job(
    argv: Sequence[str],
    files: Mapping[str, bytes],
    collect: Sequence[str],
    stdin: bytes,
    limits: SandboxLimits,
) -> Job:
    """An ``exec`` job, its inputs checked (for :meth:`Sandbox.exec` and :meth:`SandboxPool.exec`)."""
    if (
        isinstance(argv, str | bytes)
        or not argv
        or not all(isinstance(a, str) and "\0" not in a for a in argv)
    ):
        raise SandboxInputError("argv must be a non-empty sequence of strings without NUL")
    for name in [*files, *collect]:
        validate_name(name)
    if len(stdin) > MAX_INPUT:
        raise SandboxInputError(f"stdin over {MAX_INPUT} bytes")
    return Job(kind="exec", limits=limits, stdin=bytes(stdin), argv=tuple(argv))


def python_job(
    limits: SandboxLimits,
    program: str,
    tests: str | None,
    stdin: bytes,
    timeout_s: float | None,
    entry_points: Sequence[str] = (),
) -> Job:
    if timeout_s is not None:
        limits = replace(limits, wall_s=timeout_s)
    encoded = program.encode("utf-8", errors="surrogateescape")
    test_bytes = None if tests is None else tests.encode("utf-8", errors="surrogateescape")
    if max(len(encoded), len(test_bytes or b""), len(stdin)) > MAX_INPUT:
        raise SandboxInputError(f"program, tests and stdin are capped at {MAX_INPUT} bytes each")
    names = tuple(entry_points)
    if not all(type(n) is str and n.isidentifier() for n in names):
        raise SandboxInputError(f"entry_points must be identifiers, got {list(names)!r}")
    return Job(
        kind="python",
        limits=limits,
        stdin=bytes(stdin),
        program=encoded,
        tests=test_bytes,
        entry_points=names,
    )


class PythonSandbox(_FreshJails):
    """Run a Python program (and its tests) in a fresh jail per call.

    PASS needs the tests to complete in a separate tests interpreter that calls the program's
    functions through a pipe and gets plain data back (see ``jail_python.py``); the program cannot
    forge that report.
    """

    def run(
        self,
        program: str,
        *,
        tests: str | None = None,
        stdin: bytes = b"",
        timeout_s: float | None = None,
        entry_points: Sequence[str] = (),
    ) -> SandboxResult:
        """``entry_points``: the program's names the tests call; only those are bound in the tests, and
        they may shadow a builtin or a standard-library module (a function named ``sorted``)."""
        job = python_job(self.limits, program, tests, stdin, timeout_s, entry_points)
        return run_in_fresh_jail(self.config, job)
