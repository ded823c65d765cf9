"""Test servers for the HTTP engine, all on 127.0.0.1: a real ``transformers serve`` and a fault proxy.

- :func:`start_transformers_serve` runs ``transformers serve <model dir>`` as a
  subprocess (offline, CPU, on a port the kernel picks as it binds) and waits on
  ``GET /health``; :class:`ServeProcess` stops it (terminate, then kill).
- :class:`FaultProxy` is a reverse proxy on an asyncio loop in a thread. Each
  request it receives is answered by the :data:`Plan`'s action for it (by
  arrival number and JSON body): forward and pass the answer through
  (:class:`Pass`, optionally after a delay), answer itself (:class:`Reply`:
  a status, a ``Retry-After``, any body, without forwarding), hang without
  answering (:class:`Hang`), or forward and send the headers and half the body
  before closing the connection (:class:`Truncate`). It records every exchange
  (:class:`Exchange`: the body and headers received, whether it was forwarded,
  the upstream answer, whether the answer was delivered), the most requests in
  flight at once, and it can hold back answers beyond a number delivered
  (:meth:`FaultProxy.hold_after`) until :meth:`FaultProxy.release`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "Exchange",
    "FaultProxy",
    "Hang",
    "Pass",
    "Plan",
    "Reply",
    "ServeProcess",
    "Truncate",
    "completion_body",
    "free_port",
    "proxy_to",
    "scripted",
    "start_transformers_serve",
    "wait_until",
]


@dataclass(frozen=True, slots=True)
class Pass:
    """Forward upstream; answer with its response after ``delay_s``."""

    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer ``status`` with ``body`` without forwarding (``retry_after``: the header's value)."""

    status: int
    body: bytes = b""
    retry_after: str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Hang:
    """Read the request, answer nothing for ``seconds``, then close the connection."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Truncate:
    """Forward upstream; send its status, headers (the full Content-Length) and half its body, then close."""


Action = Pass | Reply | Hang | Truncate
Plan = Callable[[int, dict[str, Any]], Action]
"""The action for the request that arrived ``number``-th (0-based) with this JSON body."""


def scripted(*actions: Action) -> Plan:
    """``actions`` for the first requests, in arrival order, then :class:`Pass` for the rest."""

    def plan(number: int, body: dict[str, Any]) -> Action:
        return actions[number] if number < len(actions) else Pass()

    return plan


@dataclass(slots=True)
class Exchange:
    number: int
    body: dict[str, Any]
    headers: dict[str, str]
    action: Action
    arrived_s: float
    forwarded: bool = False
    upstream_status: int | None = None
    upstream_body: bytes = b""
    delivered: bool = False

    @property
    def upstream_json(self) -> dict[str, Any]:
        return dict(json.loads(self.upstream_body))


def completion_body(
    texts: Sequence[str], *, prompt_tokens: int = 7, completion_tokens: int = 5, finish: str = "stop"
) -> bytes:
    """A valid ``/v1/completions`` response with ``texts`` as its choices."""
    choices = [{"index": i, "text": t, "finish_reason": finish} for i, t in enumerate(texts)]
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return json.dumps({"object": "text_completion", "choices": choices, "usage": usage}).encode()


def _response_head(status: int, headers: dict[str, str], length: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {length}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class FaultProxy:
    """A scripted reverse proxy to ``upstream`` (an origin such as ``http://127.0.0.1:8000``)."""

    def __init__(self, upstream: str | None, plan: Plan | None = None) -> None:
        self.upstream = upstream
        self.plan: Plan = plan or scripted()
        self.exchanges: list[Exchange] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._hold_after: int | None = None
        self._granted = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._gate: asyncio.Event | None = None
        self.port = 0

    # ----- control, from the test thread -----

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the fault proxy did not start")
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def hold_after(self, delivered: int) -> None:
        """Hold every answer beyond the first ``delivered`` (counted from now) until :meth:`release`."""
        with self._lock:
            self._granted = 0
            self._hold_after = delivered

    def release(self) -> None:
        with self._lock:
            self._hold_after = None
        self._loop.call_soon_threadsafe(self._open_gate)

    def delivered(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.delivered]

    def forwarded(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.forwarded]

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # ----- on the proxy's loop -----

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._open())
        self._ready.set()
        self._loop.run_forever()

    async def _open(self) -> None:
        self._gate = asyncio.Event()
        self._client = httpx.AsyncClient(base_url=self.upstream or "http://invalid", timeout=300)
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _open_gate(self) -> None:
        assert self._gate is not None
        self._gate.set()
        self._gate = asyncio.Event()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client hung up, or the proxy is stopping
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw) if raw else {}
        with self._lock:
            number = len(self.exchanges)
            action = self.plan(number, body)
            exchange = Exchange(number, body, headers, action, time.monotonic())
            self.exchanges.append(exchange)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._act(exchange, method, path, raw, reader, writer)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _act(
        self,
        exchange: Exchange,
        method: str,
        path: str,
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        action = exchange.action
        if isinstance(action, Hang):
            await asyncio.sleep(action.seconds)
            return
        if isinstance(action, Reply):
            await asyncio.sleep(action.delay_s)
            extra = {"Content-Type": "application/json"}
            if action.retry_after is not None:
                extra["Retry-After"] = action.retry_after
            writer.write(_response_head(action.status, extra, len(action.body)) + action.body)
            await writer.drain()
            exchange.delivered = True
            return
        assert self._client is not None
        upstream = await self._client.request(
            method, path, content=raw, headers={"content-type": "application/json"}
        )
        exchange.forwarded = True
        exchange.upstream_status = upstream.status_code
        exchange.upstream_body = upstream.content
        content_type = {"Content-Type": upstream.headers.get("content-type", "application/json")}
        payload = _response_head(upstream.status_code, content_type, len(upstream.content)) + upstream.content
        if isinstance(action, Truncate):
            writer.write(payload[: len(payload) - len(upstream.content) // 2])
            await writer.drain()
            return
        await asyncio.sleep(action.delay_s)
        await self._wait_for_slot()
        if reader.at_eof():  # the client hung up (or was killed) while the answer was held
            return
        writer.write(payload)
        await writer.drain()
        with self._lock:
            exchange.delivered = True

    async def _wait_for_slot(self) -> None:
        while True:
            with self._lock:
                if self._hold_after is None or self._granted < self._hold_after:
                    self._granted += 1
                    return
                gate = self._gate
            assert gate is not None
            await gate.wait()


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    port: int
    model: str
    log: Path
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        for close in self.closers:
            close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def _transformers_cli(python: str) -> list[str]:
    script = Path(python).parent / "transformers"
    return [str(script)] if script.exists() else [python, "-m", "transformers.cli.transformers"]


_LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+) ")


def start_transformers_serve(
    model_dir: Path, log: Path, *, python: str, timeout_s: float = 120.0
) -> ServeProcess:
    """``transformers serve model_dir`` on a loopback port of its own, once ``/health`` answers.

    The server binds port 0, so the kernel hands it a free port as it binds: no other process can take
    the port between choosing and binding it (as with :func:`free_port` then ``--port``, where another
    server could also answer ``/health`` in our stead). The port is read from uvicorn's start line
    (``Uvicorn running on http://127.0.0.1:PORT``, logged at info whatever ``--log-level`` says).
    """
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        *_transformers_cli(python),
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--device",
        "cpu",
        "--log-level",
        "warning",
    ]
    handle = log.open("wb")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    served = ServeProcess(process, 0, str(model_dir), log, [handle.close])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            served.stop()
            raise RuntimeError(f"transformers serve exited with {process.returncode}:\n{_tail(log)}")
        if served.port == 0 and (listening := _LISTENING.search(log.read_bytes())):
            served.port = int(listening.group(1))
        if served.port != 0:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{served.origin}/health", timeout=2).status_code == 200:
                    return served
        time.sleep(0.2)
    served.stop()
    raise RuntimeError(f"transformers serve did not answer /health in {timeout_s} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def proxy_to(upstream: str | None, plan: Plan | None = None) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy`, stopped on exit."""
    proxy = FaultProxy(upstream, plan).start()
    try:
        yield proxy
    finally:
        proxy.stop()
