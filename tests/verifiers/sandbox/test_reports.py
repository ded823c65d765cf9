"""What crosses from the jail to the host, and how the tests process reads the program: schemas
(``reports.py``), a total ``outcome.derive``, the wire codec and the tests' namespace rules. Pure: no
jail is started here (``test_forgery_python.py`` runs the same attacks in real jails)."""

from __future__ import annotations

import dis
import math
import os
import random
import sys
import types
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from prmforge.verifiers.sandbox import codec, jail_python, outcome, reports
from prmforge.verifiers.sandbox.jobio import Job, RawRun
from prmforge.verifiers.sandbox.outcome import Decision
from prmforge.verifiers.verdict import Verdict

from .conftest import LIMITS

NONCE = "5" * 32
WITH_TESTS = Job(kind="python", limits=LIMITS, program=b"", tests=b"assert f() == 1\n")
NO_TESTS = Job(kind="python", limits=LIMITS, program=b"")
EXEC = Job(kind="exec", limits=LIMITS, argv=("./prog",))
KILLED_AFTER = {"code": None, "signal": 9, "harness_killed": True, "cpu_s": 0.01}
EXITED = {"code": 0, "signal": None, "harness_killed": False, "cpu_s": 0.02}
OK_TESTS = {"nonce": NONCE, "status": "ok", "calls": 2}
COMPLETED = {"phase": "program", "outcome": "completed"}
EXCEPTION = {
    "phase": "program",
    "outcome": "exception",
    "error": "E",
    "builtin": "E",
    "message": "",
    "errno": None,
}


def run(**fields: Any) -> RawRun:
    raw = RawRun(nonce=NONCE, statuses={"s": dict(EXITED), "t": dict(EXITED)}, started=True)
    for key, value in fields.items():
        setattr(raw, key, value)
    return raw


def passing() -> list[tuple[Job, RawRun]]:
    return [
        (
            WITH_TESTS,
            run(statuses={"s": KILLED_AFTER, "t": EXITED}, program_report=COMPLETED, tests_report=OK_TESTS),
        ),
        (WITH_TESTS, run(tests_report=OK_TESTS)),  # no program report: the tests process decides
        (NO_TESTS, run(statuses={"s": EXITED}, program_report=COMPLETED)),
        (
            NO_TESTS,
            run(statuses={"s": EXITED}, program_report={"phase": "program", "outcome": "exit", "code": 0}),
        ),
        (EXEC, run(statuses={"s": EXITED})),
    ]


# ---------------------------------------------------------------- the validator


def test_exact_types_sizes_and_keys() -> None:
    with pytest.raises(reports.Malformed, match="expected an int"):
        reports.integer(0, 9)(True, "x")
    with pytest.raises(reports.Malformed, match="expected an int"):
        reports.integer(0, 9)(10, "x")
    with pytest.raises(reports.Malformed, match="expected a number"):
        reports.number(0, 9)(math.nan, "x")
    with pytest.raises(reports.Malformed, match="at most 3"):
        reports.text(3)("abcd", "x")
    with pytest.raises(reports.Malformed, match=r"x\.a: expected a bool"):
        reports.record({"a": reports.flag})({"a": 1}, "x")
    with pytest.raises(reports.Malformed, match=r"unknown keys \['b'\], missing keys \['a'\]"):
        reports.record({"a": reports.flag})({"b": True}, "x")
    with pytest.raises(reports.Malformed, match="expected an object"):
        reports.record({})({str(i): 0 for i in range(reports.MAX_KEYS + 1)}, "x")
    assert reports.record({"a": reports.flag}, {"b": reports.maybe(reports.text(2))})(
        {"a": True, "b": None}, "x"
    ) == {
        "a": True,
        "b": None,
    }


def test_control_messages() -> None:
    done = {"event": "done", "status": {"s": EXITED}, "scratch_full": False, "reaped": True, "sockets": 0}
    assert reports.control_message(done) == done
    assert reports.control_message({**done, "cleaning": True})["cleaning"] is True  # what jail.py sends
    assert reports.control_message({"event": "cleaned", "ok": True, "error": ""})["ok"] is True
    assert reports.control_message({"event": "forked", "pids": {"s": 5, "t": 6}})["pids"] == {"s": 5, "t": 6}
    for bad in (
        {**done, "status": {"s": {**EXITED, "code": "0"}}},
        {**done, "scratch_full": 1},
        {**done, "cleaning": "yes"},
        {**done, "unknown": 1},
        {"event": "forked", "pids": {"s": 5, "x": 6}},
        {"event": "ready", "pid": True},
        {"event": "go"},
        [1],
    ):
        with pytest.raises(reports.Malformed):
            reports.control_message(bad)


# ---------------------------------------------------------------- forged reports, exact decisions


MAL_P = "the program's report is malformed: program report"
MAL_T = "malformed report from the jail's trusted harness: tests report"
MAL_W = "malformed report from the jail's trusted harness: "
REMOTE = {"error": "E", "builtin": "E", "errno": None}
FAILED = {
    "nonce": NONCE,
    "status": "failed",
    "error": "AssertionError",
    "line": 3,
    "source": "assert f() == 1",
}
FORGED: list[tuple[Job, dict[str, Any], Verdict, str]] = [
    (NO_TESTS, {"program_report": {"errno": [1], "builtin": {"x": 1}}}, Verdict.FAIL,
     f"{MAL_P}: unknown outcome in {{'errno': [1], 'builtin': {{'x': 1}}}}"),
    (NO_TESTS, {"program_report": {**EXCEPTION, "errno": [28]}}, Verdict.FAIL,
     f"{MAL_P}.errno: expected an int in [0, 65535], got [28]"),
    (WITH_TESTS, {"program_report": {**EXCEPTION, "builtin": {"x": 1}}, "tests_report": OK_TESTS},
     Verdict.FAIL,
     f"{MAL_P}.builtin: expected a string of at most 200 characters, got {{'x': 1}}"),
    (WITH_TESTS, {"tests_report": {**OK_TESTS, "remote": {**REMOTE, "errno": [28]}}}, Verdict.INFRA_ERROR,
     f"{MAL_T}.remote.errno: expected an int in [0, 65535], got [28]"),
    (WITH_TESTS, {"tests_report": {**OK_TESTS, "calls": "2"}}, Verdict.INFRA_ERROR,
     f"{MAL_T}.calls: expected an int in [0, 4611686018427387904], got '2'"),
    (WITH_TESTS, {"tests_report": {**OK_TESTS, "nonce": [NONCE]}}, Verdict.INFRA_ERROR,
     f"{MAL_T}.nonce: expected a string of at most 64 characters"),
    (WITH_TESTS, {"tests_report": {**OK_TESTS, "nonce": "0" * 32}}, Verdict.FAIL,
     "tests report with a wrong nonce (forged)"),
    (WITH_TESTS, {"statuses": {"s": [0], "t": EXITED}, "tests_report": OK_TESTS}, Verdict.INFRA_ERROR,
     f"{MAL_W}status.s: expected an object, got [0]"),
    (WITH_TESTS, {"statuses": {"s": {**EXITED, "signal": "9"}}, "tests_report": OK_TESTS},
     Verdict.INFRA_ERROR,
     f"{MAL_W}status.s.signal: expected an int in [1, 128], got '9'"),
    (EXEC, {"program_report": {"exec_error": ["ENOENT"], "message": "x"}}, Verdict.INFRA_ERROR,
     f"{MAL_W}exec report.exec_error: expected a string"),
    (EXEC, {"program_report": {"exec_error": "ENOENT", "message": "no such file"}}, Verdict.INFRA_ERROR,
     "cannot execute './prog': no such file"),
    (WITH_TESTS, {"leaked": "2"}, Verdict.INFRA_ERROR, "malformed run facts: RawRun.leaked is '2'"),
    (WITH_TESTS, {"stderr": "x"}, Verdict.INFRA_ERROR, "malformed run facts: RawRun.stderr is 'x'"),
    (WITH_TESTS, {"tests_report": {**OK_TESTS, "remote": {**REMOTE, "builtin": "MemoryError"}}},
     Verdict.MEMORY_LIMIT, "MemoryError (address-space limit)"),
    (NO_TESTS, {"program_report": {**EXCEPTION, "builtin": "OSError", "errno": 28, "message": "full"}},
     Verdict.FILE_LIMIT, "file limit: full"),
    (NO_TESTS, {"program_report": None}, Verdict.FAIL, "program exit code 0 without its report"),
    (WITH_TESTS, {"tests_report": FAILED}, Verdict.FAIL,
     "tests failed: line 3: assert f() == 1 (AssertionError)"),
    (WITH_TESTS, {"tests_report": {**OK_TESTS, "calls": 1, "tests_ran": 2}}, Verdict.PASS,
     "all tests completed (2 unittest test(s), 1 call into the program)"),
]  # fmt: skip


@pytest.mark.parametrize(("job", "fields", "verdict", "reason"), FORGED)
def test_forged_report_decisions(job: Job, fields: dict[str, Any], verdict: Verdict, reason: str) -> None:
    decision = outcome.derive(job, run(**fields))
    assert (decision.verdict, decision.reason[: len(reason)]) == (verdict, reason), decision.reason


def test_exit_status_is_validated() -> None:
    assert outcome.exit_status(run(statuses={"s": {**EXITED, "code": 3}})) == (3, None)
    assert outcome.exit_status(run(statuses={"s": KILLED_AFTER})) == (None, 9)
    assert outcome.exit_status(run(statuses={"s": {"code": [3]}})) == (None, None)
    assert outcome.exit_status(run(statuses=[1])) == (None, None)


# ---------------------------------------------------------------- derive is total


KEYS = ["phase", "outcome", "code", "signal", "harness_killed", "cpu_s", "errno", "builtin", "error",
        "message", "nonce", "status", "calls", "tests_ran", "line", "source", "test", "remote", "exec_error",
        "s", "t", 1, None, ""]  # fmt: skip


def junk(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(16 if depth < 3 else 11)
    scalars: list[Callable[[], object]] = [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.randint(-3, 300),
        lambda: rng.choice([-(2**70), 2**64, 2**31, 1 << 62, 65536]),
        lambda: rng.choice([0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 1e308]),
        lambda: rng.choice(
            ["", "ok", "failed", "program", "exception", "exit", "completed", NONCE, "MemoryError"]
        ),
        lambda: "x" * rng.choice([63, 64, 65, 201, 2001, 9000]),
        lambda: rng.choice([b"MemoryError", b"\xff", bytearray(b"x")]),
        lambda: rng.choice([object(), (1, 2), {1, 2}, 1j, ...]),
        lambda: "\udcff\x00\u202e",
        lambda: rng.choice(list(range(1, 65))),
    ]
    if pick < len(scalars):
        return scalars[pick]()
    if pick < 13:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): junk(rng, depth + 1) for _ in range(rng.randrange(6))}


def mostly_valid(rng: random.Random, valid: dict[str, Any]) -> object:
    """A report that is often well-formed, sometimes with one key changed or added or removed."""
    roll = rng.random()
    if roll < 0.2:
        return junk(rng)
    report = dict(valid)
    if roll < 0.8:
        report[str(rng.choice(KEYS))] = junk(rng)
    if roll > 0.9 and report:
        report.pop(rng.choice(list(report)))
    return report


def random_run(rng: random.Random) -> tuple[Job, RawRun]:
    job = rng.choice([WITH_TESTS, NO_TESTS, EXEC])
    valid_status = {"s": rng.choice([EXITED, KILLED_AFTER]), "t": EXITED}
    raw = run()
    statuses: list[Any] = [valid_status] * 4 + [{"s": mostly_valid(rng, EXITED)}, junk(rng)]
    programs: list[Any] = [None, mostly_valid(rng, rng.choice([COMPLETED, EXCEPTION])), junk(rng)]
    tests: list[Any] = [None, mostly_valid(rng, OK_TESTS), junk(rng)]
    raw.statuses, raw.program_report, raw.tests_report = (
        rng.choice(statuses),
        rng.choice(programs),
        rng.choice(tests),
    )
    host = rng.random() < 0.3  # the host's own facts malformed too, now and then
    for name in ("timed_out", "output_overflow", "scratch_full", "stdout_truncated", "stderr_truncated"):
        setattr(raw, name, rng.choice([False] * 12 + [True, junk(rng) if host else False]))
    for name in ("oom_kills", "leaked", "pids_refused"):
        setattr(raw, name, rng.choice([0] * 12 + [1, junk(rng) if host else 0]))
    raw.stderr = rng.choice([b"", b"", b"MemoryError", b"File too large", junk(rng) if host else b""])  # type: ignore[assignment]
    raw.lost = rng.choice([None] * 8 + ["worker died", junk(rng) if host else None])  # type: ignore[assignment]
    raw.nonce = rng.choice([NONCE] * 8 + [junk(rng) if host else NONCE])  # type: ignore[assignment]
    return job, raw


@pytest.mark.parametrize("seed", range(4))
def test_derive_is_total_on_random_runs(seed: int) -> None:
    """Hundreds of random, mostly malformed runs: always a Decision, never the last-resort guard."""
    rng = random.Random(seed)
    seen: set[Verdict] = set()
    for _ in range(300):
        job, raw = random_run(rng)
        decision = outcome.derive(job, raw)
        assert type(decision) is Decision
        assert decision.verdict in Verdict
        assert type(decision.reason) is str
        assert not decision.reason.startswith(outcome.INTERNAL_ERROR), (raw, decision)
        assert len(decision.reason) <= 600
        seen.add(decision.verdict)
    assert {Verdict.INFRA_ERROR, Verdict.FAIL, Verdict.PASS} <= seen


INVALID_LEAVES: list[object] = [[1], {"x": 1}, b"0", 1j]


@pytest.mark.parametrize("index", range(len(passing())))
def test_no_malformed_report_passes(index: int) -> None:
    """Every way of breaking one field of a passing run's reports gives the exact non-PASS verdict:
    INFRA_ERROR where only trusted code writes, FAIL where the sample can (the program report)."""
    job, base = passing()[index]
    assert outcome.derive(job, base).verdict is Verdict.PASS
    targets = {"statuses": Verdict.INFRA_ERROR, "program_report": Verdict.FAIL}
    if job.kind == "exec":  # written by the worker's child before execve
        targets["program_report"] = Verdict.INFRA_ERROR
    if job.tests is not None:  # only a tests job has (and reads) a tests report; only trusted code writes it
        targets["tests_report"] = Verdict.INFRA_ERROR
    for field, expected in targets.items():
        value = getattr(base, field)
        variants: list[object] = [[value], "x", 0]
        if isinstance(value, dict):
            variants += [{**value, "unknown": 1}]
            variants += [{**value, key: bad} for key in value for bad in INVALID_LEAVES]
            variants += [
                {**value, "s": {**value["s"], key: bad}}
                for key in value.get("s", {})
                for bad in INVALID_LEAVES
            ]
            variants += [
                {k: v for k, v in value.items() if k != key}
                for key in ("phase", "nonce", "status")
                if key in value
            ]
        for variant in variants:
            decision = outcome.derive(job, replace(base, **{field: variant}))  # type: ignore[arg-type]
            assert decision.verdict is expected, (field, variant, decision)


# ---------------------------------------------------------------- the wire


def test_plain_values_travel_as_json_and_keep_exact_types() -> None:
    value = [
        0,
        -(2**63),
        2**63 - 1,
        2**63,
        -(2**63) - 1,
        10**5000,
        0.1,
        -0.0,
        math.inf,
        True,
        None,
        "s",
        [1.0, [2]],
    ]
    encoded = codec.encode_value(value, lambda obj: 0)
    assert encoded[:3] == [0, -(2**63), 2**63 - 1]
    assert encoded[3] == {"i": format(2**63, "x")}
    assert encoded[6:12] == [0.1, -0.0, math.inf, True, None, "s"]
    decoded = codec.parse_frame(codec.frame_bytes(encoded)[4:])
    back = codec.decode_value(decoded, lambda ident: None)
    assert back == value
    assert [type(v) for v in back] == [type(v) for v in value]
    assert math.copysign(1, back[7]) == -1
    assert type(back[12][0]) is float
    nan = codec.decode_value(codec.parse_frame(codec.frame_bytes(codec.encode_value(math.nan, id))[4:]), id)
    assert type(nan) is float
    assert math.isnan(nan)
    bad: object
    for bad in ({"t": 3}, {"s": "ab"}, {"d": [[[], 1]]}, {"i": 5}, {"tz": []}, {"v": 1, "w": 2}):
        with pytest.raises(codec.WireError):
            codec.decode_value(bad, lambda ident: None)
    with pytest.raises(codec.WireError):
        codec.parse_frame(b"\xff\xfe")


def test_frame_reader_splits_and_joins_frames() -> None:
    r, w = os.pipe()
    try:
        data = codec.frame_bytes({"a": 1}) + codec.frame_bytes([2]) + codec.frame_bytes("x" * 70000)
        os.write(w, data[:3])
        reader = codec.FrameReader(r, 1 << 20)
        os.write(w, data[3:40000])
        assert reader.read() == {"a": 1}
        assert reader.read() == [2]
        os.write(w, data[40000:])
        assert reader.read() == "x" * 70000
        os.write(w, codec.frame_bytes("y" * 50))
        with pytest.raises(codec.WireError, match="over the 10-byte cap"):
            codec.FrameReader(r, 10).read()
    finally:
        os.close(w)
        os.close(r)


def test_error_replies_are_checked_and_never_systemexit() -> None:
    good = {"error": "MyErr", "builtin": "ValueError", "message": "bad", "errno": None}
    assert codec.checked_error(good) == good
    wrong: list[object] = [{**good, "errno": [1]}, {**good, "builtin": {"x": 1}}, {**good, "errno": True}]
    wrong += [{**good, "k": 1}, {**good, "message": "m" * 2001}, [good], {**good, "errno": 1 << 16}]
    for bad in wrong:
        assert codec.checked_error(bad) is None
    assert type(codec.rebuild_error(good)) is ValueError
    for name in ("SystemExit", "KeyboardInterrupt", "GeneratorExit", "__import__", "exit", "BaseException"):
        rebuilt = codec.rebuild_error({**good, "builtin": name})
        assert type(rebuilt) is RuntimeError, name


# ---------------------------------------------------------------- the tests' namespace rules


def reference_names(code: types.CodeType) -> tuple[set[str], set[str]]:
    loads, stores = set(), set()
    todo = [(code, True)]
    while todo:
        co, top = todo.pop()
        for ins in dis.get_instructions(co):
            if ins.opname in ("LOAD_NAME", "LOAD_GLOBAL"):
                loads.add(ins.argval)
            elif ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL") or (
                top and ins.opname in ("STORE_NAME", "DELETE_NAME")
            ):
                stores.add(ins.argval)
        todo += [(c, False) for c in co.co_consts if isinstance(c, types.CodeType)]
    return loads, stores


SOURCES = [
    "assert add(1, 2) == 3\n",
    "import math\nfrom os import path as p\nx = 1\ndel x\ndef f():\n    global y\n    y = math.pi + q\n"
    "class C:\n    z = w\n    def m(self):\n        return v\n[k for k in r]\nfor i in range(3):\n    pass\n"
    "try:\n    pass\nexcept E as e:\n    pass\nwith open(n) as fh:\n    pass\nif (walrus := 3):\n    pass\n",
    "".join(f"v{i} = {i}\nassert add(v{i}, {i}) == {2 * i}\n" for i in range(400))
    + "def g():\n    return v399\n",
]


@pytest.mark.parametrize("source", SOURCES)
def test_global_names_match_the_disassembler(source: str) -> None:
    code = compile(source, "tests.py", "exec")
    loads, stores = reference_names(code)
    wanted = loads | stores | {"nowhere", "math", "sys"}
    assert jail_python.global_names(code, wanted) == (loads, stores)
    assert jail_python.global_names(code, {"nowhere"}) == (set(), set())


def test_global_names_with_extended_arguments() -> None:
    """Name indexes above 255 need EXTENDED_ARG; a low byte alone must not match another name."""
    code = compile(SOURCES[2], "tests.py", "exec")
    assert code.co_names.index("v300") > 255
    assert jail_python.global_names(code, {"v300", "v399", "v44"}) == ({"v300", "v399", "v44"},) * 2
    assert jail_python.global_names(compile("x = v300\n", "t", "exec"), {"v300", "x"}) == ({"v300"}, {"x"})


def test_entry_points_and_names() -> None:
    assert jail_python.entry_points(None, "assert f()\n") is None
    assert jail_python.entry_points(None, "# prmforge: entry_points = f, C\n#prmforge:entry_points=g\n") == (
        "f",
        "C",
        "g",
    )
    assert jail_python.entry_points(["add"], "# prmforge: entry_points = x\n") == ("add",)
    for bad in (["__name__"], ["a b"], "add", ["None"], [1]):
        with pytest.raises(ValueError, match="malformed entry_points"):
            jail_python.entry_points(bad, "")
    assert [jail_python.plain_name(n) for n in ("add", "_x", "__x__", "None", "a-b", 3)] == [True, True] + [
        False
    ] * 4


def test_exit_status_matches_cpython() -> None:
    class Code(int):
        def __int__(self) -> int:
            return 1

    cases: list[tuple[object, int]] = [(None, 0), (False, 0), (True, 1), (0, 0), (3, 3), (256, 0), (-1, 255)]
    cases += [(Code(0), 0), (Code(2), 2), ("text", 1), (object(), 1)]
    for code, status in cases:
        assert jail_python.exit_status(SystemExit(code)) == status, code
    for code, status in cases[:8]:
        script = f"import sys\nclass Code(int):\n    pass\nsys.exit({code!r})"
        proc = os.spawnv(os.P_WAIT, sys.executable, [sys.executable, "-c", script])
        assert proc == status, code


def test_statement_of_a_line() -> None:
    source = "x = 1\nif x:\n    assert (x\n            == 2), 'no'\nfor i in f(\n        1):\n    pass\n"
    assert jail_python.statement(source, 1) == "x = 1"
    assert jail_python.statement(source, 3) == "assert (x == 2), 'no'"
    assert jail_python.statement(source, 4) == "assert (x == 2), 'no'"
    assert jail_python.statement(source, 5) == "for i in f("
    assert len(jail_python.statement("assert f(" + "1, " * 500 + ")\n", 1)) == jail_python.MAX_STATEMENT
    assert jail_python.statement("(((", 1) == "((("  # not parseable: the line itself
    assert jail_python.statement(source, 99) == ""
