"""The reaper of a build's local Ray (runners/ray_reaper.py), on real processes; no Ray needed.

The case it exists for: Ray's agents rename themselves (``setproctitle`` writes over what
``/proc/PID/environ`` shows), so the session tag can vanish from a process that must still die. Here a
tagged process starts a child whose environment has no tag at all; the child is found as a
descendant while its parent lives, remembered, and killed after the parent is gone and it has been
reparented (no tagged ancestor any more).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from prmforge.pipelines.runners import ray_reaper
from prmforge.pipelines.runners.ray_reaper import SESSION_VAR

# The tagged parent starts an untagged child, prints its pid, and sleeps.
PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], env={})\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def gone(pid: int, within_s: float = 10.0) -> bool:
    """True once ``pid`` has exited (or is a zombie nobody reaps yet)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in "ZX":
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def session() -> Iterator[tuple[str, subprocess.Popen[bytes], int]]:
    """A tagged parent and its untagged child; both killed after the test whatever happened."""
    tag = uuid.uuid4().hex
    env = {**os.environ, SESSION_VAR: tag}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        yield tag, parent, child
    finally:
        for pid in (parent.pid, child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        parent.wait()


def test_the_family_is_the_tagged_processes_and_their_untagged_descendants(
    session: tuple[str, subprocess.Popen[bytes], int],
) -> None:
    tag, parent, child = session
    assert SESSION_VAR.encode() not in Path(f"/proc/{child}/environ").read_bytes()
    assert ray_reaper.tagged(tag) == sorted([parent.pid, child])
    assert ray_reaper.tagged(uuid.uuid4().hex) == []


def test_a_remembered_descendant_dies_after_its_tagged_parent_is_gone(
    session: tuple[str, subprocess.Popen[bytes], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tag, parent, child = session
    read_end, write_end = os.pipe()
    remembered: dict[int, int] = {}
    real, rounds, two_rounds = ray_reaper.family, [0], threading.Event()

    def counted(session: str) -> ray_reaper.Family:
        found = real(session)
        rounds[0] += 1
        if rounds[0] >= 2:
            two_rounds.set()
        return found

    monkeypatch.setattr(ray_reaper, "family", counted)
    watcher = threading.Thread(target=lambda: remembered.update(ray_reaper.watch(tag, read_end, 0.05)))
    watcher.start()
    try:
        assert two_rounds.wait(timeout=60)  # rounds of remembering while the parent lives (not a sleep)
        parent.kill()
        parent.wait()
        assert ray_reaper.tagged(tag) == []  # orphaned and untagged: no longer found by looking
        assert not gone(child, within_s=0.2)
    finally:
        os.close(write_end)  # the driver's end of the pipe: "the driver is gone"
        watcher.join()
        os.close(read_end)
    assert child in remembered
    assert ray_reaper.reap(tag, remembered, quiet_rounds=2) >= 1
    assert gone(child)


def test_a_remembered_pid_now_running_someone_else_is_not_killed() -> None:
    """A pid whose start time is not the remembered one belongs to another process: left alone."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = int(Path(f"/proc/{other.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        assert ray_reaper.reap(uuid.uuid4().hex, {other.pid: start + 1}, quiet_rounds=2) == 0
        assert other.poll() is None
        # at least one kill: a second round may find it not yet dead on a loaded machine and send another
        assert ray_reaper.reap(uuid.uuid4().hex, {other.pid: start}, quiet_rounds=2) >= 1
        assert other.wait(timeout=10) == -signal.SIGKILL
    finally:
        other.kill()
        other.wait()
