"""The sandbox as an unprivileged user: bubblewrap in a user namespace, no root, for real.

The tests (root here) create a system user and run this module as that user
(``python -m sandbox.test_unprivileged child ARGS`` from ``tests/verifiers``): the child runs a hostile set in
fresh jails and in a warm pool and prints one JSON object; the tests check the exact verdicts, that
no process of that user is left, that the host's files and ports were not reached, and the label.
The second run hands the user a delegated cgroup v2 subtree (under /sys/fs/cgroup/unified here) and
checks that jails then live in it and are removed. Not root, the child runs as the calling user.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import prmforge
from prmforge.verifiers.sandbox import IsolationUnavailable, SandboxLimits, cgroup_v2, probe, scratch
from prmforge.verifiers.sandbox.jobio import RawRun
from prmforge.verifiers.sandbox.probe import IsolationReport
from prmforge.verifiers.sandbox.runner import program_status
from prmforge.verifiers.verdict import Verdict

from .conftest import CANARY, CANARY_TESTS, LIMITS, SECRET_ENV
from .hostile_cases import ADD_TEST, ADD_WRONG, CASES

USER = f"prmforge-sbx-{os.getpid()}"  # one per test run: concurrent runs must not see each other's
HERE = Path(__file__).resolve()
IMPORT_ROOT = HERE.parents[1]  # what pytest puts on sys.path for this package (rootdir-less import)
MODULE = f"{HERE.parent.name}.{HERE.stem}"
ADD_RIGHT = "def add(a, b):\n    return a + b\n"
SLOW_S = 1.0  # wall clock for the cases that must end in TIMEOUT
FAST_S = 10.0  # wall clock for the others: they end long before (robust to a loaded machine)
USERNS_LABEL = "bwrap-userns+seccomp+rlimits+nproc+tmpfs"
DELEGATED_LABEL = "bwrap-userns+seccomp+cgroup2+rlimits+nproc+tmpfs"
# What this mode gives, where it differs from the root mode: no memory cgroup (each process stays
# under RLIMIT_AS, so processes together are stopped by the clock) and no inode cap on bubblewrap's
# tmpfs (a million empty files take longer than the clock allows). Both run with the short clock.
USERNS_VERDICTS = {"B7-cgroup-oom": Verdict.TIMEOUT, "D14-many-small-files": Verdict.TIMEOUT}
FULL_SET = ("A1-infinite-loop", "A2-catch-base-exception", "A5-thousand-threads", "B6-huge-allocation",
            "B7-slow-leak", "B7-cgroup-oom", "C9-posix-fork-bomb", "C9-bash-bomb",
            "C9-multiprocessing-bomb", "C10-double-fork-daemon", "C11-system-spawn-exec",
            "C12-kill-parent-and-all", "D13-write-everywhere", "D14-one-huge-file", "D14-fill-scratch",
            "D14-many-small-files", "D15-overwrite-system", "E18-environment", "E19-host-files",
            "F22-exit-before-tests", "F23-always-equal", "G26-infinite-print", "G26-stderr-flood",
            "H29-internet-and-metadata", "H30-host-localhost-and-bind",
            "J35-keyring-locks-ipc-watch")  # fmt: skip
DELEGATED_SET = ("A1-infinite-loop", "B6-huge-allocation", "C9-posix-fork-bomb", "C10-double-fork-daemon",
                 "D14-fill-scratch", "G26-infinite-print", "H30-host-localhost-and-bind")  # fmt: skip
EXTRA: dict[str, tuple[str, str | None, Verdict]] = {
    "right-add": (ADD_RIGHT, ADD_TEST, Verdict.PASS),
    "wrong-add": (ADD_WRONG, ADD_TEST, Verdict.FAIL),
}


def expected(name: str) -> Verdict:
    if name in EXTRA:
        return EXTRA[name][2]
    return USERNS_VERDICTS.get(name, CASES[name].expect)


# ---------------------------------------------------------------------------------------- the child


def _processes_of(uid: int, allowed: set[int]) -> list[str]:
    """Processes of ``uid`` on the host besides ``allowed`` (the child itself, warm jails)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in allowed:
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(Path(f"/proc/{entry}/cmdline").read_bytes()[:60].decode(errors="replace"))
            except OSError:
                continue
    return found


def _stray(allowed: set[int]) -> list[str]:
    """What is left of a finished job after a grace period for the kernel's teardown."""
    deadline = time.monotonic() + 5.0
    while (left := _processes_of(os.getuid(), allowed | {os.getpid()})) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _outcome(runner: Any, name: str, directory: str, port: int, allowed: set[int]) -> dict[str, Any]:
    case = CASES.get(name)
    program, tests = (case.program, case.tests) if case is not None else EXTRA[name][:2]
    check, want_stdout = (case.check, case.stdout) if case is not None else (None, None)
    if name in USERNS_VERDICTS:  # its check is about the root mode's verdict
        check = None
    slow = expected(name) is Verdict.TIMEOUT  # the short clock only where the clock is the limit
    program = program.replace("{dir}", directory).replace("{port}", str(port))
    started = time.monotonic()
    result = runner.run(program, tests=tests, timeout_s=SLOW_S if slow else FAST_S)
    problem = None
    if check is not None:
        try:
            check(result)
        except AssertionError as err:
            problem = f"check failed: {err}"
    if want_stdout is not None and result.stdout != want_stdout:
        problem = f"stdout {result.stdout[:200]!r} != {want_stdout!r}"
    true_s = time.monotonic()
    subprocess.run(["/bin/true"], check=True, timeout=30)  # the host still forks at once
    return {
        "verdict": result.verdict.value,
        "reason": result.reason[:300],
        "problem": problem,
        "isolation": result.isolation,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "seconds": round(time.monotonic() - started, 3),
        "true_s": round(time.monotonic() - true_s, 3),
        "stray": _stray(allowed),
    }


def child_main(args: dict[str, Any]) -> dict[str, Any]:
    from prmforge.verifiers.sandbox import PythonSandbox, Sandbox, probe_isolation

    report = probe_isolation()
    limits = replace(LIMITS, wall_s=FAST_S)
    out: dict[str, Any] = {"uid": os.getuid(), "report": report.as_dict(), "fresh": {}, "pool": {}}
    box = PythonSandbox(limits)
    out["label"] = box.isolation
    for name in args["cases"]:
        out["fresh"][name] = _outcome(box, name, args["dir"], args["port"], set())
    compiled = Sandbox(limits).exec(
        ["gcc", "-O0", "hi.c", "-o", "hi"],
        files={"hi.c": b'#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'},
        collect=["hi"],
    )
    binary = (compiled.files or {}).get("hi", b"")
    ran = Sandbox(limits).exec(["./hi"], files={"hi": binary}) if binary else None
    out["c"] = {"compile": compiled.verdict.value, "run": ran.verdict.value if ran else None,
                "stdout": ran.stdout.decode(errors="replace") if ran else None}  # fmt: skip
    weaker = PythonSandbox(limits, isolation="rlimits-only", allow_weaker=True)
    done = weaker.run(ADD_RIGHT, tests=ADD_TEST)
    out["rlimits_only"] = [weaker.isolation, done.verdict.value, done.reason]
    try:
        _pool_part(out, args, limits)
    except Exception as err:  # reported, and the pool tests fail with it
        out["pool_error"] = f"{type(err).__name__}: {err}"
    out["stray_after_pool"] = _stray(set())
    return out


def _pool_part(out: dict[str, Any], args: dict[str, Any], limits: SandboxLimits) -> None:
    from prmforge.verifiers.sandbox import PythonSandboxPool

    with PythonSandboxPool(size=1, limits=limits) as pool:
        (jail,) = pool._all
        cgroup_path = getattr(jail.cgroup, "path", None)
        out["pool_cgroup"] = str(cgroup_path) if cgroup_path is not None else None
        out["pool_worker_cgroup"] = Path(f"/proc/{jail.worker_pid}/cgroup").read_text().strip()
        for name in args["pool_cases"]:
            allowed = {p for j in pool._all for p in (j.worker_pid, j.proc.pid if j.proc else -1)}
            out["pool"][name] = _outcome(pool, name, args["dir"], args["port"], allowed)
        canary = pool.run(CANARY, tests=CANARY_TESTS)
        out["pool_canary"] = [canary.verdict.value, canary.stdout.decode(errors="replace"), canary.reason]


# ---------------------------------------------------------------------------------------- the host


@dataclass
class Sentinels:
    directory: Path
    port: int
    connections: list[str]


@pytest.fixture(scope="module")
def sentinels() -> Iterator[Sentinels]:
    """A host directory the test user could read on the host (0755, a 0666 file) and a host port."""
    directory = Path(tempfile.mkdtemp(prefix="prmforge-unprivileged-sentinel-"))
    os.chmod(directory, 0o755)
    (directory / "sentinel.txt").write_text("sentinel")
    os.chmod(directory / "sentinel.txt", 0o666)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    record = Sentinels(directory, listener.getsockname()[1], [])

    def accept() -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            record.connections.append(str(peer))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield record
    listener.close()
    shutil.rmtree(directory)


def _user() -> tuple[int, int]:
    """The test user's uid and gid (created as a system user without a home when missing)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(USER)
        return entry.pw_uid, entry.pw_gid
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(USER)
    return entry.pw_uid, entry.pw_gid


@pytest.fixture(scope="module", autouse=True)
def _remove_user() -> Iterator[None]:
    """Afterwards: the test user and its run-directory base (rlimits-only) are removed."""
    yield
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            uid = pwd.getpwnam(USER).pw_uid
            shutil.rmtree(scratch.BASE.with_name(f"{scratch.BASE.name}-{uid}"), ignore_errors=True)
            subprocess.run(["userdel", USER], check=False, capture_output=True)


def _child_command(args: str, stage: Path) -> list[str]:
    """This module as a script, run from ``stage`` (a world-readable copy of what it imports) by an
    interpreter the test user may run: the venv's own if others may run it, else the system one of
    the same version."""
    python = sys.executable
    if os.geteuid() == 0 and not _readable_by_others(Path(sys.executable).resolve()):
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        system = shutil.which(version, path="/usr/bin:/bin")
        if system is None:
            pytest.fail(f"no {version} that user {USER} may run (the venv's interpreter is private)")
        python = system
    boot = (
        f"import runpy, sys; sys.path[:0] = [{str(stage)!r}, {str(stage / 'site')!r}]; "
        f"runpy.run_module({MODULE!r}, run_name='__main__', alter_sys=True)"
    )
    return [python, "-B", "-I", "-c", boot, "child", args]


_PROBE = (
    "import json, sys, sysconfig; sys.path.insert(0, sys.argv[1]); import pyseccomp, pytest; "
    "import prmforge.verifiers.sandbox.runner; "
    f"__import__({MODULE.rsplit('.', 1)[0] + '.hostile_cases'!r}); "
    "lib = sysconfig.get_paths()['purelib']; "
    "print(json.dumps(sorted({m.__file__[len(lib) + 1:].split('/')[0] for m in list(sys.modules.values()) "
    "if (getattr(m, '__file__', None) or '').startswith(lib + '/')})))"
)


def _stage(root: Path) -> Path:
    """A world-readable copy of what the child imports: the checkout (or its virtualenv) may sit in a
    folder only root can enter, as a clone in a private ``mktemp -d`` folder does. The prmforge
    package, this test package, and the third-party modules found by importing them once."""
    stage = root / "stage"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    package = Path(prmforge.__file__).resolve().parent
    shutil.copytree(package, stage / "prmforge", ignore=ignore)
    shutil.copytree(HERE.parent, stage / HERE.parent.name, ignore=ignore)
    found = subprocess.run(
        [sys.executable, "-c", _PROBE, str(IMPORT_ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    purelib = Path(sysconfig.get_paths()["purelib"])
    for name in json.loads(found.stdout.strip().splitlines()[-1]):
        if name.startswith("__editable__") or name.endswith(".pth"):
            continue  # the editable finder points into the checkout: the copy above replaces it
        source = purelib / name
        target = stage / "site" / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for path in (root, stage, *stage.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return stage


def _readable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in (path, *path.parents))


def _run_child(
    sentinels: Sentinels, cases: tuple[str, ...], pool_cases: tuple[str, ...], cgroup: Path | None
) -> dict[str, Any]:
    uid, gid = _user()
    args = json.dumps({"cases": list(cases), "pool_cases": list(pool_cases),
                       "dir": str(sentinels.directory), "port": sentinels.port})  # fmt: skip
    staging = Path(tempfile.mkdtemp(prefix="prmforge-unpriv-"))
    stage = _stage(staging)
    command = _child_command(args, stage)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8", **SECRET_ENV}
    if os.geteuid() == 0:
        ids = f"--reuid={uid} --regid={gid} --clear-groups"
        join = f'echo $$ > "{cgroup}/cgroup.procs" && ' if cgroup is not None else ""
        command = ["/bin/sh", "-c", f'{join}exec setpriv {ids} -- "$@"', "sh", *command]
    try:
        done = subprocess.run(command, cwd=stage, env=env, capture_output=True, timeout=600, check=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if done.returncode != 0:
        pytest.fail(f"child failed ({done.returncode}): {done.stderr.decode(errors='replace')[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    result["left_on_host"] = _processes_of(uid, set()) if uid != os.getuid() else []
    return result


@pytest.fixture(scope="module")
def unprivileged(sentinels: Sentinels) -> dict[str, Any]:
    names = (*FULL_SET, *EXTRA)
    pool = ("right-add", "wrong-add", "C9-posix-fork-bomb", "C10-double-fork-daemon", "G26-infinite-print")
    return _run_child(sentinels, names, pool, None)


@pytest.fixture(scope="module")
def delegated(sentinels: Sentinels) -> Iterator[dict[str, Any]]:
    """The same user, started in a cgroup v2 directory delegated to it (as systemd's Delegate=yes)."""
    mount = cgroup_v2.mount_point()
    if os.geteuid() != 0 or mount is None or not os.access(mount[0], os.W_OK):
        pytest.skip("needs root and a writable cgroup v2 hierarchy to delegate a subtree")
    uid, gid = _user()
    base = mount[0] / f"prmforge-test-deleg-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    base.mkdir()
    for item in (base, base / "cgroup.procs", base / "cgroup.subtree_control", base / "cgroup.threads"):
        os.chown(item, uid, gid)
    offered = (base / "cgroup.controllers").read_text().split()
    try:
        result = _run_child(sentinels, (*DELEGATED_SET, *EXTRA), ("right-add", "C9-posix-fork-bomb"), base)
        result["offered"] = [c for c in cgroup_v2.WANTED if c in offered]
        result["jails_left"] = sorted(p.name for p in (base / "prmforge-sandbox").iterdir() if p.is_dir())
        yield result
    finally:
        cgroup_v2.Cgroup2(base, ()).remove()


def test_label_names_the_userns_mode(unprivileged: dict[str, Any]) -> None:
    uid, _ = _user()
    assert unprivileged["uid"] == uid
    assert uid != 0
    assert unprivileged["label"] == USERNS_LABEL
    assert unprivileged["report"]["mode"] == "userns"
    assert {r["isolation"] for r in unprivileged["fresh"].values()} == {USERNS_LABEL}


@pytest.mark.parametrize("name", [*FULL_SET, *EXTRA])
def test_fresh_jail_verdicts(unprivileged: dict[str, Any], name: str) -> None:
    got = unprivileged["fresh"][name]
    assert (got["verdict"], got["problem"]) == (expected(name).value, None), got
    assert got["stray"] == [], f"processes left after {name}: {got['stray']}"
    assert got["true_s"] < 5.0, f"host slow to fork after {name}: {got['true_s']}s"


def test_pass_with_tests_reports_no_signal(unprivileged: dict[str, Any]) -> None:
    """§6: the harness stopping the program after the tests is not a signal of the sample."""
    right = unprivileged["fresh"]["right-add"]
    assert (right["verdict"], right["exit_code"], right["signal"]) == ("PASS", 0, None)
    spin = unprivileged["fresh"]["A1-infinite-loop"]
    # SIGKILL at the deadline; SIGXCPU when a loaded host's kill came after the CPU budget ran out
    assert spin["verdict"] == "TIMEOUT"
    assert spin["signal"] in (signal.SIGKILL, signal.SIGXCPU)


def test_warm_pool_verdicts_and_next_sample(unprivileged: dict[str, Any]) -> None:
    assert "pool_error" not in unprivileged, unprivileged["pool_error"]
    for name, got in unprivileged["pool"].items():
        assert (got["verdict"], got["problem"], got["stray"]) == (expected(name).value, None, []), (name, got)
    assert unprivileged["pool_canary"][:2] == ["PASS", "canary\n"], unprivileged["pool_canary"]
    assert unprivileged["stray_after_pool"] == []
    assert unprivileged["pool_cgroup"] is None


def test_c_compiles_and_runs_through_the_jails_own_tmpfs(unprivileged: dict[str, Any]) -> None:
    assert unprivileged["c"] == {"compile": "PASS", "run": "PASS", "stdout": "hi\n"}


def test_rlimits_only_runs_without_root(unprivileged: dict[str, Any]) -> None:
    """The explicit opt-in still works for a user who cannot own /tmp/prmforge-sandbox."""
    assert unprivileged["rlimits_only"][:2] == ["rlimits-only:rlimits", "PASS"], unprivileged["rlimits_only"]


def test_host_untouched(unprivileged: dict[str, Any], sentinels: Sentinels) -> None:
    assert unprivileged["left_on_host"] == []
    assert sorted(p.name for p in sentinels.directory.iterdir()) == ["sentinel.txt"]
    assert (sentinels.directory / "sentinel.txt").read_text() == "sentinel"
    assert sentinels.connections == []


def test_delegated_cgroup_v2_subtree(delegated: dict[str, Any]) -> None:
    assert "pool_error" not in delegated, delegated["pool_error"]
    # here the hierarchy offers no controller (kill only); where it offers pids and memory, the child,
    # alone in its delegated cgroup, moves into a leaf and enables them
    assert delegated["report"]["cgroup_v2_controllers"] == delegated["offered"]
    layers = "+".join(["cgroup2", *delegated["offered"]])
    assert delegated["label"] == DELEGATED_LABEL.replace("cgroup2", layers)
    for name, got in [*delegated["fresh"].items(), *delegated["pool"].items()]:
        assert (got["verdict"], got["problem"], got["stray"]) == (expected(name).value, None, []), (name, got)
    assert delegated["pool_canary"][:2] == ["PASS", "canary\n"]
    assert delegated["pool_cgroup"] is not None
    assert "/prmforge-sandbox/" in delegated["pool_cgroup"]
    worker = delegated["pool_worker_cgroup"].removeprefix("0::")
    assert worker.endswith("/worker")
    assert worker.split("/")[-2] == delegated["pool_cgroup"].split("/")[-1]
    assert delegated["jails_left"] == []
    assert delegated["left_on_host"] == []


# ---------------------------------------------------------------------------------------- pure parts


def _report(**fields: Any) -> IsolationReport:
    base: dict[str, Any] = {
        "bwrap": "/usr/bin/bwrap",
        "bwrap_version": "bubblewrap 0.8.0",
        "user_namespaces": True,
        "seccomp": "libseccomp BPF",
        "cgroup_controllers": (),
        "root": False,
        "jail_python": "/usr/bin/python3",
        "sandbox_uid": 65534,
        "problems": (),
    }
    return IsolationReport(**{**base, **fields})


def test_labels_say_what_each_mode_reached() -> None:
    v1 = _report(root=True, cgroup_controllers=("pids", "memory"))
    assert v1.layers == "bwrap+seccomp+pids+memory+rlimits+tmpfs+uid65534"
    assert v1.full
    v2 = _report(root=True, cgroup_v2="/sys/fs/cgroup", cgroup_v2_controllers=("pids", "memory"))
    assert v2.layers == "bwrap+seccomp+cgroup2+pids+memory+rlimits+tmpfs+uid65534"
    assert v2.full
    bare_root = _report(root=True)
    assert bare_root.layers == "bwrap+seccomp+rlimits+nproc+tmpfs+uid65534"
    assert not bare_root.full
    assert _report().layers == USERNS_LABEL
    assert _report().mode == "userns"
    kill_only = _report(cgroup_v2="/sys/fs/cgroup/user.slice/x", cgroup_v2_controllers=())
    assert kill_only.layers == DELEGATED_LABEL
    full_user = _report(cgroup_v2="/x", cgroup_v2_controllers=("pids", "memory"))
    assert full_user.layers == "bwrap-userns+seccomp+cgroup2+pids+memory+rlimits+nproc+tmpfs"
    assert isinstance(full_user.cgroup_backend(), cgroup_v2.V2Backend)
    assert json.dumps(full_user.as_dict())


def test_no_mode_fails_closed_naming_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _report(user_namespaces=False, seccomp=None)
    assert broken.mode is None
    assert broken.layers == "rlimits-only"
    monkeypatch.setattr(probe, "probe_isolation", lambda: broken)
    with pytest.raises(IsolationUnavailable) as caught:
        probe.require("bwrap", allow_weaker=False)
    assert "bwrap cannot create namespaces" in str(caught.value)
    assert "seccomp" in str(caught.value)
    assert probe.require("bwrap", allow_weaker=True) is broken  # the caller then runs rlimits-only
    monkeypatch.setattr(probe, "probe_isolation", _report)
    assert probe.require("bwrap", allow_weaker=False).mode == "userns"  # no opt-in needed for userns


def test_nproc_limit() -> None:
    limits = SandboxLimits(pids=20)
    assert "RLIMIT_NPROC" not in limits.rlimits()
    assert limits.rlimits(nproc_extra=2)["RLIMIT_NPROC"] == 22
    assert probe.nproc_extra(os.getuid(), per_userns=True) == 2
    mine = probe.nproc_extra(os.getuid(), per_userns=False)  # old kernels: all the uid's tasks count
    assert mine >= 3  # this process and at least the two the jail adds


def test_program_status_hides_only_the_harness_teardown() -> None:
    teardown = RawRun(nonce="n", statuses={"s": {"code": None, "signal": 9, "harness_killed": True}})
    assert program_status(teardown) == (None, None)  # killed while still running its top level
    served = replace(teardown, program_report={"phase": "program", "outcome": "completed"})
    assert program_status(served) == (0, None)  # as if it had read the end of the tests' requests
    exited = replace(served, statuses={"s": {"code": 0, "signal": None, "harness_killed": False}})
    assert program_status(exited) == (0, None)  # the other side of the same race
    assert program_status(replace(served, timed_out=True)) == (None, 9)
    crashed = RawRun(nonce="n", statuses={"s": {"code": None, "signal": 11, "harness_killed": False}})
    assert program_status(crashed) == (None, 11)
    assert program_status(RawRun(nonce="n", statuses={"s": {"code": "0", "signal": [9]}})) == (None, None)
    for statuses in ({"s": [1, 2]}, {"s": None}, [("s", {})], "s"):  # malformed facts never raise
        assert program_status(RawRun(nonce="n", statuses=statuses)) == (None, None)  # type: ignore[arg-type]
    forged = RawRun(nonce="n", statuses={"s": {"harness_killed": True}}, program_report=["completed"])  # type: ignore[arg-type]
    assert program_status(forged) == (None, None)


if __name__ == "__main__":
    print(json.dumps(child_main(json.loads(sys.argv[-1]))))
