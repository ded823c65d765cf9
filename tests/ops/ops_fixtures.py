"""Helpers of the registry and scheduler tests (their fixtures are in conftest.py): polling, small build
configurations, and a real PostgreSQL server started in a temporary folder."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from prmforge.ops.registry import Registry
from prmforge.ops.registry_schema import BuildInfo

PG_BIN = Path("/usr/lib/postgresql/15/bin")
WAIT_S = 120.0  # a bound on waiting for something to happen; never a timing expectation


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def write_config(path: Path, count: int = 3, shard_size: int = 16, **extra: Any) -> Path:
    """A small build of ``count`` arithmetic problems, in this process (workers 0)."""
    data: dict[str, Any] = {
        "name": path.stem,
        "seed": 5,
        "inputs": [{"kind": "arith", "count": count, "min_steps": 2, "max_steps": 5}],
        "generate": {"rollouts_per_problem": 2},
        "annotate": [{"kind": "mc", "n": 4}],
        "runner": {"workers": 0, "shard_size": shard_size},
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def builds_of(registry: Registry, schedule: str | None = None) -> list[BuildInfo]:
    """Every build (of ``schedule``), oldest first."""
    return sorted(registry.list(limit=None, schedule=schedule), key=lambda b: b.id)


def kill_if_running(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# -- PostgreSQL ------------------------------------------------------------------------------------


PORT_TRIES = 5  # starts on fresh ports, each after the last one's port turned out to be taken


@dataclass(slots=True)
class PostgresServer:
    """A PostgreSQL server of our own, in ``root`` (see :func:`postgres`). :meth:`start` may move it to
    another port (``port`` changes), so URLs are taken from :meth:`url` after it."""

    root: Path
    port: int
    as_user: tuple[str, ...]
    user: str = "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.as_user, str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args],
                              capture_output=True, text=True)  # fmt: skip

    def _fail(self, args: tuple[str, ...], done: subprocess.CompletedProcess[str]) -> NoReturn:
        server_log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        pytest.fail(f"pg_ctl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}\n{server_log}")

    def ctl(self, *args: str) -> None:
        done = self._pg_ctl(*args)
        if done.returncode != 0:
            self._fail(args, done)

    def start(self) -> None:
        """Start on ``port``; where another process holds it (the port was free when chosen, but nothing
        reserves it), on a fresh free port instead, up to :data:`PORT_TRIES` times."""
        for attempt in range(1 + PORT_TRIES):
            logged = self.log.stat().st_size if self.log.exists() else 0
            # lc_messages=C: the server's own messages in English, for the port check below
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c lc_messages=C"
            )
            args = ("-l", str(self.log), "-o", options, "-w", "-t", "120", "start")
            done = self._pg_ctl(*args)
            if done.returncode == 0:
                return
            if attempt == PORT_TRIES or not self._logged_since(logged, b"Address already in use"):
                self._fail(args, done)
            self.port = _free_port()

    def _logged_since(self, offset: int, text: bytes) -> bool:
        if not self.log.exists():
            return False
        with self.log.open("rb") as log:
            log.seek(offset)
            return text in log.read()

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "-w", "stop")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server: initdb into a new temporary folder, started on a free loopback port with its
    unix socket in that folder; stopped and removed afterwards. As root, the server runs as the
    ``postgres`` user (PostgreSQL refuses root), which owns the folder."""
    if not (PG_BIN / "initdb").is_file():
        pytest.skip(f"the PostgreSQL server binaries are not installed ({PG_BIN})")
    root = Path(tempfile.mkdtemp(prefix="prmforge-pg-"))
    as_user: tuple[str, ...] = ()
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no `postgres` user to run the server as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ("runuser", "-u", "postgres", "--")
    server = PostgresServer(root, _free_port(), as_user)
    try:
        initdb = [
            str(PG_BIN / "initdb"),
            "-D",
            str(server.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]
        done = subprocess.run([*as_user, *initdb, "--no-sync"], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"initdb failed ({done.returncode}):\n{done.stderr}")
        server.start()
        yield server
    finally:
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(server.data), "-m", "fast", "-w", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
