"""The reaper of a local Ray started for one build: it kills that Ray's processes once the driver is gone.

Ray makes its head processes die with the driver (``PR_SET_PDEATHSIG``) and its workers follow the
raylet, but the raylet's agents (dashboard agent, runtime-env agent) first try to report the death to
the GCS, which is dead too, and linger for a minute. So the driver starts this script (``python -I``,
nothing of prmforge imported) with a pipe on its stdin and a session id, and sets
``PRMFORGE_RAY_SESSION=<id>`` in its environment only while ``ray.init`` starts the processes, so
exactly they and their descendants inherit it. When the pipe closes (the driver shut Ray down, or
died, even by SIGKILL) the reaper SIGKILLs every live process whose environment carries that id,
by pid, a few times over a short while (a worker being forked), then exits. It ignores Ctrl-C and
SIGTERM: the driver decides when it is done.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

SESSION_VAR = "PRMFORGE_RAY_SESSION"
ROUNDS, PAUSE_S = 5, 0.1


def tagged(session: str) -> list[int]:
    """Live processes (not zombies, not this one) whose environment carries ``SESSION_VAR=session``."""
    needle = f"{SESSION_VAR}={session}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if needle in environ.split(b"\0") and stat[stat.rindex(")") + 2] not in "ZX":
            found.append(int(entry.name))
    return found


def reap(session: str) -> int:
    """Kill the session's processes; returns how many were killed."""
    killed = 0
    for _ in range(ROUNDS):
        for pid in tagged(session):
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                continue
        time.sleep(PAUSE_S)
    return killed


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    session = sys.argv[1]
    while sys.stdin.buffer.read(4096):  # until the driver closes the pipe or dies
        continue
    reap(session)


if __name__ == "__main__":
    main()
