"""Fresh-jail-per-run entry points: :class:`Sandbox` (any command) and :class:`PythonSandbox`."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from prmforge.verifiers.sandbox import cgroup, outcome, scratch
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


@functools.cache
def _sweep_once() -> None:
    """Remove cgroups and run directories left by sandbox hosts that died (once per process)."""
    cgroup.sweep_stale()
    scratch.sweep_stale()


def jail_config(isolation: Isolation, *, allow_weaker: bool) -> JailConfig:
    """Check the machine (fail closed) and describe how jails are built. Sweeps leftovers of dead hosts."""
    report = require(isolation, allow_weaker=allow_weaker)
    if report.root:
        _sweep_once()
    if isolation == "bwrap":
        return JailConfig(
            python=JAIL_PYTHON,
            bwrap=report.bwrap,
            seccomp_bpf=compile_filter(),
            controllers=report.cgroup_controllers,
            uid=SANDBOX_UID,
            mount_tmpfs=True,
            label=report.layers,
        )
    python = JAIL_PYTHON if report.jail_python else sys.executable
    layers = ["rlimits", *report.cgroup_controllers] + (["tmpfs", f"uid{SANDBOX_UID}"] if report.root else [])
    return JailConfig(
        python=python,
        bwrap=None,
        seccomp_bpf=None,
        controllers=report.cgroup_controllers,
        uid=SANDBOX_UID if report.root and report.jail_python else None,
        mount_tmpfs=report.root,
        label="rlimits-only:" + "+".join(layers),
    )


def to_result(job: Job, raw: RawRun, label: str) -> SandboxResult:
    decision = outcome.derive(job, raw)
    s = raw.statuses.get("s", {})
    return SandboxResult(
        verdict=decision.verdict,
        reason=decision.reason,
        exit_code=s.get("code"),
        signal=s.get("signal"),
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
        if not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
            raise SandboxInputError("argv must be a non-empty sequence of strings without NUL")
        files = dict(files or {})
        for name in [*files, *collect]:
            validate_name(name)
        if len(stdin) > MAX_INPUT:
            raise SandboxInputError(f"stdin over {MAX_INPUT} bytes")
        job = Job(kind="exec", limits=limits or self.limits, stdin=bytes(stdin), argv=tuple(argv))
        return run_in_fresh_jail(self.config, job, files=files, collect=tuple(collect))


def python_job(
    limits: SandboxLimits, program: str, tests: str | None, stdin: bytes, timeout_s: float | None
) -> Job:
    if timeout_s is not None:
        limits = replace(limits, wall_s=timeout_s)
    encoded = program.encode("utf-8", errors="surrogateescape")
    test_bytes = None if tests is None else tests.encode("utf-8", errors="surrogateescape")
    if max(len(encoded), len(test_bytes or b""), len(stdin)) > MAX_INPUT:
        raise SandboxInputError(f"program, tests and stdin are capped at {MAX_INPUT} bytes each")
    return Job(kind="python", limits=limits, stdin=bytes(stdin), program=encoded, tests=test_bytes)


class PythonSandbox(_FreshJails):
    """Run a Python program (and its tests) in a fresh jail per call.

    PASS needs the tests to complete in a separate tests interpreter that calls the program's
    functions through a pipe and gets plain data back (see ``jail_python.py``); the program cannot
    forge that report.
    """

    def run(
        self, program: str, *, tests: str | None = None, stdin: bytes = b"", timeout_s: float | None = None
    ) -> SandboxResult:
        job = python_job(self.limits, program, tests, stdin, timeout_s)
        return run_in_fresh_jail(self.config, job)
