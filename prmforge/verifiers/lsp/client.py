"""One language-server process and its JSON-RPC plumbing over stdio.

:class:`LspConnection` starts the (jailed) server and runs three daemon
threads: a *reader* that decodes stdout and dispatches responses, server
requests and notifications; a *writer* that owns stdin; and a *drain* that
keeps the last few KiB of stderr. The caller never writes to the pipe itself,
so a server that stops reading its input (pyright saturating the CPU, opencode
PR #16114) makes a send time out instead of blocking the caller forever.

Every wait has a deadline. :class:`LspTimeoutError` means the server did not
answer in time, :class:`LspCrashedError` that it exited or broke the framing;
after either, the connection is dead and :meth:`LspConnection.kill` ends the
whole process group. Restarting is the caller's job (see
:class:`prmforge.verifiers.lsp.session.LanguageServer`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from prmforge.verifiers.lsp.framing import FrameDecoder, FrameError, encode_message
from prmforge.verifiers.lsp.servers import Isolation, ServerSpec, jail_command

__all__ = ["LspConnection", "LspCrashedError", "LspError", "LspResponseError", "LspTimeoutError"]

_STDERR_KEEP: Final = 8192
_READ_CHUNK: Final = 65536
_METHOD_NOT_FOUND: Final = -32601


class LspError(Exception):
    """Base of every failure of a language-server connection."""


class LspTimeoutError(LspError):
    """The server did not read a message or answer within the deadline."""


class LspCrashedError(LspError):
    """The server exited, closed a pipe or broke the framing."""


class LspResponseError(LspError):
    """The server answered a request with a JSON-RPC error object."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: error {code}: {message}")
        self.code = code


@dataclass(slots=True)
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    response: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Published:
    seq: int
    version: int | None
    diagnostics: list[Any]


class LspConnection:
    """A started, initialised language server (see the module docstring).

    ``start_timeout_s`` bounds the ``initialize`` handshake. Use as a context
    manager or call :meth:`close`.
    """

    def __init__(
        self,
        spec: ServerSpec,
        *,
        use_bwrap: bool = True,
        start_timeout_s: float = 30.0,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.spec = spec
        self.bytes_sent = 0
        self._host_dir = tempfile.mkdtemp(prefix="prmforge-lsp-")
        command = jail_command(spec, host_workspace=self._host_dir, use_bwrap=use_bwrap)
        self.isolation: Isolation = command.isolation
        self.workspace_uri = Path(command.workspace).as_uri()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._published: dict[str, _Published | None] = {}
        self._published_cond = threading.Condition(self._lock)
        self._seq = 0
        self._dead_reason: str | None = None
        self._stderr: deque[bytes] = deque()
        self._stderr_size = 0
        self._outbox: queue.Queue[tuple[bytes, threading.Event] | None] = queue.Queue()
        self._decoder = FrameDecoder(max_message_bytes)
        try:
            self._proc = subprocess.Popen(
                command.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(command.env),
                cwd="/" if command.uid is not None else self._host_dir,
                start_new_session=True,
                user=command.uid,
                group=command.uid,
                extra_groups=[] if command.uid is not None else None,
            )
        except OSError as err:
            shutil.rmtree(self._host_dir, ignore_errors=True)
            raise LspCrashedError(f"cannot start {spec.name}: {err}") from err
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"lsp-read-{self.pid}", daemon=True),
            threading.Thread(target=self._write_loop, name=f"lsp-write-{self.pid}", daemon=True),
            threading.Thread(target=self._drain_stderr, name=f"lsp-stderr-{self.pid}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            self._initialize(start_timeout_s)
        except LspError:
            self.kill()
            raise

    # ---- lifecycle -------------------------------------------------------

    @property
    def pid(self) -> int:
        """The pid of the outermost process we started (prlimit/bwrap or the server itself)."""
        return self._proc.pid

    @property
    def alive(self) -> bool:
        with self._lock:
            return self._dead_reason is None and self._proc.poll() is None

    @property
    def dead_reason(self) -> str | None:
        with self._lock:
            return self._dead_reason

    def stderr_tail(self) -> str:
        with self._lock:
            return b"".join(self._stderr).decode("utf-8", "replace")

    def _initialize(self, timeout_s: float) -> None:
        folder = {"uri": self.workspace_uri, "name": "workspace"}
        capabilities = {
            "textDocument": {
                "synchronization": {"dynamicRegistration": False, "didSave": False},
                "publishDiagnostics": {"versionSupport": True, "relatedInformation": False},
            },
            "workspace": {"configuration": True, "workspaceFolders": True},
            "window": {"workDoneProgress": False},
        }
        params = {
            "processId": None,  # the server may live in another pid namespace
            "clientInfo": {"name": "prmforge"},
            "rootUri": self.workspace_uri,
            "workspaceFolders": [folder],
            "capabilities": capabilities,
            "initializationOptions": dict(self.spec.initialization_options),
        }
        self.request("initialize", params, timeout_s)
        self.notify("initialized", {}, timeout_s)
        self.notify("workspace/didChangeConfiguration", {"settings": dict(self.spec.settings)}, timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Polite ``shutdown``/``exit`` if the server is alive, then :meth:`kill` whatever remains."""
        if self.alive:
            try:
                self.request("shutdown", None, timeout_s)
                self.notify("exit", None, timeout_s)
                self._proc.wait(timeout=timeout_s)
            except (LspError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the server's process group, stop the threads, remove the temporary directory."""
        self._mark_dead("killed by the client")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._outbox.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            _close_quietly(stream)
        shutil.rmtree(self._host_dir, ignore_errors=True)

    def __enter__(self) -> LspConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- messages ----------------------------------------------------------

    def request(self, method: str, params: Any, timeout_s: float) -> Any:
        """Send a request and wait for its result; raise an :class:`LspError` subclass on failure."""
        deadline = time.monotonic() + timeout_s
        request_id = next(self._ids)
        pending = _Pending()
        with self._lock:
            self._pending[request_id] = pending
        try:
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                message["params"] = params
            self._send(message, deadline)
            if not pending.done.wait(max(0.0, deadline - time.monotonic())):
                raise LspTimeoutError(f"{method}: no answer within {timeout_s:.1f}s")
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        response = pending.response
        if response is None:
            raise LspCrashedError(f"{method}: {self.dead_reason or 'connection closed'}")
        error = response.get("error")
        if isinstance(error, Mapping):
            raise LspResponseError(method, int(error.get("code", 0)), str(error.get("message", "")))
        return response.get("result")

    def notify(self, method: str, params: Any, timeout_s: float) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message, time.monotonic() + timeout_s)

    def open_document(self, uri: str, text: str, timeout_s: float) -> None:
        """``didOpen`` ``uri`` (version 1); its diagnostics are kept until :meth:`close_document`."""
        with self._lock:
            self._published[uri] = None
        document = {"uri": uri, "languageId": self.spec.language_id, "version": 1, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": document}, timeout_s)

    def close_document(self, uri: str, timeout_s: float) -> None:
        """``didClose`` ``uri`` and forget its diagnostics (later publications for it are ignored)."""
        with self._lock:
            self._published.pop(uri, None)
        self.notify("textDocument/didClose", {"textDocument": {"uri": uri}}, timeout_s)

    def wait_diagnostics(self, uri: str, timeout_s: float, *, version: int = 1) -> list[Any]:
        """The server's diagnostics for an open ``uri`` (the first publication not for an older version)."""
        deadline = time.monotonic() + timeout_s
        with self._published_cond:
            while True:
                published = self._published.get(uri)
                if published is not None and (published.version is None or published.version >= version):
                    return published.diagnostics
                if self._dead_reason is not None:
                    raise LspCrashedError(self._dead_reason)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LspTimeoutError(f"no diagnostics for {uri} v{version} within {timeout_s:.1f}s")
                self._published_cond.wait(remaining)

    def _send(self, message: Mapping[str, Any], deadline: float) -> None:
        data = encode_message(message)
        if self.dead_reason is not None:
            raise LspCrashedError(self.dead_reason)
        written = threading.Event()
        self._outbox.put((data, written))
        if not written.wait(max(0.0, deadline - time.monotonic())):
            raise LspTimeoutError(f"the server did not read {message.get('method', 'a reply')} in time")
        if self.dead_reason is not None:
            raise LspCrashedError(self.dead_reason)

    # ---- threads -------------------------------------------------------------

    def _mark_dead(self, reason: str) -> None:
        with self._published_cond:
            if self._dead_reason is None:
                self._dead_reason = reason
            pending = list(self._pending.values())
            self._published_cond.notify_all()
        for item in pending:
            item.done.set()

    def _write_loop(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        fd = stdin.fileno()
        while (item := self._outbox.get()) is not None:
            data, written = item
            view = memoryview(data)
            try:
                while view:  # raw writes: no buffer lock for kill() to wait on
                    view = view[os.write(fd, view) :]
                self.bytes_sent += len(data)
            except OSError as err:
                self._mark_dead(f"writing to the server failed: {err}")
            written.set()
        # drain: wake any sender still waiting after the connection died
        while True:
            try:
                leftover = self._outbox.get_nowait()
            except queue.Empty:
                return
            if leftover is not None:
                leftover[1].set()

    def _read_loop(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        fd = stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except OSError as err:
                self._mark_dead(f"reading from the server failed: {err}")
                return
            if not chunk:
                try:
                    code: int | None = self._proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    code = None
                self._mark_dead(f"the server exited with code {code}: {self.stderr_tail()[-300:]!r}")
                return
            try:
                messages = self._decoder.feed(chunk)
            except FrameError as err:
                self._mark_dead(f"bad framing from the server: {err}")
                return
            for message in messages:
                self._dispatch(message)

    def _drain_stderr(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        fd = stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._stderr.append(chunk)
                self._stderr_size += len(chunk)
                while self._stderr_size > _STDERR_KEEP and len(self._stderr) > 1:
                    self._stderr_size -= len(self._stderr.popleft())

    def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            request_id = message.get("id")
            with self._lock:
                pending = self._pending.get(request_id) if isinstance(request_id, int) else None
            if pending is not None:
                pending.response = message
                pending.done.set()
            return
        if "id" in message:
            self._outbox.put((encode_message(self._answer(message)), threading.Event()))
            return
        if method == "textDocument/publishDiagnostics":
            params = message.get("params") or {}
            uri = params.get("uri")
            version = params.get("version")
            diagnostics = params.get("diagnostics")
            if isinstance(uri, str) and isinstance(diagnostics, list):
                with self._published_cond:
                    if uri not in self._published:
                        return  # not a document we have open
                    self._seq += 1
                    self._published[uri] = _Published(
                        self._seq, version if isinstance(version, int) else None, diagnostics
                    )
                    self._published_cond.notify_all()

    def _answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The reply to a request the server sent us (configuration, capability registration, ...)."""
        method = request.get("method")
        params = request.get("params") or {}
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        if method == "workspace/configuration":
            items = params.get("items") if isinstance(params, Mapping) else None
            reply["result"] = [
                self.spec.section(item.get("section") if isinstance(item, Mapping) else None)
                for item in (items or [])
            ]
        elif method == "workspace/workspaceFolders":
            reply["result"] = [{"uri": self.workspace_uri, "name": "workspace"}]
        elif method in {
            "client/registerCapability",
            "client/unregisterCapability",
            "window/workDoneProgress/create",
            "window/showMessageRequest",
            "workspace/diagnostic/refresh",
        }:
            reply["result"] = None
        else:
            reply["error"] = {"code": _METHOD_NOT_FOUND, "message": f"unsupported method {method}"}
        return reply


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is None:
        return
    with contextlib.suppress(OSError):
        stream.close()
