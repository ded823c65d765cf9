"""One job's I/O on the host: fresh pipes, the control exchange, streaming capture and the deadline.

Every job gets new pipes (stdin, stdout, stderr, the program's report, and for Python the program
source, the tests and the tests report), handed to the worker with SCM_RIGHTS: a sample can never
leave state (flags, buffered data) in the next job's descriptors. The host writes the inputs and
reads the outputs while the job runs, keeping at most ``cap`` bytes per stream; one byte more kills
the job. The wall clock starts when the job's processes leave their gate.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from prmforge.verifiers.sandbox import codec, reports
from prmforge.verifiers.sandbox.limits import SandboxError, SandboxLimits

START_TIMEOUT_S: Final = 20.0
KILL_GRACE_S: Final = 3.0
REPORT_CAP: Final = 1 << 20
CHUNK: Final = 1 << 16


class JailLost(SandboxError, RuntimeError):
    """The worker died, hung or broke the protocol."""


@dataclass(frozen=True, slots=True)
class Job:
    kind: Literal["exec", "python"]
    limits: SandboxLimits
    stdin: bytes = b""
    argv: tuple[str, ...] = ()
    program: bytes = b""
    tests: bytes | None = None
    entry_points: tuple[str, ...] = ()  # Python: the program's names under test (may shadow builtins)


@dataclass(slots=True)
class RawRun:
    """Facts about one job, gathered outside the sample; ``outcome.derive`` turns them into a verdict."""

    nonce: str
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    program_report: dict[str, Any] | None = None
    tests_report: dict[str, Any] | None = None
    timed_out: bool = False
    output_overflow: bool = False
    scratch_full: bool = False
    oom_kills: int = 0
    pids_refused: int = 0
    seconds: float = 0.0
    started: bool = False
    lost: str | None = None
    leaked: int = 0
    files: dict[str, bytes] | None = None
    held_open: tuple[str, ...] = ()
    sockets_left: int = 0
    cleaning: bool = False


class Capture:
    """At most ``cap`` bytes of a stream, and whether more came."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.over = False

    def feed(self, chunk: bytes) -> bool:
        room = self.cap - len(self.data)
        self.data += chunk[: max(room, 0)]
        if len(chunk) > room:
            self.over = True
        return self.over

    def report(self) -> dict[str, Any] | None:
        """The buffer as exactly one frame holding a JSON object, else None (absent or garbled)."""
        if self.over or not self.data:
            return None
        try:
            value = codec.split_frame(self.data, self.cap)
        except codec.WireError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(slots=True)
class Pipes:
    names: list[str] = field(default_factory=list)
    jail_fds: list[int] = field(default_factory=list)
    readers: dict[str, int] = field(default_factory=dict)
    writers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    host_fds: list[int] = field(default_factory=list)

    def add(self, name: str, into_jail: bytes | None) -> None:
        r, w = os.pipe2(os.O_CLOEXEC)
        self.names.append(name)
        if into_jail is None:
            self.jail_fds.append(w)
            self.readers[name] = r
            self.host_fds.append(r)
        else:
            self.jail_fds.append(r)
            self.writers[name] = (w, into_jail)
            self.host_fds.append(w)

    def close_jail_side(self) -> None:
        for fd in self.jail_fds:
            os.close(fd)
        self.jail_fds.clear()

    def close(self) -> None:
        self.close_jail_side()
        for fd in self.host_fds:
            try:
                os.close(fd)
            except OSError:
                continue
        self.host_fds.clear()


def request_clean(sock: socket.socket, *, ask: bool, timeout_s: float = START_TIMEOUT_S) -> str | None:
    """Have a pool worker empty its scratch areas after a job: ``ask`` it (after an exec job, once
    the host collected its files), or only wait for its "cleaned" (after a Python job it cleans
    unasked). None when it did; otherwise what went wrong (the worker must then be retired)."""
    try:
        sock.settimeout(timeout_s)
        if ask:
            codec.send_msg(sock, {"cmd": "clean"})
        reply, _ = codec.recv_msg(sock)
    except (OSError, EOFError, codec.WireError) as err:
        return f"clean failed: {type(err).__name__}: {err}"
    finally:
        sock.settimeout(None)
    if not isinstance(reply, dict) or reply.get("event") != "cleaned":
        return f"unexpected reply to clean: {reply!r}"[:300]
    if reply.get("ok") is not True:
        return f"worker could not clean: {reply.get('error')!r}"[:2000]
    return None


def make_pipes(job: Job, nonce: str) -> Pipes:
    pipes = Pipes()
    pipes.add("stdin", job.stdin)
    pipes.add("stdout", None)
    pipes.add("stderr", None)
    pipes.add("sreport", None)
    if job.kind == "python":
        pipes.add("prog", job.program)
        if job.tests is not None:
            source = job.tests.decode("utf-8", errors="surrogateescape")
            payload: dict[str, object] = {"nonce": nonce, "source": source}
            if job.entry_points:
                payload["entry_points"] = list(job.entry_points)
            pipes.add("tests", codec.frame_bytes(payload))
            pipes.add("treport", None)
    return pipes


class JobDriver:
    """The select loop of one job. ``adopt`` moves the forked processes into the job cgroup;
    ``kill`` kills that cgroup (deadline, output cap)."""

    def __init__(
        self,
        sock: socket.socket,
        job: Job,
        raw: RawRun,
        pipes: Pipes,
        adopt: Callable[[dict[str, Any]], None],
        kill: Callable[[], None],
    ) -> None:
        self.sock, self.job, self.raw, self.pipes = sock, job, raw, pipes
        self.adopt, self.kill_job = adopt, kill
        cap = job.limits.output_bytes
        self.captures = {"stdout": Capture(cap), "stderr": Capture(cap), "sreport": Capture(REPORT_CAP),
                         "treport": Capture(REPORT_CAP)}  # fmt: skip
        self.pending: dict[int, memoryview] = {}
        self.open_readers = dict(pipes.readers)
        self.sel = selectors.DefaultSelector()
        self.deadline = time.monotonic() + START_TIMEOUT_S
        self.killed = False
        self.done: dict[str, Any] | None = None
        self.started = 0.0

    def run(self) -> None:
        self.sel.register(self.sock, selectors.EVENT_READ, "ctl")
        for name, fd in self.pipes.readers.items():
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, name)
        for fd, data in self.pipes.writers.values():
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_WRITE, "write")
            self.pending[fd] = memoryview(data)
        try:
            while self.done is None or self.open_readers:
                self._step()
        finally:
            self.sel.close()
        self._finish()

    def _step(self) -> None:
        timeout = self.deadline - time.monotonic()
        events = self.sel.select(timeout) if timeout > 0 else []
        if time.monotonic() >= self.deadline:  # checked even while a chatty job keeps events coming
            if self.raw.started and not self.killed and self.done is None:
                self.raw.timed_out = True
                self._kill()
                return
            raise JailLost(
                "worker unresponsive" if self.done is None else "output pipes held open after the job"
            )
        for key, _ in events:
            if key.data == "ctl":
                self._on_ctl()
            elif key.data == "write":
                self._on_write(key.fd)
            elif key.data in self.open_readers:  # not drained and closed by a "done" in this batch
                self._on_read(key.data, key.fd)

    def _kill(self) -> None:
        if not self.killed:
            self.kill_job()
        self.killed = True
        self.deadline = time.monotonic() + KILL_GRACE_S

    def _on_ctl(self) -> None:
        received, _ = codec.recv_msg(self.sock)
        try:  # the worker is trusted: a malformed message means the harness broke
            message = reports.control_message(received)
        except reports.Malformed as err:
            raise JailLost(str(err)) from None
        event = message.get("event")
        if event == "forked" and not self.raw.started:
            self.adopt(message)
            codec.send_msg(self.sock, {"cmd": "go"})
            self.raw.started = True
            self.started = time.monotonic()
            self.deadline = self.started + self.job.limits.wall_s
        elif event == "done" and self.raw.started:
            self.done = message
            self.raw.seconds = time.monotonic() - self.started
            self.sel.unregister(self.sock)
            self.deadline = time.monotonic() + KILL_GRACE_S
            if message.get("reaped") is True:
                self._drain()
        else:
            raise JailLost(f"unexpected control message {message!r}")

    def _drain(self) -> None:
        """Every process of the job is dead: read what the pipes hold and stop waiting for an end of
        file that only a dead SCM_RIGHTS cycle could still prevent."""
        for name, fd in list(self.open_readers.items()):
            while name in self.open_readers:
                try:
                    self._on_read(name, fd)
                except BlockingIOError:
                    self.sel.unregister(fd)
                    del self.open_readers[name]
                    self.raw.held_open += (name,)

    def _on_write(self, fd: int) -> None:
        view = self.pending[fd]
        try:
            view = view[os.write(fd, view[:CHUNK]) :]
        except (BrokenPipeError, BlockingIOError):
            view = memoryview(b"")
        self.pending[fd] = view
        if not view:
            self.sel.unregister(fd)
            del self.pending[fd]
            os.close(fd)
            self.pipes.host_fds.remove(fd)

    def _on_read(self, name: str, fd: int) -> None:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            self.sel.unregister(fd)
            del self.open_readers[name]
        elif self.captures[name].feed(chunk) and name in ("stdout", "stderr"):
            self.raw.output_overflow = True
            self._kill()

    def _finish(self) -> None:
        assert self.done is not None
        raw, out, err = self.raw, self.captures["stdout"], self.captures["stderr"]
        raw.stdout, raw.stderr = bytes(out.data), bytes(err.data)
        raw.stdout_truncated, raw.stderr_truncated = out.over, err.over
        raw.statuses = self.done.get("status", {})
        raw.scratch_full = bool(self.done.get("scratch_full"))
        left = self.done.get("sockets")
        raw.sockets_left = left if type(left) is int else 0
        raw.cleaning = self.done.get("cleaning") is True
        raw.program_report = self.captures["sreport"].report()
        raw.tests_report = self.captures["treport"].report()
