"""Pure parts: limits, names, the wire codec, verdict precedence, fail-closed construction, the CLI."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prmforge.verifiers.sandbox import (
    IsolationUnavailable,
    PythonSandbox,
    SandboxInputError,
    SandboxLimits,
    codec,
    outcome,
    probe,
    probe_isolation,
)
from prmforge.verifiers.sandbox.cli import sandbox_app
from prmforge.verifiers.sandbox.jobio import Job, RawRun
from prmforge.verifiers.sandbox.limits import validate_name
from prmforge.verifiers.verdict import Verdict

from .conftest import FULL_ROOT_MODE, LIMITS, Host


def test_limits_validate() -> None:
    with pytest.raises(SandboxInputError):
        SandboxLimits(wall_s=0)
    with pytest.raises(SandboxInputError):
        SandboxLimits(pids=1)
    assert SandboxLimits(wall_s=1.2).cpu_seconds == 2
    assert SandboxLimits().rlimits()["RLIMIT_CORE"] == 0


def test_validate_name() -> None:
    assert validate_name("src/main.c") == "src/main.c"
    for bad in ("/abs", "..", "a/../b", "a/./b", "a\0", "sp ace", "a//b", "x" * 300):
        with pytest.raises(SandboxInputError):
            validate_name(bad)


def test_codec_round_trip_keeps_exact_types() -> None:
    value = {
        "k": (1, 2.5, None, b"\x00\xff", True, 1 + 2j),
        "s": {1, 2},
        "f": frozenset({"a"}),
        "big": 10**50,
        "nan": float("inf"),
        "text": "\udcff ansi \x1b[0m",
    }
    encoded = json.loads(json.dumps(codec.encode_value(value, lambda obj: 0)))
    assert codec.decode_value(encoded, lambda ident: None) == value

    class Sneaky(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    handles: list[object] = []
    assert codec.encode_value(Sneaky(3), lambda obj: handles.append(obj) or 7) == {"h": 7}
    for bad in ({"i": "zz"}, {"q": 1}, {"t": 3}, {"d": [[[], 1]]}, {"h": "1"}):
        with pytest.raises(codec.WireError):
            codec.decode_value(bad, lambda ident: None)


def _job(tests: str | None = "assert True") -> Job:
    return Job(kind="python", limits=LIMITS, program=b"", tests=None if tests is None else tests.encode())


def _raw(**fields: object) -> RawRun:
    raw = RawRun(
        nonce="n" * 32, statuses={"s": {"code": 0, "signal": None}, "t": {"code": 0, "signal": None}}
    )
    for key, value in fields.items():
        setattr(raw, key, value)
    return raw


def test_pass_needs_the_nonce() -> None:
    ok = {"nonce": "n" * 32, "status": "ok", "calls": 1}
    assert outcome.derive(_job(), _raw(tests_report=ok)).verdict is Verdict.PASS
    forged = {**ok, "nonce": "0" * 32}
    assert outcome.derive(_job(), _raw(tests_report=forged)).verdict is Verdict.FAIL
    assert outcome.derive(_job(), _raw(tests_report=None)).verdict is Verdict.FAIL


def test_verdict_precedence() -> None:
    ok = {"nonce": "n" * 32, "status": "ok"}
    killed = {"code": None, "signal": 9, "harness_killed": False}
    cases = [
        (_raw(tests_report=ok, lost="worker died"), Verdict.INFRA_ERROR),
        (_raw(tests_report=ok, timed_out=True, lost="worker unresponsive"), Verdict.TIMEOUT),
        (_raw(tests_report=ok, oom_kills=1, timed_out=True), Verdict.MEMORY_LIMIT),
        (_raw(tests_report=ok, scratch_full=True, output_overflow=True), Verdict.FILE_LIMIT),
        (_raw(tests_report=ok, output_overflow=True, timed_out=True), Verdict.OUTPUT_LIMIT),
        (_raw(statuses={"s": {"signal": int(signal.SIGXCPU)}}), Verdict.TIMEOUT),
        (_raw(statuses={"s": {"signal": int(signal.SIGXFSZ)}}), Verdict.FILE_LIMIT),
        (_raw(statuses={"s": killed, "t": {"code": 0}}, tests_report=ok), Verdict.CRASH),
        (_raw(statuses={"s": {**killed, "cpu_s": 9.0}}), Verdict.TIMEOUT),
        (_raw(leaked=2, tests_report=ok), Verdict.INFRA_ERROR),
    ]
    for raw, expected in cases:
        assert outcome.derive(_job(), raw).verdict is expected, raw


def test_exec_markers_only_count_on_failure() -> None:
    job = Job(kind="exec", limits=LIMITS, argv=("x",))
    failed = {"s": {"code": 1, "signal": None}}
    assert outcome.derive(job, _raw(statuses=failed, stderr=b"MemoryError")).verdict is Verdict.MEMORY_LIMIT
    assert outcome.derive(job, _raw(statuses=failed, stderr=b"File too large")).verdict is Verdict.FILE_LIMIT
    assert (
        outcome.derive(job, _raw(statuses={"s": {"code": 0}}, stderr=b"MemoryError")).verdict is Verdict.PASS
    )


def test_weaker_isolation_needs_opt_in() -> None:
    with pytest.raises(IsolationUnavailable, match="allow_weaker"):
        PythonSandbox(LIMITS, isolation="rlimits-only")


def test_missing_layer_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = replace(probe_isolation(), bwrap=None)
    monkeypatch.setattr(probe, "probe_isolation", lambda: broken)
    with pytest.raises(IsolationUnavailable, match="install-system-deps"):
        PythonSandbox(LIMITS)


def test_rlimits_only_runs_when_asked(host: Host) -> None:
    box = PythonSandbox(replace(LIMITS, wall_s=5.0), isolation="rlimits-only", allow_weaker=True)
    assert box.isolation.startswith("rlimits-only")
    result = box.run("def f(x):\n    return x * 2\n", tests="assert f(2) == 4\n")
    assert result.verdict is Verdict.PASS, (result.reason, result.stderr)
    assert box.run("while True: pass", timeout_s=1.0).verdict is Verdict.TIMEOUT


def test_probe_reports_full_isolation(host: Host) -> None:
    report = probe_isolation()
    assert report.full, report.missing
    assert FULL_ROOT_MODE.match(report.layers), report.layers
    assert json.dumps(report.as_dict())


def test_odd_output_round_trips_parquet(host: Host, tmp_path: Path) -> None:
    """G27: NUL, invalid UTF-8 and ANSI escapes survive a Parquet round trip as bytes."""
    odd = b"nul\x00 bad\xff\xfe \x1b[31mred\x1b[0m \xed\xa0\x80"
    result = PythonSandbox(LIMITS).run(f"import os\nos.write(1, {odd!r})\n")
    assert result.stdout == odd
    table = pa.table({"stdout": pa.array([result.stdout], pa.binary()), "digest": [result.output_digest]})
    pq.write_table(table, tmp_path / "out.parquet")
    back = pq.read_table(tmp_path / "out.parquet").to_pylist()[0]
    assert back == {"stdout": odd, "digest": result.output_digest}


def test_cli_prints_json(host: Host, tmp_path: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text("import os\nos.write(1, b'\\xff\\x00ok')\ndef add(a, b):\n    return a + b\n")
    tests = tmp_path / "tests.py"
    tests.write_text("assert add(2, 2) == 4\n")
    result = CliRunner().invoke(sandbox_app, ["run", str(program), "--tests", str(tests), "--timeout", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["verdict"] == "PASS"
    assert data["stdout"] == "\\xff\\x00ok"
    assert data["isolation"].startswith("bwrap")


def test_pool_replaces_a_dead_worker(host: Host) -> None:
    """A worker killed from outside is replaced; the sample is retried and nothing is lost."""
    import os

    from prmforge.verifiers.sandbox import PythonSandboxPool

    with PythonSandboxPool(size=1, limits=LIMITS) as pool:
        (jail,) = pool._all
        os.kill(jail.worker_pid, signal.SIGKILL)
        result = pool.run("def f():\n    return 1\n", tests="assert f() == 1\n")
        assert result.verdict is Verdict.PASS, result.reason
        (replacement,) = pool._all
        assert replacement is not jail
        assert pool.run("print('again')").stdout == b"again\n"


def test_sweep_removes_what_a_dead_host_left(host: Host) -> None:
    """A host killed mid-run leaves cgroups and a run dir named after its pid; they are removed."""
    from prmforge.verifiers.sandbox import cgroup, scratch

    dead = "999999999-feedfacecafe"  # above pid_max: that owner cannot be alive
    paths = [cgroup.ROOT / ctrl / cgroup.PREFIX / dead / "job-0" for ctrl in cgroup.available_controllers()]
    for path in paths:
        path.mkdir(parents=True)
    (scratch.BASE / dead / "fs").mkdir(parents=True)
    removed = cgroup.sweep_stale() + scratch.sweep_stale()
    assert all(not path.parent.exists() for path in paths)
    assert not (scratch.BASE / dead).exists()
    assert len(removed) == len(paths) + 1
