"""A minimal Language Server Protocol client that drives a real server (pyright) for diagnostics."""

from prmforge.verifiers.lsp.client import (
    LspConnection,
    LspCrashedError,
    LspError,
    LspResponseError,
    LspTimeoutError,
)
from prmforge.verifiers.lsp.framing import FrameDecoder, FrameError, encode_message
from prmforge.verifiers.lsp.servers import (
    JailedCommand,
    ServerNotFoundError,
    ServerSpec,
    jail_command,
    pyright_spec,
)
from prmforge.verifiers.lsp.session import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    DEFAULT_MAX_LINE_CHARS,
    Diagnostic,
    DiagnosticsResult,
    LanguageServer,
    document_problem,
)

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "DEFAULT_MAX_LINE_CHARS",
    "Diagnostic",
    "DiagnosticsResult",
    "FrameDecoder",
    "FrameError",
    "JailedCommand",
    "LanguageServer",
    "LspConnection",
    "LspCrashedError",
    "LspError",
    "LspResponseError",
    "LspTimeoutError",
    "ServerNotFoundError",
    "ServerSpec",
    "document_problem",
    "encode_message",
    "jail_command",
    "pyright_spec",
]
