"""Diagnostics for a document, or an explicit "unavailable": never a silent "clean".

:class:`LanguageServer` owns at most one :class:`LspConnection` at a time.
:meth:`LanguageServer.diagnose` sends a document and waits for the server's
``publishDiagnostics`` for it. Each call opens a fresh
document (``didOpen``, wait, ``didClose``): pyright answers a new document in
tens of milliseconds but debounces ``didChange`` by about 250 ms. The answer
is a :class:`DiagnosticsResult` whose ``status`` is

- ``"clean"``: the server answered and reported no error or warning;
- ``"diagnostics"``: it reported at least one;
- ``"unavailable"``: no answer to trust, with the reason: the document is
  over the size cap (it is then never sent), the server failed to start,
  timed out (hung) or crashed.

After a timeout or a crash the process group is killed and the next call
starts a fresh server (:attr:`LanguageServer.restarts` counts these). The
server is also restarted after every ``restart_every`` documents, to bound
memory growth. Not thread-safe: one caller at a time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Final, Literal

from prmforge.verifiers.lsp.client import LspConnection, LspCrashedError, LspError, LspTimeoutError
from prmforge.verifiers.lsp.servers import ServerSpec

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "DEFAULT_MAX_LINE_CHARS",
    "Diagnostic",
    "DiagnosticsResult",
    "LanguageServer",
    "document_problem",
]

DiagnosticsStatus = Literal["clean", "diagnostics", "unavailable"]
DEFAULT_MAX_DOCUMENT_BYTES: Final = 512 * 1024
DEFAULT_MAX_LINE_CHARS: Final = 10_000
_SEVERITY_ERROR: Final = 1


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One server diagnostic; positions are 0-based as in LSP; severity 1 error .. 4 hint."""

    line: int
    character: int
    end_line: int
    end_character: int
    severity: int
    message: str
    code: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class DiagnosticsResult:
    """The server's verdict on one document version (see the module docstring)."""

    status: DiagnosticsStatus
    diagnostics: tuple[Diagnostic, ...] = ()
    reason: str = ""
    seconds: float = 0.0

    @property
    def available(self) -> bool:
        return self.status != "unavailable"


def document_problem(text: str, *, max_bytes: int, max_line_chars: int) -> str | None:
    """Why ``text`` must not be sent to a server (size caps), or None when it may be."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return f"document of {size} bytes exceeds the cap of {max_bytes} bytes"
    longest = max((len(line) for line in text.splitlines()), default=0)
    if longest > max_line_chars:
        return f"a line of {longest} characters exceeds the cap of {max_line_chars}"
    return None


def parse_diagnostic(raw: Mapping[str, Any]) -> Diagnostic:
    """A :class:`Diagnostic` from the LSP JSON object (a missing severity counts as an error)."""
    rng = raw.get("range") or {}
    start = rng.get("start") or {}
    end = rng.get("end") or {}
    code = raw.get("code")
    source = raw.get("source")
    return Diagnostic(
        line=int(start.get("line", 0)),
        character=int(start.get("character", 0)),
        end_line=int(end.get("line", start.get("line", 0))),
        end_character=int(end.get("character", 0)),
        severity=int(raw.get("severity") or _SEVERITY_ERROR),
        message=str(raw.get("message", "")),
        code=None if code is None else str(code),
        source=None if source is None else str(source),
    )


class LanguageServer:
    """Diagnostics with request timeouts, restart on hang or crash and a document-size cap.

    ``max_severity`` keeps diagnostics up to that severity (2: errors and
    warnings; hints such as "unused variable" are dropped).
    """

    def __init__(
        self,
        spec: ServerSpec,
        *,
        start_timeout_s: float = 30.0,
        diagnostics_timeout_s: float = 10.0,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
        max_severity: int = 2,
        restart_every: int = 500,
        use_bwrap: bool = True,
    ) -> None:
        if restart_every < 1:
            raise ValueError(f"restart_every must be >= 1, got {restart_every}")
        self.spec = spec
        self.start_timeout_s = start_timeout_s
        self.diagnostics_timeout_s = diagnostics_timeout_s
        self.max_document_bytes = max_document_bytes
        self.max_line_chars = max_line_chars
        self.max_severity = max_severity
        self.restart_every = restart_every
        self.use_bwrap = use_bwrap
        self.starts = 0
        self.restarts = 0
        self._conn: LspConnection | None = None
        self._documents = 0

    @property
    def connection(self) -> LspConnection | None:
        """The live connection, if any (tests use it to kill or stop the server)."""
        return self._conn

    @property
    def bytes_sent(self) -> int:
        return 0 if self._conn is None else self._conn.bytes_sent

    def start(self) -> LspConnection:
        """The live connection, starting (or restarting) the server when there is none."""
        if self._conn is not None and self._conn.alive:
            return self._conn
        if self._conn is not None:
            self._conn.kill()
            self._conn = None
            self.restarts += 1
        self._documents = 0
        self._conn = LspConnection(self.spec, use_bwrap=self.use_bwrap, start_timeout_s=self.start_timeout_s)
        self.starts += 1
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LanguageServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def diagnose(self, text: str, *, name: str = "main") -> DiagnosticsResult:
        """Diagnostics for ``text``, sent as a new document ``<name>-<n><suffix>`` in the workspace."""
        began = time.monotonic()
        problem = document_problem(
            text, max_bytes=self.max_document_bytes, max_line_chars=self.max_line_chars
        )
        if problem is not None:
            return DiagnosticsResult("unavailable", reason=problem, seconds=time.monotonic() - began)
        if self._conn is not None and self._documents >= self.restart_every:
            self.close()
        try:
            conn = self.start()
        except LspError as err:
            return DiagnosticsResult(
                "unavailable", reason=f"server failed to start: {err}", seconds=_since(began)
            )
        self._documents += 1
        uri = f"{conn.workspace_uri}/{PurePosixPath(name).name}-{self._documents}{self.spec.file_suffix}"
        try:
            conn.open_document(uri, text, self.diagnostics_timeout_s)
            raw = conn.wait_diagnostics(uri, self.diagnostics_timeout_s)
            conn.close_document(uri, self.diagnostics_timeout_s)
        except LspTimeoutError as err:
            conn.kill()
            return DiagnosticsResult("unavailable", reason=f"timeout: {err}", seconds=_since(began))
        except LspCrashedError as err:
            conn.kill()
            return DiagnosticsResult("unavailable", reason=f"server crashed: {err}", seconds=_since(began))
        kept = tuple(
            d
            for d in (parse_diagnostic(item) for item in raw if isinstance(item, Mapping))
            if d.severity <= self.max_severity
        )
        status: DiagnosticsStatus = "diagnostics" if kept else "clean"
        return DiagnosticsResult(status, kept, reason="", seconds=_since(began))


def _since(began: float) -> float:
    return time.monotonic() - began
