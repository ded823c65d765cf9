"""Kernel-isolated execution of hostile code: bubblewrap namespaces, seccomp, rlimits, cgroups.

See ``docs/sandbox.md`` for the isolation model and the verdict mapping.
"""

from prmforge.verifiers.sandbox.limits import (
    Isolation,
    IsolationUnavailable,
    SandboxError,
    SandboxInputError,
    SandboxLimits,
    SandboxResult,
)
from prmforge.verifiers.sandbox.outcome import flaky, output_digest
from prmforge.verifiers.sandbox.pool import PythonSandboxPool, SandboxPool
from prmforge.verifiers.sandbox.probe import IsolationReport, probe_isolation
from prmforge.verifiers.sandbox.runner import PythonSandbox, Sandbox

__all__ = [
    "Isolation",
    "IsolationReport",
    "IsolationUnavailable",
    "PythonSandbox",
    "PythonSandboxPool",
    "Sandbox",
    "SandboxError",
    "SandboxInputError",
    "SandboxLimits",
    "SandboxPool",
    "SandboxResult",
    "flaky",
    "output_digest",
    "probe_isolation",
]
