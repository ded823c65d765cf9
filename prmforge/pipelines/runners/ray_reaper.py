"""The reaper of a local Ray started for one build: it kills that Ray's processes once the driver is gone.

Ray makes its head processes die with the driver (``PR_SET_PDEATHSIG``) and its workers follow the
raylet, but the raylet's agents (dashboard agent, runtime-env agent) first try to report the death to
the GCS, which is dead too, and linger for a minute. So the driver starts this script (``python -I``,
nothing of prmforge imported) with a pipe on its stdin and a session id, and sets
``PRMFORGE_RAY_SESSION=<id>`` in its environment only while ``ray.init`` starts the processes, so
exactly they and their descendants inherit it.

An environment is not a reliable mark on its own: Ray's agents rename themselves with
``setproctitle``, which writes the new title over the memory ``/proc/PID/environ`` shows, so the tag
may vanish from it. So while the driver lives the reaper also remembers, every ``WATCH_S``, the
*family*: the tagged processes and all their descendants, each by pid and start time (a pid the
kernel reuses for someone else's process is never killed). When the pipe closes (the driver shut
Ray down, or died, even by SIGKILL) it SIGKILLs the family it remembers and every process now
tagged or descended from one, round after round until ``QUIET_ROUNDS`` rounds in a row found none
(a worker being forked, a machine so loaded the head is slow to go), at most ``MAX_S``, then exits.
It ignores Ctrl-C and SIGTERM: the driver decides when it is done.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

SESSION_VAR = "PRMFORGE_RAY_SESSION"
WATCH_S = 2.0  # how often the family is remembered while the driver lives (a /proc scan; 0.5 s cost 1%)
PAUSE_S = 0.1  # between rounds of killing
QUIET_ROUNDS = 10  # rounds in a row that found nothing: done
MAX_S = 60.0  # the agents Ray leaves behind give up by themselves after about a minute

Family = dict[int, int]  # pid -> start time (clock ticks since boot, field 22 of /proc/PID/stat)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return int(fields[1]), int(fields[19]), fields[0]


def _tagged_env(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def family(session: str) -> Family:
    """Live processes (not zombies, not this one) whose environment carries ``SESSION_VAR=session``,
    and every live descendant of one of them."""
    needle = f"{SESSION_VAR}={session}".encode()
    procs: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            info = _stat(int(entry.name))
            if info is not None:
                procs[int(entry.name)] = info
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found: Family = {}
    stack = [pid for pid in procs if _tagged_env(pid, needle)]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found[pid] = procs[pid][1]
        stack.extend(children.get(pid, ()))
    return {pid: start for pid, start in found.items() if procs[pid][2] not in "ZX"}


def tagged(session: str) -> list[int]:
    """The pids of :func:`family`, sorted."""
    return sorted(family(session))


def _alive(remembered: Family) -> Family:
    """Those remembered processes still running as themselves (same start time, not a zombie)."""
    alive: Family = {}
    for pid, start in remembered.items():
        info = _stat(pid)
        if info is not None and info[1] == start and info[2] not in "ZX":
            alive[pid] = start
    return alive


def reap(
    session: str,
    remembered: Family | None = None,
    *,
    quiet_rounds: int = QUIET_ROUNDS,
    max_s: float = MAX_S,
) -> int:
    """Kill the session's family (and what was remembered of it) until ``quiet_rounds`` rounds in a
    row find none, or ``max_s`` has passed; returns how many kills were sent."""
    remembered = dict(remembered or {})
    killed = quiet = 0
    deadline = time.monotonic() + max_s
    while quiet < quiet_rounds and time.monotonic() < deadline:
        found = {**_alive(remembered), **family(session)}
        remembered.update(found)
        quiet = 0 if found else quiet + 1
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                continue
        time.sleep(PAUSE_S)
    return killed


def watch(session: str, fd: int, every_s: float = WATCH_S) -> Family:
    """Until ``fd`` reaches end of file: remember the session's family every ``every_s``."""
    remembered: Family = {}
    while True:
        readable, _, _ = select.select([fd], [], [], every_s)
        if readable and not os.read(fd, 4096):
            return remembered
        remembered = {**_alive(remembered), **family(session)}


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    session = sys.argv[1]
    remembered = watch(session, sys.stdin.fileno())
    reap(session, remembered)


if __name__ == "__main__":
    main()
