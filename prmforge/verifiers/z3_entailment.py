"""Local entailment of derivation steps with Z3 (FoVer style, METHODS.md §2(g); RELIABILITY.md §4.1).

Each step ``Step k: from P2 and S1, by <rule>: <formula>`` is checked on its
own: the cited premises and the conclusions the cited earlier steps *claim*
(taken at face value, so an error does not propagate) entail the step's
conclusion iff ``cited and not conclusion`` is unsatisfiable.

Z3 runs in a small persistent child process (:class:`Z3Worker`) under an
address-space limit; every query gets a fresh Z3 context and a deterministic
``rlimit`` budget (resource units, not seconds), so a verdict does not depend
on machine load. A wall-clock deadline backs it up: a query still running at
the deadline gets its worker killed with SIGKILL, and the next query starts a
fresh worker.

Verdicts: ``unsat`` -> PASS; ``sat`` -> FAIL with a countermodel summary;
``unknown`` (the rlimit ran out, or Z3 gave up) -> SOLVER_UNKNOWN with Z3's
``reason_unknown``; a step that does not parse, cites nothing that exists or
cites an unparseable step -> ABSTAIN; a worker killed at the wall-clock
deadline -> UNAVAILABLE (never TIMEOUT, which the verdict set maps to
"invalid"); a worker that dies, fails to start or rejects the script -> INFRA_ERROR.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prmforge.languages.formula import (
    Formula,
    FormulaError,
    entailment_smt2,
    parse_premises,
    parse_step,
)
from prmforge.schemas.records import Problem
from prmforge.verifiers.verdict import Check, Verdict

__all__ = ["SolverResult", "Z3EntailmentVerifier", "Z3Settings", "Z3Worker", "verdict_of", "worker_main"]

TOOL = "z3"
_MAX_LINE = 1 << 20
_MODEL_CHARS = 400


@dataclass(frozen=True, slots=True)
class Z3Settings:
    """Budgets of one Z3 check.

    ``rlimit`` is Z3's deterministic resource budget per query (0 = none);
    ``wall_timeout_s`` the hard kill; ``memory_mb`` the worker's RLIMIT_AS (0 = none).
    """

    rlimit: int = 5_000_000
    wall_timeout_s: float = 20.0
    memory_mb: int = 1024
    startup_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.rlimit < 0 or self.memory_mb < 0:
            raise ValueError("rlimit and memory_mb must be >= 0")
        if self.wall_timeout_s <= 0 or self.startup_timeout_s <= 0:
            raise ValueError("wall_timeout_s and startup_timeout_s must be > 0")


SolverStatus = Literal["sat", "unsat", "unknown", "error", "killed", "crashed"]


@dataclass(frozen=True, slots=True)
class SolverResult:
    """One query's outcome. ``reason`` is ``reason_unknown``, an error or why the worker died;
    ``raw`` the worker's reply without its timing (deterministic, hashed into ``Check.output_digest``)."""

    status: SolverStatus
    reason: str = ""
    model: str = ""
    rlimit_count: int = 0
    seconds: float = 0.0
    raw: str = ""


# ---------------------------------------------------------------- the child


def worker_main() -> None:
    """The child process: ``argv[1]`` is the address-space limit in MiB; JSON lines in and out."""
    import resource

    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Replies go to a private copy of stdout; fd 1 now points at stderr, so whatever z3
    # or the interpreter prints cannot corrupt the protocol.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    import z3

    _emit(replies, {"ready": True, "version": z3.get_full_version()})
    for line in sys.stdin:
        request = json.loads(line)
        _emit(replies, _solve(z3, str(request["smt2"]), int(request["rlimit"])))


def _emit(replies: Any, payload: dict[str, Any]) -> None:
    replies.write(json.dumps(payload, sort_keys=True) + "\n")
    replies.flush()


def _solve(z3: Any, smt2: str, rlimit: int) -> dict[str, Any]:
    ctx = z3.Context()
    solver = z3.Solver(ctx=ctx)
    if rlimit > 0:
        solver.set("rlimit", rlimit)
    started = time.perf_counter()
    try:
        solver.add(z3.parse_smt2_string(smt2, ctx=ctx))
        result = str(solver.check())
    except z3.Z3Exception as err:
        return {"status": "error", "reason": f"z3 rejected the query: {err}"}
    stats = solver.statistics()
    count = int(stats.get_key_value("rlimit count")) if "rlimit count" in stats else 0
    reply: dict[str, Any] = {
        "status": result,
        "rlimit_count": count,
        "seconds": time.perf_counter() - started,
    }
    if result == "unknown":
        reply["reason"] = str(solver.reason_unknown())
    elif result == "sat":
        reply["model"] = _model_summary(z3, solver.model())
    return reply


def _model_summary(z3: Any, model: Any) -> str:
    """``domain {e0, e1}; rex=e0; Dog={e0}; Rain=true``: the countermodel, small and readable."""
    universe: list[Any] = []
    for i in range(model.num_sorts()):
        universe.extend(model.get_universe(model.get_sort(i)))
    names = {str(e): f"e{k}" for k, e in enumerate(universe)}
    parts = [f"domain {{{', '.join(names.values())}}}"] if universe else []
    for decl in sorted(model.decls(), key=lambda d: (d.arity() > 0, d.name())):
        name = decl.name().split("_", 1)[-1]
        if decl.arity() == 0:
            value = str(model[decl])
            parts.append(f"{name}={names.get(value, value.lower())}")
            continue
        rows = _extension(z3, model, decl, universe, names)
        parts.append(f"{name}={{{', '.join(rows)}}}")
    return "; ".join(parts)[:_MODEL_CHARS]


def _extension(z3: Any, model: Any, decl: Any, universe: list[Any], names: dict[str, str]) -> list[str]:
    import itertools

    if len(universe) ** decl.arity() > 64:
        return ["..."]
    rows = []
    for args in itertools.product(universe, repeat=decl.arity()):
        if z3.is_true(model.eval(decl(*args), model_completion=True)):
            shown = [names[str(a)] for a in args]
            rows.append(shown[0] if len(shown) == 1 else f"({', '.join(shown)})")
    return rows


# --------------------------------------------------------------- the parent


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


class Z3Worker:
    """A persistent Z3 child process, restarted after a kill or a crash."""

    def __init__(self, settings: Z3Settings | None = None) -> None:
        self.settings = settings if settings is not None else Z3Settings()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.version = "unknown"

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None when none is running)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _start(self) -> SolverResult | None:
        """Start the child; returns a failure result when it does not come up."""
        code = "from prmforge.verifiers.z3_entailment import worker_main; worker_main()"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(self.settings.memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._proc, self._buffer = proc, b""
        self._finalizer = weakref.finalize(self, _kill, proc)
        reply = self._read(time.monotonic() + self.settings.startup_timeout_s)
        if isinstance(reply, SolverResult):
            return SolverResult(reply.status, f"worker did not start: {reply.reason}")
        self.version = str(reply.get("version", "unknown"))
        return None

    def _read(self, deadline: float) -> dict[str, Any] | SolverResult:
        """The worker's next JSON line, or the result of it dying or missing the deadline."""
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                return SolverResult("killed", reason="worker killed at the wall-clock deadline")
            chunk = os.read(fd, 65536)
            if not chunk or len(self._buffer) > _MAX_LINE:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1.0)  # let a dying worker report its own exit status
                self.close()
                return SolverResult("crashed", reason=f"worker died ({_exit_text(proc.returncode)})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            self.close()
            return SolverResult("crashed", reason="worker wrote a malformed reply")
        return reply if isinstance(reply, dict) else SolverResult("crashed", reason="malformed reply")

    def solve(self, smt2: str, rlimit: int | None = None) -> SolverResult:
        """Check an SMT-LIB2 script (declarations and assertions, no ``check-sat``)."""
        started = time.monotonic()
        if self._proc is None or self._proc.poll() is not None:
            failed = self._start()
            if failed is not None:
                return failed
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        budget = self.settings.rlimit if rlimit is None else rlimit
        try:
            proc.stdin.write((json.dumps({"smt2": smt2, "rlimit": budget}) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.close()
            return SolverResult("crashed", reason=f"worker died ({_exit_text(proc.returncode)})")
        reply = self._read(time.monotonic() + self.settings.wall_timeout_s)
        seconds = time.monotonic() - started
        if isinstance(reply, SolverResult):
            return SolverResult(reply.status, reply.reason, seconds=seconds)
        status = str(reply.get("status"))
        if status not in ("sat", "unsat", "unknown", "error"):
            return SolverResult("crashed", reason=f"unexpected status {status!r}", seconds=seconds)
        return SolverResult(
            status=status,  # type: ignore[arg-type]
            reason=str(reply.get("reason", "")),
            model=str(reply.get("model", "")),
            rlimit_count=int(reply.get("rlimit_count", 0)),
            seconds=seconds,
            raw=json.dumps({k: v for k, v in reply.items() if k != "seconds"}, sort_keys=True),
        )

    def close(self) -> None:
        """Kill the worker (SIGKILL) if it runs; the next query starts a fresh one."""
        if self._proc is not None:
            _kill(self._proc)
            if self._proc.returncode is not None and self._finalizer is not None:
                self._finalizer.detach()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


# ------------------------------------------------------------- the verifier


def verdict_of(result: SolverResult, rlimit: int) -> tuple[Verdict, str]:
    """The verdict and reason a solver result gives for an entailment query."""
    if result.status == "unsat":
        return Verdict.PASS, "entailed: the cited formulas entail the conclusion (unsat)"
    if result.status == "sat":
        return Verdict.FAIL, f"not entailed; countermodel: {result.model}"
    if result.status == "unknown":
        return (
            Verdict.SOLVER_UNKNOWN,
            f"z3 unknown: {result.reason} (rlimit {rlimit}, used {result.rlimit_count})",
        )
    if result.status == "killed":
        return Verdict.UNAVAILABLE, result.reason
    return Verdict.INFRA_ERROR, result.reason


class Z3EntailmentVerifier:
    """A :class:`~prmforge.verifiers.base.StepVerifier` for logic derivations (see the module docstring).

    Premises are read from ``problem.question`` (``P<n>: formula`` lines).
    Use it as a context manager, or call :meth:`close`, to stop the worker.
    """

    def __init__(self, settings: Z3Settings | None = None) -> None:
        self.settings = settings if settings is not None else Z3Settings()
        self._worker = Z3Worker(self.settings)

    @property
    def worker(self) -> Z3Worker:
        return self._worker

    def __enter__(self) -> Z3EntailmentVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._worker.close()

    def _check(self, verdict: Verdict, reason: str, digest: str = "", seconds: float = 0.0) -> Check:
        return Check(verdict, reason, TOOL, self._worker.version, digest, seconds)

    def check_entailment(self, premises: Sequence[Formula], conclusion: Formula) -> Check:
        """Whether ``premises`` entail ``conclusion``, as a Check."""
        try:
            smt2 = entailment_smt2(premises, conclusion)
        except FormulaError as err:
            return self._check(Verdict.ABSTAIN, f"cannot render the query: {err}")
        return self.check_smt2(smt2)

    def check_smt2(self, smt2: str) -> Check:
        """Check a raw SMT-LIB2 script (declarations and assertions, no ``check-sat``): PASS when unsat."""
        result = self._worker.solve(smt2)
        verdict, reason = verdict_of(result, self.settings.rlimit)
        digest = hashlib.sha256(f"{smt2}\n{result.raw}".encode()).hexdigest()[:16] if result.raw else ""
        return self._check(verdict, reason, digest, result.seconds)

    def check_steps(self, problem: Problem, steps: Sequence[str]) -> list[Check]:
        try:
            premises = parse_premises(problem.question)
        except FormulaError as err:
            return [self._check(Verdict.ABSTAIN, f"premises do not parse: {err}") for _ in steps]
        claimed: list[Formula | None] = []
        checks = []
        for index, text in enumerate(steps):
            try:
                claim = parse_step(text)
            except FormulaError as err:
                claimed.append(None)
                checks.append(self._check(Verdict.ABSTAIN, f"step does not parse: {err}"))
                continue
            claimed.append(claim.conclusion)
            cited: list[Formula] = []
            missing = []
            for cite in claim.cites:
                if cite.kind == "P":
                    found = premises.get(cite.number)
                else:
                    found = claimed[cite.number - 1] if 1 <= cite.number <= index else None
                if found is None:
                    missing.append(str(cite))
                else:
                    cited.append(found)
            if missing:
                reason = f"cites {', '.join(missing)}: no such premise or earlier parsed step"
                checks.append(self._check(Verdict.ABSTAIN, reason))
                continue
            checks.append(self.check_entailment(cited, claim.conclusion))
        return checks
