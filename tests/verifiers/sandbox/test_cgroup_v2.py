"""The cgroup v2 backend.

On the real hierarchy (``/sys/fs/cgroup/unified`` here, whose only controller is hugetlb): creating
a jail cgroup, moving processes in, ``cgroup.kill`` killing them and their children (a daemon that
left the process tree included), removal, the sweep of a dead host's cgroups, and a whole jail run
through the v2 backend as root. The limit files (``pids.max``, ``memory.max``, ``memory.swap.max``),
controller enabling and the event counters cannot be exercised here: they are
checked against ``fake_cgroup2_dir``, a temporary directory shaped like a cgroup2 directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from prmforge.verifiers.sandbox import cgroup_v2
from prmforge.verifiers.sandbox.cgroup import PREFIX, CgroupError
from prmforge.verifiers.sandbox.cgroup_v2 import Cgroup2, V2Backend
from prmforge.verifiers.verdict import Verdict

from .conftest import LIMITS, require_full_isolation
from .hostile_cases import ADD_TEST, CASES

MiB = 1 << 20


def _cgroups_in(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir())


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


@pytest.fixture
def real_base() -> Iterator[Path]:
    """A fresh directory in the real cgroup v2 hierarchy, removed (with anything left) afterwards."""
    mount = cgroup_v2.mount_point()
    if mount is None or not os.access(mount[0], os.W_OK):
        pytest.skip("needs a writable cgroup v2 hierarchy (root, or a delegated one)")
    base = mount[0] / f"prmforge-test-v2-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    base.mkdir()
    yield base
    Cgroup2(base, ()).remove()


def _spawn_family(cg: Cgroup2) -> tuple[subprocess.Popen[bytes], list[int]]:
    """A shell moved into ``cg`` before it forks two children and a setsid'd daemon."""
    daemon = "setsid sh -c 'echo $$; exec sleep 300' &"
    script = f"read -r line; sleep 300 & echo $!; {daemon} sleep 300 & echo $!; wait"
    proc = subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cg.add(proc.pid)
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    kids = [int(proc.stdout.readline()) for _ in range(3)]
    return proc, kids


def test_create_move_kill_remove(real_base: Path) -> None:
    backend = cgroup_v2.prepare(real_base)
    assert backend.sandbox.is_dir()
    jail = backend.create_jail(os.geteuid())
    assert jail.path.parent == backend.sandbox
    assert jail.path.name.startswith(f"{os.getpid()}-")
    worker = jail.child("worker")
    proc, kids = _spawn_family(worker)
    assert worker.pids() == {proc.pid, *kids}
    for pid in kids:  # the daemon left the process tree, not the cgroup
        assert Path(f"/proc/{pid}/cgroup").read_text().strip().endswith(f"/{jail.path.name}/worker")
    assert jail.populated()
    jail.kill()  # on the jail: cgroup.kill reaches every cgroup below it
    assert proc.wait(timeout=10) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in kids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(_gone(pid) for pid in kids)
    assert not jail.populated()
    assert worker.pids() == set()
    jail.remove()
    assert not jail.path.exists()
    assert _cgroups_in(backend.sandbox) == []


def test_remove_kills_what_is_left(real_base: Path) -> None:
    backend = cgroup_v2.prepare(real_base)
    jail = backend.create_jail(os.geteuid())
    proc, _kids = _spawn_family(jail.child("job-0"))
    jail.remove()
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert not jail.path.exists()


def test_trial_passes_and_leaves_nothing(real_base: Path) -> None:
    backend = cgroup_v2.prepare(real_base)
    cgroup_v2.trial(backend)
    assert _cgroups_in(backend.sandbox) == []


def test_sweep_removes_a_dead_hosts_cgroups_only(real_base: Path) -> None:
    backend = cgroup_v2.prepare(real_base)
    dead = Cgroup2(backend.sandbox / "999999999-feedfacecafe", ())  # above pid_max: owner gone
    dead.path.mkdir()
    proc, _kids = _spawn_family(dead.child("job-0"))  # an orphan the dead host left running
    live = backend.create_jail(os.geteuid())  # ours: must stay
    live.child("worker")
    dead_leaf = real_base / f"{cgroup_v2.HOST_LEAF}999999999"
    dead_leaf.mkdir()
    removed = backend.sweep_stale()
    assert sorted(removed) == sorted([str(dead.path), str(dead_leaf)])
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert not dead.path.exists()
    assert not dead_leaf.exists()
    assert (live.path / "worker").is_dir()
    live.remove()


def test_not_writable_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="not a cgroup v2 directory"):
        cgroup_v2.prepare(tmp_path)


def test_a_jail_runs_on_the_v2_backend(real_base: Path) -> None:
    """The whole root-mode jail with its cgroups in cgroup v2: the host moves the gated launcher into
    ``worker`` and each job's processes into ``job-<n>``; a daemon dies with the job; nothing is left.
    No pids controller here, so RLIMIT_NPROC holds the fork bomb."""
    require_full_isolation()
    from prmforge.verifiers.sandbox.runner import jail_config, python_job, to_result
    from prmforge.verifiers.sandbox.worker import Jail

    backend = cgroup_v2.prepare(real_base)
    config = replace(jail_config("bwrap", allow_weaker=False), cgroups=backend, nproc=True)
    limits = replace(LIMITS, wall_s=10.0)
    jail = Jail(config, limits, oneshot=False)
    jail.start()
    jail_dirs = []
    try:
        verdicts = []
        for program, tests, wall in (
            ("def add(a, b):\n    return a + b\n", ADD_TEST, 10.0),
            (CASES["C10-double-fork-daemon"].program, None, 10.0),
            (CASES["C9-posix-fork-bomb"].program, None, 1.0),
        ):
            jail_cg, worker_cg = jail.cgroup, jail.worker_cgroup
            assert jail_cg is not None
            assert worker_cg is not None
            jail_dirs.append(jail_cg.paths["cgroup2"])
            monitor = {jail.worker_pid, jail.proc.pid if jail.proc else -1}
            assert worker_cg.pids() == monitor
            job = python_job(limits, program, tests, b"", wall)
            raw = jail.run(job)
            verdicts.append(to_result(job, raw, config.label).verdict)
            assert _cgroups_in(jail_cg.paths["cgroup2"]) == ["worker"]  # job-<n> removed
            if raw.lost:  # a timed-out job may cost the worker; the next one needs a fresh jail
                jail.close()
                jail = Jail(config, limits, oneshot=False)
                jail.start()
            else:
                assert worker_cg.pids() == monitor
        assert verdicts == [Verdict.PASS, Verdict.PASS, Verdict.TIMEOUT]
    finally:
        jail.close()
    assert not any(path.exists() for path in jail_dirs)
    assert _cgroups_in(backend.sandbox) == []


# ------------------------------------------------------------------ against a fake cgroup2 directory


@pytest.fixture
def fake_cgroup2_dir(tmp_path: Path) -> Path:
    """A plain directory shaped like a cgroup2 directory that offers pids, memory and cpu."""
    base = tmp_path / "fake-cgroup2"
    base.mkdir()
    (base / "cgroup.controllers").write_text("cpu memory pids\n")
    (base / "cgroup.subtree_control").write_text("\n")
    (base / "cgroup.procs").write_text("")
    return base


def test_fake_prepare_enables_only_the_wanted_controllers(fake_cgroup2_dir: Path) -> None:
    backend = cgroup_v2.prepare(fake_cgroup2_dir)
    assert backend.controllers == ("pids", "memory")
    assert (fake_cgroup2_dir / "cgroup.subtree_control").read_text() == "+pids +memory"
    assert (fake_cgroup2_dir / PREFIX / "cgroup.subtree_control").read_text() == "+pids +memory"


def test_fake_limits_are_written_to_the_kernel_files(fake_cgroup2_dir: Path) -> None:
    backend = cgroup_v2.prepare(fake_cgroup2_dir)
    jail = backend.create_jail(os.geteuid())
    assert (jail.path / "cgroup.subtree_control").read_text() == "+pids +memory"  # for its leaves
    jail.set_limits(pids=40, memory_bytes=640 * MiB)
    assert (jail.path / "pids.max").read_text() == "40"
    assert (jail.path / "memory.max").read_text() == str(640 * MiB)
    assert (jail.path / "memory.swap.max").read_text() == "0"
    job = jail.child("job-0")
    job.set_limits(pids=33, memory_bytes=384 * MiB)
    assert (job.path / "pids.max").read_text() == "33"
    assert (job.path / "memory.max").read_text() == str(384 * MiB)


def test_fake_only_offered_controllers_get_limits(fake_cgroup2_dir: Path) -> None:
    (fake_cgroup2_dir / "cgroup.controllers").write_text("pids\n")
    backend = cgroup_v2.prepare(fake_cgroup2_dir)
    assert backend.controllers == ("pids",)
    jail = backend.create_jail(os.geteuid())
    jail.set_limits(pids=12, memory_bytes=MiB)
    assert (jail.path / "pids.max").read_text() == "12"
    assert not (jail.path / "memory.max").exists()
    kill_only = V2Backend(fake_cgroup2_dir, ()).create_jail(os.geteuid())
    kill_only.set_limits(pids=12, memory_bytes=MiB)
    assert sorted(p.name for p in kill_only.path.iterdir()) == []


def test_fake_event_counters(fake_cgroup2_dir: Path) -> None:
    job = cgroup_v2.prepare(fake_cgroup2_dir).create_jail(os.geteuid()).child("job-3")
    assert (job.oom_kills(), job.pids_refused()) == (0, 0)  # files absent: nothing counted
    (job.path / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 3\noom_group_kill 1\n")
    (job.path / "pids.events").write_text("max 5\n")
    assert (job.oom_kills(), job.pids_refused()) == (3, 5)
    assert Cgroup2(job.path, ()).oom_kills() == 0  # without the memory controller: not counted


def test_mountinfo_and_own_cgroup_are_parsed(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 28 0:21 / /proc rw,nosuid - proc proc rw\n"
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    mount = cgroup_v2.mount_point(mountinfo)
    assert mount == (Path("/sys/fs/cgroup"), "/")
    own = tmp_path / "cgroup"
    own.write_text("0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope\n")
    expected = Path("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope")
    assert cgroup_v2.own_cgroup(mount, own) == expected
    hybrid = tmp_path / "hybrid"
    hybrid.write_text("12:pids:/\n1:name=systemd:/x\n0::/\n")
    assert cgroup_v2.own_cgroup((Path("/sys/fs/cgroup/unified"), "/"), hybrid) == Path(
        "/sys/fs/cgroup/unified"
    )
    assert cgroup_v2.own_cgroup((Path("/c"), "/a"), own) is None  # outside the mounted subtree


def test_configured_base_wins(monkeypatch: pytest.MonkeyPatch, fake_cgroup2_dir: Path) -> None:
    monkeypatch.setenv(cgroup_v2.ENV_BASE, str(fake_cgroup2_dir))
    assert cgroup_v2.candidates(root=False) == [fake_cgroup2_dir]
    assert cgroup_v2.candidates(root=True) == [fake_cgroup2_dir]


def test_find_backend_names_why_not(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cgroup_v2.ENV_BASE, str(tmp_path))
    backend, why = cgroup_v2.find_backend(root=False)
    assert backend is None
    assert why == f"{tmp_path} is not a cgroup v2 directory"


def test_leaving_a_busy_base_needs_to_be_alone(fake_cgroup2_dir: Path) -> None:
    (fake_cgroup2_dir / "cgroup.procs").write_text(f"{os.getpid()}\n1\n")
    assert cgroup_v2._leave(fake_cgroup2_dir) is False  # another process is there: stay
    assert not any(p.name.startswith(cgroup_v2.HOST_LEAF) for p in fake_cgroup2_dir.iterdir())
    (fake_cgroup2_dir / "cgroup.procs").write_text(f"{os.getpid()}\n")
    assert cgroup_v2._leave(fake_cgroup2_dir) is True
    leaf = fake_cgroup2_dir / f"{cgroup_v2.HOST_LEAF}{os.getpid()}"
    assert (leaf / "cgroup.procs").read_text() == str(os.getpid())
