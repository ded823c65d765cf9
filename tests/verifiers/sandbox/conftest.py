"""Fixtures for the hostile-input suite: real jails, host sentinels, leak checks.

The suite needs full isolation (bubblewrap, seccomp, cgroups, root). Where it is missing the tests
FAIL with a pointer to scripts/install-system-deps.sh: CI installs it, so a skip would hide a gap.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from prmforge.verifiers.sandbox import (
    PythonSandbox,
    PythonSandboxPool,
    SandboxLimits,
    SandboxResult,
    probe_isolation,
    scratch,
)
from prmforge.verifiers.sandbox import cgroup as cg
from prmforge.verifiers.verdict import Verdict

MiB = 1 << 20
LIMITS = SandboxLimits(
    wall_s=1.5,
    address_space_bytes=256 * MiB,
    memory_bytes=384 * MiB,
    file_size_bytes=4 * MiB,
    scratch_bytes=16 * MiB,
    scratch_inodes=512,
    output_bytes=16 * 1024,
    pids=32,
)
LIVE_POOLS: list[PythonSandboxPool] = []
# The suite runs as root: cgroup v1 or v2 pids and memory, a uid switch (probe.py names the modes).
FULL_ROOT_MODE = re.compile(r"bwrap\+seccomp\+(?:cgroup2\+)?pids\+memory\+rlimits\+tmpfs\+uid65534$")
SECRET_ENV = {"PRMFORGE_SENTINEL_SECRET": "s3cret-env", "HF_TOKEN": "hf_sentinel", "DATABASE_URL": "pg://x"}

CANARY = """
import os
assert sorted(os.listdir('/tmp')) == [], os.listdir('/tmp')
assert sorted(os.listdir('/dev/shm')) == [], os.listdir('/dev/shm')
assert sorted(os.listdir('.')) == [], os.listdir('.')
allowed = {'PATH', 'LANG', 'PYTHONHASHSEED', 'HOME', 'TMPDIR', 'PWD', 'LC_CTYPE'}
assert set(os.environ) <= allowed, dict(os.environ)
def ok(x):
    return x + 1
print('canary')
"""
CANARY_TESTS = "assert ok(1) == 2\n"


def require_full_isolation() -> None:
    report = probe_isolation()
    if not report.full:
        pytest.fail(
            "the sandbox suite needs full isolation; missing: "
            + "; ".join(report.missing)
            + ". Run `sudo scripts/install-system-deps.sh` and `.venv/bin/pip install pyseccomp`.",
            pytrace=False,
        )


class Runner(Protocol):
    def run(
        self, program: str, *, tests: str | None = None, stdin: bytes = b"", timeout_s: float | None = None
    ) -> SandboxResult: ...


@dataclass
class Host:
    """What must stay untouched on the host: a file, environment variables, a listening port."""

    directory: Path
    sentinel: Path
    port: int
    connections: list[str] = field(default_factory=list)

    def assert_untouched(self) -> None:
        assert self.sentinel.read_text() == "sentinel", "host sentinel file modified"
        assert sorted(p.name for p in self.directory.iterdir()) == ["sentinel.txt"], "host dir modified"
        for key, value in SECRET_ENV.items():
            assert os.environ.get(key) == value
        assert self.connections == [], f"host port {self.port} was reached: {self.connections}"


@pytest.fixture(scope="session")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    require_full_isolation()
    directory = tmp_path_factory.mktemp("host-sentinel")
    os.chmod(directory, 0o755)
    sentinel = directory / "sentinel.txt"
    sentinel.write_text("sentinel")
    os.chmod(sentinel, 0o666)  # even world-writable: the jail must not see it at all
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    record = Host(directory=directory, sentinel=sentinel, port=listener.getsockname()[1])

    def accept() -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            record.connections.append(str(peer))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    saved = {k: os.environ.get(k) for k in SECRET_ENV}
    os.environ.update(SECRET_ENV)
    yield record
    listener.close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def pool(host: Host) -> Iterator[PythonSandboxPool]:
    with PythonSandboxPool(size=2, limits=LIMITS) as warm:
        LIVE_POOLS.append(warm)
        yield warm
        LIVE_POOLS.remove(warm)


@pytest.fixture(scope="session")
def fresh(host: Host) -> PythonSandbox:
    return PythonSandbox(LIMITS)


@pytest.fixture(params=["fresh", "pool"])
def backend(request: pytest.FixtureRequest, host: Host) -> Iterator[Runner]:
    runner: Runner = request.getfixturevalue(request.param)
    before = descendants(os.getpid())
    yield runner
    host.assert_untouched()
    assert_no_leftovers(before)
    canary = runner.run(CANARY, tests=CANARY_TESTS)
    assert canary.verdict is Verdict.PASS, (canary.reason, canary.stderr)
    assert canary.stdout == b"canary\n"


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def assert_no_leftovers(before: Set[int] = frozenset()) -> None:
    """No process, cgroup, mount or run directory of ours beyond the warm pools' own jails.

    ``before``: this process's descendants before the case ran (other tests in the same
    pytest worker may have started long-lived helpers, such as multiprocessing's resource tracker).
    """
    jails = [jail for pool in LIVE_POOLS for jail in pool._all]
    allowed = {p for j in jails for p in (j.worker_pid, j.proc.pid if j.proc else -1)}
    stray = descendants(os.getpid()) - allowed - before
    assert not stray, (
        f"processes left behind: {[Path(f'/proc/{p}/cmdline').read_bytes()[:80] for p in stray]}"
    )
    mine = f"{os.getpid()}-"
    pool_names = {j.cgroup.paths["pids"].name for j in jails if j.cgroup is not None}
    bases = [cg.ROOT / ctrl / cg.PREFIX for ctrl in cg.available_controllers()]
    if (v2 := probe_isolation().cgroup_v2) is not None:  # a cgroup v2 host (or a delegated subtree)
        bases.append(Path(v2) / cg.PREFIX)
    for base in bases:
        ours = (
            {p.name for p in base.iterdir() if p.is_dir() and p.name.startswith(mine)}
            if base.exists()
            else set()
        )
        assert ours <= pool_names, f"cgroups left behind: {ours - pool_names}"
        for name in ours:
            assert sorted(p.name for p in (base / name).iterdir() if p.is_dir()) == ["worker"]
    runs = (
        {p.name for p in scratch.BASE.iterdir() if p.name.startswith(mine)}
        if scratch.BASE.exists()
        else set()
    )
    pool_runs = {j.scratch.root.name for j in jails if j.scratch is not None}
    assert runs <= pool_runs, f"run directories left behind: {runs - pool_runs}"
    mounts = [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if f"/{cg.PREFIX}/{mine}" in line
    ]
    assert len(mounts) == len(pool_runs), f"mounts left behind: {mounts}"
